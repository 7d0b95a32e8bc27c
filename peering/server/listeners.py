"""The two listeners of a cluster: the client API (plain HTTP) and the peering endpoint (TLS).

Each has its own `Gate` (admission), built from the settings and fitted into the process's open-file
limit; uvicorn serves the HTTP, on protocols from `protocol` (and `tls` for the peering port).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from peering.app import Runtime, create_app, create_peer_app, open_runtime
from peering.server.admission import Gate
from peering.server.fairness import Fairness
from peering.server.lock import StartupError, locked_data_dir
from peering.server.parsers import DEFAULT_KIND, Kind, protocol_class
from peering.server.protocol import MAX_HEAD_BYTES, REQUEST_TIMEOUT, HttpProtocol
from peering.server.tls import tls_class
from peering.settings import Settings, split_host_port

log = logging.getLogger("peering.server")

ACCEPT_BATCH = 16  # connections asyncio accepts per turn of the event loop (it uses the listen backlog)
LISTEN_BACKLOG = 4096  # connections the kernel queues for us (capped by net.core.somaxconn)
GRACEFUL_SHUTDOWN = 5.0  # seconds in-flight requests get to finish at shutdown (blocking queries end at once)
FD_RESERVE = 512  # open files kept out of the connection limits: database, log, outgoing peer connections


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
        # asyncio accepts as many connections per turn of the loop as the backlog it was given, so a flood
        # of connects would hold the loop for a whole backlog's worth of new transports: it gets a small one,
        # and the kernel's queue is made long again afterwards
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)
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
    """A socket bound to `address`.

    Raises:
        StartupError: `cannot listen on <address>: address already in use` (or the system's reason).
    """
    host, port = split_host_port(address)
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # keep-alive response waits ~40 ms for the client's delayed ACK (Nagle)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
        raise StartupError(f"cannot listen on {address}: {reason}") from None
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


def open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (connections are files); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            log.info("raised the open-file limit", extra={"from": soft, "to": wanted})
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit: %s", exc, extra={"limit": soft})
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _gates(settings: Settings) -> tuple[Gate, Gate]:
    """The two listeners' admission, scaled down together if the open-file limit cannot hold both."""
    http, peer = settings.http_max_conns, settings.peering_max_conns
    open_files = open_file_limit()
    budget = max(open_files - FD_RESERVE, 64)
    if http + peer > budget:
        scale = budget / (http + peer)
        http, peer = max(int(http * scale), 32), max(int(peer * scale), 32)
        log.warning(
            "the open-file limit cannot hold the connection limits: lowered them",
            extra={"http_max_conns": http, "peering_max_conns": peer, "open_files": open_files},
        )
    exempt = settings.trusted_proxies  # a proxy's connections carry many clients
    gates = (
        Gate("http", capacity=http, per_source=min(settings.http_max_conns_per_client, http), exempt=exempt),
        Gate("peering", capacity=peer, per_source=min(settings.peering_max_conns_per_client, peer)),
    )
    log.info(
        "connection limits",
        extra={
            "http_max_conns": gates[0].capacity,
            "http_max_conns_per_client": gates[0].per_source,
            "peering_max_conns": gates[1].capacity,
            "peering_max_conns_per_client": gates[1].per_source,
            "open_files": open_files,
            "fair_share_load": settings.fair_share_load,
        },
    )
    return gates


@asynccontextmanager
async def listening(
    settings: Settings,
    *,
    request_timeout: float = REQUEST_TIMEOUT,
    http_protocol: Kind = DEFAULT_KIND,
    **runtime_options: Any,
) -> AsyncIterator[tuple[Runtime, Bound]]:
    """Open the runtime and serve both listeners for the duration of the block (no signal handling).

    `request_timeout`: seconds a client has to send each request in full (tests shorten it);
    `http_protocol`: the HTTP parser, httptools or h11 (tests hold both to the same guarantees).

    Raises:
        StartupError: the data dir is in use by another process, or an address cannot be listened on.
    """
    with locked_data_dir(settings.data_dir):
        http_sock = _bind(settings.http_addr)
        try:
            peer_sock = _bind(settings.peering_addr)
        except StartupError:
            http_sock.close()
            raise
        try:
            gates = _gates(settings)
            # the loop is shared by both ports: so is each source's share of it (trusted proxies exempt)
            fairness = Fairness(settings.fair_share_load, exempt=settings.trusted_proxies)
            protocols = (protocol_class(gates[0], fairness, request_timeout, http_protocol),
                         protocol_class(gates[1], fairness, request_timeout, http_protocol))  # fmt: skip
            async with _serving(settings, http_sock, peer_sock, gates, protocols, fairness, runtime_options) as served:
                yield served
        finally:
            http_sock.close()
            peer_sock.close()


@asynccontextmanager
async def _serving(
    settings: Settings,
    http_sock: socket.socket,
    peer_sock: socket.socket,
    gates: tuple[Gate, Gate],
    protocols: tuple[type[HttpProtocol], type[HttpProtocol]],
    fairness: Fairness,
    runtime_options: dict[str, Any],
) -> AsyncIterator[tuple[Runtime, Bound]]:
    bound = Bound(_format(http_sock), _format(peer_sock))
    advertise = settings.advertise_addr or _reachable(bound.peering_addr)
    async with open_runtime(settings, advertise_addresses=[advertise], **runtime_options) as runtime:
        common: dict[str, Any] = {
            "lifespan": "off",
            "access_log": False,
            "log_config": None,
            "proxy_headers": False,  # X-Forwarded-For is believed only from --trusted-proxies (app.py)
            "server_header": False,  # no software banner on either port (Consul sends none)
            "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
            "timeout_keep_alive": 5,
            "limit_concurrency": None,  # admission is the gates' (idle connections do not count)
            "backlog": ACCEPT_BATCH,
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        }
        peer_gate = gates[1]
        http_protocol, peer_http = protocols
        context = runtime.identity.server_ssl_context()
        context.num_tickets = 0  # peers never resume a TLS session; tickets only cost each handshake
        tls = tls_class(peer_gate, fairness, context, settings.peering_handshake_timeout, peer_http)
        http_protocol.answers = runtime.answers  # kept plain reads, given from the request head (`api.answers`)
        http = _Server(uvicorn.Config(create_app(runtime), http=http_protocol, **common))
        peer = _Server(uvicorn.Config(create_peer_app(runtime), http=tls, **common))
        tasks = [asyncio.create_task(http.serve([http_sock])), asyncio.create_task(peer.serve([peer_sock]))]
        both_ready: asyncio.Future[Any] = asyncio.gather(http.ready.wait(), peer.ready.wait())
        try:
            await asyncio.wait([both_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if not both_ready.done():
                raise StartupError("a listener failed to start")
            yield runtime, bound
        finally:
            both_ready.cancel()
            # pending blocking queries answer now, with what they have (SPEC §2), so that the servers'
            # wait for in-flight requests is short
            runtime.cluster.notifier.close()
            http.should_exit = peer.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
