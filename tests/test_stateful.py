"""A hypothesis state machine drives generate/establish/read/list/delete on two real clusters.

It checks what must hold whatever the timing of heartbeats and termination notices: indexes never go
back, names are unique per partition, at most one live peering per remote cluster, a list equals the
reads, a used or superseded token never establishes, and nothing answers a 5xx.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from concurrent.futures import Future
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from peering.server import listening
from peering.settings import Settings

pytestmark = pytest.mark.slow

NAMES = st.sampled_from(["alpha", "beta", "gamma"])
SIDES = st.sampled_from(["a", "b"])
LIVE = ("ACTIVE", "FAILING")


class ThreadedCluster:
    """A cluster served by its own event loop in a thread, so a synchronous state machine can drive it."""

    def __init__(self, data: Path, datacenter: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stack = AsyncExitStack()
        settings = Settings(
            data_dir=data,
            datacenter=datacenter,
            http_addr="127.0.0.1:0",
            peering_addr="127.0.0.1:0",
            heartbeat_interval=0.2,
            heartbeat_timeout=30,  # no FAILING from a slow machine during a run
        )
        _, bound = self._run(self._stack.enter_async_context(listening(settings)))
        self.api = httpx.Client(base_url=f"http://{bound.http_addr}", timeout=15)

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def close(self) -> None:
        self.api.close()
        self._run(self._stack.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class PeeringMachine(RuleBasedStateMachine):
    """Two clusters, a, b (datacenters dc1 and dc2), and the tokens each has handed out."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        root = Path(self._tmp.name)
        self.clusters = {"a": ThreadedCluster(root / "a", "dc1"), "b": ThreadedCluster(root / "b", "dc2")}
        self.latest: dict[tuple[str, str], str] = {}  # (side, name) -> the newest token generated for it
        self.used: set[str] = set()
        self.last_index = {"a": 0, "b": 0}
        self.modify_index: dict[tuple[str, str], int] = {}  # (side, peering ID) -> last ModifyIndex seen

    def teardown(self) -> None:
        for cluster in self.clusters.values():
            cluster.close()
        self._tmp.cleanup()

    @rule(target=tokens, side=SIDES, name=NAMES)
    def generate(self, side: str, name: str) -> tuple[str, str, str]:
        response = self.clusters[side].api.post("/v1/peering/token", json={"PeerName": name})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:  # the name is one this side dialed, or one awaiting removal
            assert response.text.endswith(
                ("there is already an established peering", "the peering is marked for deletion")
            ), response.text
            return side, name, ""
        token = str(response.json()["PeeringToken"])
        self.latest[(side, name)] = token
        return side, name, token

    @rule(issued=tokens, name=NAMES)
    def establish(self, issued: tuple[str, str, str], name: str) -> None:
        acceptor, acceptor_name, token = issued
        if not token:
            return
        dialer = "b" if acceptor == "a" else "a"
        before = self._live(dialer)
        response = self.clusters[dialer].api.post(
            "/v1/peering/establish", json={"PeerName": name, "PeeringToken": token}
        )
        assert response.status_code in (200, 400, 403), response.text
        event(f"establish answered {response.status_code}")  # --hypothesis-show-statistics
        stale = token in self.used or self.latest.get((acceptor, acceptor_name)) != token
        if stale:
            assert response.status_code != 200, "a used or superseded token established a peering"
        if response.status_code == 200:
            assert response.content == b"{}"
            assert all(p["Name"] == name for p in before), "a second live peering with the same cluster"
            self.used.add(token)
        elif response.status_code == 403:
            assert response.text == "a new peering token must be generated: invalid peering establishment secret"

    @rule(side=SIDES, name=NAMES)
    def delete(self, side: str, name: str) -> None:
        response = self.clusters[side].api.delete(f"/v1/peering/{name}")
        assert (response.status_code, response.content) == (200, b"")

    @rule(side=SIDES, name=NAMES)
    def read(self, side: str, name: str) -> None:
        response = self.clusters[side].api.get(f"/v1/peering/{name}")
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            body = response.json()
            assert int(response.headers["X-Consul-Index"]) == body["ModifyIndex"]
            self._saw(side, body)

    def _live(self, side: str) -> list[dict[str, Any]]:
        listing = self.clusters[side].api.get("/v1/peerings").json()
        return [p for p in listing if p["State"] in LIVE and "DeletedAt" not in p]

    def _saw(self, side: str, peering: dict[str, Any]) -> None:
        key = (side, peering["ID"])
        assert peering["ModifyIndex"] >= self.modify_index.get(key, 0), "a peering's index went back"
        assert peering["CreateIndex"] <= peering["ModifyIndex"]
        self.modify_index[key] = peering["ModifyIndex"]

    @invariant()
    def lists_are_sorted_unique_consistent_and_monotonic(self) -> None:
        for side, cluster in self.clusters.items():
            response = cluster.api.get("/v1/peerings")
            assert response.status_code == 200
            listing = response.json()
            index = int(response.headers["X-Consul-Index"])
            assert index >= self.last_index[side], "the list's index went back"
            self.last_index[side] = index
            names = [p["Name"] for p in listing]
            assert names == sorted(names)
            assert len({n.lower() for n in names}) == len(names), "two peerings share a name"
            assert all(p["ModifyIndex"] <= index for p in listing)
            live = [p for p in listing if p["State"] in LIVE and "DeletedAt" not in p]
            assert len({p["Remote"]["Datacenter"] for p in live}) == len(live), "two live peerings with one cluster"
            for peering in listing:
                self._saw(side, peering)
                read = cluster.api.get(f"/v1/peering/{peering['Name']}")
                if read.status_code == 200:  # it may have been removed since the list
                    assert read.json()["ID"] == peering["ID"]
                    assert read.json()["CreateIndex"] == peering["CreateIndex"]


PeeringMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_peering_state_machine = PeeringMachine.TestCase
