"""The sharing walks with cluster A on PostgreSQL (issue 14): real `peering serve` processes, A with
`--database-url` on a throwaway database, B on SQLite, peered over real TLS.

Everything goes through the HTTP API as an operator would (catalog and agent registration, TTL checks,
maintenance, the exported-services entry); rows left behind are counted in both databases themselves
(PostgreSQL for A, B's SQLite file), because once a peering is gone no API names its rows any more.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.cluster import Cluster, running_cluster
from tests.postgres import run_async
from tests.sharing import (
    A_NAME,
    B_NAME,
    HEARTBEATS,
    export,
    health,
    instance_view,
    peer,
    peer_names,
    register_all,
    registration,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CATALOG = ("catalog_nodes", "catalog_services", "catalog_checks")
BOOKKEEPING = ("export_generations", "export_marks", "import_states")
# the queries that count what is left (table names from the constants above, never from input)
IMPORTED_ROWS = {t: f"SELECT count(*) FROM {t} WHERE peer_name <> ''" for t in CATALOG}  # noqa: S608
ALL_ROWS = {t: f"SELECT count(*) FROM {t}" for t in BOOKKEEPING}  # noqa: S608
OF_PEER = {t: f"SELECT count(*) FROM {t} WHERE peer_name = ?" for t in CATALOG}  # noqa: S608


class Pair:
    """A (acceptor, dc1, PostgreSQL) and B (dialer, dc2, SQLite), peered; B can be stopped and started again."""

    def __init__(self, tmp_path: Path, dsn: str, stack: ExitStack) -> None:
        self.tmp, self.dsn, self.stack = tmp_path, dsn, stack
        self.a = stack.enter_context(
            running_cluster(
                tmp_path / "a", "--datacenter", "dc1", "--node-name", "node-a", "--database-url", dsn, *HEARTBEATS
            )
        )
        self.b = self.start_b()
        peer(self.a.http_url, self.b.http_url)
        self.api_a = stack.enter_context(httpx.Client(base_url=self.a.http_url, timeout=30))

    def start_b(self) -> Cluster:
        return self.stack.enter_context(running_cluster(self.tmp / "b", "--datacenter", "dc2", *HEARTBEATS))

    def api_b(self) -> httpx.Client:
        return self.stack.enter_context(httpx.Client(base_url=self.b.http_url, timeout=30))


@pytest.fixture
def pair(tmp_path: Path, postgres: str) -> Iterator[Pair]:
    with ExitStack() as stack:
        yield Pair(tmp_path, postgres, stack)


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def imported(cluster: Cluster, service: str, **params: str) -> Any:
    """Wait-free read of B's imported `service` (`?peer=`)."""
    with httpx.Client(base_url=cluster.http_url, timeout=30) as client:
        return health(client, service, peer=B_NAME, **params)


def statuses(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["Service"]["ID"]: e["Checks"][0]["Status"] for e in entries}


