"""API fuzzing (SPEC §3, §8, §11): schemathesis drives a real `peering serve` from its own `/openapi.json`.

Every operation of the spec gets generated requests with ACLs off, with ACLs on (default deny) for
anonymous callers, and with ACLs on for the management token; every answer must not be a 500 and must
match the documented status codes, content types, headers and body schemas, and the server must log no
ERROR and no traceback. The hostile classes of issue 11 (lone surrogates, huge digit strings, deep
nesting, overflowing durations and times) are thrown at every field, query parameter and peer message
by `test_input_properties.py` and `test_fuzz_peer.py`.

Each operation is a pytest case running a Hypothesis test over `operation.as_strategy()` against the
server's schema (`schemathesis.openapi.from_url`), not `schemathesis.pytest.from_fixture`: in
schemathesis 4.32 its lazy schema sets `Item._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import json
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
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.attack import server_errors
from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.slow

MANAGEMENT_SECRET = "3f1c2b7e-5a4d-4e8f-9b6a-0c1d2e3f4a5b"
ACLS_ON = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT_SECRET)
CONFIGS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "acl-off": ((), {}),
    "acl-anonymous": (ACLS_ON, {}),
    "acl-management": (ACLS_ON, {"X-Consul-Token": MANAGEMENT_SECRET}),
}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
MAX_EXAMPLES = 30
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
                started[config] = Target(config, schema, headers, session, cluster)
            return started[config]

        yield target


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
    operation = target.schema[path][method]
    label = f"{method} {path}"
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # generating (and filtering) bodies is slow on a busy 2-core machine; that is not a failure
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        if "index" in case.query:
            case.query["wait"] = "1ms"  # a blocking query would otherwise wait 5 minutes
        response = case.call_and_validate(session=target.session, headers=target.headers, checks=CHECKS, timeout=10)
        statuses[response.status_code] += 1
        if config == "acl-anonymous" and response.status_code == 200:
            assert label in OPEN_TO_ANONYMOUS, response.text
            if label == "POST /v1/peering/check":
                assert response.json()["IsValid"] is False

    run()
    assert statuses
    assert not server_errors(target.cluster), server_errors(target.cluster)[:3]  # no traceback, no ERROR line
    if config == "acl-management" and label != "PUT /v1/acl/bootstrap":  # bootstrapped at start: always 403
        assert set(statuses) != {403}, "the management token was not honoured"
