"""API fuzzing (SPEC §3, §8, §11, §13, §14): schemathesis drives a real `peering serve` from its own
`/openapi.json`.

Every operation of the spec (peerings, ACLs, status, the catalog, health and agent routes, config entries,
exported and imported services) gets generated requests with ACLs off, with ACLs on (default deny) for
anonymous callers, and with ACLs on for the management token; every answer must not be a 500 and must
match the documented status codes, content types, headers and body schemas, and the server must log no
ERROR and no traceback. Each server is seeded first (a node with an instance and a check, an agent service
with a TTL check, an `exported-services` entry), so reads answer real rows against their response schemas
and an anonymous caller's 200 shows that ACL filtering hid them. The hostile classes of issue 11 (lone surrogates, huge digit strings, deep
nesting, overflowing durations and times) are thrown at every field, query parameter and peer message
by `test_input_properties.py` and `test_fuzz_peer.py`.

Each operation is a pytest case running a Hypothesis test over `operation.as_strategy()` against the
server's schema (`schemathesis.openapi.from_url`), not `schemathesis.pytest.from_fixture`: in
schemathesis 4.32 its lazy schema sets `Item._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.attack import server_errors
from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)  # each case's statuses: `-o log_cli=true --log-cli-level=INFO` shows them

MANAGEMENT_SECRET = "3f1c2b7e-5a4d-4e8f-9b6a-0c1d2e3f4a5b"
MANAGEMENT = {"X-Consul-Token": MANAGEMENT_SECRET}  # ignored with ACLs off
ACLS_ON = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT_SECRET)
CONFIGS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "acl-off": ((), {}),
    "acl-anonymous": (ACLS_ON, {}),
    "acl-management": (ACLS_ON, MANAGEMENT),
}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
MAX_EXAMPLES = 30
# the catalog, health, agent-node and config routes (issue 14) get more: they are new and their bodies are large
NEW_ROUTES = ("/v1/catalog/", "/v1/health/", "/v1/agent/service", "/v1/agent/check", "/v1/config", "/v1/exported-s",
              "/v1/imported-s")  # fmt: skip
NEW_ROUTE_EXAMPLES = 100
# the operations are those of the committed spec (equal to the served one, see test_openapi.py)
SPEC = json.loads((Path(__file__).resolve().parent.parent / "openapi" / "openapi.json").read_text())
# Valid requests everywhere. Invalid ones only where the spec constrains what a client sends (the JSON
# bodies: query and path parameters are free strings) and only with the management token, where every
# body is parsed: with ACLs off the ACL endpoints refuse before reading it, and an anonymous caller's
# bodies go through the same parsing before the same denial.
CASES = [
    (config, method.upper(), path, mode)
    for config in CONFIGS
    for path, methods in SPEC["paths"].items()
    for method, operation in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or ("requestBody" in operation and config == "acl-management")
]
# what anyone may call with ACLs on; `check` answers 200 with `IsValid: false` to a request it refuses
# before the ACL check (bad name or token), as establish answers 400
# status routes need no token, as in Consul; check validates before it asks for peering:write
OPEN_TO_ANONYMOUS = {"GET /v1/status/leader", "GET /v1/status/peers", "POST /v1/peering/check"}
# reads that filter what the caller may not see (SPEC §14): an anonymous caller under default deny gets 200
# with nothing in it (the seeded rows and entry hidden), never the filtered header (Consul masks it from
# the anonymous token); the config list is filtered by its one `mesh:read` rule (all or none). With a
# non-empty `?peer=` the catalog and health reads need the imported-data rule instead: never a 200.
FILTERED_FOR_ANONYMOUS = {
    "GET /v1/catalog/services",
    "GET /v1/catalog/service/{name}",
    "GET /v1/catalog/nodes",
    "GET /v1/catalog/node/{node}",
    "GET /v1/health/service/{name}",
    "GET /v1/health/checks/{service}",
    "GET /v1/health/state/{state}",
    "GET /v1/agent/services",
    "GET /v1/agent/checks",
    "GET /v1/config/{kind}",
}
TAKES_PEER = {label for label in FILTERED_FOR_ANONYMOUS if label.startswith(("GET /v1/catalog/", "GET /v1/health/"))}
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/v1/catalog/register", {
        "Node": "seed-node", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                    "Meta": {"version": "1"}, "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 8080}}},
        "Checks": [{"CheckID": "web-alive", "Name": "web alive", "Status": "passing", "ServiceID": "web-1"},
                   {"CheckID": "node-ok", "Name": "node ok", "Status": "warning"}],
    }),
    ("/v1/agent/service/register", {"Name": "api", "ID": "api-1", "Port": 9090, "Tags": ["t"],
                                    "Check": {"TTL": "10m", "Status": "passing", "Notes": "seeded"}}),
    ("/v1/agent/service/register", {"Name": "api", "ID": "api-2", "Check": {"TTL": "10m"}}),
    ("/v1/config", {"Kind": "exported-services", "Name": "default", "Meta": {"owner": "fuzz"},
                    "Services": [{"Name": "web", "Consumers": [{"Peer": "seed-peer"}]},
                                 {"Name": "*", "Consumers": [{"Peer": "other-peer"}]}]}),
]  # fmt: skip


@dataclass
class Target:
    """One running server, its schema, and the headers every request carries."""

    config: str
    schema: OpenApiSchema
    headers: dict[str, str]
    session: requests.Session
    cluster: Cluster


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Target]]:
    """A server per configuration, started when first asked for and kept until the module is done."""
    with ExitStack() as stack:
        started: dict[str, Target] = {}

        def target(config: str) -> Target:
            if config not in started:
                args, headers = CONFIGS[config]
                cluster = stack.enter_context(running_cluster(tmp_path_factory.mktemp(config), *args))
                schema = schemathesis.openapi.from_url(f"{cluster.http_url}/openapi.json")
                schema.config.update(base_url=cluster.http_url)
                session = stack.enter_context(requests.Session())
                seed(cluster, session)
                started[config] = Target(config, schema, headers, session, cluster)
            return started[config]

        yield target


def seed(cluster: Cluster, session: requests.Session) -> None:
    """Rows and an entry for the reads to answer (written with the management token where ACLs are on)."""
    for path, body in SEED:
        response = session.put(f"{cluster.http_url}{path}", json=body, headers=MANAGEMENT, timeout=10)
        assert response.status_code == 200, (path, response.text)
    assert session.get(f"{cluster.http_url}/v1/health/service/web", headers=MANAGEMENT, timeout=10).json()


# "Tidy" examples (half of the positive ones): random strings in every field rarely get past the first check
# (a partition name, an index, a node's address), so these replace the fields the server validates first with
# values it accepts and the path parameters with the seeded names, and keep the rest as generated: the
# request then reaches the catalog, the TTL checks and the config service with the generator's other values.
TIDY_PATH: dict[str, list[str]] = {
    "kind": ["exported-services"],
    "name": ["web", "api", "default", "missing"],  # a service's (catalog, health) or an entry's (config)
    "node": ["seed-node", "missing"],
    "service": ["web", "api"],
    "state": ["any", "passing", "warning", "critical"],
    "check_id": ["service:api-1", "service:api-2", "web-alive", "missing"],
    "service_id": ["api-1", "api-2", "web-1", "missing"],
}
TIDY_QUERY: dict[str, list[Any]] = {
    "partition": ["", "default"],
    "index": ["1", "0", "18446744073709551615"],
    "cas": ["0", "1", "999999"],
    "enable": ["true", "false"],
    "passing": ["", "true", "false"],
    "peer": ["", "seed-peer", "missing-peer"],
    "tag": [["v1"], ["v1", "primary"], ["nope"]],
    "replace-existing-checks": ["", "true", "false"],
    "format": ["", "prometheus"],
}
STATUSES = ["passing", "warning", "critical"]
# fields checked against rules the generator does not know (UUIDs, meta keys, ports, weights, Connect, peers)
HARD_FIELDS = ("ID", "PeerName", "Partition", "Datacenter", "Locality", "Meta", "NodeMeta", "TaggedAddresses",
               "Proxy", "Connect", "SocketPath", "Kind", "Weights", "Port")  # fmt: skip
TTL_FIELDS = ("CheckID", "Name", "TTL", "Status", "Notes")


def tidy(label: str, case: schemathesis.Case[Any], pick: Callable[[list[Any]], Any]) -> None:
    """Make `case` a request the server accepts in its first checks (see TIDY_PATH), for positive examples."""
    for key in case.path_parameters or {}:
        if key in TIDY_PATH:
            case.path_parameters[key] = pick(TIDY_PATH[key])
    for key in case.query or {}:
        if key in TIDY_QUERY:
            case.query[key] = pick(TIDY_QUERY[key])
    if label == "PUT /v1/agent/service/maintenance/{service_id}" and case.query is not None:
        case.query["enable"] = pick(TIDY_QUERY["enable"])  # required, though a query parameter
    if isinstance(case.body, dict):
        tidy_body(label, case.body, pick)


def tidy_body(label: str, body: dict[str, Any], pick: Callable[[list[Any]], Any]) -> None:
    """The body's first-checked fields made acceptable (positive bodies only: a negative one stays invalid)."""
    if label in ("PUT /v1/catalog/register", "PUT /v1/catalog/deregister"):
        for key in HARD_FIELDS:
            body.pop(key, None)
        body["Node"] = pick(["seed-node", "fuzz-node", "missing"])
        body["Address"] = "10.0.0.9"
        if isinstance(body.get("Service"), dict):
            service = {k: v for k, v in body["Service"].items() if k not in HARD_FIELDS}
            body["Service"] = {**service, "Service": pick(["web", "db"]), "Port": pick([0, 8080])}
        for key in ("Check", "Checks"):
            found = body.get(key)
            for check in found if isinstance(found, list) else [found]:
                if isinstance(check, dict):
                    for field in (*HARD_FIELDS, "Node", "ServiceID", "Type", "Definition"):
                        check.pop(field, None)
                    check["Status"] = pick(STATUSES)
    elif label == "PUT /v1/agent/service/register":
        for key in HARD_FIELDS:
            body.pop(key, None)
        body["Name"] = pick(["api", "fuzz"])
        body["ID"] = pick(["api-1", "fuzz-1"])
        for key in ("Check", "Checks"):
            found = body.get(key)
            checks = [c for c in (found if isinstance(found, list) else [found]) if isinstance(c, dict)]
            tidied = [{**{k: v for k, v in c.items() if k in TTL_FIELDS}, "TTL": pick(["10m", "1s", 60_000_000_000]),
                       "Status": pick(STATUSES)} for c in checks]  # fmt: skip
            if tidied:
                body[key] = tidied if key == "Checks" else tidied[0]
    elif label == "PUT /v1/agent/check/update/{check_id}":
        body["Status"] = pick(STATUSES)
    elif label == "PUT /v1/config":
        services: list[Any] = body["Services"] if isinstance(body.get("Services"), list) else [{}]
        body.clear()
        body.update({"Kind": "exported-services", "Name": "default"})
        body["Services"] = [
            {"Name": pick(["web", "api", "*", "db"]), "Consumers": [{"Peer": pick(["seed-peer", "other-peer"])}]}
            for _ in services[:8]
        ]


