"""Request bodies of the catalog and agent routes (SPEC §13), decoded as Consul decodes them.

Consul's `decodeBody` is Go's JSON decoder with unknown fields refused: keys match a field case-
insensitively (`name` is `Name`; here also without underscores, so Consul's snake_case forms such as
`enable_tag_override` work), `null` is every field's zero value, and a failure reads
`Request decode failed: <reason>`. Every field the official Go client sends is accepted; fields for
features this service does not have (Connect, proxies, locality) are refused when they are set.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import orjson
from fastapi import Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from peering.api.body import MAX_BODY_BYTES, decode_body, read_body
from peering.api.query import parse_duration
from peering.errors import InvalidRequestError, RequestTooLargeError

M = TypeVar("M", bound=BaseModel)


def _duration(value: object) -> object:
    """Go's duration string ("10s") or integer nanoseconds, as Consul takes both (kept as given)."""
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("string_type", "a duration is a string or integer nanoseconds")


Duration = Annotated[str | int | None, BeforeValidator(_duration)]


class ConsulBody(BaseModel):
    """Consul's field names (explicit aliases), unknown fields refused, no coercion, `null` allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class WeightsBody(ConsulBody):
    passing: int | None = Field(None, alias="Passing")
    warning: int | None = Field(None, alias="Warning")


class ServiceAddressBody(ConsulBody):
    address: str | None = Field(None, alias="Address")
    port: int | None = Field(None, alias="Port")


class CatalogServiceBody(ConsulBody):
    """`Service` of a registration (Consul's `NodeService`; the Go client sends an `AgentService`)."""

    kind: str | None = Field(None, alias="Kind")
    id: str | None = Field(None, alias="ID")
    service: str | None = Field(None, alias="Service")
    tags: list[str] | None = Field(None, alias="Tags")
    meta: dict[str, str] | None = Field(None, alias="Meta")
    port: int | None = Field(None, alias="Port")
    address: str | None = Field(None, alias="Address")
    socket_path: str | None = Field(None, alias="SocketPath")
    tagged_addresses: dict[str, ServiceAddressBody] | None = Field(None, alias="TaggedAddresses")
    weights: WeightsBody | None = Field(None, alias="Weights")
    enable_tag_override: bool | None = Field(None, alias="EnableTagOverride")
    proxy: dict[str, Any] | None = Field(None, alias="Proxy")
    connect: dict[str, Any] | None = Field(None, alias="Connect")
    locality: dict[str, Any] | None = Field(None, alias="Locality")
    peer_name: str | None = Field(None, alias="PeerName")
    partition: str | None = Field(None, alias="Partition")
    datacenter: str | None = Field(None, alias="Datacenter")
    content_hash: str | None = Field(None, alias="ContentHash")
    create_index: int | None = Field(None, alias="CreateIndex")
    modify_index: int | None = Field(None, alias="ModifyIndex")


class CatalogCheckBody(ConsulBody):
    """A check of a registration (`Check` or an item of `Checks`: Consul's `HealthCheck`)."""

    node: str | None = Field(None, alias="Node")
    check_id: str | None = Field(None, alias="CheckID")
    name: str | None = Field(None, alias="Name")
    status: str | None = Field(None, alias="Status")
    notes: str | None = Field(None, alias="Notes")
    output: str | None = Field(None, alias="Output")
    service_id: str | None = Field(None, alias="ServiceID")
    service_name: str | None = Field(None, alias="ServiceName")
    service_tags: list[str] | None = Field(None, alias="ServiceTags")
    type: str | None = Field(None, alias="Type")
    interval: str | None = Field(None, alias="Interval")
    timeout: str | None = Field(None, alias="Timeout")
    exposed_port: int | None = Field(None, alias="ExposedPort")
    definition: dict[str, Any] | None = Field(None, alias="Definition")  # how the check runs: recorded nowhere
    peer_name: str | None = Field(None, alias="PeerName")
    partition: str | None = Field(None, alias="Partition")
    create_index: int | None = Field(None, alias="CreateIndex")
    modify_index: int | None = Field(None, alias="ModifyIndex")


class RegisterBody(ConsulBody):
    """Body of `PUT /v1/catalog/register` (Consul's `RegisterRequest`)."""

    id: str | None = Field(None, alias="ID", description="The node's UUID (optional).")
    node: str | None = Field(None, alias="Node", description="The node's name (required).")
    address: str | None = Field(None, alias="Address", description="The node's address.")
    tagged_addresses: dict[str, str] | None = Field(None, alias="TaggedAddresses")
    node_meta: dict[str, str] | None = Field(None, alias="NodeMeta")
    datacenter: str | None = Field(None, alias="Datacenter")
    service: CatalogServiceBody | None = Field(None, alias="Service")
    check: CatalogCheckBody | None = Field(None, alias="Check")
    checks: list[CatalogCheckBody] | None = Field(None, alias="Checks")
    skip_node_update: bool | None = Field(None, alias="SkipNodeUpdate")
    partition: str | None = Field(None, alias="Partition")
    locality: dict[str, Any] | None = Field(None, alias="Locality")
    peer_name: str | None = Field(None, alias="PeerName")


class DeregisterBody(ConsulBody):
    """Body of `PUT /v1/catalog/deregister` (Consul's `DeregisterRequest`)."""

    node: str | None = Field(None, alias="Node", description="The node's name (required).")
    address: str | None = Field(None, alias="Address", description="Obsolete; ignored as in Consul.")
    datacenter: str | None = Field(None, alias="Datacenter")
    service_id: str | None = Field(None, alias="ServiceID")
    check_id: str | None = Field(None, alias="CheckID")
    partition: str | None = Field(None, alias="Partition")
    peer_name: str | None = Field(None, alias="PeerName")


class AgentCheckBody(ConsulBody):
    """A check of an agent service definition (Consul's `CheckType`; only TTL checks run here)."""

    check_id: str | None = Field(None, alias="CheckID")
    name: str | None = Field(None, alias="Name")
    ttl: Duration = Field(None, alias="TTL")
    status: str | None = Field(None, alias="Status")
    notes: str | None = Field(None, alias="Notes")
    interval: Duration = Field(None, alias="Interval")
    timeout: Duration = Field(None, alias="Timeout")
    deregister_critical_service_after: Duration = Field(None, alias="DeregisterCriticalServiceAfter")
    script_args: list[str] | None = Field(None, alias="ScriptArgs")
    docker_container_id: str | None = Field(None, alias="DockerContainerID")
    shell: str | None = Field(None, alias="Shell")
    http: str | None = Field(None, alias="HTTP")
    header: dict[str, list[str]] | None = Field(None, alias="Header")
    method: str | None = Field(None, alias="Method")
    body: str | None = Field(None, alias="Body")
    disable_redirects: bool | None = Field(None, alias="DisableRedirects")
    tcp: str | None = Field(None, alias="TCP")
    tcp_use_tls: bool | None = Field(None, alias="TCPUseTLS")
    udp: str | None = Field(None, alias="UDP")
    grpc: str | None = Field(None, alias="GRPC")
    grpc_use_tls: bool | None = Field(None, alias="GRPCUseTLS")
    h2ping: str | None = Field(None, alias="H2PING")
    h2ping_use_tls: bool | None = Field(None, alias="H2PingUseTLS")
    os_service: str | None = Field(None, alias="OSService")
    alias_node: str | None = Field(None, alias="AliasNode")
    alias_service: str | None = Field(None, alias="AliasService")
    tls_server_name: str | None = Field(None, alias="TLSServerName")
    tls_skip_verify: bool | None = Field(None, alias="TLSSkipVerify")
    success_before_passing: int | None = Field(None, alias="SuccessBeforePassing")
    failures_before_warning: int | None = Field(None, alias="FailuresBeforeWarning")
    failures_before_critical: int | None = Field(None, alias="FailuresBeforeCritical")
    output_max_size: int | None = Field(None, alias="OutputMaxSize")


class AgentServiceBody(ConsulBody):
    """Body of `PUT /v1/agent/service/register` (Consul's `ServiceDefinition`)."""

    kind: str | None = Field(None, alias="Kind")
    id: str | None = Field(None, alias="ID", description="Unique on the node; defaults to the name.")
    name: str | None = Field(None, alias="Name", description="The service's name (required).")
    tags: list[str] | None = Field(None, alias="Tags")
    port: int | None = Field(None, alias="Port")
    address: str | None = Field(None, alias="Address")
    socket_path: str | None = Field(None, alias="SocketPath")
    tagged_addresses: dict[str, ServiceAddressBody] | None = Field(None, alias="TaggedAddresses")
    enable_tag_override: bool | None = Field(None, alias="EnableTagOverride")
    meta: dict[str, str] | None = Field(None, alias="Meta")
    weights: WeightsBody | None = Field(None, alias="Weights")
    check: AgentCheckBody | None = Field(None, alias="Check")
    checks: list[AgentCheckBody] | None = Field(None, alias="Checks")
    proxy: dict[str, Any] | None = Field(None, alias="Proxy")
    connect: dict[str, Any] | None = Field(None, alias="Connect")
    locality: dict[str, Any] | None = Field(None, alias="Locality")
    partition: str | None = Field(None, alias="Partition")
    peer_name: str | None = Field(None, alias="PeerName")


class CheckUpdateBody(ConsulBody):
    """Body of `PUT /v1/agent/check/update/{check_id}`."""

    status: str | None = Field(None, alias="Status", description="`passing`, `warning` or `critical`.")
    output: str | None = Field(None, alias="Output")


def _fold(key: str) -> str:
    return key.replace("_", "").lower()


def _model_in(annotation: Any) -> Any:
    """The annotation without its `None` alternative (`X | None` -> `X`; other unions stay)."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _canonical_value(value: Any, annotation: Any) -> Any:
    inner = _model_in(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return canonical(value, inner)
    origin = get_origin(inner)
    if origin is list and isinstance(value, list):
        (item,) = get_args(inner)
        return [_canonical_value(v, item) for v in value]
    if origin is dict and isinstance(value, dict):
        _, item = get_args(inner)
        return {k: _canonical_value(v, item) for k, v in value.items()}
    return value


def canonical(data: Any, model: type[BaseModel]) -> Any:
    """`data` with each key renamed to the field it names as Go matches it (exact, else case-insensitive);
    keys that name no field stay as they are, for the model to refuse."""
    if not isinstance(data, dict):
        return data
    exact = {info.alias or name: info.annotation for name, info in model.model_fields.items()}
    folded = {_fold(alias): alias for alias in exact}
    out: dict[str, Any] = {}
    for key, value in data.items():
        alias = key if key in exact else folded.get(_fold(key)) if isinstance(key, str) else None
        if alias is None:
            out[key] = value
        else:
            out[alias] = _canonical_value(value, exact[alias])
    return out


def decode_request(raw: bytes, model: type[M]) -> M:
    """Decode a body as Consul's `decodeBody` does, with its `Request decode failed: ...` messages.

    Raises:
        InvalidRequestError: not JSON, not an object, an unknown field or a field of the wrong type.
    """
    try:
        data = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        data = None  # decode_body words the error
    if isinstance(data, dict):
        raw = orjson.dumps(canonical(data, model))
    try:
        return decode_body(raw, model)
    except RequestTooLargeError:
        raise
    except InvalidRequestError as exc:
        reason = exc.message.removeprefix("Body decoding failed: ")
        if reason.startswith('json: unknown field "') and reason.endswith('Namespace"'):
            reason += " - Namespaces are a Consul Enterprise feature"
        raise InvalidRequestError(f"Request decode failed: {reason}") from None


def request_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency yielding the body (at most 1 MiB) decoded as `model`, Consul's way."""

    async def dependency(request: Request) -> M:
        return decode_request(await read_body(request, MAX_BODY_BYTES), model)

    return dependency


def seconds(value: str | int | None, field: str) -> float | None:
    """A duration field in seconds: Go's duration string or integer nanoseconds (None: not given).

    Raises:
        InvalidRequestError: `Request decode failed: time: invalid duration "..."`.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int):
        if abs(value) > 2**63 - 1:
            raise InvalidRequestError(f"Request decode failed: {field}: duration out of range")
        return value / 1e9
    negative = value.startswith("-")
    try:
        amount = parse_duration(value.removeprefix("-").removeprefix("+"))
    except ValueError:
        shown = value if len(value) <= 64 else value[:64] + "..."
        raise InvalidRequestError(f'Request decode failed: time: invalid duration "{shown}"') from None
    return -amount if negative else amount
