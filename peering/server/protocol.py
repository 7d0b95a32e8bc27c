"""What the HTTP protocol of both listeners adds to uvicorn's (`parsers`: on httptools or on h11): admission, a
request deadline, a head cap and an early 413 for a body announced over the limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, ClassVar

from peering.api.answers import Answers
from peering.api.body import MAX_BODY_BYTES
from peering.api.delivery import WOKEN
from peering.api.frozen import Freezer, for_loop
from peering.server.admission import Gate, Refused, Slot
from peering.server.fairness import Account, Fairness

log = logging.getLogger("peering.server")

CLOSE_GRACE = 0.5  # seconds a closing connection gets to finish its TLS goodbye
LINGER = 1.0  # seconds a refused connection is read (and discarded) so that its request cannot reset the 429
MAX_LINGERING = 256  # refused connections lingering at once; beyond that a refusal is a plain close
REQUEST_TIMEOUT = 10.0  # seconds a client has to send a whole request (head and body), from connect or last answer
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; a longer head is a 431 and the connection closes


def refusal(status: str, text: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 answer with a plain-text body that closes the connection (`extra`: header lines)."""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n{extra}"
        f"content-length: {len(text)}\r\n\r\n{text}"
    ).encode()


_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers (h11 also takes bare LFs)
_TIMED_OUT = refusal("408 Request Timeout", "request timeout")
HEAD_TOO_LARGE = refusal("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
TOO_MANY = {why: refusal("429 Too Many Requests", why.value) for why in Refused}
BUSY_TEXT = "Your IP is using more than its share of the server while it is busy, please rate limit your calls"
_HELD_TOO_LONG = refusal("429 Too Many Requests", BUSY_TEXT, "retry-after: 1\r\n")
_TOO_LARGE_TEXT = f"Request body too large: the limit is {MAX_BODY_BYTES} bytes".encode()  # as the routes say
_TOO_LARGE_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_TOO_LARGE_TEXT)).encode()),
    (b"connection", b"close"),
]


