"""Baseline apps the service is compared with, each served by its own uvicorn process (1 worker).

Each is a factory (`uvicorn --factory bench.baselines:<name>`) that reads what it serves from the
directory in `BENCH_BASELINE_DIR`, which the runner fills with bytes captured from the service itself:

- `read.json`: the body of `GET /v1/peering/<name>`
- `list-<partition>.json`: the body of `GET /v1/peerings?partition=<partition>`

and where the SQLite baselines keep their databases. The PostgreSQL insert baseline writes to the
database in `BENCH_PG_DSN`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = "application/json"

#: baseline name -> (factory, method, path used to load it); the runner starts one process per entry
APPS: dict[str, tuple[str, str, str]] = {
    "bare ASGI": ("bare_asgi", "GET", "/v1/peering/{name}"),
    "bare FastAPI": ("fastapi_constant", "GET", "/v1/peering/{name}"),
    "FastAPI + aiosqlite SELECT": ("fastapi_select", "GET", "/v1/peering/{name}"),
    "FastAPI pre-serialised list": ("fastapi_list_bytes", "GET", "/v1/peerings"),
    "FastAPI list, pydantic response model": ("fastapi_list_pydantic", "GET", "/v1/peerings"),
    "FastAPI list, default JSON response": ("fastapi_list_default", "GET", "/v1/peerings"),
    "FastAPI + durable SQLite insert": ("fastapi_insert", "POST", "/v1/peering/token"),
}

#: the PostgreSQL rows' write baseline (bench/postgres.py), started only with them; its database is in
#: `BENCH_PG_DSN`
PG_APPS: dict[str, tuple[str, str, str]] = {
    "FastAPI + durable PostgreSQL insert": ("fastapi_pg_insert", "POST", "/v1/peering/token"),
    "FastAPI + serialised PostgreSQL insert": ("fastapi_pg_insert_serialised", "POST", "/v1/peering/token"),
}


def _data_dir() -> Path:
    return Path(os.environ["BENCH_BASELINE_DIR"])


def _read_bytes() -> bytes:
    return (_data_dir() / "read.json").read_bytes()


def _lists() -> dict[str, bytes]:
    """Captured list bodies by partition."""
    return {path.stem.removeprefix("list-"): path.read_bytes() for path in sorted(_data_dir().glob("list-*.json"))}


def _app() -> FastAPI:
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def bare_asgi() -> AsgiApp:
    """(1) A raw ASGI callable answering every request with the bytes of a peering read."""
    body = _read_bytes()
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())],
    }
    end: Message = {"type": "http.response.body", "body": body}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(start)
        await send(end)

    return app


def fastapi_constant() -> FastAPI:
    """(2) A bare FastAPI route returning the bytes of a peering read."""
    app = _app()
    body = _read_bytes()

    @app.get("/v1/peering/{name}")
    async def read(name: str) -> Response:
        return Response(content=body, media_type=JSON)

    return app


def fastapi_select() -> FastAPI:
    """(3) A FastAPI route doing one aiosqlite SELECT by primary key per request (the stored read bytes)."""
    body = _read_bytes()
    state: dict[str, aiosqlite.Connection] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await aiosqlite.connect(_data_dir() / "select.db", isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("CREATE TABLE IF NOT EXISTS peerings (name TEXT PRIMARY KEY, body BLOB NOT NULL)")
        name = orjson.loads(body)["Name"]
        await conn.execute("INSERT OR REPLACE INTO peerings (name, body) VALUES (?, ?)", (name, body))
        state["conn"] = conn
        try:
            yield
        finally:
            await conn.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.get("/v1/peering/{name}")
    async def read(name: str) -> Response:
        async with state["conn"].execute("SELECT body FROM peerings WHERE name = ?", (name,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return Response(f"Peering not found for {name!r}", status_code=404)
        return Response(content=row[0], media_type=JSON)

    return app


def fastapi_list_bytes() -> FastAPI:
    """(4) A bare FastAPI route returning the service's list of a partition, pre-serialised."""
    app = _app()
    lists = _lists()

    @app.get("/v1/peerings")
    async def list_peerings(partition: str = "default") -> Response:
        return Response(content=lists[partition], media_type=JSON)

    return app


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True)


class _StreamStatus(_Model):
    imported_services: list[str]
    exported_services: list[str]
    last_heartbeat: str | None
    last_receive: str | None
    last_send: str | None


class _Remote(_Model):
    datacenter: str
    partition: str


