"""Service behaviour that the HTTP tests do not reach: concurrency, clocks, logging."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from peering import tokens
from peering.app import DATABASE_FILE, Runtime, open_runtime
from peering.domain import Peering, PeeringState
from peering.errors import PeeringConflictError, SecretRejectedError
from peering.inbound import Dialer
from peering.service import EstablishRequest, PeeringService, TokenRequest
from peering.settings import Settings
from peering.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_concurrent_generates_on_one_name_make_one_row(runtime: Runtime) -> None:
    """Racing token requests for one name are serialised: one row, every call gets its own index."""
    service = runtime.service
    await asyncio.gather(*(service.generate_token(TokenRequest("race")) for _ in range(10)))
    peerings, _ = await service.list_peerings(None)
    assert [p.name for p in peerings] == ["race"]
    assert peerings[0].modify_index - peerings[0].create_index == 9


async def test_concurrent_generate_and_delete_leave_a_consistent_state(runtime: Runtime) -> None:
    service = runtime.service
    await service.generate_token(TokenRequest("x"))
    results = await asyncio.gather(
        service.delete(None, "x"), service.generate_token(TokenRequest("x")), return_exceptions=True
    )
    peering = await service.read(None, "x")
    if isinstance(results[1], Exception):  # delete went first: the token request was refused
        assert peering.is_deleted
    else:  # token went first, then the delete
        assert peering.is_deleted
    assert peering.state == "TERMINATED"


async def test_removal_waits_for_the_grace_period_when_there_is_a_peer(runtime: Runtime) -> None:
    """A peering that has a remote (it was established) is kept for the grace period after delete."""
    service = runtime.service
    await service.generate_token(TokenRequest("linked"))
    store = service._store
    async with store.transaction() as tx:
        p = await tx.get("default", "linked")
        assert p is not None
        await tx.save(replace(p, remote_cluster="fingerprint"))
    await service.delete(None, "linked")
    assert await service.remove_due() == 0
    later = datetime.now(UTC) + timedelta(seconds=runtime.settings.heartbeat_timeout + 1)
    assert [p.name for p in await store.due_removals(later)] == ["linked"]


async def test_lifecycle_is_logged_without_secrets(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="peering")
    token = await runtime.service.generate_token(TokenRequest("logged"))
    await runtime.service.delete(None, "logged")
    await runtime.service.remove_due()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["peering created", "peering deleted", "peering removed"]
    assert all(getattr(r, "peer_name", None) == "logged" for r in caplog.records)
    assert token not in caplog.text


class _RacingOutbound:
    """An acceptor stand-in: each exchange hands out its own stream secret once both establishes got there."""

    def __init__(self) -> None:
        self.arrived = 0
        self.both = asyncio.Event()
        self.abandoned: list[str] = []

    async def exchange(self, token: object, partition: str, peering_id: str) -> dict[str, str]:
        self.arrived += 1
        secret = f"stream-{self.arrived}"
        if self.arrived == 2:
            self.both.set()
        async with asyncio.timeout(5):
            await self.both.wait()
        return {"StreamSecret": secret}

    async def abandon(self, token: object, stream_secret: str) -> None:
        self.abandoned.append(stream_secret)

    async def send_heartbeat(self, target: object, peer_id: str, stream_secret: str) -> None:
        return None

    async def heartbeat_answered(self, peering: object, call: Awaitable[None]) -> bool:
        await call
        return True


async def test_two_concurrent_establishes_of_one_name_make_one_success(runtime: Runtime, tmp_path: Path) -> None:
    """Two services on one database (as two replicas: no shared in-process lock) establish one name at once:
    the compare-and-set in the unit of work lets one win; the loser undoes its exchange on the acceptor."""
    acceptor = Settings(data_dir=tmp_path / "acceptor", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0")
    async with open_runtime(acceptor, advertise_addresses=["127.0.0.1:8504"], background=False) as other:
        token = await other.service.generate_token(TokenRequest("to-dialer"))
    outbound = _RacingOutbound()
    replicas = [PeeringService(runtime.cluster, outbound) for _ in range(2)]  # type: ignore[arg-type]
    request = EstablishRequest("race", token)
    results = await asyncio.gather(*(s.establish(request) for s in replicas), return_exceptions=True)
    won = [r for r in results if isinstance(r, Peering)]
    lost = [r for r in results if not isinstance(r, Peering)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], PeeringConflictError)
    assert str(lost[0]) == 'cannot create peering with name: "race"; the name is already in use'
    kept = (await runtime.cluster.store.secrets(won[0].id)).stream_secret
    assert outbound.abandoned == [{"stream-1": "stream-2", "stream-2": "stream-1"}[str(kept)]]
    peerings, _ = await runtime.service.list_peerings(None)
    assert [(p.name, p.id) for p in peerings] == [("race", won[0].id)]


async def test_an_exchange_reads_its_acceptor_inside_its_unit_of_work(runtime: Runtime, tmp_path: Path) -> None:
    """Another writer deleted the acceptor and this process's view has not caught up yet: the exchange,
    which re-reads the row in its own unit of work, refuses and does not write the deletion over."""
    dialer_settings = Settings(data_dir=tmp_path / "dialer", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0")
    async with open_runtime(dialer_settings, advertise_addresses=["127.0.0.1:8504"], background=False) as dialer:
        dialer_ca = dialer.identity.ca_pem
    token = tokens.decode(await runtime.service.generate_token(TokenRequest("acc")))
    other = await SqliteStore.open(runtime.settings.data_dir / DATABASE_FILE)  # a second writer, unannounced
    try:
        async with other.transaction() as tx:
            stored = await tx.get_by_id(token.peer_id)
            assert stored is not None
            await tx.save(replace(stored, state=PeeringState.TERMINATED, deleted_at=datetime.now(UTC)))
    finally:
        await other.close()
    who = Dialer(str(uuid.uuid4()), "dialer-id", dialer_ca, "dc2", "", "server.dc2.peering", ("127.0.0.1:1",))
    with pytest.raises(SecretRejectedError):
        await runtime.endpoint.exchange(token.peer_id, token.establishment_secret, who)
    await runtime.cluster.store.catch_up()  # type: ignore[attr-defined]
    after = await runtime.cluster.store.get_by_id(token.peer_id)
    assert after is not None
    assert after.is_deleted


async def test_the_cluster_reaps_the_change_feed_below_what_it_keeps(runtime: Runtime) -> None:
    for name in ("a", "b", "c"):
        await runtime.service.generate_token(TokenRequest(name))
    cluster = runtime.cluster
    current = await cluster.store.current_index()
    before = (await cluster.store.changes_since(0)).changes
    assert await cluster.reap_changes(keep=current) == 0  # nothing that old
    assert await cluster.reap_changes(keep=1) == len([c for c in before if c.index < current - 1]) >= 1
    feed = await cluster.store.changes_since(current - 2)
    assert ([c.index for c in feed.changes], feed.horizon) == ([current - 1, current], current - 2)
    assert await cluster.store.current_index() == current  # reaping took no index
