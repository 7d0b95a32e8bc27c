"""Composition root: open the cluster's resources (`open_runtime`) and build the ASGI apps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from peering import __version__
from peering.acl import AclService
from peering.api import acl, agent, docs, errors, peer, peerings, status
from peering.api import catalog as catalog_routes
from peering.api import config as config_routes
from peering.api import health as health_routes
from peering.api.access_log import RequestLog, RequestNotes
from peering.api.answers import Answers
from peering.api.blocking import BlockingQueries
from peering.api.fast_path import FastPath, read_stamp
from peering.api.forwarded import TrustedProxies
from peering.api.headers import DefaultAclPolicyHeader
from peering.api.render import PeeringBytes
from peering.catalog.config import ConfigService
from peering.catalog.service import CatalogService
from peering.catalog.ttl import TtlTimer
from peering.cluster import Cluster, Timings, utcnow
from peering.identity import ClusterIdentity, client_ssl_context, load_or_create
from peering.inbound import PeerEndpoint
from peering.links import LinkKeeper
from peering.outbound import Outbound
from peering.peer.stream import Replication
from peering.peer_client import PeerClient
from peering.replica import Replica, joined
from peering.service import PeeringService
from peering.settings import Settings, split_host_port
from peering.store.open import open_database
from peering.ui import install as install_ui

DATABASE_FILE = "peering.db"


@dataclass(frozen=True)
class Runtime:
    """Everything one running cluster holds open."""

    settings: Settings
    identity: ClusterIdentity
    cluster: Cluster
    service: PeeringService
    acl: AclService
    endpoint: PeerEndpoint
    advertise_addresses: tuple[str, ...]
    # the leader and the live replicas for /v1/status (None: this process alone, as built in tests)
    replica: Replica | None = None
    catalog: CatalogService | None = None  # the catalog (SPEC §13); None only for a Runtime built by hand
    replication: Replication | None = None  # exported services over the peer port (SPEC §14); None: by hand
    # the plain reads' answers, given again by the client port's HTTP protocol (`api.answers`); None: by hand
    answers: Answers | None = None


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    advertise_addresses: Sequence[str],
    background: bool = True,
    establish_timeout: float = 3.0,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[Runtime]:
    """Load the identity, open the store, start the background work; undo it all on exit.

    The backend is the one `--database-url` selects (`store/open.py`); with PostgreSQL this process is
    one replica (`replica.py`: shared identity, notifier, lease, registry).
    `background=False` leaves heartbeats and removals to the caller (tests drive them by hand).
    """
    identity = load_or_create(settings.data_dir, settings.datacenter)
    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    async with (
        open_database(url, settings.data_dir) as database,
        joined(database, settings, identity, advertise_addresses[0]) as replica,
    ):
        peers = PeerClient(client_ssl_context, attempt_timeout=min(2.0, settings.heartbeat_timeout))
        streams = PeerClient(client_ssl_context, max_in_flight=4096)  # long-polls must not starve heartbeats
        acls: AclService | None = None
        try:
            timings = Timings(settings.heartbeat_interval, settings.heartbeat_timeout, establish_timeout)
            # with replicas, tokens list every live replica's peering address, kept up to date by the registry
            addresses = replica.addresses if replica.replica_id else tuple(advertise_addresses)
            cluster = Cluster(
                database.store, replica.notifier, replica.identity, advertise_addresses=addresses, timings=timings,
                now=clock,
            )  # fmt: skip
            replica.on_addresses.append(lambda found: setattr(cluster, "advertise_addresses", found))
            replica.share_liveness(cluster.tracker, every=min(1.0, settings.heartbeat_interval))
            outbound = Outbound(cluster, peers)
            service = PeeringService(cluster, outbound)
            acls = AclService(
                database.acl, enabled=settings.acl_enabled, default_policy=settings.acl_default_policy, now=clock,
                feed=database.store, notifier=replica.notifier,
            )  # fmt: skip
            if settings.acl_enabled:
                initial = settings.acl_initial_management_token
                await acls.start(initial.get_secret_value() if initial is not None else None)
            runtime = Runtime(
                settings,
                replica.identity,
                cluster,
                service,
                acls,
                PeerEndpoint(cluster),
                tuple(advertise_addresses),
                replica,
                CatalogService(cluster, settings.node_name, split_host_port(advertise_addresses[0])[0]),
                Replication(cluster, streams),
                Answers(
                    partial(read_stamp, service, acls), RequestNotes(cluster.metrics), by_source=acls.enabled,
                    clock=lambda: clock().timestamp(),  # the ACLs' clock, which decides expiry
                ),
            )  # fmt: skip
            if not background:
                yield runtime
                return
            keeper = LinkKeeper(
                cluster, service, outbound, replica.leadership, replica.fence(), replication=runtime.replication
            )
            ttl = TtlTimer(cluster, replica.fence())

            async def held() -> None:  # the keeper and the TTL timer, as one held task
                async with asyncio.TaskGroup() as group:
                    group.create_task(keeper.run(), name="link-keeper")
                    group.create_task(ttl.run(), name="ttl-timer")

            # the lease (or, with SQLite, the process) holds the background work: losing it cancels it all
            owner = asyncio.create_task(replica.leadership.hold(held), name="links")
            try:
                yield runtime
            finally:
                owner.cancel()
                await asyncio.gather(owner, return_exceptions=True)
        finally:
            if acls is not None:
                await acls.stop_polling()  # its cache's poll reads the database that closes next
            await peers.aclose()
            await streams.aclose()


class ClientApi(FastAPI):
    """FastAPI with pure ASGI middlewares outside its own stack (`outer`, outermost first).

    FastAPI puts every added middleware inside its error, telemetry and body-limit layers; what sits
    outside them costs a request nothing of theirs. Blocking queries are held there (each of 10,000
    parked watchers would otherwise go through all of those layers twice, parking and answering), and
    the fast path answers there (bench/: a read by name against a raw ASGI app). What they let through
    meets FastAPI's layers as before; an exception of their own is uvicorn's 500.
    """

    outer: Sequence[Middleware] = ()

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for middleware in reversed(self.outer):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The client HTTP API. Without a runtime it can only describe itself (OpenAPI)."""
    app = ClientApi(
        title="peering",
        version=__version__,
        summary="Cluster peering with Consul's peering HTTP API.",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # a slash redirect is built from the client's Host and echoes the query (?token=)
        telemetry={"tracing": False, "metrics": False, "logs": False},  # OpenTelemetry: unused, 3 µs a request
    )
    errors.install(app)
    _document(app)
    app.include_router(peerings.router)
    app.include_router(acl.router)
    app.include_router(status.router)
    app.include_router(agent.router)
    app.include_router(config_routes.router)
    app.include_router(catalog_routes.router)
    app.include_router(health_routes.router)
    docs.install(app)
    if runtime is not None:
        app.state.service = runtime.service
        app.state.encoded = PeeringBytes()
        app.state.acl = runtime.acl
        app.state.config = ConfigService(runtime.cluster)  # stateless over the cluster: one per app
        app.state.catalog = runtime.catalog
        app.state.leader_address = runtime.advertise_addresses[0]
        if runtime.replica is not None:  # the lease's owner and the registry's replicas (status.py)
            app.state.replica = runtime.replica
        if runtime.settings.ui:
            install_ui(app)  # the operator console at /ui/, which calls only the routes above
        if runtime.acl.enabled:  # inside the fast path, which adds the header to its own answers
            app.add_middleware(DefaultAclPolicyHeader, policy=runtime.acl.default_policy)
        app.state.metrics = runtime.cluster.metrics
        notes = RequestNotes(runtime.cluster.metrics)
        fast = Middleware(
            FastPath, router=app.router, service=runtime.service, encoded=app.state.encoded, acl=runtime.acl,
            answers=runtime.answers,
        )  # fmt: skip
        # Outside FastAPI's own layers, outermost first: the client a trusted proxy names; blocking queries
        # held (they note their own requests, and a write reads each distinct one once, through the rest);
        # the request log; the fast path, which answers the hottest reads itself.
        app.outer = [
            Middleware(BlockingQueries, notifier=runtime.cluster.notifier, metrics=app.state.metrics, notes=notes),
            Middleware(RequestLog, notes=notes),
            fast,
        ]
        if runtime.settings.trusted_proxies:  # outermost: the log and the ACL checks see the client it finds
            app.outer = [Middleware(TrustedProxies, trusted=runtime.settings.trusted_proxies), *app.outer]
    return app


def _document(app: FastAPI) -> None:
    """Generate the OpenAPI document once, corrected by `errors.document`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = errors.document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_peer_app(runtime: Runtime) -> FastAPI:
    """The server-to-server peering endpoint (served over TLS; not part of the client API spec)."""
    app = FastAPI(
        title="peering peer protocol", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )  # fmt: skip
    errors.install(app)
    app.include_router(peer.router)
    app.add_middleware(RequestLog, level=logging.DEBUG, error_level=logging.DEBUG)  # heartbeats: every few seconds
    app.state.service = runtime.service
    app.state.endpoint = runtime.endpoint
    app.state.replication = runtime.replication
    return app


def openapi_json() -> str:
    """The client API's OpenAPI document as committed in `openapi/openapi.json`."""
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"
