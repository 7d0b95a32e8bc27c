"""`peering serve`: the client API (plain HTTP) and the peering endpoint (TLS) in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from peering import logs
from peering.app import create_app, create_peer_app, open_runtime
from peering.settings import Settings, split_host_port

log = logging.getLogger("peering.server")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, which stops both listeners together."""

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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def serve(settings: Settings, *, on_ready: Callable[[Bound], None] | None = None) -> None:
    """Run the cluster until SIGTERM/SIGINT (or until both servers stop)."""
    http_sock = _bind(settings.http_addr)
    peer_sock = _bind(settings.peering_addr)
    bound = Bound(_format(http_sock), _format(peer_sock))
    advertise = settings.advertise_addr or bound.peering_addr
    async with open_runtime(settings, advertise_addresses=[advertise]) as runtime:
        common = {"lifespan": "off", "access_log": False, "log_config": None, "timeout_graceful_shutdown": 10}
        http = _Server(uvicorn.Config(create_app(runtime), **common))  # type: ignore[arg-type]
        peer = _Server(
            uvicorn.Config(
                create_peer_app(runtime),
                ssl_certfile=str(runtime.identity.cert_path),
                ssl_keyfile=str(runtime.identity.key_path),
                **common,  # type: ignore[arg-type]
            )
        )
        loop = asyncio.get_running_loop()

        def stop(signame: str) -> None:
            log.info("received %s, shutting down", signame)
            http.should_exit = peer.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig.name)
        try:
            tasks = [asyncio.create_task(http.serve([http_sock])), asyncio.create_task(peer.serve([peer_sock]))]
            both_ready: asyncio.Future[Any] = asyncio.gather(http.ready.wait(), peer.ready.wait())
            await asyncio.wait([both_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if both_ready.done():
                log.info(
                    "cluster ready",
                    extra={
                        "cluster_id": runtime.identity.cluster_id,
                        "datacenter": settings.datacenter,
                        "http_addr": bound.http_addr,
                        "peering_addr": bound.peering_addr,
                        "advertise_addr": advertise,
                        "data_dir": str(settings.data_dir),
                    },
                )
                if on_ready is not None:
                    on_ready(bound)
            else:
                both_ready.cancel()
            await asyncio.gather(*tasks)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("stopped")


def run(settings: Settings) -> int:
    """The `peering serve` command: exit 0 after a clean shutdown, 1 when the cluster cannot start."""
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        log.error("cannot start: %s", exc)  # a clear one-line reason, not a traceback
        return 1
    return 0
