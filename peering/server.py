"""`peering serve`: the client API (plain HTTP) and the peering endpoint (TLS) in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from peering import logs
from peering.app import Runtime, create_app, create_peer_app, open_runtime
from peering.settings import Settings, split_host_port

log = logging.getLogger("peering.server")

CLOSE_GRACE = 0.5  # seconds a closing connection gets to finish its TLS goodbye during shutdown


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


@asynccontextmanager
async def listening(settings: Settings, **runtime_options: Any) -> AsyncIterator[tuple[Runtime, Bound]]:
    """Open the runtime and serve both listeners for the duration of the block (no signal handling)."""
    http_sock = _bind(settings.http_addr)
    try:
        peer_sock = _bind(settings.peering_addr)
    except OSError:
        http_sock.close()
        raise
    bound = Bound(_format(http_sock), _format(peer_sock))
    advertise = settings.advertise_addr or bound.peering_addr
    async with open_runtime(settings, advertise_addresses=[advertise], **runtime_options) as runtime:
        common: dict[str, Any] = {
            "lifespan": "off",
            "access_log": False,
            "log_config": None,
            "timeout_graceful_shutdown": 10,
            "timeout_keep_alive": 5,
            "limit_concurrency": 1000,
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
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
