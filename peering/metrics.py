"""Prometheus metrics of one cluster (the only module that knows prometheus_client).

Each cluster has its own registry, so several clusters in one process (tests) keep apart.
Label values come from bounded sets (route templates, result codes, peering names), never from
raw request input.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

STATES = ("INITIAL", "ACTIVE", "FAILING", "TERMINATED")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Requests(Collector):
    """Client API requests by method, route and status, and their latency by method and route, counted in
    plain dicts and handed to the registry when it collects.

    prometheus_client's counters and histograms take a lock at every count: for an answer the HTTP protocol
    gives from memory (`api.answers`), two of those cost a third of the answer (bench/).
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        # (method, route) -> a count per bucket of `_LATENCY_BUCKETS` (not cumulative), then +Inf's, then the sum
        self._latency: dict[tuple[str, str], list[float]] = {}
        self.from_memory = 0  # of them, answers the HTTP protocol gave from the kept ones

    def add(self, method: str, route: str, status: int, seconds: float, from_memory: bool) -> None:
        if from_memory:
            self.from_memory += 1
        key = (method, route, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        latency = self._latency.get((method, route))
        if latency is None:
            latency = self._latency[(method, route)] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        latency[bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        latency[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "peering_http_requests", "Client API requests by method, route and status.",
            labels=["method", "route", "status"],
        )  # fmt: skip
        for (method, route, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        latency = HistogramMetricFamily(
            "peering_http_request_duration_seconds", "Client API request latency by method and route.",
            labels=["method", "route"],
        )  # fmt: skip
        bounds = [*(str(b) for b in _LATENCY_BUCKETS), "+Inf"]  # as prometheus_client writes them
        for (method, route), counts_ in list(self._latency.items()):
            cumulative = list(accumulate(counts_[:-1]))
            latency.add_metric([method, route], list(zip(bounds, cumulative, strict=True)), counts_[-1])
        yield requests
        yield latency
        yield CounterMetricFamily(
            "peering_http_answers_from_memory",
            "Client API requests answered from kept answers of plain reads, without the app (of the requests).",
            value=self.from_memory,
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to check at registration: the names are unique here


class Metrics:
    """Counters and gauges an operator alerts on: requests, heartbeats, establishes, link health."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series repeat the start time
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = _Requests()
        r.register(self._requests)
        self._heartbeats_sent = Counter(
            "peering_heartbeats_sent", "Heartbeats sent to acceptors, by result (ok, failed, rejected).", ["result"],
            registry=r,
        )  # fmt: skip
        self._heartbeats_received = Counter(
            "peering_heartbeats_received", "Heartbeats received from dialers, by result (ok, rejected).", ["result"],
            registry=r,
        )  # fmt: skip
        self._establishes = Counter(
            "peering_establish", "Establish attempts on this cluster, by result (ok or an error code).", ["result"],
            registry=r,
        )  # fmt: skip
        # the results alerts look at exist from the start, at 0, so that rate() and absent() behave
        for result in ("ok", "failed", "rejected"):
            self._heartbeats_sent.labels(result)
        for result in ("ok", "rejected"):
            self._heartbeats_received.labels(result)
        for result in ("ok", "secret_rejected", "peer_unreachable"):
            self._establishes.labels(result)
        self._states = Gauge("peering_peerings", "Peerings of this cluster by state.", ["state"], registry=r)
        self._healthy = Gauge(
            "peering_healthy", "1 while the peering is ACTIVE, else 0.", ["peer_name", "partition"], registry=r
        )
        self._blocking = Gauge(
            "peering_blocking_queries", "Blocking queries waiting for a change right now.", registry=r
        )
        self._exported = Gauge(
            "peering_exported_services", "Services this cluster exports to the peer.", ["peer_name", "partition"],
            registry=r,
        )  # fmt: skip
        self._imported = Gauge(
            "peering_imported_services", "Services this cluster imports from the peer.", ["peer_name", "partition"],
            registry=r,
        )  # fmt: skip
        self._lag = Gauge(
            "peering_replication_lag_seconds",
            "Seconds the services imported from the peer may be behind its exports (0: caught up).",
            ["peer_name", "partition"], registry=r,
        )  # fmt: skip

    def request(self, method: str, route: str, status: int, seconds: float, *, from_memory: bool = False) -> None:
        """Count one client API request (`from_memory`: answered from a kept answer, `api.answers`)."""
        self._requests.add(method, route, status, seconds, from_memory)

    def heartbeat_sent(self, result: str) -> None:
        """Count a heartbeat this cluster sent (`ok`, `failed`, `rejected`)."""
        self._heartbeats_sent.labels(result).inc()

    def heartbeat_received(self, result: str) -> None:
        """Count a heartbeat this cluster answered (`ok`, `rejected`)."""
        self._heartbeats_received.labels(result).inc()

    def establish(self, result: str) -> None:
        """Count an establish attempt (`ok`, or the error's code)."""
        self._establishes.labels(result).inc()

    @contextmanager
    def blocking_query(self) -> Iterator[None]:
        """Count a blocking query as pending while the block runs (also when it is cancelled)."""
        self._blocking.inc()
        try:
            yield
        finally:
            self._blocking.dec()

    def observe(self, peerings: Iterable[tuple[str, str, str]]) -> None:
        """Set the gauges from every peering's `(name, partition, state)` as of now."""
        self._healthy.clear()
        counts = dict.fromkeys(STATES, 0)
        for name, partition, state in peerings:
            self._healthy.labels(name, partition).set(1 if state == "ACTIVE" else 0)
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self._states.labels(state).set(count)

    def observe_replication(self, peerings: Iterable[tuple[str, str, int, int]]) -> None:
        """Set the service gauges from every peering's `(name, partition, exported, imported)` as of now."""
        self._exported.clear()
        self._imported.clear()
        for name, partition, exported, imported in peerings:
            self._exported.labels(name, partition).set(exported)
            self._imported.labels(name, partition).set(imported)

    def replication_lag(self, peer_name: str, partition: str, lag: Callable[[], float]) -> None:
        """Report a peering's replication lag by asking `lag()` at every scrape."""
        self._lag.labels(peer_name, partition).set_function(lag)

    def forget_replication(self, peer_name: str, partition: str) -> None:
        """Drop the lag series of a peering whose imports are gone."""
        with suppress(KeyError):
            self._lag.remove(peer_name, partition)

    def render(self) -> bytes:
        """The Prometheus exposition text."""
        return generate_latest(self.registry)

    def samples(self) -> list[dict[str, Any]]:
        """Every sample as `{Name, Value, Labels}` (for the JSON form of the metrics endpoint)."""
        return [
            {"Name": sample.name, "Value": sample.value, "Labels": dict(sample.labels)}
            for family in self.registry.collect()
            for sample in family.samples
        ]
