"""What a client asks the catalog to write (SPEC §13), decoded but not yet validated, and its validation.

The API layer decodes bodies into these; `CatalogService` validates them here, with Consul's messages
(reference §2.2, §2.3) as 400s where Consul answers 500. Stdlib only, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from peering.catalog.model import Health, Weights
from peering.errors import InvalidRequestError
from peering.rules import check_meta

PEER_NAME_REFUSED = "cannot register requests with PeerName in them"
MAX_NAME = 256  # node, service and check names and IDs: bytes enough for any DNS name, bounded
MAX_TAGS = 256
MAX_CHECKS = 128  # per registration
MAX_TEXT = 4096  # Notes and Output (Consul truncates check output at 4 KiB: CheckBufSize)
MAX_TTL = 10 * 365 * 86400.0  # seconds: a deadline must stay a date
_STATUSES = frozenset({Health.PASSING.value, Health.WARNING.value, Health.CRITICAL.value})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class ServiceSpec:
    """A service instance as a request gives it (`Service` of a registration, or an agent definition)."""

    id: str = ""
    service: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] | None = None
    tagged_addresses: Mapping[str, tuple[str, int]] | None = None  # name -> (address, port)
    weights: Weights | None = None
    enable_tag_override: bool = False
    kind: str = ""
    peer_name: str = ""


@dataclass(frozen=True)
class CheckSpec:
    """A check of `PUT /v1/catalog/register`: recorded as given, never run."""

    node: str = ""
    check_id: str = ""
    name: str = ""
    status: str = ""
    notes: str = ""
    output: str = ""
    service_id: str = ""
    type: str = ""
    peer_name: str = ""


@dataclass(frozen=True)
class Registration:
    """`PUT /v1/catalog/register`."""

    node: str = ""
    address: str = ""
    id: str = ""
    datacenter: str = ""
    partition: str | None = None
    tagged_addresses: Mapping[str, str] | None = None
    node_meta: Mapping[str, str] | None = None
    service: ServiceSpec | None = None
    checks: tuple[CheckSpec, ...] = ()
    skip_node_update: bool = False
    peer_name: str = ""


@dataclass(frozen=True)
class Deregistration:
    """`PUT /v1/catalog/deregister`: the node; or one of its instances (`service_id`) or checks (`check_id`)."""

    node: str = ""
    service_id: str = ""
    check_id: str = ""
    datacenter: str = ""
    partition: str | None = None
    peer_name: str = ""


@dataclass(frozen=True)
class TtlCheckSpec:
    """A check of an agent service definition. Only TTL checks run here; `unsupported` names another kind."""

    check_id: str = ""
    name: str = ""
    ttl: float | None = None  # seconds
    interval: float | None = None
    status: str = ""
    notes: str = ""
    unsupported: str = ""  # why it cannot run here, e.g. "HTTP checks are not supported, only TTL checks"

    @property
    def empty(self) -> bool:
        """Consul's `CheckType.Empty()`: a check with nothing set is no check at all."""
        return self == TtlCheckSpec()


@dataclass(frozen=True)
class AgentServiceSpec:
    """`PUT /v1/agent/service/register`: an instance on this cluster's own node, with its TTL checks."""

    service: ServiceSpec
    checks: tuple[TtlCheckSpec, ...] = ()


def _shown(text: str) -> str:
    return text if len(text) <= 64 else text[:64] + "..."


def bounded(value: str, what: str, limit: int = MAX_NAME) -> str:
    """A name, ID, tag or address: at most `limit` bytes and no NUL (which PostgreSQL cannot store either)."""
    if len(value.encode("utf-8", errors="surrogatepass")) > limit:
        raise InvalidRequestError(f"{what} is too long (limit: {limit} bytes)")
    if "\x00" in value:
        raise InvalidRequestError(f"{what} must not contain a NUL character")
    return value


def is_any_address(address: str) -> bool:
    """Consul's `ipaddr.IsAny`: `0.0.0.0`, `::` or `[::]` cannot be a service's address."""
    text = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    try:
        return ipaddress.ip_address(text).is_unspecified
    except ValueError:
        return False


def check_node_id(node_id: str) -> str:
    """A node ID is empty or a UUID (Consul's `Bad node ID: ...`)."""
    if node_id and len(node_id) != 36:
        raise InvalidRequestError("Bad node ID: uuid string is wrong length")
    if node_id and _UUID.fullmatch(node_id) is None:
        raise InvalidRequestError("Bad node ID: uuid is improperly formatted")
    return node_id


def check_status(status: str) -> Health:
    """A check's status as given (`""` = critical, as in Consul)."""
    if not status:
        return Health.CRITICAL
    if status not in _STATUSES:
        raise InvalidRequestError("Status for checks must 'passing', 'warning', 'critical'")
    return Health(status)


