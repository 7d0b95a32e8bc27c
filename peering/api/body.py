"""Request bodies: read with a size cap, decode as JSON whatever the Content-Type, validate strictly.

Every failure is an `InvalidRequestError` whose text follows Consul's `Body decoding failed: …`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from peering.errors import InvalidRequestError, RequestTooLargeError

MAX_BODY_BYTES = 1 << 20

M = TypeVar("M", bound=BaseModel)

_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)
_EXPECTED = {"string_type": "string", "list_type": "array", "dict_type": "object"}


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"Request body too large: the limit is {limit} bytes")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing more than `limit` bytes before they are buffered (announced or streamed).

    Raises:
        RequestTooLargeError: the body (or its announced length) is over the limit.
        InvalidRequestError: the client went away before the body was complete (nobody reads the answer,
            but it must not count as a 500 nor log a traceback).
    """
    announced = request.headers.get("content-length", "")
    # the length of the digits first: int() refuses more than 4300 of them with a ValueError
    if announced.isdigit() and (len(announced.lstrip("0")) > len(str(limit)) or int(announced) > limit):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequestError("Body decoding failed: unexpected EOF") from None
    return b"".join(chunks)


def _kind(value: object) -> str:
    for python_type, name in _JSON_KINDS:
        if isinstance(value, python_type):
            return name
    return "null"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def decode_body(raw: bytes, model: type[M]) -> M:
    """Decode a JSON object into `model`.

    Raises:
        InvalidRequestError: `Body decoding failed: <reason>`.
    """
    if not raw.strip():
        raise InvalidRequestError("Body decoding failed: EOF")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"Body decoding failed: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"Body decoding failed: json: cannot unmarshal {_kind(data)} into an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _field_path(tuple(first["loc"]))
        if first["type"] == "extra_forbidden":
            reason = f'json: unknown field "{path}"'
        elif first["type"] == "missing":
            reason = f'missing required field "{path}"'
        else:
            expected = _EXPECTED.get(first["type"], "the documented type")
            reason = f'json: cannot unmarshal {_kind(first["input"])} into field "{path}" of type {expected}'
        raise InvalidRequestError(f"Body decoding failed: {reason}") from None


def json_body(model: type[M], *, limit: int = MAX_BODY_BYTES) -> Callable[[Request], Awaitable[M]]:
    """A dependency that yields the request body (at most `limit` bytes) decoded as `model`."""

    async def dependency(request: Request) -> M:
        return decode_body(await read_body(request, limit), model)

    return dependency


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body of this model (bodies are parsed by `json_body`).

    Nested models point into `components/schemas`; `errors.document` moves their `$defs` there.
    """
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
