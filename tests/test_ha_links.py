"""The link keeper through a database outage: one WARNING line when it starts, no traceback, and it goes on."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

from peering.errors import DatabaseUnavailableError
from peering.links import LinkKeeper
from peering.notifier import LocalNotifier

pytestmark = pytest.mark.anyio


class _Outage:
    """Leadership whose check fails as the database does for `passes` passes, then says "not the leader"."""

    def __init__(self, passes: int) -> None:
        self.left = passes
        self.done = asyncio.Event()

    async def is_leader(self) -> bool:
        if self.left > 0:
            self.left -= 1
            raise DatabaseUnavailableError()
        self.done.set()
        return False


async def test_an_outage_is_one_warning_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    outage = _Outage(passes=5)
    cluster = SimpleNamespace(notifier=LocalNotifier(), timings=SimpleNamespace(heartbeat_interval=0.01))
    keeper = LinkKeeper(cast(Any, cluster), cast(Any, None), cast(Any, None), cast(Any, outage))
    with caplog.at_level(logging.INFO, logger="peering.links"):
        task = asyncio.create_task(keeper.run())
        try:
            await asyncio.wait_for(outage.done.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["database unavailable: links kept again when it returns"]
    assert all(r.exc_info is None for r in caplog.records)
    assert "database available again: keeping links" in [r.getMessage() for r in caplog.records]
