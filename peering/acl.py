"""ACL service (SPEC §8): resolves callers' tokens, decides permissions, manages policies and tokens.

Secrets are shown once (in the answer that creates them) and stored only as SHA-256 hashes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from peering import acl_input
from peering.acl_cache import CachedAcl, Feed
from peering.acl_caller import Caller
from peering.acl_input import (
    PolicyRef,
    TokenSpec,
    check_text,
    check_token_spec,
    check_uuid,
    inside,
    shown,
    token_expiry,
)
from peering.acl_model import (
    ANONYMOUS_ACCESSOR,
    DENY_ALL,
    Access,
    AclToken,
    Authority,
    Level,
    Policy,
    PolicyLink,
    Rules,
)
from peering.acl_rules import check_rules_text, parse_rules
from peering.cluster import hash_secret, new_uuid, utcnow
from peering.errors import (
    AclNotFoundError,
    ConstraintError,
    InvalidRequestError,
    NameTakenError,
    PeeringError,
    PermissionDeniedError,
    RowMissingError,
    SecretAlreadyUsedError,
)
from peering.notifier import Notifier
from peering.store.base import AclStore

log = logging.getLogger("peering.acl")

MANAGEMENT = PolicyLink("00000000-0000-0000-0000-000000000001", "global-management")
MANAGEMENT_RULES = 'acl = "write"\noperator = "write"\npeering = "write"\n'
_PARSED_CACHE = 1024  # policies whose parsed rules are kept (by ID, with the text they were parsed from)
_ON_LOOP_CHARS = 4096  # smaller rules parse in well under a millisecond: not worth a thread hop
ANONYMOUS = AclToken(ANONYMOUS_ACCESSOR, description="Anonymous Token")


class AclService:
    """ACL state of one cluster. Given the change feed (`feed`), resolutions come from memory (`acl_cache`);
    `notifier` tells other replicas of this one's ACL writes at once."""

    def __init__(
        self,
        store: AclStore,
        *,
        enabled: bool,
        default_policy: str,
        now: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_uuid,
        feed: Feed | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        allow = default_policy == "allow"
        self._store = CachedAcl(store, self._parsed, default_allow=allow, feed=feed, notifier=notifier)
        self.enabled = enabled
        self.default_policy = default_policy
        self._now = now
        self._new_id = new_id
        self._parsed_rules: OrderedDict[str, tuple[str, Rules]] = OrderedDict()

    # -- resolution and decisions

    def caller(self, secret: str | None, source: str | None) -> Access:
        """The access of a request carrying `secret` from `source` (everything when ACLs are off)."""
        return Caller(self, secret, source) if self.enabled else Access()

    async def stop_polling(self) -> None:
        """Cancel the cache's poll of the change feed in progress, if any (before the database closes)."""
        await self._store.stop_polling()

    async def resolve(self, secret: str | None, source: str | None) -> AclToken:
        """The token a secret names (anonymous when none). Raises PermissionDeniedError as `authority`."""
        return (await self.authority(secret, source)).token

    def held(self, secret: str | None, source: str | None) -> Authority | None:
        """`authority`'s answer if memory gives it at once and it refuses nothing; None: ask `authority`."""
        found = self._store.held(hash_secret(secret) if secret else None)
        if found is None or not secret:
            return found
        return None if self._refused(found, source) else found

    def stamp(self) -> int | None:
        """Moves whenever any caller's access may change (on any replica); None: memory alone cannot say."""
        return self._store.stamp() if self.enabled else 0

    async def authority(self, secret: str | None, source: str | None) -> Authority:
        """The caller a secret names (anonymous when none), with what its policies grant (`acl_caller.Resolver`);
        its expiry and address limits are checked now, at every use.

        Raises:
            PermissionDeniedError: `ACL not found` for an unknown or expired secret; a source outside the
                token's AllowedCIDRs.
        """
        found = await self._store.resolve(hash_secret(secret) if secret else None)
        if not secret:
            return found or Authority(ANONYMOUS, await self._store.grants([]), self.default_policy == "allow")
        if found is None:
            raise PermissionDeniedError("ACL not found")
        refused = self._refused(found, source)
        if refused is not None:
            raise refused
        return found

    def _refused(self, found: Authority, source: str | None) -> PermissionDeniedError | None:
        """Why a found token may not be used now (expired; `source` outside its AllowedCIDRs), or None."""
        token = found.token
        if token.expiration_time is not None and token.expired(self._now()):
            return PermissionDeniedError("ACL not found")
        if token.allowed_cidrs and not inside(source, token.allowed_cidrs):
            return PermissionDeniedError(
                f"Permission denied: token with AccessorID '{token.accessor_id}' may not be used from {source}"
            )
        return None

    async def _parsed(self, policy: Policy) -> Rules:
        cached = self._parsed_rules.get(policy.id)
        if cached is not None and cached[0] == policy.rules:
            self._parsed_rules.move_to_end(policy.id)
            return cached[1]
        try:
            rules = await _parse(policy.rules)
        except InvalidRequestError:
            # stored before today's parser, or by hand: fail closed rather than answer 400 to its holders
            log.warning("stored ACL policy does not parse; it denies everything", extra={"policy_id": policy.id})
            rules = DENY_ALL
        self._remember(policy.id, policy.rules, rules)
        return rules

    def _remember(self, policy_id: str, text: str, rules: Rules) -> None:
        self._parsed_rules[policy_id] = (text, rules)
        self._parsed_rules.move_to_end(policy_id)
        if len(self._parsed_rules) > _PARSED_CACHE:
            self._parsed_rules.popitem(last=False)

    # -- bootstrap and the initial management token

    async def bootstrap(self) -> AclToken:
        """Create the first management token (once).

        Raises:
            PermissionDeniedError: `ACL bootstrap no longer allowed`.
        """
        secret = new_uuid()
        token = AclToken(
            self._new_id(), "Bootstrap Token (Global Management)", (MANAGEMENT,), True, create_time=self._now()
        )
        saved = await self._store.bootstrap(token, hash_secret(secret))
        if saved is None:
            raise PermissionDeniedError("ACL bootstrap no longer allowed")
        log.info("ACL bootstrapped", extra={"accessor_id": saved.accessor_id})
        return replace(saved, secret_id=secret)

    async def start(self, initial_management_secret: str | None = None) -> None:
        """Create what ACLs need on first start: the builtin `global-management` policy, the anonymous token
        and, when configured, the initial management token (which, as in Consul, ends the chance to bootstrap)."""
        if await self._store.policy(id=MANAGEMENT.id) is None:
            await self._store.save_policy(
                Policy(MANAGEMENT.id, MANAGEMENT.name, "Builtin Policy that grants unlimited access", MANAGEMENT_RULES)
            )
        if await self._store.token(ANONYMOUS_ACCESSOR) is None:
            # a row of its own so that operators can link policies to it, as in Consul (`anonymous` is its secret)
            await self._store.save_token(replace(ANONYMOUS, create_time=self._now()), hash_secret("anonymous"))
        if initial_management_secret is None:
            return
        secret_hash = hash_secret(initial_management_secret)
        if await self._store.token_by_secret(secret_hash) is None:
            token = AclToken(self._new_id(), "Initial Management Token", (MANAGEMENT,), True, create_time=self._now())
            if await self._store.bootstrap(token, secret_hash) is None:
                await self._store.save_token(token, secret_hash)
            log.info("initial management token created", extra={"accessor_id": token.accessor_id})

    # -- policies

    async def save_policy(
        self, access: Access, policy_id: str | None, name: str, description: str, rules: str
    ) -> Policy:
        """Create (no ID) or update a policy. What is cheap is checked first (name, sizes, characters),
        then the caller's permission, and only then are the rules parsed (SPEC §3: nothing costly for
        a caller who may not write).

        Raises:
            InvalidRequestError: missing or bad name, oversized or unparsable rules, duplicate name.
            PermissionDeniedError: the caller lacks `acl:write`.
            AclNotFoundError: updating a policy that does not exist.
        """
        acl_input.check_policy_name(name)
        check_text("Invalid Policy: Description", description, acl_input.MAX_DESCRIPTION_BYTES)
        check_rules_text(rules)
        if policy_id is not None:
            check_text("Invalid Policy: ID", policy_id, acl_input.MAX_REFERENCE_CHARS)
        await access.require("acl", Level.WRITE)
        parsed = await _parse(rules)
        if policy_id is not None:
            current = await self._store.policy(id=policy_id)
            if current is None:
                raise AclNotFoundError("policy")
            if policy_id == MANAGEMENT.id and rules != current.rules:
                raise InvalidRequestError(
                    "Changing the Rules for the builtin global-management policy is not permitted"
                )
        try:
            policy = Policy(policy_id or self._new_id(), name, description, rules)
            saved = await self._store.save_policy(policy, update=policy_id is not None)
        except ConstraintError as exc:
            raise _worded(exc) from exc
        self._remember(saved.id, rules, parsed)
        return saved

    async def read_policy(self, access: Access, *, id: str | None = None, name: str | None = None) -> Policy:
        """One policy by ID or name.

        Raises:
            PermissionDeniedError: the caller lacks `acl:read`.
            AclNotFoundError: no such policy.
        """
        await access.require("acl", Level.READ)
        policy = await self._store.policy(id=id, name=name)
        if policy is None:
            raise AclNotFoundError("policy")
        return policy

    async def list_policies(self, access: Access) -> list[Policy]:
        """Every policy. Raises PermissionDeniedError without `acl:read`."""
        await access.require("acl", Level.READ)
        return await self._store.policies()

    async def delete_policy(self, access: Access, policy_id: str) -> None:
        """Delete a policy. Raises PermissionDeniedError without `acl:write`, AclNotFoundError if unknown."""
        await access.require("acl", Level.WRITE)
        if policy_id == MANAGEMENT.id:
            raise InvalidRequestError("Delete operation not permitted on the builtin global-management policy")
        if not await self._store.delete_policy(policy_id):
            raise AclNotFoundError("policy")
        self._parsed_rules.pop(policy_id, None)

    # -- tokens

    async def _links(self, refs: Sequence[PolicyRef]) -> tuple[PolicyLink, ...]:
        links: list[PolicyLink] = []
        for ref in refs:
            policy = await self._store.policy(id=ref.id) if ref.id else await self._store.policy(name=ref.name)
            if policy is None:
                raise InvalidRequestError(
                    f"Invalid Policy: no policy with {'ID' if ref.id else 'Name'} {shown(ref.id or ref.name)}"
                )
            links.append(PolicyLink(policy.id, policy.name))
        return tuple(links)

    async def create_token(self, access: Access, spec: TokenSpec) -> AclToken:
        """Create a token; its SecretID is in the answer and nowhere else, ever.

        Empty `AccessorID` and `SecretID` mean "generate one", as in Consul (its Go client always sends them).

        Raises:
            InvalidRequestError: unknown policy, bad expiry or CIDR, secret already used.
            PermissionDeniedError: the caller lacks `acl:write`.
        """
        check_token_spec(spec)
        for label, value in (("AccessorID", spec.accessor_id), ("SecretID", spec.secret_id)):
            if value:
                check_uuid(label, value)
        if spec.accessor_id in (ANONYMOUS_ACCESSOR, MANAGEMENT.id):
            raise InvalidRequestError("Invalid Token: AccessorID is reserved")
        expiry = token_expiry(spec, self._now)
        await access.require("acl", Level.WRITE)
        secret = spec.secret_id or new_uuid()
        token = AclToken(
            accessor_id=spec.accessor_id or self._new_id(),
            description=spec.description,
            policies=await self._links(spec.policies),
            expiration_time=expiry,
            allowed_cidrs=tuple(spec.allowed_cidrs),
            create_time=self._now(),
            local=spec.local,
        )
        try:
            saved = await self._store.save_token(token, hash_secret(secret))
        except ConstraintError as exc:
            raise _worded(exc) from exc
        return replace(saved, secret_id=secret)

    async def update_token(self, access: Access, accessor_id: str, spec: TokenSpec) -> AclToken:
        """Change a token's description, policies and address limits (its secret never changes).

        As in Consul, the body may repeat what cannot change (its AccessorID, SecretID, ExpirationTime, as
        Go's client sends back a token it read); only a different value is refused. No SecretID, or an
        empty one, keeps the secret.

        Raises:
            InvalidRequestError, PermissionDeniedError: as `create_token`; AclNotFoundError if unknown.
        """
        check_token_spec(spec)
        check_text("Invalid Token: AccessorID", accessor_id, acl_input.MAX_REFERENCE_CHARS)
        if spec.accessor_id and spec.accessor_id != accessor_id:
            raise InvalidRequestError("Token Accessor ID in URL and payload do not match")
        if spec.expiration_ttl is not None:
            raise InvalidRequestError("Cannot change expiration time")
        await access.require("acl", Level.WRITE)
        current = await self._store.token(accessor_id)
        if current is None:
            raise AclNotFoundError("token")
        if spec.expiration_time is not None and spec.expiration_time != current.expiration_time:
            raise InvalidRequestError("Cannot change expiration time")
        if spec.secret_id:
            holder = await self._store.token_by_secret(hash_secret(spec.secret_id))
            if holder is None or holder.accessor_id != accessor_id:
                raise InvalidRequestError("Cannot change a token's SecretID")
        changed = replace(
            current,
            description=spec.description,
            policies=current.policies if current.management else await self._links(spec.policies),
            allowed_cidrs=tuple(spec.allowed_cidrs),
        )
        try:
            return await self._store.save_token(changed)
        except ConstraintError as exc:
            raise _worded(exc) from exc

    async def read_token(self, access: Access, accessor_id: str) -> AclToken:
        """One token (never its secret). Raises PermissionDeniedError without `acl:read`; AclNotFoundError."""
        await access.require("acl", Level.READ)
        token = await self._store.token(accessor_id)
        if token is None:
            raise AclNotFoundError("token")
        return token

    async def self_token(self, secret: str | None, source: str | None) -> AclToken:
        """The caller's own token. Raises PermissionDeniedError (`ACL not found`) for an unknown secret."""
        if not secret:
            raise PermissionDeniedError("ACL not found")
        return await self.resolve(secret, source)

    async def list_tokens(self, access: Access) -> list[AclToken]:
        """Every token. Raises PermissionDeniedError without `acl:read`."""
        await access.require("acl", Level.READ)
        return await self._store.tokens()

    async def delete_token(self, access: Access, accessor_id: str, secret: str | None = None) -> None:
        """Delete a token: it stops working at once (not the one the request itself carries, `secret`).

        Raises:
            PermissionDeniedError: the caller lacks `acl:write`.
            InvalidRequestError: the request's own token.
            AclNotFoundError: no such token.
        """
        await access.require("acl", Level.WRITE)
        if accessor_id == ANONYMOUS_ACCESSOR:
            raise InvalidRequestError("Delete operation not permitted on the anonymous token")
        if secret:
            own = await self._store.token_by_secret(hash_secret(secret))
            if own is not None and own.accessor_id == accessor_id:
                raise InvalidRequestError("Deletion of the request's authorization token is not permitted")
        if not await self._store.delete_token(accessor_id):
            raise AclNotFoundError("token")


def _worded(exc: ConstraintError) -> PeeringError:
    """Consul's message for a constraint the store reports about ACL rows (it reports facts, not words)."""
    if isinstance(exc, NameTakenError):
        return InvalidRequestError(f'Invalid Policy: A Policy with Name "{exc.name}" already exists')
    if isinstance(exc, SecretAlreadyUsedError):
        which = "AccessorID" if exc.what == "accessor" else "SecretID"
        return InvalidRequestError(f"Invalid Token: {which} is already in use")
    # RowMissingError: the row went while it was being updated (deleted through another request or replica)
    return AclNotFoundError("policy" if isinstance(exc, RowMissingError) and exc.kind == "acl_policy" else "token")


async def _parse(text: str) -> Rules:
    """Parse rules (InvalidRequestError as `parse_rules`); a large text in a thread, so that the event loop
    gets the interpreter back every few milliseconds and heartbeats and reads keep their latency meanwhile."""
    if len(text) <= _ON_LOOP_CHARS:
        return parse_rules(text)
    return await asyncio.to_thread(parse_rules, text)
