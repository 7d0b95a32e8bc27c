"""Consul's ACL endpoints (SPEC §8): bootstrap, policies and tokens under `/v1/acl/`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, model_validator

from peering.acl import MANAGEMENT
from peering.acl_input import (
    MAX_CIDRS,
    MAX_POLICY_LINKS,
    MAX_REFERENCE_CHARS,
    PolicyRef,
    TokenSpec,
    check_text,
    expiration_time,
    expiration_ttl,
)
from peering.acl_model import AclToken, Policy
from peering.api.body import body_openapi, json_body
from peering.api.deps import AccessDep, AclDep, SecretDep, ServiceDep
from peering.api.errors import error_responses
from peering.api.query import SupportedQuery
from peering.api.render import json_response, read_headers, rfc3339
from peering.api.schemas import ApiModel
from peering.errors import AclDisabledError, InvalidRequestError

router = APIRouter(prefix="/v1/acl", tags=["acl"])
_MAX_DATACENTERS = 64


def _counted(data: Any, limits: dict[str, tuple[int, str]]) -> Any:
    """Refuse an over-long list before its items are validated (85,000 policy links fit in a 1 MiB body and
    take pydantic a third of a second). An InvalidRequestError passes through pydantic unchanged."""
    if isinstance(data, dict):
        for name, (limit, message) in limits.items():
            value = data.get(name)
            if isinstance(value, list) and len(value) > limit:
                raise InvalidRequestError(message)
    return data


class _Echoed(ApiModel):
    """Fields Consul's clients send back unchanged; accepted and ignored."""

    create_index: int | None = None
    modify_index: int | None = None
    hash: str | None = None


class PolicyRequest(_Echoed):
    """Body of a policy create or update."""

    id: str | None = Field(default=None, alias="ID")
    name: str | None = None
    description: str | None = None
    rules: str | None = Field(default=None, description='HCL or JSON, e.g. `peering = "read"`; at most 64 KiB.')
    datacenters: list[str] | None = Field(default=None, json_schema_extra={"maxItems": _MAX_DATACENTERS})

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _counted(
            data, {"Datacenters": (_MAX_DATACENTERS, f"Invalid Policy: more than {_MAX_DATACENTERS} Datacenters")}
        )


class PolicyLinkRequest(ApiModel):
    """A link to a policy, by `ID` or by `Name`."""

    id: str | None = Field(default=None, alias="ID")
    name: str | None = None


class TokenRequest(_Echoed):
    """Body of a token create or update."""

    accessor_id: str | None = Field(default=None, alias="AccessorID")
    secret_id: str | None = Field(default=None, alias="SecretID")
    description: str | None = None
    policies: list[PolicyLinkRequest] | None = Field(default=None, json_schema_extra={"maxItems": MAX_POLICY_LINKS})
    local: bool | None = None
    expiration_time: str | None = Field(default=None, description="RFC 3339 time after which the token stops working.")
    # a float is accepted only to be refused with a message saying why (`1e30` is one once decoded)
    expiration_ttl: str | int | float | None = Field(
        default=None,
        alias="ExpirationTTL",
        description="A Go duration such as `1h30m`, or integer nanoseconds (as Go sends a `time.Duration`); "
        "any positive duration up to Go's longest (about 292 years).",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
    )
    allowed_cidrs: list[str] | None = Field(
        default=None,
        alias="AllowedCIDRs",
        description="Source addresses allowed to use it.",
        json_schema_extra={"maxItems": MAX_CIDRS},
    )
    create_time: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _counted(
            data,
            {
                "Policies": (MAX_POLICY_LINKS, f"Invalid Token: more than {MAX_POLICY_LINKS} Policies"),
                "AllowedCIDRs": (MAX_CIDRS, f"Invalid Token: more than {MAX_CIDRS} AllowedCIDRs"),
            },
        )


def policy_json(policy: Policy) -> dict[str, Any]:
    """A policy as Consul shows it."""
    return {
        "ID": policy.id,
        "Name": policy.name,
        "Description": policy.description,
        "Rules": policy.rules,
        "Datacenters": None,
        "CreateIndex": policy.create_index,
        "ModifyIndex": policy.modify_index,
    }