def wait_imported(cluster: Cluster, service: str, check: Any, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(
        cluster.http_url, f"/v1/health/service/{service}", check, params={"peer": B_NAME, **params}
    )
    return found


def _web_and_db_on_a(pair: Pair) -> None:
    """web on two nodes (web-1 the agent's, with a TTL check; web-2 registered in the catalog) and db."""
    ok(
        pair.api_a.put(
            "/v1/agent/service/register",
            json={
                "Name": "web",
                "ID": "web-1",
                "Port": 8080,
                "Tags": ["v1"],
                "Check": {"CheckID": "web-1-ttl", "TTL": "300s", "Status": "passing"},
            },
        )
    )
    register_all(pair.a.http_url, [registration("web", "web-2", "node-2"), registration("db", "db-1", "node-2")])


def test_export_health_and_unexport_with_a_on_postgres(pair: Pair) -> None:
    """Happy path (both nodes' instances on B under ?peer= with PeerName everywhere, one overall-check each,
    A's datacenter; db not exported stays away; B's own catalog empty), a failing TTL check on A is critical
    on B and ?passing drops it, recovery, maintenance reaches B as critical; web un-exported while B is down
    is gone once B is back (db exported meanwhile arrives); the entry deleted empties B's imports."""
    _web_and_db_on_a(pair)
    export(pair.a.http_url, [("web", [A_NAME])])
    found = wait_imported(pair.b, "web", lambda f: len(f) == 2)
    with httpx.Client(base_url=pair.a.http_url, timeout=30) as on_a:
        assert instance_view(found) == instance_view(health(on_a, "web"))
    assert peer_names(found) == {B_NAME}
    assert sorted(c["CheckID"] for e in found for c in e["Checks"]) == ["web-1:overall-check", "web-2:overall-check"]
    assert {e["Node"]["Datacenter"] for e in found} == {"dc1"}
    assert sorted(e["Node"]["Node"] for e in found) == ["node-2", "node-a"]
    assert imported(pair.b, "db") == []
    api_b = pair.api_b()
    assert api_b.get("/v1/catalog/services").json() == {}  # B's local catalog: nothing of A's
    assert api_b.get("/v1/imported-services").json() == [{"Service": "web", "SourcePeer": B_NAME}]
    wait_for(pair.a.http_url, f"/v1/peering/{A_NAME}", lambda p: p["ExportedServiceCount"] == 1)

    # health: the TTL check fails, recovers; maintenance is critical on the peer
    ok(pair.api_a.put("/v1/agent/check/fail/web-1-ttl", params={"note": "down"}))
    found = wait_imported(pair.b, "web", lambda f: statuses(f).get("web-1") == "critical")
    assert statuses(found) == {"web-1": "critical", "web-2": "passing"}
    assert [e["Service"]["ID"] for e in imported(pair.b, "web", passing="")] == ["web-2"]
    ok(pair.api_a.put("/v1/agent/check/pass/web-1-ttl"))
    wait_imported(pair.b, "web", lambda f: statuses(f) == {"web-1": "passing", "web-2": "passing"})
    ok(pair.api_a.put("/v1/agent/service/maintenance/web-1", params={"enable": "true", "reason": "upgrade"}))
    found = wait_imported(pair.b, "web", lambda f: statuses(f).get("web-1") == "critical")
    assert [len(e["Checks"]) for e in found] == [1, 1]
    ok(pair.api_a.put("/v1/agent/service/maintenance/web-1", params={"enable": "false"}))
    wait_imported(pair.b, "web", lambda f: statuses(f).get("web-1") == "passing", passing="")

    # un-export while B is down: cleaned up when B is back
    assert pair.b.stop(signal.SIGKILL) == -signal.SIGKILL
    state_of(pair.a.http_url, A_NAME, "FAILING")
    export(pair.a.http_url, [("db", [A_NAME])])
    pair.b = pair.start_b()
    wait_for(pair.b.http_url, "/v1/imported-services", lambda f: f == [{"Service": "db", "SourcePeer": B_NAME}])
    assert imported(pair.b, "web") == []
    assert [e["Service"]["ID"] for e in imported(pair.b, "db")] == ["db-1"]
    assert _counts(pair.tmp / "b", B_NAME) == {"catalog_nodes": 1, "catalog_services": 1, "catalog_checks": 1}

    # the entry deleted: nothing imported remains
    ok(pair.api_a.delete("/v1/config/exported-services/default"))
    wait_for(pair.b.http_url, "/v1/imported-services", lambda f: f == [])
    wait_for(pair.b.http_url, f"/v1/peering/{B_NAME}", lambda p: p["ImportedServiceCount"] == 0)
    assert imported(pair.b, "db") == []
    assert _counts(pair.tmp / "b", B_NAME) == dict.fromkeys(CATALOG, 0)


def _counts(data_dir: Path, peer_name: str) -> dict[str, int]:
    """Imported rows of `peer_name` in a SQLite data dir, per catalog table."""
    with closing(sqlite3.connect(f"file:{data_dir / 'peering.db'}?mode=ro", uri=True)) as db:
        return {table: db.execute(query, (peer_name,)).fetchone()[0] for table, query in OF_PEER.items()}


def _sqlite_leftovers(data_dir: Path) -> dict[str, int]:
    """Every imported row and every replication bookkeeping row in a SQLite data dir."""
    with closing(sqlite3.connect(f"file:{data_dir / 'peering.db'}?mode=ro", uri=True)) as db:
        queries = {**IMPORTED_ROWS, **ALL_ROWS}
        found = {table: db.execute(query).fetchone()[0] for table, query in queries.items()}
    return found


async def _postgres_leftovers(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        found = {table: await conn.fetchval(query) for table, query in {**IMPORTED_ROWS, **ALL_ROWS}.items()}
    finally:
        await conn.close()
    return found


@pytest.mark.parametrize("deleter", ["acceptor", "dialer"])
def test_a_deleted_peering_leaves_no_imported_row_on_either_side_with_a_on_postgres(pair: Pair, deleter: str) -> None:
    """Both sides export (A web and db to B, B api to A): the peering is deleted on one side; both databases
    end with 0 imported rows and no replication bookkeeping; the other side keeps a TERMINATED record with
    empty lists."""
    _web_and_db_on_a(pair)
    export(pair.a.http_url, [("web", [A_NAME]), ("db", [A_NAME])])
    register_all(pair.b.http_url, [registration("api", "api-1", "b-node")])
    export(pair.b.http_url, [("api", [B_NAME])])
    wait_for(pair.b.http_url, "/v1/imported-services", lambda f: len(f) == 2)
    wait_for(pair.a.http_url, "/v1/imported-services", lambda f: f == [{"Service": "api", "SourcePeer": A_NAME}])
    wait_imported(pair.b, "web", lambda f: len(f) == 2)
    on_a = run_async(_postgres_leftovers(pair.dsn))
    on_b = _sqlite_leftovers(pair.tmp / "b")
    assert (on_a["catalog_services"], on_b["catalog_services"]) == (1, 3)
    assert min(on_a[t] for t in BOOKKEEPING) > 0
    assert min(on_b[t] for t in BOOKKEEPING) > 0

    here, name, there, other = (
        (pair.a, A_NAME, pair.b, B_NAME) if deleter == "acceptor" else (pair.b, B_NAME, pair.a, A_NAME)
    )
    ok(httpx.delete(f"{here.http_url}/v1/peering/{name}", timeout=30))
    kept = state_of(there.http_url, other, "TERMINATED")
    wait_for(there.http_url, f"/v1/peering/{other}", lambda p: p["StreamStatus"]["ImportedServices"] == [])
    kept = wait_for(there.http_url, f"/v1/peering/{other}", lambda p: p["ExportedServiceCount"] == 0)
    assert (kept["ImportedServiceCount"], kept["StreamStatus"]["ExportedServices"]) == (0, [])
    wait_for(here.http_url, "/v1/peerings", lambda found: found == [])
    assert wait_for(pair.a.http_url, "/v1/imported-services", lambda f: f == []) == []
    assert wait_for(pair.b.http_url, "/v1/imported-services", lambda f: f == []) == []
    zero = dict.fromkeys(CATALOG + BOOKKEEPING, 0)
    assert run_async(_postgres_leftovers(pair.dsn)) == zero
    assert _sqlite_leftovers(pair.tmp / "b") == zero
