"""Service behaviour that the HTTP tests do not reach: concurrency, clocks, logging."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from peering.app import Runtime
from peering.service import TokenRequest

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
        from dataclasses import replace

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