def anonymous_answer_is_allowed(label: str, case: schemathesis.Case[Any], response: Response) -> None:
    """With ACLs on and no token, a 200 only where SPEC §8/§14 let everyone in, and then with nothing hidden
    shown: the seeded rows are filtered out, the filtered header is not sent, a `?peer=` read is refused."""
    if response.status_code != 200:
        return
    shown = response.content[:300]
    assert label in OPEN_TO_ANONYMOUS | FILTERED_FOR_ANONYMOUS, shown
    if label == "POST /v1/peering/check":
        assert response.json()["IsValid"] is False
    if label in FILTERED_FOR_ANONYMOUS:
        assert response.json() in ([], {}, None), shown
        assert "x-consul-results-filtered-by-acls" not in response.headers  # lower-cased by schemathesis
    if label in TAKES_PEER:
        assert not _first(case.query.get("peer")), f"an anonymous ?peer= read answered 200: {case.query}"


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


@pytest.mark.parametrize(
    ("config", "method", "path", "mode"),
    CASES,
    ids=[f"{config}-{method} {path}-{mode.value}" for config, method, path, mode in CASES],
)
def test_operation_answers_as_documented(
    targets: Callable[[str], Target],
    config: str,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """No generated request gets a 500, an answer outside the spec, or past an ACL it lacks."""
    target = targets(config)
    seed(target.cluster, target.session)  # again: an earlier case may have deregistered or deleted the seeds
    operation = target.schema[path][method]
    label = f"{method} {path}"
    statuses: Counter[int] = Counter()

    new = path.startswith(NEW_ROUTES)

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=NEW_ROUTE_EXAMPLES if new else MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # generating (and filtering) bodies is slow on a busy 2-core machine; that is not a failure
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: schemathesis.Case[Any], data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="tidy"):
            tidy(label, case, lambda choices: data.draw(st.sampled_from(choices)))
        if "index" in case.query:
            case.query["wait"] = "1ms"  # a blocking query would otherwise wait 5 minutes
        response = case.call_and_validate(session=target.session, headers=target.headers, checks=CHECKS, timeout=10)
        statuses[response.status_code] += 1
        if config == "acl-anonymous":
            anonymous_answer_is_allowed(label, case, response)

    run()
    log.info("%s %s %s: %d examples, %s", config, label, mode.value, statuses.total(), dict(sorted(statuses.items())))
    assert statuses
    assert not server_errors(target.cluster), server_errors(target.cluster)[:3]  # no traceback, no ERROR line
    if config == "acl-management" and label != "PUT /v1/acl/bootstrap":  # bootstrapped at start: always 403
        assert set(statuses) != {403}, "the management token was not honoured"
