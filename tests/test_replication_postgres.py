"""The replication walk with cluster A on PostgreSQL (SPEC §12: every new table on both backends): A exports
to B and B to A, health and an un-export reach the other side, and a deleted peering leaves no imported row."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from peering.catalog.model import Health
from tests.replication_helpers import (
    A_NAME,
    B_NAME,
    deregister,
    export,
    imported,
    register,
    set_check,
    until,
)
from tests.test_peering import Node, gone, state_is

pytestmark = pytest.mark.anyio


async def test_the_walk_with_the_acceptor_on_postgresql(tmp_path: Path, postgres: str) -> None:
    a = Node("a", tmp_path / "a", "dc1", database_url=SecretStr(postgres))
    b = Node("b", tmp_path / "b", "dc2")
    await a.start()
    await b.start()
    try:
        assert (await b.establish(B_NAME, await a.token(A_NAME))).status_code == 200
        await a.wait_for(A_NAME, state_is("ACTIVE"))
        await register(a, "node-1", "web-1", "web")
        await register(a, "node-2", "web-2", "web")
        await register(b, "b-node", "api-1", "api")
        await export(a, ("web", [A_NAME]))
        await export(b, ("api", [B_NAME]))
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 2)
        found = await until(a, lambda: imported(a, A_NAME, "api"), lambda f: len(f) == 1)
        assert (found[0].node.peer_name, found[0].node.datacenter) == (A_NAME, "dc2")

        await set_check(a, "node-1", "web-1-check", Health.CRITICAL)
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f[0].checks[0].status is Health.CRITICAL)
        await deregister(a, "node-2")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 1)
        assert (await a.read(A_NAME))["StreamStatus"]["ImportedServices"] == ["api"]

        assert (await a.api.delete(f"/v1/peering/{A_NAME}")).status_code == 200
        await b.wait_for(B_NAME, state_is("TERMINATED"))
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f == [])
        await a.wait_for(A_NAME, gone)
        assert await imported(a, A_NAME, "api") == []
    finally:
        for node in (a, b):
            if node._stack is not None:
                await node.stop()
