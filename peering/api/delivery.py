"""Sending a wake's answers (`api.blocking`): a courier that sends `CHUNK` of them a turn of the event
loop, and reads the woken connections' next requests only once they are all out.

A write may wake 10,000 parked blocking queries at once. Sent in one go, their answers would hold the
event loop for the whole wake; so the courier sends `CHUNK` a turn, and other requests are served in
between. A woken watcher asks again at once, though: read at once, those requests would take turns with
the wake's own answers, and the last answer would wait for nearly every watcher's next request. So each
answered request's scope carries `WOKEN`, the courier's `defer`: the protocol (`server.protocol`) calls
it with how to read that connection on, and holds what it sent until the courier, the outbox empty, reads
those connections, `CHUNK` a turn. Other clients' connections are read as always.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.types import Send

log = logging.getLogger("peering.api")

CHUNK = 32  # answers sent (or held connections read) in one turn of the event loop
# the scope key of a request answered by a wake: the protocol calls it (`Courier.defer`) with how to read
# the connection's next request, which then waits for the wake's other answers
WOKEN = "peering.woken"

T = TypeVar("T")
_DONE = object()  # what `_step` gives for a delivery that ended


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole response as the app sent it, and its `X-Consul-Index` (None unless a 200 with one)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    index: int | None


class Courier(Generic[T]):
    """Sends the answers `post`ed to it; `take(item, answer)` is called as one goes out, and gives the `Send` to
    use (None: its client left meanwhile)."""

    def __init__(self, take: Callable[[T, Answer], Send | None]) -> None:
        self._take = take
        self._outbox: deque[tuple[T, Answer]] = deque()
        self._deferred: deque[Callable[[], None]] = deque()  # answered connections' next reads (`defer`)
        self._task: asyncio.Task[None] | None = None
        self._slow: set[asyncio.Task[None]] = set()  # deliveries that had to wait for their client

    def post(self, item: T, answer: Answer) -> None:
        self._outbox.append((item, answer))
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="blocking-answers")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def defer(self, read_on: Callable[[], None]) -> bool:
        """Whether a woken connection's next request waits for the wake (`read_on` reads it then)."""
        if not self.running:
            return False
        self._deferred.append(read_on)
        return True

    async def _run(self) -> None:
        outbox, deferred = self._outbox, self._deferred
        try:
            while outbox or deferred:
                if outbox:
                    for _ in range(min(CHUNK, len(outbox))):
                        item, answer = outbox.popleft()
                        send = self._take(item, answer)
                        if send is not None:
                            self._drive(deliver(send, answer))
                else:
                    for _ in range(min(CHUNK, len(deferred))):
                        _read_on(deferred.popleft())
                await asyncio.sleep(0)
        finally:
            while deferred:  # cancelled (shutdown): no connection stays unread
                _read_on(deferred.popleft())

    def _drive(self, delivery: Coroutine[Any, Any, None]) -> None:
        """Run `delivery` here; only if it has to wait (its client does not read) does it become a task."""
        waiting_for = _step(delivery)
        if waiting_for is _DONE:
            return
        task = asyncio.get_running_loop().create_task(_resume(delivery, waiting_for))
        self._slow.add(task)
        task.add_done_callback(self._slow.discard)


def _read_on(read: Callable[[], None]) -> None:
    try:
        read()
    except Exception:
        log.exception("reading a woken connection's next request failed")


async def _resume(delivery: Coroutine[Any, Any, None], waiting_for: Any) -> None:
    """Carry on a delivery that stopped to wait for `waiting_for` (what it yielded, as a coroutine yields
    to its task), as its task would."""
    while True:
        try:
            if isinstance(waiting_for, asyncio.Future):
                await asyncio.wait((waiting_for,))
            else:
                await asyncio.sleep(0)  # a bare yield
        except asyncio.CancelledError:
            delivery.close()
            raise
        waiting_for = _step(delivery)
        if waiting_for is _DONE:
            return


def _step(delivery: Coroutine[Any, Any, None]) -> Any:
    """Run `delivery` to its next wait: what it waits for, or `_DONE` once it ended (a failure is logged)."""
    try:
        return delivery.send(None)
    except StopIteration:
        return _DONE
    except Exception:
        log.exception("sending a parked blocking query's answer failed")
        return _DONE


async def deliver(send: Send, answer: Answer) -> None:
    """Send `answer` (each time with its own header list: a middleware may add to it)."""
    await send({"type": "http.response.start", "status": answer.status, "headers": list(answer.headers)})
    await send({"type": "http.response.body", "body": answer.body})
