"""The one table from error class to HTTP status, and the handlers that apply it (text/plain bodies)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from peering.api.render import read_headers
from peering.errors import (
    AclDisabledError,
    DatabaseUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PeerError,
    PeeringError,
    PermissionDeniedError,
    RequestTooLargeError,
    SecretRejectedError,
)

log = logging.getLogger("peering.api")

STATUS: dict[type[PeeringError], int] = {
    InvalidRequestError: 400,
    RequestTooLargeError: 413,
    PermissionDeniedError: 403,
    AclDisabledError: 401,
    SecretRejectedError: 403,
    NotFoundError: 404,
    PeerError: 502,
    DatabaseUnavailableError: 503,
}

_DESCRIPTIONS = {
    405: "Wrong method.",
    400: "Bad input: malformed body, unknown field, invalid name, token, meta or query.",
    401: "`ACL support disabled`: an ACL endpoint was called while ACLs are off.",
    403: "Permission denied, or the peering secret was rejected.",
    404: "Not found: the peering, ACL policy or token, config entry, or agent service or check named.",
    413: "Request body over 1 MiB.",
    502: "The remote cluster could not be reached or answered badly.",
    503: "The database is unavailable (down or restarting): nothing was written; retry.",
}


_HEADERS: dict[str, dict[str, Any]] = {
    "X-Consul-Index": {"description": "The data's index (every GET).", "schema": {"type": "integer", "minimum": 1}},
    "X-Consul-KnownLeader": {
        "description": "Always `true` (every GET).",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "X-Consul-LastContact": {"description": "Always `0` (every GET).", "schema": {"type": "integer", "enum": [0]}},
    "X-Consul-Default-ACL-Policy": {
        "description": "The default ACL policy, when ACLs are on.",
        "schema": {"type": "string", "enum": ["allow", "deny"]},
    },
}
_READ_HEADERS = ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact")


def status_for(error: PeeringError) -> int:
    """The status of an error: the entry of its nearest class in `STATUS` (500 for none)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its text/plain body, as the handler sends it."""
    return {
        status: {"description": _DESCRIPTIONS[status], "content": {"text/plain": {"schema": {"type": "string"}}}}
        for status in statuses
    }


async def _text(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    all_headers = dict(headers or {})
    if request.method == "GET":
        all_headers.update(read_headers(await request.app.state.service.current_index()))
    return Response(content=message, status_code=status, media_type="text/plain", headers=all_headers)


async def _peering_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PeeringError)  # noqa: S101 -- registered for PeeringError only
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return await _text(request, status, exc.message)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # not `_text`: its index header would read the very database that just failed
    assert isinstance(exc, DatabaseUnavailableError)  # noqa: S101 -- registered for it only
    log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return Response(content=exc.message, status_code=503, media_type="text/plain", headers={"Retry-After": "1"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 -- registered for HTTPException only
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        message = f"method {request.method} not allowed"
        headers["Allow"] = ", ".join(_allowed_methods(request))
    elif exc.status_code == 404:
        message = "404 page not found"
    else:
        message = str(exc.detail)
    return await _text(request, exc.status_code, message, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return [
        method
        for method in ("GET", "PUT", "POST", "DELETE", "PATCH")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _validation_error(request: Request, exc: Exception) -> Response:
    return await _text(request, 400, "Invalid request parameters")


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated OpenAPI say what the handlers do: no 422 (validation errors are 400 here, and
    documented per route), anonymous access as an alternative to each ACL token carrier, the nested
    models of request bodies (`$defs`, see `body.body_openapi`) among the components their `$ref`s name,
    and the headers of every answer (`read_headers` on GETs, `X-Consul-Default-ACL-Policy` with ACLs)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["headers"] = {name: {**header, "required": name in _READ_HEADERS} for name, header in _HEADERS.items()}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            operation.get("responses", {}).pop("422", None)
            if operation.get("security"):
                operation["security"].append({})
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schemas.update(content.get("schema", {}).pop("$defs", {}))
            names = [name for name in _HEADERS if method == "get" or name not in _READ_HEADERS]
            for response in operation.get("responses", {}).values():
                response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Register the handlers: one for the whole PeeringError tree (found along the MRO)."""
    app.add_exception_handler(PeeringError, _peering_error)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)  # nearer in the MRO: wins
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
