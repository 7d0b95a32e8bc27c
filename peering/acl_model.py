"""ACL concepts (SPEC §8): policies, tokens, and the decision whether a token may do something.

Pure and stdlib only. A policy's rules map a resource (`peering`, `operator`, `acl`, …) to a level
(`read`, `write`, `deny`); a token carries policies, or is a management token that may do anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"


class Level(StrEnum):
    """How much a rule grants."""

    DENY = "deny"
    READ = "read"
    WRITE = "write"


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


def _grant(grants: Mapping[str, Level], resource: str) -> Level | None:
    """A policy's level for a resource; `peering` falls back to `operator` (SPEC §8)."""
    if resource in grants:
        return grants[resource]
    if resource == "peering":
        return grants.get("operator")
    return None


def allows(policies: Sequence[Mapping[str, Level]], resource: str, need: Level, default_allow: bool) -> bool:
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


ALLOW_ALL = Access()
