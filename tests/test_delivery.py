"""The courier of a wake's answers (`peering.api.delivery`): answers go out `CHUNK` a turn, and the woken
connections' next requests (`defer`, which the protocol calls with how to read on) are read only once every
answer is out, and are read even if the courier is cancelled. The last test holds a real connection that
way, through both HTTP protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Send

from peering.api.blocking import BlockingQueries
from peering.api.delivery import CHUNK, WOKEN, Answer, Courier
from peering.notifier import LocalNotifier
from tests.test_fairness import HELD_SOURCE, LEADER, _answer, _no_answer_yet, _open, _serving

ANSWER = Answer(200, [(b"content-length", b"2")], b"[]", 7)
KEEP_ALIVE = 5.0  # s: the servers' idle keep-alive timeout (`server/listeners.py`)


class _Wake:
    """A courier whose clients, once answered, ask again at once (as a woken watcher does)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.deferred: list[bool] = []
        self.courier: Courier[int] = Courier(self._take)

    def _take(self, item: int, answer: Answer) -> Send | None:
        if item < 0:
            return None  # its client left meanwhile

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.log.append(("sent", item))
                self.deferred.append(self.courier.defer(lambda: self.log.append(("read", item))))

        return send


async def _until_idle(courier: Courier[Any]) -> None:
    for _ in range(10_000):
        if not courier.running:
            return
        await asyncio.sleep(0)
    raise AssertionError("the courier did not finish")


@pytest.mark.anyio
async def test_woken_connections_are_read_on_once_every_answer_is_out() -> None:
    wake = _Wake()
    for item in [*range(100), -1]:
        wake.courier.post(item, ANSWER)
    await _until_idle(wake.courier)
    sent = [item for kind, item in wake.log if kind == "sent"]
    assert sent == list(range(100))  # in order, the one whose client left skipped
    assert wake.log == [("sent", i) for i in range(100)] + [("read", i) for i in range(100)]
    assert wake.deferred == [True] * 100
    assert not wake.courier.defer(lambda: None)  # no wake in progress: the protocol reads on at once


@pytest.mark.anyio
async def test_answers_go_out_a_chunk_a_turn() -> None:
    wake = _Wake()
    for item in range(3 * CHUNK):
        wake.courier.post(item, ANSWER)
    await asyncio.sleep(0)  # the courier's first turn
    assert len(wake.log) == CHUNK
    await asyncio.sleep(0)
    assert len(wake.log) == 2 * CHUNK
    await _until_idle(wake.courier)


@pytest.mark.anyio
async def test_a_cancelled_courier_reads_on_every_connection_it_held() -> None:
    wake = _Wake()
    for item in range(3 * CHUNK):
        wake.courier.post(item, ANSWER)
    await asyncio.sleep(0)
    task = wake.courier._task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wake.log == [("sent", i) for i in range(CHUNK)] + [("read", i) for i in range(CHUNK)]


@pytest.mark.anyio
async def test_an_answer_whose_client_does_not_read_is_finished_by_its_own_task() -> None:
    ready = asyncio.get_running_loop().create_future()
    got: list[Message] = []

    async def slow(message: Message) -> None:
        await ready  # a client that does not read yet
        got.append(message)

    courier: Courier[int] = Courier(lambda item, answer: slow)
    courier.post(1, ANSWER)
    await _until_idle(courier)
    assert got == []
    ready.set_result(None)
    for _ in range(10):
        await asyncio.sleep(0)
    assert [message["type"] for message in got] == ["http.response.start", "http.response.body"]


@pytest.mark.anyio
async def test_a_woken_request_carries_the_couriers_defer_in_its_scope() -> None:
    index = 5

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"2"), (b"x-consul-index", str(index).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"[]"})

    notifier = LocalNotifier()
    middleware = BlockingQueries(app, notifier=notifier)
    scope = {
        "type": "http", "method": "GET", "path": "/v1/peerings", "query_string": b"index=5&wait=60s",
        "root_path": "", "headers": [], "client": ("127.0.0.1", 5),
    }  # fmt: skip
    answered = asyncio.Event()

    async def receive() -> Message:
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            answered.set()

    task = asyncio.ensure_future(middleware(scope, receive, send))
    for _ in range(3):
        await asyncio.sleep(0)
    assert WOKEN not in scope
    index = 6
    notifier.notify(6)
    await asyncio.wait_for(task, 5)
    assert callable(scope[WOKEN])


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["httptools", "h11"])
async def test_a_woken_connections_next_request_waits_for_the_courier(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake still going out (forced here: the courier takes every `defer`) holds what the woken connection
    sends next, past the keep-alive timeout, and reads it when the courier says; others are served meanwhile."""
    held: list[Callable[[], None]] = []

    def defer(self: Courier[Any], read_on: Callable[[], None]) -> bool:
        held.append(read_on)
        return True

    monkeypatch.setattr(Courier, "defer", defer)
    async with _serving(tmp_path, kind, request_timeout=30.0) as node:  # the deadline out of the way
        index = (await node.api.get("/v1/peerings")).headers["x-consul-index"]
        reader, writer = await _open(node.http_addr, HELD_SOURCE)
        try:
            writer.write(f"GET /v1/peerings?index={index}&wait=60s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert await _no_answer_yet(reader)  # parked
            assert (await node.api.post("/v1/peering/token", json={"PeerName": "wakes-it"})).status_code == 200
            assert b'"Name":"wakes-it"' in await _answer(reader)
            writer.write(LEADER)  # the woken watcher asks again at once
            # held past the keep-alive timeout (5 s) without being closed: a held request is not an idle connection
            assert await _no_answer_yet(reader, KEEP_ALIVE + 0.5)
            assert (await node.api.get("/v1/status/leader")).status_code == 200  # others are served meanwhile
            assert len(held) == 1
            held.pop()()
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
            writer.write(LEADER)  # not woken this time: read at once
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
            assert held == []
        finally:
            writer.close()
