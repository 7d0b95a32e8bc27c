"""Composition root: open the cluster's resources (`open_runtime`) and build the ASGI apps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from peering import __version__, background
from peering.api import errors, peerings, status
from peering.identity import ClusterIdentity, load_or_create
from peering.leadership import SoleLeadership
from peering.notifier import LocalNotifier
from peering.service import PeeringService
from peering.settings import Settings
from peering.store.sqlite import SqliteStore

DATABASE_FILE = "peering.db"


@dataclass(frozen=True)
class Runtime:
    """Everything one running cluster holds open."""

    settings: Settings
    identity: ClusterIdentity
    service: PeeringService
    advertise_addresses: tuple[str, ...]


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, advertise_addresses: Sequence[str], removal_interval: float = 1.0
) -> AsyncIterator[Runtime]:
    """Load the identity, open the store, start the background work; undo it all on exit."""
    identity = load_or_create(settings.data_dir, settings.datacenter)
    store = await SqliteStore.open(settings.data_dir / DATABASE_FILE)
    try:
        service = PeeringService(
            store,
            LocalNotifier(),
            identity,
            advertise_addresses=advertise_addresses,
            deletion_grace=settings.heartbeat_timeout,
        )
        async with background.running(service, SoleLeadership(), removal_interval=removal_interval):
            yield Runtime(settings, identity, service, tuple(advertise_addresses))
    finally:
        await store.close()


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The client HTTP API. Without a runtime it can only describe itself (OpenAPI)."""
    app = FastAPI(
        title="peering",
        version=__version__,
        summary="Cluster peering with Consul's peering HTTP API.",
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(peerings.router)
    app.include_router(status.router)
    if runtime is not None:
        app.state.service = runtime.service
        app.state.leader_address = runtime.advertise_addresses[0]
    return app


def openapi_json() -> str:
    """The client API's OpenAPI document as committed in `openapi/openapi.json`."""
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def create_peer_app(runtime: Runtime) -> FastAPI:
    """The server-to-server peering endpoint (served over TLS; not part of the client API spec)."""
    app = FastAPI(title="peering peer protocol", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = runtime.service
    return app
