"""Dependencies: the services of the running app (from `app.state`) and the caller's access."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from peering.acl import AclService
from peering.acl_model import Access
from peering.api.render import PeeringBytes
from peering.service import PeeringService


class _FirstQueryKey(APIKeyQuery):
    """`?token=` as Consul reads it: the first value when it is given more than once (Go's `Query().Get`;
    Starlette's `query_params.get` gives the last), so a second `token` appended to a URL cannot override it."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        values = request.query_params.getlist(self.model.name)
        return self.check_api_key(values[0] if values else None)


# the scheme keeps its documented name (the class name would be the default)
_QUERY = _FirstQueryKey(
    name="token", scheme_name="APIKeyQuery", auto_error=False, description="ACL token (first choice)."
)
_HEADER = APIKeyHeader(name="X-Consul-Token", auto_error=False, description="ACL token (second choice).")
_BEARER = HTTPBearer(auto_error=False, description="ACL token as `Authorization: Bearer` (third choice).")


async def get_service(request: Request) -> PeeringService:
    """The peering service the composition root put on the app."""
    return cast(PeeringService, request.app.state.service)


async def get_encoded(request: Request) -> PeeringBytes:
    """The app's cache of encoded peerings."""
    return cast(PeeringBytes, request.app.state.encoded)


async def get_acl(request: Request) -> AclService:
    """The ACL service the composition root put on the app."""
    return cast(AclService, request.app.state.acl)


def caller_secret(query: str | None, header: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    """The caller's ACL secret, in Consul's order: `?token=`, `X-Consul-Token`, `Authorization: Bearer`."""
    return query or header or (bearer.credentials if bearer else None)


async def get_secret(
    query: Annotated[str | None, Security(_QUERY)],
    header: Annotated[str | None, Security(_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> str | None:
    """The secret the request carries, if any."""
    return caller_secret(query, header, bearer)


async def get_access(
    request: Request, acl: Annotated[AclService, Depends(get_acl)], secret: Annotated[str | None, Depends(get_secret)]
) -> Access:
    """What the caller may do; checked lazily, after the request has been validated (as Consul does)."""
    return acl.caller(secret, request.client.host if request.client else None)


ServiceDep = Annotated[PeeringService, Depends(get_service)]
EncodedDep = Annotated[PeeringBytes, Depends(get_encoded)]
AclDep = Annotated[AclService, Depends(get_acl)]
AccessDep = Annotated[Access, Depends(get_access)]
SecretDep = Annotated[str | None, Depends(get_secret)]
