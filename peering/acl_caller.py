"""A request's access with ACLs on (SPEC §8, §14): its token resolved, its permissions decided, Consul's 403 texts.

The wording is Consul's `acl.PermissionDeniedError` (`acl/errors.go`): `Permission denied: token with
AccessorID '<id>' lacks permission '<resource>:<level>'`, followed by ` on "<name>"` for a named thing.
"""

from __future__ import annotations

from typing import Protocol

from peering.acl_model import Access, Authority, Level
from peering.errors import PermissionDeniedError


class Resolver(Protocol):
    """What a caller needs of the ACL service (`acl.AclService` has it)."""

    async def authority(self, secret: str | None, source: str | None) -> Authority:
        """The caller a secret names, with what it may do.

        Raises:
            PermissionDeniedError: `ACL not found` (unknown, deleted or expired secret); a source outside the
                token's AllowedCIDRs.
        """

    def held(self, secret: str | None, source: str | None) -> Authority | None:
        """`authority`'s answer if memory gives it at once and it refuses nothing; None: ask `authority`."""


def denied(authority: Authority, resource: str, level: Level, name: str | None = None) -> PermissionDeniedError:
    """Consul's 403 for a permission the caller lacks (on the thing `name`, for a named resource)."""
    text = f"Permission denied: token with AccessorID '{authority.token.accessor_id}' lacks permission '{resource}:{level}'"
    return PermissionDeniedError(text if name is None else f'{text} on "{name}"')


class Caller(Access):
    """A request's access with ACLs on: the token is resolved whenever a permission is needed (from memory,
    so a token deleted or expired while a long request runs stops working at its next check). Memory is
    asked first without an await (`held`: the common case costs no coroutine of the resolver's)."""

    enforced = True

    def __init__(self, resolver: Resolver, secret: str | None, source: str | None) -> None:
        self._resolver = resolver
        self._secret = secret
        self._source = source

    def _held(self) -> Authority | None:
        return self._resolver.held(self._secret, self._source)

    async def _resolved(self) -> Authority:
        return await self._resolver.authority(self._secret, self._source)

    async def require(self, resource: str, level: Level) -> None:
        authority = self._held() or await self._resolved()
        if not authority.allows(resource, level):
            raise denied(authority, resource, level)

    async def require_named(self, resource: str, name: str, level: Level) -> None:
        authority = self._held() or await self._resolved()
        if not authority.allows_named(resource, name, level):
            raise denied(authority, resource, level, name)

    async def allowed_named(self, resource: str, name: str, level: Level) -> bool:
        authority = self._held() or await self._resolved()
        return authority.allows_named(resource, name, level)

    async def require_imported_read(self) -> None:
        authority = self._held() or await self._resolved()
        if not authority.allows_imported_read():
            # Consul has no text of its own here (it checks per name, with the peer in the context)
            raise PermissionDeniedError(
                f"Permission denied: token with AccessorID '{authority.token.accessor_id}' lacks permission "
                "'service:write' on any service"
            )
