"""ACL concepts (SPEC §8): policies, tokens, and the decision whether a token may do something.

Pure and stdlib only. A policy's rules (`Rules`) give a level (`read`, `write`, `deny`) to whole
resources (`peering`, `operator`, `acl`, …) and to named things (`service "web"`, `node_prefix ""`, …);
a token carries policies, or is a management token that may do anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"


class Level(StrEnum):
    """How much a rule grants (`list` only on `key` and `key_prefix` rules, as in Consul)."""

    DENY = "deny"
    READ = "read"
    WRITE = "write"
    LIST = "list"


@dataclass(frozen=True)
class NamedRule:
    """A rule on named things: `service "web" { policy = "read" }`, `node_prefix "" { … }`, …

    `resource` is the rule's keyword (`service`, `service_prefix`, `key_prefix`, …); a `_prefix`
    rule's `name` is a prefix (`""` matches every name).
    """

    resource: str
    name: str
    policy: Level
    intentions: Level | None = None


@dataclass(frozen=True)
class ScopeRule:
    """An Enterprise-shaped `namespace "n" { … }` or `partition "p" { … }` block (kept, not enforced)."""

    resource: str
    name: str
    rules: Rules
    policy: Level | None = None
    intentions: Level | None = None


@dataclass(frozen=True)
class Rules:
    """A policy's rules as parsed: levels of whole resources, then rules on named things, in order."""

    levels: Mapping[str, Level] = field(default_factory=dict)
    named: tuple[NamedRule, ...] = ()
    scopes: tuple[ScopeRule, ...] = ()


DENY_ALL = Rules(dict.fromkeys(("acl", "keyring", "mesh", "operator", "peering"), Level.DENY))
"""What a stored policy whose rules no longer parse grants: an explicit deny, so it fails closed."""


@dataclass(frozen=True)
class Policy:
    """A named set of rules."""

    id: str
    name: str
    description: str
    rules: str  # as written (HCL or JSON); parsed by the ACL service
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class PolicyLink:
    """A token's reference to a policy."""

    id: str
    name: str


@dataclass(frozen=True)
class AclToken:
    """An ACL token; its secret is never part of it (only a hash is stored)."""

    accessor_id: str
    description: str = ""
    policies: tuple[PolicyLink, ...] = ()
    management: bool = False
    expiration_time: datetime | None = None
    allowed_cidrs: tuple[str, ...] = ()
    create_time: datetime | None = None
    create_index: int = 0
    modify_index: int = 0
    local: bool = False
    secret_id: str | None = field(default=None, repr=False)  # set only on the answer that creates it

    def expired(self, now: datetime) -> bool:
        """True once the expiration time has passed."""
        return self.expiration_time is not None and now >= self.expiration_time


_FALLBACK = {"peering": "operator", "mesh": "operator"}  # Consul's policy_authorizer does the same


def _grant(rules: Rules, resource: str) -> Level | None:
    """A policy's level for a resource; `peering` and `mesh` fall back to `operator` (SPEC §8, §14)."""
    levels = rules.levels
    if resource in levels:
        return levels[resource]
    fallback = _FALLBACK.get(resource)
    return levels.get(fallback) if fallback is not None else None


def allows(policies: Sequence[Rules], resource: str, need: Level, default_allow: bool) -> bool:
    """Whether rules from these policies grant `need` on `resource`.

    An explicit `deny` in any policy wins; otherwise the highest grant counts; with no rule at all
    the default policy decides, except for `acl`, which is never granted by default.
    """
    levels = [level for grants in policies if (level := _grant(grants, resource)) is not None]
    if Level.DENY in levels:
        return False
    if not levels:
        return default_allow and resource != "acl"
    best = Level.WRITE if Level.WRITE in levels else Level.READ
    return need is Level.READ or best is Level.WRITE


class Access:
    """What a caller may do. The base class allows everything (ACLs off); `acl.Caller` checks rules."""

    async def require(self, resource: str, level: Level) -> None:
        """Return if the caller may `level` the `resource`.

        Raises:
            PermissionDeniedError: it may not (ACLs on), or its token is unknown or expired.
        """

    async def require_named(self, resource: str, name: str, level: Level) -> None:
        """Return if the caller may `level` the thing `name` of a named resource (`service`, `node`), by its
        exact and prefix rules (SPEC §14).

        Raises:
            PermissionDeniedError: it may not, or its token is unknown or expired.
        """

    async def allowed_named(self, resource: str, name: str, level: Level) -> bool:
        """Whether the caller may `level` the thing `name` (for filtering results; SPEC §14).

        Raises:
            PermissionDeniedError: its token is unknown or expired (`ACL not found`).
        """
        return True

    async def require_imported_read(self) -> None:
        """Return if the caller may read rows imported from peers (`?peer=`): `service:write` on any service,
        or read on every service and node (`service_prefix ""` and `node_prefix ""`) (SPEC §14).

        Raises:
            PermissionDeniedError: it may not, or its token is unknown or expired.
        """


ALLOW_ALL = Access()
