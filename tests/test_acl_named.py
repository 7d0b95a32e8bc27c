"""Rules on named things (SPEC §14): `service`, `service_prefix`, `node`, `node_prefix`, `mesh`, decided as Consul
decides them (exact beats prefix, longest prefix wins, policies merged with deny first), Consul's 403 texts, and
the rule for reading rows imported from peers. Driven through the real `AclService` on a SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from peering.acl_model import Access, Level
from peering.errors import PermissionDeniedError
from tests.test_acl import ANONYMOUS, MANAGEMENT_SECRET, Acl, _acl_cluster

pytestmark = pytest.mark.anyio

R, W = Level.READ, Level.WRITE


@pytest.fixture
async def deny(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path, "deny"):
        yield cluster


@pytest.fixture
async def allow(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path, "allow"):
        yield cluster


async def _caller(acl: Acl, *policies: str) -> tuple[Access, str]:
    """A caller whose token has one policy per rules text given; and its AccessorID."""
    names: list[str] = []
    for rules in policies:
        names.append(f"p{len(names)}")
        await acl.policy(names[-1], rules)
    token = await acl.token(*names)
    return acl.runtime.acl.caller(token["SecretID"], "127.0.0.1"), str(token["AccessorID"])


# (policies of one token, resource, name, level, allowed with default deny, allowed with default allow)
MATRIX = [
    # exact rules
    (['service "web" { policy = "read" }'], "service", "web", R, True, True),
    (['service "web" { policy = "read" }'], "service", "web", W, False, False),  # a rule decides: no default
    (['service "web" { policy = "write" }'], "service", "web", W, True, True),
    (['service "web" { policy = "deny" }'], "service", "web", R, False, False),
    (['service "web" { policy = "write" }'], "service", "web-1", R, False, True),  # exact is exact
    (['service "web" { policy = "write" }'], "service", "we", R, False, True),
    # prefix rules
    (['service_prefix "we" { policy = "write" }'], "service", "web", W, True, True),
    (['service_prefix "we" { policy = "write" }'], "service", "we", W, True, True),
    (['service_prefix "we" { policy = "write" }'], "service", "api", R, False, True),
    (['service_prefix "" { policy = "read" }'], "service", "anything", R, True, True),
    (['service_prefix "" { policy = "read" }'], "service", "anything", W, False, False),
    # the longest prefix wins, whichever way
    (['service_prefix "" { policy = "write" }\nservice_prefix "web" { policy = "deny" }'], "service", "web-1", R,
     False, False),
    (['service_prefix "" { policy = "write" }\nservice_prefix "web" { policy = "deny" }'], "service", "api", W,
     True, True),
    (['service_prefix "web" { policy = "deny" }\nservice_prefix "web-" { policy = "read" }'], "service", "web-1", R,
     True, True),
    (['service_prefix "web" { policy = "deny" }\nservice_prefix "web-" { policy = "read" }'], "service", "webx", R,
     False, False),
    # an exact rule beats every prefix rule
    (['service_prefix "web" { policy = "deny" }\nservice "web" { policy = "write" }'], "service", "web", W,
     True, True),
    (['service_prefix "web" { policy = "deny" }\nservice "web" { policy = "write" }'], "service", "web-1", R,
     False, False),
    (['service_prefix "" { policy = "write" }\nservice "db" { policy = "deny" }'], "service", "db", R, False, False),
    # several policies merge: the strongest level per name or prefix, deny first
    (['service "web" { policy = "read" }', 'service "web" { policy = "write" }'], "service", "web", W, True, True),
    (['service "web" { policy = "write" }', 'service "web" { policy = "deny" }'], "service", "web", R, False, False),
    (['service_prefix "" { policy = "read" }', 'service_prefix "" { policy = "deny" }'], "service", "x", R,
     False, False),
    (['service_prefix "" { policy = "deny" }', 'service "web" { policy = "read" }'], "service", "web", R,
     True, True),  # the exact rule of one policy beats the other's prefix
    (['service_prefix "" { policy = "deny" }', 'service "web" { policy = "read" }'], "service", "api", R,
     False, False),
    (['service_prefix "a" { policy = "deny" }', 'service_prefix "ab" { policy = "write" }'], "service", "abc", W,
     True, True),
    # the same name twice in one policy merges the same way
    (['service "web" { policy = "write" }\nservice "web" { policy = "deny" }'], "service", "web", R, False, False),
    # nodes are their own resource
    (['node_prefix "" { policy = "read" }'], "node", "n1", R, True, True),
    (['node_prefix "" { policy = "read" }'], "node", "n1", W, False, False),
    (['node "n1" { policy = "write" }\nnode_prefix "" { policy = "deny" }'], "node", "n1", W, True, True),
    (['node "n1" { policy = "write" }\nnode_prefix "" { policy = "deny" }'], "node", "n2", R, False, False),
    (['service_prefix "" { policy = "write" }'], "node", "n1", R, False, True),
    (['node_prefix "" { policy = "write" }'], "service", "web", R, False, True),
    # no rule at all: the default policy decides
    (["# nothing"], "service", "web", W, False, True),
    (["# nothing"], "node", "n1", R, False, True),
    # the JSON form means the same
    (['{"service_prefix": {"": {"policy": "read"}}, "service": {"db": {"policy": "deny"}}}'], "service", "db", R,
     False, False),
    (['{"service_prefix": {"": {"policy": "read"}}, "service": {"db": {"policy": "deny"}}}'], "service", "x", R,
     True, True),
]  # fmt: skip


@pytest.mark.parametrize("default", ["deny", "allow"])
@pytest.mark.parametrize(("policies", "resource", "name", "level", "if_deny", "if_allow"), MATRIX)
async def test_named_rules_decide_as_consul(
    tmp_path: Path,
    default: str,
    policies: list[str],
    resource: str,
    name: str,
    level: Level,
    if_deny: bool,
    if_allow: bool,
) -> None:
    """Each case answers the same through `allowed_named` and `require_named` (with Consul's text on `name`)."""
    expected = if_deny if default == "deny" else if_allow
    async for acl in _acl_cluster(tmp_path, default):
        caller, accessor = await _caller(acl, *policies)
        assert await caller.allowed_named(resource, name, level) is expected
        if expected:
            await caller.require_named(resource, name, level)
        else:
            with pytest.raises(PermissionDeniedError) as denied:
                await caller.require_named(resource, name, level)
            assert str(denied.value) == (
                f"Permission denied: token with AccessorID '{accessor}' lacks permission '{resource}:{level}' "
                f'on "{name}"'
            )


async def test_the_management_token_may_do_anything(deny: Acl) -> None:
    caller = deny.runtime.acl.caller(MANAGEMENT_SECRET, "127.0.0.1")
    for resource in ("service", "node"):
        assert await caller.allowed_named(resource, "anything", W)
        await caller.require_named(resource, "anything", W)
    await caller.require("mesh", W)
    await caller.require_imported_read()


async def test_anonymous_is_named_by_its_accessor(deny: Acl) -> None:
    """No token is the anonymous token; its denial names its AccessorID as every other denial does (SPEC §8)."""
    caller = deny.runtime.acl.caller(None, "127.0.0.1")
    with pytest.raises(PermissionDeniedError) as denied:
        await caller.require_named("service", "web", R)
    assert str(denied.value) == (
        f"Permission denied: token with AccessorID '{ANONYMOUS}' lacks permission 'service:read' on \"web\""
    )


async def test_the_anonymous_tokens_policies_count(deny: Acl) -> None:
    """Operators may link policies to the anonymous token, as in Consul."""
    await deny.policy("open-read", 'service_prefix "" { policy = "read" }')
    await deny.management("PUT", f"/v1/acl/token/{ANONYMOUS}", {"Policies": [{"Name": "open-read"}]})
    caller = deny.runtime.acl.caller(None, "127.0.0.1")
    assert await caller.allowed_named("service", "web", R)
    assert not await caller.allowed_named("service", "web", W)


async def test_unknown_and_expired_tokens_are_acl_not_found(deny: Acl) -> None:
    """Every check, filtering included, refuses a secret that names no live token with `ACL not found`."""
    await deny.policy("all", 'service_prefix "" { policy = "write" }\nnode_prefix "" { policy = "write" }')
    expiring = await deny.token("all", ExpirationTTL="10s")
    unknown = deny.runtime.acl.caller("f3a7a3a9-0000-4000-8000-000000000000", "127.0.0.1")
    expired = deny.runtime.acl.caller(expiring["SecretID"], "127.0.0.1")
    assert await expired.allowed_named("service", "web", W)
    deny.clock.now += timedelta(seconds=10)
    for caller in (unknown, expired):
        for check in (
            caller.allowed_named("service", "web", R),
            caller.require_named("node", "n1", R),
            caller.require_imported_read(),
        ):
            with pytest.raises(PermissionDeniedError, match=r"^ACL not found$"):
                await check


@pytest.mark.parametrize(
    ("policies", "if_deny", "if_allow"),
    [
        (['operator = "write"'], True, True),
        (['operator = "read"'], False, False),
        (['mesh = "write"'], True, True),
        (['mesh = "read"\noperator = "write"'], False, False),  # mesh's own rule first
        (['operator = "deny"', 'mesh = "write"'], True, True),  # merged, then the fallback: mesh has a rule
        (['mesh = "write"', 'mesh = "deny"'], False, False),
        (['peering = "write"'], False, True),
        (["# nothing"], False, True),
    ],
)
async def test_mesh_falls_back_to_operator(tmp_path: Path, policies: list[str], if_deny: bool, if_allow: bool) -> None:
    """`mesh:write` as Consul decides it: the merged `mesh` rule, else the merged `operator` rule, else the
    default policy."""
    for default, expected in (("deny", if_deny), ("allow", if_allow)):
        async for acl in _acl_cluster(tmp_path / default, default):
            caller, accessor = await _caller(acl, *policies)
            if expected:
                await caller.require("mesh", W)
            else:
                with pytest.raises(PermissionDeniedError) as denied:
                    await caller.require("mesh", W)
                assert str(denied.value) == (
                    f"Permission denied: token with AccessorID '{accessor}' lacks permission 'mesh:write'"
                )


IMPORTED = [
    # service:write on any service
    (['service "web" { policy = "write" }'], True, True),
    (['service_prefix "a" { policy = "write" }'], True, True),
    (['service_prefix "" { policy = "write" }'], True, True),
    (['service_prefix "" { policy = "deny" }\nservice "web" { policy = "write" }'], True, True),
    (['node_prefix "" { policy = "deny" }', 'service "web" { policy = "write" }'], True, True),
    # or read on every service and every node
    (['service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }'], True, True),
    (['service_prefix "" { policy = "read" }', 'node_prefix "" { policy = "write" }'], True, True),
    (['service_prefix "" { policy = "read" }'], False, True),  # nodes: the default decides
    (['node_prefix "" { policy = "read" }'], False, True),
    # a rule that does not grant read refuses "every", default or not (Consul's ReadAll)
    (['service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\nservice "x" { policy = "deny" }'],
     False, False),
    (['service "x" { policy = "deny" }'], False, False),
    (['service "web" { policy = "read" }'], False, True),  # read on one service is not read on every one
    (['node_prefix "" { policy = "deny" }'], False, False),
    # nothing about services or nodes: the default policy
    (['peering = "write"'], False, True),
]  # fmt: skip


@pytest.mark.parametrize("default", ["deny", "allow"])
@pytest.mark.parametrize(("policies", "if_deny", "if_allow"), IMPORTED)
async def test_reading_imported_rows(
    tmp_path: Path, default: str, policies: list[str], if_deny: bool, if_allow: bool
) -> None:
    """`?peer=` reads: `service:write` on any service, or read on every service and node (Consul's ServiceWriteAny,
    ServiceReadAll, NodeReadAll), else 403 with a message naming what would do."""
    expected = if_deny if default == "deny" else if_allow
    async for acl in _acl_cluster(tmp_path, default):
        caller, accessor = await _caller(acl, *policies)
        if expected:
            await caller.require_imported_read()
        else:
            with pytest.raises(PermissionDeniedError) as denied:
                await caller.require_imported_read()
            assert str(denied.value) == (
                f"Permission denied: token with AccessorID '{accessor}' lacks permission 'service:write' on any service"
            )


async def test_anonymous_with_default_allow_reads_imported_rows(allow: Acl) -> None:
    await allow.runtime.acl.caller(None, "127.0.0.1").require_imported_read()
    with pytest.raises(PermissionDeniedError, match=f"AccessorID '{ANONYMOUS}'"):
        await allow.runtime.acl.caller(None, "127.0.0.1").require("acl", R)  # acl is never granted by default
