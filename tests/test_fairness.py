"""peering/server/fairness.py: the event loop's fair shares between sources (issue 11), on a fake clock.

Then the protocols' holding and resuming over real sockets (in-process clusters, who is held forced); the
end-to-end proof is the acceptance attack (`tests/test_hostile.py`).
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import anyio
import pytest

from peering.identity import client_ssl_context
from peering.server import fairness
from peering.server.fairness import Fairness
from peering.server.protocol import BUSY_TEXT
from tests.test_peering import Node

ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]


class Clock:
    """`time` for the module under test: wall-clock and CPU time advance only when told."""

    def __init__(self) -> None:
        self.wall = 1000.0
        self.cpu = 10.0

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return self.cpu

    def spend(self, seconds: float, cpu: float | None = None) -> None:
        self.wall += seconds
        self.cpu += seconds if cpu is None else cpu


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(fairness, "time", fake)
    return fake


def _work(fair: Fairness, clock: Clock, account: fairness.Account, seconds: float, cpu: float | None = None) -> None:
    """One callback of `account` that takes `seconds` of the loop (`cpu` of it on the CPU)."""
    started = fair.begin()
    clock.spend(seconds, cpu)
    fair.end(account, started)


def _rounds(fair: Fairness, clock: Clock, heavy: dict[str, float], light: dict[str, float], seconds: float) -> int:
    """Every 10 ms each source takes its share of the loop (the heavy ones unless held) and the loop rests
    for what is left, for `seconds`; how often a light source found itself held."""
    accounts = {address: fair.opened(address) for address in [*heavy, *light]}
    held_light = 0
    for _ in range(round(seconds / 0.01)):
        used = 0.0
        for address, share in [*heavy.items(), *light.items()]:
            if fair.over(accounts[address]):
                if address in light:
                    held_light += 1
                else:
                    continue
            _work(fair, clock, accounts[address], 0.01 * share)
            used += 0.01 * share
        clock.spend(max(0.0, 0.01 - used), 0.0)
    return held_light


def test_a_source_alone_is_never_held(clock: Clock) -> None:
    fair = Fairness(0.5)
    _rounds(fair, clock, {"127.0.0.2": 1.0}, {}, 2.0)
    assert not fair.over(fair.opened("127.0.0.2"))


def test_heavy_sources_are_held_light_ones_never(clock: Clock) -> None:
    """Eight sources wanting 12 % of the loop each and one wanting 2 %: the eight are held to the fair level
    (the loop's load stays near 0.5), the light one never waits."""
    fair = Fairness(0.5)
    held_light = _rounds(fair, clock, dict.fromkeys(ATTACKERS, 0.12), {"127.0.0.1": 0.02}, 3.0)
    assert held_light == 0
    shares = {address: fair.opened(address).share(clock.wall) for address in ATTACKERS}
    assert all(0.03 < share < 0.09 for share in shares.values()), shares  # about 0.5 / 9 each, not 0.12
    assert sum(shares.values()) < 0.6, shares


def test_nobody_is_held_while_the_loop_is_not_busy(clock: Clock) -> None:
    fair = Fairness(0.5)
    _rounds(fair, clock, {}, {"127.0.0.2": 0.3, "127.0.0.3": 0.1}, 1.0)
    assert not fair.over(fair.opened("127.0.0.2"))


def test_time_the_loop_waited_for_a_cpu_is_charged_to_nobody(clock: Clock) -> None:
    """A callback preempted by another process takes wall-clock time but little CPU: its source does not
    look heavier for it, while the loop does look busy."""
    fair = Fairness(0.5)
    light, heavy = fair.opened("127.0.0.1"), fair.opened("127.0.0.2")
    for _ in range(100):
        _work(fair, clock, heavy, 0.006, cpu=0.003)  # the loop is busy: half of its time waits for a CPU
        _work(fair, clock, light, 0.002, cpu=0.0002)  # a light read preempted for 1.8 ms
        clock.spend(0.002, 0.0)
    assert light.share(clock.wall) < 0.05
    assert not fair.over(light)
    assert fair.over(heavy)


def test_trusted_proxies_are_exempt_and_load_0_turns_it_off(clock: Clock) -> None:
    proxy = "10.0.0.7"
    fair = Fairness(0.5, exempt=[ip_network("10.0.0.0/8")])
    _rounds(fair, clock, {proxy: 0.6, "127.0.0.2": 0.3}, {"127.0.0.1": 0.05}, 2.0)
    assert not fair.over(fair.opened(proxy))
    assert fair.over(fair.opened("127.0.0.2"))
    off = Fairness(0.0)
    assert off.begin() == -1.0
    _rounds(off, clock, {"127.0.0.2": 0.9}, {"127.0.0.1": 0.05}, 1.0)
    assert not off.over(off.opened("127.0.0.2"))


@pytest.mark.anyio
async def test_held_connections_resume_lightest_first_one_per_source_in_turn(clock: Clock) -> None:
    fair = Fairness(0.5)
    heavier, lighter, light = fair.opened("127.0.0.2"), fair.opened("127.0.0.3"), fair.opened("127.0.0.1")
    for _ in range(50):  # 0.6, 0.4 and 0.02 of the loop
        for account, seconds in ((heavier, 0.006), (lighter, 0.004), (light, 0.0002)):
            _work(fair, clock, account, seconds)
    assert fair.over(heavier)
    assert fair.over(lighter)
    resumed: list[str] = []
    for n in range(3):
        fair.hold(heavier, f"heavy-{n}", functools.partial(resumed.append, f"heavy-{n}"))
        fair.hold(lighter, f"light-{n}", functools.partial(resumed.append, f"light-{n}"))
    fair.closed(lighter, "light-1")  # went away while it waited
    await asyncio.sleep(fairness.PUMP_EVERY * 4)
    assert resumed == []  # still busy: they wait
    clock.spend(2.0, 0.0)  # the loop rests: no longer busy
    deadline = asyncio.get_running_loop().time() + 2
    while len(resumed) < 5 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(fairness.PUMP_EVERY)
    assert resumed == ["light-0", "heavy-0", "light-2", "heavy-1", "heavy-2"]


@pytest.mark.anyio
async def test_a_resume_that_fails_does_not_stop_the_others(clock: Clock) -> None:
    fair = Fairness(0.5)
    _rounds(fair, clock, {"127.0.0.2": 0.6}, {"127.0.0.1": 0.05}, 1.0)
    account = fair.opened("127.0.0.2")
    resumed: list[int] = []

    def failing() -> None:
        raise RuntimeError("boom")

    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    fair.hold(account, 1, failing)
    fair.hold(account, 2, lambda: resumed.append(2))
    clock.spend(2.0, 0.0)
    deadline = loop.time() + 2
    while not resumed and loop.time() < deadline:
        await asyncio.sleep(fairness.PUMP_EVERY)
    assert resumed == [2]
    assert len(errors) == 1


@pytest.mark.anyio
async def test_charged_steps_return_raise_and_cancel_like_the_coroutine(clock: Clock) -> None:
    fair = Fairness(0.5)
    account = fair.opened("127.0.0.2")

    async def steps() -> str:
        for _ in range(3):
            clock.spend(0.01)
            await asyncio.sleep(0)
        return "done"

    assert await fair.charged(account, steps()) == "done"
    assert account.used == pytest.approx(0.03, rel=0.1)  # three steps of 10 ms (decaying a little)

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await fair.charged(account, failing())
    cancelled = False

    async def waiting() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise

    task = asyncio.ensure_future(fair.charged(account, waiting()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled
    assert fair.begin() >= 0  # nothing left measuring


def test_accounts_are_bounded_and_forgotten_when_negligible(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fairness, "MAX_ACCOUNTS", 64)
    fair = Fairness(0.5)
    kept = fair.opened("127.0.0.1")  # a connection stays open: never forgotten
    for n in range(1000):
        fair.closed(fair.opened(f"10.0.{n // 256}.{n % 256}"), None)
    assert len(fair._accounts) <= 64
    assert fair._accounts["127.0.0.1"] is kept
    _rounds(fair, clock, {"127.0.0.2": 0.4, "127.0.0.3": 0.4}, {}, 1.0)
    fair.over(fair.opened("127.0.0.2"))  # a recount forgets the sources without connections and use
    assert set(fair._accounts) == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}


# -- the protocols hold and resume over real sockets (in-process clusters; who is held is forced)

HELD_SOURCE = "127.0.0.2"
LEADER = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The sources `Fairness.over` says must wait (the rest of the fairness runs as it is)."""
    sources: set[str] = set()
    monkeypatch.setattr(Fairness, "over", lambda self, account: account.address in sources)
    return sources


@asynccontextmanager
async def _serving(tmp_path: Path, kind: str, request_timeout: float = 5.0) -> AsyncIterator[Node]:
    node = Node("a", tmp_path / "a", "dc1")
    node.options = {"http_protocol": kind, "request_timeout": request_timeout}
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _open(
    address: str, source: str, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.rsplit(":", 1)
    return await asyncio.open_connection(
        host, int(port), local_addr=(source, 0), ssl=tls, server_hostname="server.dc1.consul" if tls else None
    )


async def _answer(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    with anyio.fail_after(within):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
        return head + await reader.readexactly(length)


async def _no_answer_yet(reader: asyncio.StreamReader, seconds: float = 0.3) -> bool:
    with suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await reader.read(1)
            return False
    return True


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["httptools", "h11"])
async def test_a_held_source_is_read_on_when_it_may_and_others_are_served_meanwhile(
    tmp_path: Path, kind: str, held: set[str]
) -> None:
    async with _serving(tmp_path, kind) as node:
        reader, writer = await _open(node.http_addr, HELD_SOURCE)
        try:
            writer.write(LEADER)  # answered once: the connection is known, then its source is held
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
            held.add(HELD_SOURCE)
            writer.write(LEADER[:20])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(LEADER[20:] + LEADER)  # more while it waits, and a pipelined one
            assert await _no_answer_yet(reader)
            other = await node.api.get("/v1/status/leader")  # another source is served meanwhile
            assert other.status_code == 200
            held.clear()
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["httptools", "h11"])
async def test_a_request_held_past_its_deadline_gets_429_with_retry_after(
    tmp_path: Path, kind: str, held: set[str]
) -> None:
    held.add(HELD_SOURCE)
    async with _serving(tmp_path, kind, request_timeout=0.5) as node:
        reader, writer = await _open(node.http_addr, HELD_SOURCE)
        try:
            writer.write(LEADER)
            answer = await _answer(reader)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 429 "), answer
    assert b"\r\nretry-after: 1\r\n" in answer
    assert answer.endswith(BUSY_TEXT.encode())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["httptools", "h11"])
async def test_on_the_peer_port_a_held_source_waits_before_its_tls_handshake(
    tmp_path: Path, kind: str, held: set[str]
) -> None:
    held.add(HELD_SOURCE)
    async with _serving(tmp_path, kind) as node:
        context = client_ssl_context([(node.data / "ca.pem").read_text()])
        opening = asyncio.ensure_future(_open(node.peering_addr, HELD_SOURCE, context))
        await asyncio.sleep(0.3)
        assert not opening.done()  # its hello is not answered
        held.clear()
        with anyio.fail_after(5):
            reader, writer = await opening
        try:
            body = b'{"PeerID": "x", "StreamSecret": "y"}'
            writer.write(
                b"POST /peering/v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            held.add(HELD_SOURCE)  # and after the handshake, what it sends waits too
            assert await _no_answer_yet(reader)
            held.clear()
            assert (await _answer(reader)).startswith(b"HTTP/1.1 403 ")  # served: the secret is wrong
        finally:
            writer.close()