class PeeringModel(_Model):
    """The peering object of SPEC §3.6, as a pydantic response model would describe it."""

    id: str = Field(alias="ID")
    name: str
    partition: str
    deleted_at: str | None = None
    meta: dict[str, str] | None = None
    state: str
    peer_id: str | None = Field(default=None, alias="PeerID")
    peer_ca_pems: list[str] | None = Field(default=None, alias="PeerCAPems")
    peer_server_name: str | None = None
    peer_server_addresses: list[str] | None = None
    imported_service_count: int
    exported_service_count: int
    stream_status: _StreamStatus
    remote: _Remote
    create_index: int
    modify_index: int


def _parsed_lists() -> dict[str, list[dict[str, Any]]]:
    return {partition: orjson.loads(body) for partition, body in _lists().items()}


def fastapi_list_pydantic() -> FastAPI:
    """(5) The same list as dicts, validated and serialised through a pydantic response model."""
    app = _app()
    lists = _parsed_lists()

    # exclude_unset keeps the service's shape: absent fields stay absent, nulls stay null
    @app.get("/v1/peerings", response_model=list[PeeringModel], response_model_exclude_unset=True)
    async def list_peerings(partition: str = "default") -> Any:
        return lists[partition]

    return app


def fastapi_list_default() -> FastAPI:
    """(6) The same list as dicts through FastAPI's default JSON response (jsonable_encoder + json)."""
    app = _app()
    lists = _parsed_lists()

    @app.get("/v1/peerings")
    async def list_peerings(partition: str = "default") -> Any:
        return lists[partition]

    return app


def fastapi_insert() -> FastAPI:
    """(7) A FastAPI route doing one durable SQLite insert per request (WAL, synchronous=FULL, autocommit)."""
    state: dict[str, aiosqlite.Connection] = {}
    answer = orjson.dumps({"PeeringToken": "x" * 64})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await aiosqlite.connect(_data_dir() / "insert.db", isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, body BLOB NOT NULL)")
        state["conn"] = conn
        try:
            yield
        finally:
            await conn.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.post("/v1/peering/token")
    async def insert(request: Request) -> Response:
        body = await request.body()
        await state["conn"].execute("INSERT INTO rows (id, body) VALUES (?, ?)", (uuid.uuid4().hex, body))
        return Response(content=answer, media_type=JSON)

    return app


async def _pg_pool(table: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        os.environ["BENCH_PG_DSN"], min_size=1, max_size=10, server_settings={"synchronous_commit": "on"}
    )
    await pool.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, body BYTEA NOT NULL)")
    await pool.execute("CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
    await pool.execute("INSERT INTO counter VALUES ('index', 0) ON CONFLICT DO NOTHING")
    return pool


def fastapi_pg_insert() -> FastAPI:
    """(8) A FastAPI route doing one durable PostgreSQL insert per request with asyncpg: one row per
    transaction (autocommit), synchronous_commit on (the server runs with fsync on), a pool of 10
    connections as the service's replica has."""
    state: dict[str, asyncpg.Pool] = {}
    answer = orjson.dumps({"PeeringToken": "x" * 64})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await _pg_pool("rows")
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.post("/v1/peering/token")
    async def insert(request: Request) -> Response:
        body = await request.body()
        await state["pool"].execute("INSERT INTO rows (id, body) VALUES ($1, $2)", uuid.uuid4().hex, body)
        return Response(content=answer, media_type=JSON)

    return app


def fastapi_pg_insert_serialised() -> FastAPI:
    """(9) For orientation: the same insert inside a transaction that first bumps one counter row and
    ends with a NOTIFY, as every write of the PostgreSQL store does (the index, SPEC §15): writers
    queue on that row's lock, so their commits no longer overlap."""
    state: dict[str, asyncpg.Pool] = {}
    answer = orjson.dumps({"PeeringToken": "x" * 64})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await _pg_pool("serialised_rows")
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.post("/v1/peering/token")
    async def insert(request: Request) -> Response:
        body = await request.body()
        async with state["pool"].acquire() as conn, conn.transaction():
            index = await conn.fetchval("UPDATE counter SET value = value + 1 WHERE name = 'index' RETURNING value")
            await conn.execute("INSERT INTO serialised_rows (id, body) VALUES ($1, $2)", uuid.uuid4().hex, body)
            await conn.execute("SELECT pg_notify('bench_index', $1)", str(index))
        return Response(content=answer, media_type=JSON)

    return app
