"""`?consistent` reads see every acknowledged write (SPEC §15), even one made by another writer on the same
SQLite file that the in-memory view has not caught up with yet (no notification, poll not due)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from peering.app import Runtime
from peering.domain import Peering, PeeringState, Role
from peering.settings import Settings
from peering.store.cached import CachedStore
from peering.store.open import DATABASE_FILE
from peering.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def other(runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SqliteStore]:
    """A second writer on the runtime's database file; the runtime's view never polls (its clock stands still)."""
    view = runtime.cluster.store
    assert isinstance(view, CachedStore)
    monkeypatch.setattr(view._poll, "_monotonic", lambda: 0.0)  # the next poll is never due: only catch_up() reads
    store = await SqliteStore.open(settings.data_dir / DATABASE_FILE)
    yield store
    await store.close()


async def other_writes(store: SqliteStore, name: str) -> Peering:
    async with store.transaction() as tx:
        return await tx.save(Peering(f"id-{name}", name, "default", Role.ACCEPTOR, PeeringState.INITIAL))


async def test_a_consistent_read_sees_another_writers_write_at_once(
    client: httpx.AsyncClient, other: SqliteStore
) -> None:
    saved = await other_writes(other, "elsewhere")
    # the full route (a `dc` parameter is not for the fast path): stale without ?consistent, then fresh
    assert (await client.get("/v1/peering/elsewhere?dc=dc1")).status_code == 404
    read = await client.get("/v1/peering/elsewhere?dc=dc1&consistent")
    assert read.status_code == 200, read.text
    assert (read.json()["ID"], read.headers["X-Consul-Index"]) == (saved.id, str(saved.modify_index))


async def test_a_consistent_list_sees_another_writers_write_at_once(
    client: httpx.AsyncClient, other: SqliteStore
) -> None:
    saved = await other_writes(other, "listed")
    assert (await client.get("/v1/peerings?dc=dc1")).json() == []
    listed = await client.get("/v1/peerings?dc=dc1&consistent")
    assert [p["Name"] for p in listed.json()] == ["listed"]
    assert listed.headers["X-Consul-Index"] == str(saved.modify_index)


async def test_a_plain_consistent_read_sees_another_writers_update_at_once(
    client: httpx.AsyncClient, other: SqliteStore
) -> None:
    """A name the view lacks falls through to the full route (the fast path hands a 404 on); an update of a
    peering the view holds is answered by the fast path itself."""
    assert (await client.post("/v1/peering/token", json={"PeerName": "plain"})).status_code == 200
    async with other.transaction() as tx:
        known = await tx.get("default", "plain")
        assert known is not None
        await tx.save(replace(known, meta={"changed": "elsewhere"}))
    assert (await client.get("/v1/peering/plain?consistent")).json().get("Meta") == {"changed": "elsewhere"}
