"""TLS for the peering listener, set up here rather than by `loop.create_server(ssl=…)`.

asyncio would hand a connection to its protocol only after the handshake, so connections that never
finish one (a TCP connect and nothing more) would be invisible to admission for the 60 s of asyncio's
default handshake timeout. Here every accepted TCP connection is admitted first (idle, so evictable),
then, once its hello arrives, wrapped in asyncio's own TLS protocol under a short handshake deadline,
which hands the connection to the HTTP protocol once the handshake is done.

Memory per idle connection matters when an attacker opens thousands: asyncio's TLS protocol gives each
a 256 KiB read buffer up front (ours reads one TLS record, 16 KiB, at a time), and OpenSSL holds ~40 KB
during a handshake, which is why none is begun before the client has sent something.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from peering.server.admission import Gate, Refused, Slot
from peering.server.fairness import Account, Fairness
from peering.server.protocol import CLOSE_GRACE, HttpProtocol

log = logging.getLogger("peering.server")

HANDSHAKE_TIMEOUT = 5.0  # seconds a client gets to complete the TLS handshake (asyncio's default: 60)
HANDSHAKES_PER_TURN = 4  # TLS handshakes begun per turn of the event loop (~1 ms of CPU each)


class _LeanTls(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a read buffer of one TLS record instead of 256 KiB, whose reads (the
    handshake, decryption, and the HTTP protocol's work on what they give) are charged to the source."""

    max_size = 16 * 1024
    fairness: Fairness
    account: Account

    def buffer_updated(self, nbytes: int) -> None:
        started = self.fairness.begin()
        try:
            super().buffer_updated(nbytes)
        finally:
            self.fairness.end(self.account, started)


class HandshakeTurns:
    """At most `per_turn` TLS handshakes begin in one turn of the event loop; the others wait, in order.

    A handshake's first step (the server's key exchange and signature) is the costliest thing a client can
    make the server do for free; a burst of hellos would otherwise be answered in one turn of the loop, and
    every request in progress would wait for all of them. Waiting does not extend the handshake deadline.
    """

    def __init__(self, per_turn: int = HANDSHAKES_PER_TURN) -> None:
        self.per_turn = per_turn
        self._begun = 0
        self._waiting: deque[Callable[[], bool]] = deque()
        self._next_turn_scheduled = False

    def begin(self, handshake: Callable[[], bool]) -> None:
        """Run `handshake` now if this turn has room (and nobody waits), else in a later turn."""
        if self._begun < self.per_turn and not self._waiting:
            self._run(handshake)
        else:
            self._waiting.append(handshake)
            self._schedule()

    def _run(self, handshake: Callable[[], bool]) -> None:
        if handshake():  # False: the connection went away while it waited, which costs this turn nothing
            self._begun += 1
            self._schedule()

    def _schedule(self) -> None:
        if not self._next_turn_scheduled:
            self._next_turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)  # runs in the next turn of the loop

    def _next_turn(self) -> None:
        self._next_turn_scheduled = False
        self._begun = 0
        while self._waiting and self._begun < self.per_turn:
            self._run(self._waiting.popleft())
        if self._waiting:
            self._schedule()


class _Handshaking:
    """A connection before the end of its TLS handshake, as the server's shutdown sees it: nothing to finish."""

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def shutdown(self) -> None:
        self.transport.abort()


