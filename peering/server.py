"""`peering serve`: the client API (plain HTTP) and the peering endpoint (TLS) in one process."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from peering import logs
from peering.app import Runtime, create_app, create_peer_app, open_runtime
from peering.settings import Settings, split_host_port

log = logging.getLogger("peering.server")

CLOSE_GRACE = 0.5  # seconds a closing connection gets to finish its TLS goodbye during shutdown
REQUEST_TIMEOUT = 10.0  # seconds a client has to send a whole request (head and body), from connect or last answer
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; a longer head is a 431 and the connection closes


def _refusal(status: str, text: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        f"content-length: {len(text)}\r\n\r\n{text}"
    ).encode()


_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers (h11 also takes bare LFs)
_TIMED_OUT = _refusal("408 Request Timeout", "request timeout")
_HEAD_TOO_LARGE = _refusal("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")


class _DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request to arrive in full, and a cap on its head.

    uvicorn bounds only the idle time between requests (`timeout_keep_alive`), and any byte cancels it: a
    client that trickles a request head or body (slowloris) would otherwise hold its connection, and one
    of the `limit_concurrency` slots, for ever. Once the request is in, the deadline is off (a blocking
    query may wait minutes); the next request on a keep-alive connection gets a new one.

    h11 refuses only a head still incomplete past its limit; one that arrives whole in a single read (up
    to 256 KiB) would pass, so the head's size is checked here before h11 sees the bytes.
    """

    request_timeout = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        self._arm()
        super().on_response_complete()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # a request head is (still) coming
            pending = self.conn.trailing_data[0] + data
            end = _HEAD_END.search(pending)
            if (end.start() if end else len(pending)) > MAX_HEAD_BYTES:
                log.debug("refusing a request head over %d bytes", MAX_HEAD_BYTES)
                self._refuse(_HEAD_TOO_LARGE)
                return
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the whole request arrived (or the connection is done with)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.debug("closing a connection whose request did not arrive within %.1f s", self.request_timeout)
        answered = self.conn.their_state is not h11.IDLE and self.cycle.response_started
        self._refuse(b"" if answered else _TIMED_OUT)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        self.transport.write(answer)
        self.transport.close()
        # a TLS close waits for the client's close_notify, which a stalled client never sends
        self.loop.call_later(CLOSE_GRACE, self.transport.abort)


def _protocol(request_timeout: float) -> type[H11Protocol]:
    """The HTTP protocol class for both listeners, with this request deadline."""
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"request_timeout": request_timeout})


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, and says when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes idle keep-alive connections at once, but a TLS close waits for the client's
        # close_notify, which an idle pooled client (a peer's) never sends: without this, such a
        # connection holds the shutdown for the whole graceful timeout. Requests in flight still finish.
        aborter = asyncio.create_task(self._abort_closing_after(CLOSE_GRACE))
        try:
            await super().shutdown(sockets)
        finally:
            aborter.cancel()

    async def _abort_closing_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        for connection in list(self.server_state.connections):
            transport: asyncio.BaseTransport | None = getattr(connection, "transport", None)
            if transport is not None and transport.is_closing() and isinstance(transport, asyncio.Transport):
                transport.abort()


@dataclass(frozen=True)
class Bound:
    """Where the cluster actually listens (port 0 in the settings means "any free port")."""

    http_addr: str
    peering_addr: str


def _format(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(address: str) -> socket.socket:
    host, port = split_host_port(address)
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # keep-alive response waits ~40 ms for the client's delayed ACK (Nagle)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _reachable(bound: str) -> str:
    """The address to put into tokens when none is configured: the bound one, unless it is a wildcard
    (`0.0.0.0`, `::`), which a peer cannot dial; then this host's outward-facing address."""
    host, port = split_host_port(bound)
    if host not in ("0.0.0.0", "::"):  # noqa: S104 -- comparing, not binding
        return bound
    guessed = _outward_address()
    log.warning("advertising %s:%d for the wildcard peering address; set --advertise-addr to choose", guessed, port)
    return f"[{guessed}]:{port}" if ":" in guessed else f"{guessed}:{port}"


def _outward_address() -> str:
    # connecting a UDP socket sends nothing; it only picks the interface a packet would leave by
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return str(probe.getsockname()[0])
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


@asynccontextmanager
async def listening(
    settings: Settings, *, request_timeout: float = REQUEST_TIMEOUT, **runtime_options: Any
) -> AsyncIterator[tuple[Runtime, Bound]]:
    """Open the runtime and serve both listeners for the duration of the block (no signal handling).

    `request_timeout`: seconds a client has to send each request in full (tests shorten it).
    """
    http_sock = _bind(settings.http_addr)
    try:
        peer_sock = _bind(settings.peering_addr)
    except OSError:
        http_sock.close()
        raise
    bound = Bound(_format(http_sock), _format(peer_sock))
    advertise = settings.advertise_addr or _reachable(bound.peering_addr)
    async with open_runtime(settings, advertise_addresses=[advertise], **runtime_options) as runtime:
        common: dict[str, Any] = {
            "lifespan": "off",
            "access_log": False,
            "log_config": None,
            "timeout_graceful_shutdown": 10,
            "timeout_keep_alive": 5,
            "limit_concurrency": 1000,
            "http": _protocol(request_timeout),
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        }
        http = _Server(uvicorn.Config(create_app(runtime), **common))
        peer = _Server(
            uvicorn.Config(
                create_peer_app(runtime),
                ssl_certfile=str(runtime.identity.cert_path),
                ssl_keyfile=str(runtime.identity.key_path),
                **common,
            )
        )
        tasks = [asyncio.create_task(http.serve([http_sock])), asyncio.create_task(peer.serve([peer_sock]))]
        both_ready: asyncio.Future[Any] = asyncio.gather(http.ready.wait(), peer.ready.wait())
        try:
            await asyncio.wait([both_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if not both_ready.done():
                raise OSError("a listener failed to start")
            yield runtime, bound
        finally:
            both_ready.cancel()
            http.should_exit = peer.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            http_sock.close()
            peer_sock.close()


async def serve(settings: Settings) -> None:
    """Run the cluster until SIGTERM/SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        log.info("received %s, shutting down", signame)
        stop.set()

    async with listening(settings) as (runtime, bound):
        # before the ready line: a SIGTERM sent as soon as it is read must still give a clean shutdown
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        log.info(
            "cluster ready",
            extra={
                "cluster_id": runtime.identity.cluster_id,
                "datacenter": settings.datacenter,
                "http_addr": bound.http_addr,
                "peering_addr": bound.peering_addr,
                "advertise_addr": runtime.advertise_addresses[0],
                "data_dir": str(settings.data_dir),
            },
        )
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("stopped")


def run(settings: Settings) -> int:
    """The `peering serve` command: exit 0 after a clean shutdown, 1 when the cluster cannot start."""
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (OSError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)  # a clear one-line reason, not a traceback
        return 1
    return 0