def token_json(token: AclToken) -> dict[str, Any]:
    """A token as Consul shows it; the SecretID only in the answer that created it."""
    body: dict[str, Any] = {"AccessorID": token.accessor_id}
    if token.secret_id is not None:
        body["SecretID"] = token.secret_id
    links = (MANAGEMENT,) if token.management else token.policies
    body["Description"] = token.description
    body["Policies"] = [{"ID": link.id, "Name": link.name} for link in links]
    body["Local"] = token.local
    if token.expiration_time is not None:
        body["ExpirationTime"] = rfc3339(token.expiration_time)
    if token.allowed_cidrs:
        body["AllowedCIDRs"] = list(token.allowed_cidrs)
    body["CreateTime"] = rfc3339(token.create_time)
    body["CreateIndex"] = token.create_index
    body["ModifyIndex"] = token.modify_index
    return body


def _token_spec(body: TokenRequest) -> TokenSpec:
    """The request as the service takes it: `""` and `0` are Go's zero values, meaning "not given"."""
    ttl = body.expiration_ttl
    return TokenSpec(
        description=body.description or "",
        policies=[PolicyRef(link.id or "", link.name or "") for link in body.policies or []],
        expiration_time=expiration_time(body.expiration_time) if body.expiration_time else None,
        expiration_ttl=expiration_ttl(ttl) if ttl is not None and ttl != "" and ttl != 0 else None,
        allowed_cidrs=body.allowed_cidrs or [],
        secret_id=body.secret_id or None,
        accessor_id=body.accessor_id or None,
        local=bool(body.local),
    )


def _policy_fields(body: PolicyRequest, policy_id: str | None = None) -> tuple[str, str, str]:
    """Name, description and rules of a policy request; what the service does not take is checked here."""
    if policy_id is not None and body.id and body.id != policy_id:
        raise InvalidRequestError("Policy ID in URL and request body do not match")
    for datacenter in body.datacenters or []:
        check_text("Invalid Policy: a Datacenters entry", datacenter, MAX_REFERENCE_CHARS)
    return body.name or "", body.description or "", body.rules or ""


async def _get_response(data: object, request: Request, service: ServiceDep) -> Response:
    return json_response(
        data, pretty="pretty" in request.query_params, headers=read_headers(await service.current_index())
    )


def _enabled(acl: AclDep) -> None:
    # a router dependency, so it runs before the body is read: with ACLs off nothing else is done
    if not acl.enabled:
        raise AclDisabledError("ACL support disabled")


router.dependencies.append(Depends(_enabled))
router.dependencies.append(SupportedQuery)  # ?dc= another datacenter, ?filter=: refused as on every route
PolicyBody = Annotated[PolicyRequest, Depends(json_body(PolicyRequest))]
TokenBody = Annotated[TokenRequest, Depends(json_body(TokenRequest))]
_W = error_responses(400, 401, 403, 413)
_R = error_responses(400, 401, 403, 404)
_L = error_responses(400, 401, 403)


@router.put("/bootstrap", operation_id="aclBootstrap", summary="Bootstrap ACLs", responses=_L)
async def bootstrap(acl: AclDep) -> Response:
    """Create the first management token; works once."""
    return json_response(token_json(await acl.bootstrap()), pretty=False)


@router.put(
    "/policy",
    operation_id="aclPolicyCreate",
    summary="Create a policy",
    responses=_W,
    openapi_extra=body_openapi(PolicyRequest),
)
async def create_policy(body: PolicyBody, acl: AclDep, access: AccessDep) -> Response:
    """Create a policy (needs `acl:write`)."""
    policy = await acl.save_policy(access, None, *_policy_fields(body))
    return json_response(policy_json(policy), pretty=False)


@router.put(
    "/policy/{policy_id}",
    operation_id="aclPolicyUpdate",
    summary="Update a policy",
    responses=_W | _R,
    openapi_extra=body_openapi(PolicyRequest),
)
async def update_policy(policy_id: str, body: PolicyBody, acl: AclDep, access: AccessDep) -> Response:
    """Update a policy (needs `acl:write`)."""
    policy = await acl.save_policy(access, policy_id, *_policy_fields(body, policy_id))
    return json_response(policy_json(policy), pretty=False)