def check_service(spec: ServiceSpec) -> ServiceSpec:
    """The instance with its ID defaulted to its name, checked as Consul's `servicePreApply`."""
    if spec.kind:
        raise InvalidRequestError(
            f'Service kind "{_shown(spec.kind)}" is not supported: only typical services (Kind "")'
        )
    service_id = spec.id or spec.service
    if not spec.service:
        raise InvalidRequestError(
            "Must provide service name (Service.Service) when service ID is provided"
            if service_id
            else "Missing service name"
        )
    if is_any_address(spec.address):
        raise InvalidRequestError("Invalid service address")
    bounded(service_id, "Service ID")
    bounded(spec.service, "Service name")
    if len(spec.tags) > MAX_TAGS:
        raise InvalidRequestError(f"Too many tags (limit: {MAX_TAGS})")
    for tag in spec.tags:
        bounded(tag, "Tag")
    if not 0 <= spec.port <= 65535:
        raise InvalidRequestError(f"Invalid service port {spec.port}: must be between 0 and 65535")
    for name, (address, port) in (spec.tagged_addresses or {}).items():
        bounded(name, "Tagged address name")
        bounded(address, "Tagged address")
        if not 0 <= port <= 65535:
            raise InvalidRequestError(f"Invalid port {port} for tagged address {_shown(name)}")
    return ServiceSpec(
        id=service_id,
        service=spec.service,
        tags=spec.tags,
        address=bounded(spec.address, "Service address"),
        port=spec.port,
        meta=service_meta(spec.meta),
        tagged_addresses=spec.tagged_addresses,
        weights=spec.weights,
        enable_tag_override=spec.enable_tag_override,
    )


def service_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Service meta under Consul's meta rules (`Invalid Service Meta: ...`)."""
    try:
        return check_meta(meta)
    except InvalidRequestError as exc:
        detail = exc.message.removeprefix("meta tags failed validation: ").replace("Node metadata", "Service metadata")
        raise InvalidRequestError(f"Invalid Service Meta: {detail}") from None


def node_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Node meta under Consul's meta rules (`meta tags failed validation: ...`)."""
    return check_meta(meta)


def check_weights(weights: Weights | None) -> Weights:
    """Agent weights, validated as Consul's `ValidateWeights` (`Invalid Weights: ...`); none = 1/1."""
    if weights is None:
        return Weights()
    if weights.passing < 1:
        raise InvalidRequestError("Invalid Weights: Passing must be greater than 0")
    if weights.warning < 0:
        raise InvalidRequestError("Invalid Weights: Warning must be greater or equal than 0")
    if weights.passing > 65535 or weights.warning > 65535:
        raise InvalidRequestError("Invalid Weights: Passing or Warning must be less than 65536")
    return weights


def catalog_weights(weights: Weights | None) -> Weights:
    """Catalog weights: invalid ones (the Go client sends 0/0 when unset) become 1/1, as Consul's `ToServiceNode`."""
    try:
        return check_weights(weights)
    except InvalidRequestError:
        return Weights()


def text(value: str, what: str) -> str:
    """Notes and Output, bounded (`<what> is too long`), without NUL."""
    if len(value) > MAX_TEXT:
        raise InvalidRequestError(f"{what} is too long (limit: {MAX_TEXT} characters)")
    if "\x00" in value:
        raise InvalidRequestError(f"{what} must not contain a NUL character")
    return value


def check_ttl_check(check: TtlCheckSpec) -> None:
    """Consul's `CheckType.Validate` for the checks an agent definition may carry (`Invalid check: ...`)."""
    bounded(check.check_id, "Check ID")
    bounded(check.name, "Check name")
    if check.interval and check.ttl:
        raise InvalidRequestError("Invalid check: Interval and TTL cannot both be specified")
    if check.unsupported:
        raise InvalidRequestError(f"Invalid check: {check.unsupported}")
    if check.ttl is None or check.ttl <= 0:
        raise InvalidRequestError("Invalid check: TTL must be > 0 for TTL checks")
    if check.ttl > MAX_TTL:
        raise InvalidRequestError("Invalid check: TTL must be at most 10 years")


def check_registration(request: Registration) -> None:
    """The checks of `Catalog.Register` that need no stored state, in Consul's order."""
    if request.peer_name or (request.service is not None and request.service.peer_name):
        raise InvalidRequestError(PEER_NAME_REFUSED)
    if any(check.peer_name for check in request.checks):
        raise InvalidRequestError(PEER_NAME_REFUSED)
    if not request.node:
        raise InvalidRequestError("Must provide node")
    bounded(request.node, "Node name")
    check_node_id(request.id)
    if not request.address and not request.skip_node_update:
        raise InvalidRequestError("Must provide address if SkipNodeUpdate is not set")
    bounded(request.address, "Address")
    for name, value in (request.tagged_addresses or {}).items():
        bounded(name, "Tagged address name")
        bounded(value, "Tagged address")
    if len(request.checks) > MAX_CHECKS:
        raise InvalidRequestError(f"Too many checks (limit: {MAX_CHECKS})")
    for check in request.checks:
        node = check.node or request.node
        if node != request.node:
            raise InvalidRequestError(
                f"Node '{_shown(node)}' for check '{_shown(check.check_id)}' doesn't match register request node "
                f"'{_shown(request.node)}'"
            )


def encode_address(address: str, port: int) -> str:
    """A service's tagged address (Consul: `{Address, Port}`) as the catalog stores it: `address:port`."""
    return f"{address}:{port}"


def decode_address(value: str) -> tuple[str, int]:
    """The (address, port) of a stored service tagged address (`encode_address`)."""
    address, separator, port = value.rpartition(":")
    if not separator or not port.isascii() or not port.isdigit() or len(port) > 5:
        return value, 0
    return address, int(port)