class HttpProtocol(asyncio.Protocol):
    """What both HTTP protocols add to uvicorn's: admission by a `Gate`, a deadline for each request, a cap
    on its head, and the early 413. Mixed in before uvicorn's protocol class (`H11Http`, `HttpToolsHttp`).

    uvicorn bounds only the idle time between requests (`timeout_keep_alive`), and any byte cancels it: a
    client that trickles a request head or body (slowloris) would otherwise hold its connection for ever.
    Once the request is in, the deadline is off (a blocking query may wait minutes); the next request on a
    keep-alive connection gets a new one.

    Neither parser caps a head that arrives whole in one read (h11 refuses only an incomplete one past its
    limit, httptools none at all), so the head's size is counted here before the parser sees the bytes.

    uvicorn answers `Expect: 100-continue` as soon as the app reads the body, before the app could see that
    the announced length is over the limit; such a request gets its 413 here, without a 100 first.

    Every callback that reads, and every step of the app for a request, is charged to the connection's
    source in `fairness`; while the source must wait (`Fairness.over`), what it sends is not read on
    (`_hold`): the bytes of the read in hand are kept, reading pauses, and `_resume` goes on when the
    source may. A request held until its deadline gets a 429 with `Retry-After` instead of the 408.

    Subclasses (one per listener, made by `protocol_class`) set the gate, the fairness and the deadline.
    """

    gate: ClassVar[Gate]
    fairness: ClassVar[Fairness]
    answers: ClassVar[Answers | None] = None  # the client port's kept answers (given on httptools)
    request_timeout: ClassVar[float] = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    slot: Slot | None = None  # set before `connection_made` when the TLS handshake admitted the connection
    lingering: ClassVar[list[int]] = [0]  # refused connections being read out now (one counter per listener)
    _discarding = False
    account: Account | None = None  # the source's, from `connection_made` on
    _freezer: Freezer | None = None  # counts this connection while it is open (`peering.api.frozen`)
    _held: list[bytes] | None = None  # the bytes read while the source had to wait
    # what uvicorn's protocols have
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    app: Any
    flow: Any
    cycle: Any
    _unset_keepalive_if_required: Callable[[], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._served = self.app
        self.app = self._guard

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.slot is None:
            admitted = self.gate.admit(self.client[0] if self.client else "", self._evicted)
            if isinstance(admitted, Refused):
                self._turn_away(TOO_MANY[admitted])
                return
            self.slot = admitted
        if self.account is None:  # on the peering port, the TLS handshake opened it
            self.account = self.fairness.opened(self.client[0] if self.client else "")
        self._freezer = for_loop()
        self._freezer.joined()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._discarding:
            self.lingering[0] -= 1
        self._disarm()
        if self.slot is not None:
            self.slot.release()
        if self.account is not None:
            self.fairness.closed(self.account, self)
            self.account = None
        if self._freezer is not None:
            self._freezer.left()
            self._freezer = None
        super().connection_lost(exc)
        # `app` holds `_guard`, a method bound to this protocol: a reference cycle that left every closed
        # connection (protocol, transport, request cycle: about 15 objects) to the cyclic collector, whose
        # full collections after thousands of closed connections held the loop for 70-150 ms
        self.app = self._served

    def data_received(self, data: bytes) -> None:
        """Read `data` now, charged to the source, or keep it while the source has to wait."""
        if self._discarding:
            return
        account = self.account
        cycle = self.cycle  # the last request's, until the next head
        if self._held is not None:  # still waiting (uvicorn's own flow control resumed reading meanwhile)
            self._held.append(data)
            self.transport.pause_reading()
        elif cycle is not None and (defer := cycle.scope.pop(WOKEN, None)) is not None and defer(self._resume):
            self._held = [data]  # a woken watcher asking again: read once the wake is out (`api.delivery`)
            self.transport.pause_reading()
            self._unset_keepalive_if_required()  # a held request is not an idle connection
        elif account is not None and self.fairness.over(account):
            self._hold(account, data)
        else:
            started = self.fairness.begin()
            try:
                self._read(data)
            finally:
                self.fairness.end(account, started)

    def _read(self, data: bytes) -> None:
        """What the HTTP protocol does with bytes read."""
        raise NotImplementedError

    def _hold(self, account: Account, data: bytes) -> None:
        self._held = [data]
        self.transport.pause_reading()
        self._unset_keepalive_if_required()  # a held request is not an idle connection
        self.fairness.hold(account, self, self._resume)

    def _resume(self) -> None:
        held, self._held = self._held, None
        if held is None or self.transport.is_closing():
            return
        started = self.fairness.begin()
        try:
            self._read(b"".join(held))
        finally:
            self.fairness.end(self.account, started)
        if not self.flow.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def _answering(self) -> bool:
        """Whether the request whose deadline passed is partly in and already being answered."""
        raise NotImplementedError

    def _head_over(self, seen: int, pending: bytes) -> bool:
        """Whether a head of which `seen` bytes were counted before `pending` goes over the cap; if so, it is
        refused with a 431."""
        end = _HEAD_END.search(pending)
        if seen + (end.start() if end else len(pending)) <= MAX_HEAD_BYTES:
            return False
        log.debug("refusing a request head over %d bytes", MAX_HEAD_BYTES)
        self._refuse(HEAD_TOO_LARGE)
        return True

    async def _guard(self, scope: Any, receive: Any, send: Any) -> None:
        """The app, unless the request waits for a `100 Continue` to send a body over the limit."""
        cycle = receive.__self__  # this request's cycle (with pipelining, `self.cycle` may be a later one)
        if cycle.waiting_for_100_continue and _announced(scope["headers"]) > MAX_BODY_BYTES:
            log.debug("refusing a body announced over %d bytes before it is sent", MAX_BODY_BYTES)
            cycle.keep_alive = False  # the body the client may still send is not read
            await send({"type": "http.response.start", "status": 413, "headers": _TOO_LARGE_HEADERS})
            await send({"type": "http.response.body", "body": _TOO_LARGE_TEXT})
            return
        if cycle.waiting_for_100_continue:
            receive = self._after_continue(cycle, receive)
        await self.fairness.charged(self.account, self._served(scope, receive, send))

    def _after_continue(self, cycle: Any, receive: Any) -> Any:
        """`receive` for a request whose client waits for a `100 Continue` before it sends the body: the
        deadline is off until the 100 goes out (the client waits for the server, however busy the server
        is), and the body then has a deadline of its own."""
        self._disarm()

        async def receive_body() -> Any:
            if cycle.waiting_for_100_continue and cycle.more_body:
                self._arm()  # uvicorn writes the 100 in this call
            return await receive()

        return receive_body

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._held is not None:
            log.debug("refusing a request held for its source's share past %.1f s", self.request_timeout)
            self._refuse(_HELD_TOO_LONG)
            return
        log.debug("closing a connection whose request did not arrive within %.1f s", self.request_timeout)
        self._refuse(b"" if self._answering() else _TIMED_OUT)

    def _evicted(self) -> None:
        """The gate closes this idle connection to admit another (no close_notify wait on TLS)."""
        self._disarm()
        self.transport.abort()

    def _turn_away(self, answer: bytes) -> None:
        """Answer a connection the gate refused, without serving it.

        A request that arrives after the server closed would make the kernel reset the connection, and the
        client would lose the answer with it: the connection is half-closed and read out for a moment.
        """
        if self.lingering[0] >= MAX_LINGERING or not self.transport.can_write_eof():
            self._refuse(answer)
            return
        self.lingering[0] += 1
        self._discarding = True
        self.transport.write(answer)
        self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.abort)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        self.transport.write(answer)
        self.transport.close()
        # a TLS close waits for the client's close_notify, which a stalled client never sends
        self.loop.call_later(CLOSE_GRACE, self.transport.abort)


def _announced(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 20 else 0  # the parser already refused a bad one
    return 0