@router.get("/policy/name/{name}", operation_id="aclPolicyReadByName", summary="Read a policy by name", responses=_R)
async def read_policy_by_name(
    name: str, request: Request, acl: AclDep, access: AccessDep, service: ServiceDep
) -> Response:
    """Read a policy by name (needs `acl:read`)."""
    return await _get_response(policy_json(await acl.read_policy(access, name=name)), request, service)


@router.get("/policy/{policy_id}", operation_id="aclPolicyRead", summary="Read a policy", responses=_R)
async def read_policy(
    policy_id: str, request: Request, acl: AclDep, access: AccessDep, service: ServiceDep
) -> Response:
    """Read a policy by ID (needs `acl:read`)."""
    return await _get_response(policy_json(await acl.read_policy(access, id=policy_id)), request, service)


@router.delete("/policy/{policy_id}", operation_id="aclPolicyDelete", summary="Delete a policy", responses=_R)
async def delete_policy(policy_id: str, acl: AclDep, access: AccessDep) -> Response:
    """Delete a policy (needs `acl:write`); answers `true`."""
    await acl.delete_policy(access, policy_id)
    return json_response(True, pretty=False)


@router.get("/policies", operation_id="aclPolicyList", summary="List policies", responses=_L)
async def list_policies(request: Request, acl: AclDep, access: AccessDep, service: ServiceDep) -> Response:
    """List policies (needs `acl:read`)."""
    return await _get_response([policy_json(p) for p in await acl.list_policies(access)], request, service)


@router.put(
    "/token",
    operation_id="aclTokenCreate",
    summary="Create a token",
    responses=_W,
    openapi_extra=body_openapi(TokenRequest),
)
async def create_token(body: TokenBody, acl: AclDep, access: AccessDep) -> Response:
    """Create a token (needs `acl:write`). Its SecretID is shown in this answer only."""
    return json_response(token_json(await acl.create_token(access, _token_spec(body))), pretty=False)


@router.get("/token/self", operation_id="aclTokenSelf", summary="Read the caller's token", responses=_R)
async def read_self(request: Request, acl: AclDep, secret: SecretDep, service: ServiceDep) -> Response:
    """The caller's own token."""
    token = await acl.self_token(secret, request.client.host if request.client else None)
    return await _get_response(token_json(token), request, service)


@router.put(
    "/token/{accessor_id}",
    operation_id="aclTokenUpdate",
    summary="Update a token",
    responses=_W | _R,
    openapi_extra=body_openapi(TokenRequest),
)
async def update_token(accessor_id: str, body: TokenBody, acl: AclDep, access: AccessDep) -> Response:
    """Update a token's description, policies and AllowedCIDRs (needs `acl:write`)."""
    return json_response(token_json(await acl.update_token(access, accessor_id, _token_spec(body))), pretty=False)


@router.get("/token/{accessor_id}", operation_id="aclTokenRead", summary="Read a token", responses=_R)
async def read_token(
    accessor_id: str, request: Request, acl: AclDep, access: AccessDep, service: ServiceDep
) -> Response:
    """Read a token by AccessorID (needs `acl:read`); never shows its secret."""
    return await _get_response(token_json(await acl.read_token(access, accessor_id)), request, service)


@router.delete("/token/{accessor_id}", operation_id="aclTokenDelete", summary="Delete a token", responses=_R)
async def delete_token(accessor_id: str, acl: AclDep, access: AccessDep, secret: SecretDep) -> Response:
    """Delete a token (needs `acl:write`); it stops working at once. Answers `true`."""
    await acl.delete_token(access, accessor_id, secret)
    return json_response(True, pretty=False)


@router.get("/tokens", operation_id="aclTokenList", summary="List tokens", responses=_L)
async def list_tokens(request: Request, acl: AclDep, access: AccessDep, service: ServiceDep) -> Response:
    """List tokens (needs `acl:read`), without their secrets."""
    return await _get_response([token_json(t) for t in await acl.list_tokens(access)], request, service)
