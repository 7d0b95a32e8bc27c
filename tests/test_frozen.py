"""The collector's settings while many blocking queries are held (`peering.api.frozen.Freezer`): frozen and
collected less often while many are parked, back to the usual threshold once most have gone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator

import pytest

from peering.api.frozen import MANY_YOUNG, Freezer, for_loop

pytestmark = pytest.mark.anyio


@pytest.fixture
def collector() -> Iterator[tuple[int, int, int]]:
    threshold = gc.get_threshold()
    try:
        yield threshold
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def _until(condition: Callable[[], bool], bound: float = 5.0) -> None:
    """Wait for the thaw (a timer of the Freezer's own, with no event to await), bounded."""
    async with asyncio.timeout(bound):
        while not condition():
            await asyncio.sleep(0.01)


async def test_many_parked_raise_the_young_threshold_and_the_thaw_puts_it_back(
    collector: tuple[int, int, int],
) -> None:
    usual = collector
    freezer = Freezer(every=8, thaw_after=0.05)
    for _ in range(7):
        freezer.joined()
    assert gc.get_threshold() == usual  # not many yet
    freezer.joined()
    assert gc.get_threshold() == (MANY_YOUNG, *usual[1:])
    assert gc.get_freeze_count() > 0
    for _ in range(8):
        freezer.left()
    await _until(lambda: gc.get_threshold() == usual)
    assert freezer.parked == 0


async def test_a_second_round_keeps_the_usual_threshold_to_restore(collector: tuple[int, int, int]) -> None:
    usual = collector
    freezer = Freezer(every=4, thaw_after=0.05)
    for _ in range(9):  # two freezes in one round: the threshold to restore is still the usual one
        freezer.joined()
    assert gc.get_threshold() == (MANY_YOUNG, *usual[1:])
    for _ in range(9):
        freezer.left()
    await _until(lambda: gc.get_threshold() == usual)


async def test_few_held_at_once_never_freeze_however_many_come_and_go(collector: tuple[int, int, int]) -> None:
    usual = collector
    freezer = Freezer(every=8, thaw_after=0.05)
    frozen = gc.get_freeze_count()
    for _ in range(100):  # a server whose few connections come and go: never frozen, never thawed
        freezer.joined()
        freezer.joined()
        freezer.left()
        freezer.left()
    assert gc.get_threshold() == usual
    assert gc.get_freeze_count() == frozen
    assert freezer.parked == 0


async def test_the_event_loop_has_one_freezer_for_its_queries_and_connections() -> None:
    assert for_loop() is for_loop()
