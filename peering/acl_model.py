"""ACL concepts (SPEC §8): policies, tokens, and the decision whether a token may do something.

Pure and stdlib only. A policy's rules (`Rules`) give a level (`read`, `write`, `deny`) to whole
resources (`peering`, `operator`, `acl`, …) and to named things (`service "web"`, `node_prefix ""`, …);
a token carries policies, or is a management token that may do anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
_PRECEDENCE = {Level.READ: 0, Level.LIST: 1, Level.WRITE: 2, Level.DENY: 3}  # Consul's takesPrecedenceOver
_PREFIX = "_prefix"


def _enforce(rule: Level, need: Level) -> bool:
    """Whether a rule's level grants `need`: write grants everything, list grants read too, deny nothing."""
    if rule is Level.WRITE:
        return True
    if rule is Level.LIST:
        return need in (Level.READ, Level.LIST)
    return rule is Level.READ and need is Level.READ


def _merge(table: dict[str, Level], key: str, level: Level) -> None:
    current = table.get(key)
    if current is None or _PRECEDENCE[level] > _PRECEDENCE[current]:
        table[key] = level


class _Named:
    """The merged rules of one named resource (`service`, `node`, …): exact names and prefixes."""

    __slots__ = ("exact", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, Level] = {}
        self.prefixes: dict[str, Level] = {}
        self.lengths: tuple[int, ...] = ()  # the prefixes' lengths, longest first

    def rule(self, name: str) -> Level | None:
        """The level that applies to `name`: its exact rule, else its longest matching prefix rule."""
        exact = self.exact.get(name)
        if exact is not None:
            return exact
        size = len(name)
        for length in self.lengths:  # one dict lookup per distinct prefix length, not per rule
            if length <= size and (level := self.prefixes.get(name[:length])) is not None:
                return level
        return None

    def levels(self) -> list[Level]:
        return [*self.exact.values(), *self.prefixes.values()]


class Grants:
    """What a token's policies grant, merged as Consul merges them (`acl/policy_merger.go`), then decided as
    its `policy_authorizer.go` decides.

    Merging: for each whole resource, and for each exact name and each prefix of a named resource, the
    strongest level of all the policies counts, in the order deny > write > list > read (so a `deny`
    wins over a grant at the same specificity). Deciding: an exact rule for a name beats every prefix
    rule, the longest matching prefix beats shorter ones; a rule that applies decides (a `read` rule
    refuses `write`: the default policy is not asked); only where no rule applies does the default
    policy decide (`decide…` then answer None). `peering` and `mesh` without a rule of their own take
    the merged `operator` rule.
    """

    __slots__ = ("_levels", "_named")

    def __init__(self, policies: Iterable[Rules]) -> None:
        self._levels: dict[str, Level] = {}
        self._named: dict[str, _Named] = {}
        for rules in policies:
            for resource, level in rules.levels.items():
                _merge(self._levels, resource, level)
            for rule in rules.named:
                prefix = rule.resource.endswith(_PREFIX)
                named = self._named.setdefault(rule.resource.removesuffix(_PREFIX), _Named())
                _merge(named.prefixes if prefix else named.exact, rule.name, rule.policy)
        for named in self._named.values():
            named.lengths = tuple(sorted({len(p) for p in named.prefixes}, reverse=True))

    def decide(self, resource: str, need: Level) -> bool | None:
        """A whole resource (`peering`, `mesh`, `operator`, `acl`): granted, refused, or None (no rule)."""
        level = self._levels.get(resource)
        if level is None and (fallback := _FALLBACK.get(resource)) is not None:
            level = self._levels.get(fallback)
        return None if level is None else _enforce(level, need)

    def decide_named(self, resource: str, name: str, need: Level) -> bool | None:
        """The thing `name` of a named resource (`service`, `node`): granted, refused, or None (no rule)."""
        named = self._named.get(resource)
        level = named.rule(name) if named is not None else None
        return None if level is None else _enforce(level, need)

    def decide_any(self, resource: str, need: Level) -> bool | None:
        """Consul's `…WriteAny`: granted if any rule (exact or prefix) grants `need`; else refused when a
        catch-all prefix rule (`""`) exists, None when none does."""
        named = self._named.get(resource)
        if named is None:
            return None
        if any(_enforce(level, need) for level in named.levels()):
            return True
        return False if "" in named.prefixes else None

    def decide_all(self, resource: str, need: Level) -> bool | None:
        """Consul's `…ReadAll`: refused if any rule (exact or prefix) does not grant `need`; else granted when a
        catch-all prefix rule (`""`) exists, None when none does."""
        named = self._named.get(resource)
        if named is None:
            return None
        if not all(_enforce(level, need) for level in named.levels()):
            return False
        return True if "" in named.prefixes else None


@dataclass(frozen=True)
class Authority:
    """A resolved caller: its token, what its policies grant (None: a management token, which may do
    anything) and the cluster's default policy, for what no rule decides."""

    token: AclToken
    grants: Grants | None
    default_allow: bool
    # whole-resource answers already given (a few resources by four levels): a check of every request costs
    # one lookup; an Authority is dropped with its cache entry whenever its token or a policy changes
    _allowed: dict[tuple[str, Level], bool] = field(default_factory=dict, compare=False, repr=False)

    def _default(self, decision: bool | None) -> bool:
        return self.default_allow if decision is None else decision

    def allows(self, resource: str, need: Level) -> bool:
        """A whole resource; `acl` is never granted by the default policy (Consul's `allowManage`)."""
        answer = self._allowed.get((resource, need))
        if answer is None:
            if self.grants is None:
                answer = True
            else:
                decision = self.grants.decide(resource, need)
                answer = decision if decision is not None else self.default_allow and resource != "acl"
            self._allowed[(resource, need)] = answer
        return answer

    def allows_named(self, resource: str, name: str, need: Level) -> bool:
        """The thing `name` of a named resource."""
        return self.grants is None or self._default(self.grants.decide_named(resource, name, need))

    def allows_imported_read(self) -> bool:
        """Rows imported from a peer (Consul's `ServiceRead`/`NodeRead` with a peer in the context):
        `service:write` on any service, or else read on every service and every node."""
        if self.grants is None or self.grants.decide_any("service", Level.WRITE):
            return True
        services = self._default(self.grants.decide_all("service", Level.READ))
        return services and self._default(self.grants.decide_all("node", Level.READ))


def allows(policies: Sequence[Rules], resource: str, need: Level, default_allow: bool) -> bool:
    """Whether rules from these policies grant `need` on `resource` (see `Grants`): an explicit `deny` in
    any policy wins, otherwise the highest grant counts; with no rule at all the default policy decides,
    except for `acl`, which is never granted by default."""
    return Authority(AclToken(""), Grants(policies), default_allow).allows(resource, need)


class Access:
    """What a caller may do. The base class allows everything (ACLs off); `acl.Caller` checks rules."""

    enforced = False  # whether any check can refuse (False: every check passes without reading anything)

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