class TlsHandshake(asyncio.Protocol):
    """The protocol uvicorn builds for each accepted peering connection (same arguments as an HTTP one).

    It admits the connection, and when the client's first bytes (its hello) arrive, puts asyncio's TLS
    protocol, and through it the HTTP protocol, in its place. Until then the connection holds no TLS
    state at all: a connection that sends nothing costs almost nothing, and is closed when the handshake
    deadline passes. A source that must wait for its share of the loop (`Fairness.over`) has its hello
    kept until it may go on. A subclass per listener (`tls_class`) sets the gate, the fairness, the
    server's TLS context, the deadline and the HTTP protocol class.
    """

    gate: ClassVar[Gate]
    fairness: ClassVar[Fairness]
    context: ClassVar[ssl.SSLContext]
    handshake_timeout: ClassVar[float] = HANDSHAKE_TIMEOUT
    http_class: ClassVar[type[HttpProtocol]]
    turns: ClassVar[HandshakeTurns]

    def __init__(self, **http_arguments: Any) -> None:
        self._arguments = http_arguments
        self._connections: set[Any] = http_arguments["server_state"].connections
        self._transport: asyncio.Transport | None = None
        self._slot: Slot | None = None
        self._account: Account | None = None
        self._handshaking: _Handshaking | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._accepted = 0.0
        self._hello: list[bytes] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        admitted = self.gate.admit(address, transport.abort)
        if isinstance(admitted, Refused):
            transport.abort()  # no TLS yet, so no HTTP answer could be read: a refusal here is a reset
            return
        loop = asyncio.get_running_loop()
        self._transport, self._slot, self._accepted = transport, admitted, loop.time()
        self._account = self.fairness.opened(address)
        self._handshaking = _Handshaking(transport)
        self._connections.add(self._handshaking)
        self._deadline = loop.call_later(self.handshake_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        """The client's hello: its handshake begins in this turn of the event loop or, when enough have
        begun in this one, in a later turn (and once its source may go on)."""
        if self._transport is None or self._account is None or self._transport.is_closing():
            return
        if self._hello:  # already waiting for its turn (a read was under way when reading was paused)
            self._hello.append(data)
            return
        self._hello.append(data)
        self._transport.pause_reading()
        if self.fairness.over(self._account):
            self.fairness.hold(self._account, self, self._take_turn)
        else:
            self._take_turn()

    def _take_turn(self) -> None:
        self.turns.begin(self._begin)

    def _begin(self) -> bool:
        """Put asyncio's TLS protocol in this one's place and hand it the hello; False if the connection
        went away meanwhile. From here on the TLS protocol reads the connection."""
        transport, slot, handshaking, account = self._transport, self._slot, self._handshaking, self._account
        if transport is None or slot is None or handshaking is None or account is None or transport.is_closing():
            return False
        started = self.fairness.begin()
        try:
            self._hand_over(transport, slot, handshaking, account)
        finally:
            self.fairness.end(account, started)
        return True

    def _hand_over(self, transport: asyncio.Transport, slot: Slot, handshaking: _Handshaking, account: Account) -> None:
        self._cancel_deadline()
        self._transport = self._slot = self._handshaking = self._account = None  # the TLS protocol has them now
        loop = asyncio.get_running_loop()
        http = self.http_class(**self._arguments)
        http.slot = slot  # from the end of the handshake on, the HTTP protocol releases them
        http.account = account
        done: asyncio.Future[None] = loop.create_future()
        connections, fairness = self._connections, self.fairness
        done.add_done_callback(
            lambda result: _handshake_over(result, http, slot, handshaking, connections, (fairness, account))
        )
        tls = _LeanTls(
            loop,
            http,
            self.context,
            done,
            server_side=True,
            # what is left of the deadline, which runs from the connect
            ssl_handshake_timeout=max(self.handshake_timeout - (loop.time() - self._accepted), 0.001),  # type: ignore[arg-type]
            ssl_shutdown_timeout=CLOSE_GRACE,
        )
        tls.fairness, tls.account = self.fairness, account
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(b"".join(self._hello))
        self._hello.clear()
        while view and not transport.is_closing():
            buffer = tls.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            tls.buffer_updated(size)
            view = view[size:]
        transport.resume_reading()

    def eof_received(self) -> bool | None:
        return None  # closes the connection: it left before its hello

    def connection_lost(self, exc: Exception | None) -> None:
        # only before the hello (afterwards the TLS protocol is told)
        self._cancel_deadline()
        if self._handshaking is not None:
            self._connections.discard(self._handshaking)
        if self._slot is not None:
            self._slot.release()
        if self._account is not None:
            self.fairness.closed(self._account, self)
        self._transport = self._slot = self._handshaking = self._account = None

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def _handshake_over(
    result: asyncio.Future[None],
    http: HttpProtocol,
    slot: Slot,
    handshaking: _Handshaking,
    connections: set[Any],
    source: tuple[Fairness, Account],
) -> None:
    connections.discard(handshaking)
    failure = None if result.cancelled() else result.exception()
    transport: asyncio.Transport | None = http.transport  # None until the HTTP protocol got the connection
    if transport is None:  # timeout, reset, not TLS at all, evicted: the HTTP protocol is never told
        log.debug("TLS handshake failed: %s", failure or "connection lost")
        slot.release()
        fairness, account = source
        fairness.closed(account, None)


def tls_class(
    gate: Gate, fairness: Fairness, context: ssl.SSLContext, handshake_timeout: float, http: type[HttpProtocol]
) -> type[Any]:
    """The protocol class that uvicorn builds for each connection to the peering listener."""
    attributes = {
        "gate": gate,
        "fairness": fairness,
        "context": context,
        "handshake_timeout": handshake_timeout,
        "http_class": http,
        "turns": HandshakeTurns(),
    }
    return type("PeeringTlsHandshake", (TlsHandshake,), attributes)
