"""The `exported-services` config entry (SPEC §14): decoded and validated as Consul does, and what it exports.

Pure and stdlib only. `decode` reads a JSON object the way Consul's `DecodeConfigEntry` does (`Kind` or
`kind` selects the kind; keys match case-insensitively; `peer_name`/`sameness_group` are aliases;
`CreateIndex`, `ModifyIndex` and `Hash` are ignored; any other key is refused), `validate` applies
Consul's checks in Consul's order with its texts, and `resolve`/`names_for_peer` say what the entry
exports (wildcards expanded, never `consul`, duplicates merged, sorted).

Where this differs from Consul CE, on purpose (partitions are real here; SPEC §14):
- `Name` is the partition exported from: any valid partition name (lower-cased as `rules.normalize_partition`
  does), not only `default`; a top-level `Partition` is accepted and ignored (Enterprise overwrites it with
  `Name` too);
- a consumer names exactly one `Peer`: `Partition` or `SamenessGroup` consumers are refused (`… are not
  supported`), as is a consumer with no field at all (Consul accepts `{}` and it matches nothing) and a
  `Peer` that is not a valid peer name (Consul accepts it and it never matches);
- a service's `Namespace` may only be empty, `default` or `*` (there are no namespaces; it is dropped);
- Consul wraps several problems in one multierror text (`1 error occurred:\n\t* …`); here the first
  problem is the message, alone;
- wrong value types are refused rather than weakly converted (Consul turns `"Peer": 1` into `"1"`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from peering.catalog.model import EXCLUDED_FROM_EXPORT, ConfigEntry
from peering.errors import InvalidRequestError
from peering.rules import check_peer_name, normalize_partition

KIND = "exported-services"
WILDCARD = "*"
SIDECAR_SUFFIX = "-sidecar-proxy"  # a mesh proxy's twin of a service: Consul never sends those to a peer

_MAX_META_PAIRS = 64
_MAX_META_KEY = 128
_MAX_META_VALUE = 512
_MAX_SHOWN = 256  # characters of client input echoed in a message

# a field's canonical key by its lower-cased spellings (the name itself and Consul's snake_case aliases)
_TOP = {"name": "Name", "partition": "Partition", "services": "Services", "meta": "Meta"}
_IGNORED = frozenset({"createindex", "modifyindex", "hash"})  # read-only outputs a client may send back
_SERVICE = {"name": "Name", "namespace": "Namespace", "consumers": "Consumers"}
_CONSUMER = {
    "peer": "Peer",
    "peer_name": "Peer",
    "partition": "Partition",
    "samenessgroup": "SamenessGroup",
    "sameness_group": "SamenessGroup",
}


@dataclass(frozen=True)
class ExportedService:
    """One `Services[]` item: a service name (or `*`) and the peers it is exported to, as written."""

    name: str
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportedServices:
    """An `exported-services` entry: `partition` is its `Name`, the partition whose services it exports."""

    partition: str
    services: tuple[ExportedService, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Consumer:
    peer: str
    partition: str
    sameness_group: str


@dataclass(frozen=True)
class _Service:
    name: str
    namespace: str
    consumers: tuple[_Consumer, ...]


@dataclass(frozen=True)
class Decoded:
    """An entry as decoded, before validation (what `validate` checks)."""

    name: str
    services: tuple[_Service, ...]
    meta: Mapping[str, str]


def _shown(text: str) -> str:
    """Client input as a message may echo it: capped, and with unprintable characters escaped."""
    capped = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."
    if capped.isprintable():
        return capped
    return "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in capped)


def _quoted(text: str) -> str:
    """Go's `%q` of client input, near enough: in double quotes, with `\\` and `"` escaped."""
    return '"' + _shown(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _decoding(reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"Request decoding failed: {reason}")


def _go_type(value: object) -> str:
    """The Go type `encoding/json` gives a JSON value in an `interface{}` (what Consul's messages name)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "[]interface {}" if isinstance(value, list) else "map[string]interface {}"


def _go_kind(value: object) -> str:
    return {"[]interface {}": "slice", "map[string]interface {}": "map"}.get(_go_type(value), _go_type(value))


def _string(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _decoding(f"'{path}' expected type 'string', got unconvertible type '{_go_type(value)}'")
    return value


def _list(value: object, path: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _decoding(f"'{path}': source data must be an array or slice, got {_go_kind(value)}")
    return value


def _object(value: object, path: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _decoding(f"'{path}' expected a map, got '{_go_kind(value)}'")
    return value


def _unknown_key(path: str) -> InvalidRequestError:
    if path.lower().endswith("namespace"):
        return _decoding(f"invalid config key {_quoted(path)}, namespaces are a consul enterprise feature")
    return _decoding(f"invalid config key {_quoted(path)}")


def _claim(
    data: dict[str, object], known: Mapping[str, str], prefix: str, ignored: frozenset[str] = frozenset()
) -> dict[str, object]:
    """The object's values by canonical key: keys match case-insensitively or by alias; the first spelling of a
    field wins and any other key (a second spelling too) is refused with its full path, as mapstructure names it."""
    found: dict[str, object] = {}
    for key, value in data.items():
        lowered = key.lower()
        if lowered in ignored:
            continue
        canonical = known.get(lowered)
        if canonical is None or canonical in found:
            raise _unknown_key(f"{prefix}{key}")
        found[canonical] = value
    return found


def _meta(value: object) -> dict[str, str]:
    meta = _object(value, "Meta")
    return {key: _string(item, f"Meta[{key}]") for key, item in meta.items()}


def _consumer(value: object, path: str) -> _Consumer:
    found = _claim(_object(value, path), _CONSUMER, f"{path}.")
    return _Consumer(
        peer=_string(found.get("Peer"), f"{path}.Peer"),
        partition=_string(found.get("Partition"), f"{path}.Partition"),
        sameness_group=_string(found.get("SamenessGroup"), f"{path}.SamenessGroup"),
    )


def _service(value: object, path: str) -> _Service:
    found = _claim(_object(value, path), _SERVICE, f"{path}.")
    consumers = _list(found.get("Consumers"), f"{path}.Consumers")
    return _Service(
        name=_string(found.get("Name"), f"{path}.Name"),
        namespace=_string(found.get("Namespace"), f"{path}.Namespace"),
        consumers=tuple(_consumer(item, f"{path}.Consumers[{j}]") for j, item in enumerate(consumers)),
    )


def decode_kind(data: object) -> str:
    """The kind a decoded JSON body names, which must be `exported-services` (SPEC §14).

    Raises:
        InvalidRequestError: `Request decoding failed: …` (not an object, no kind, not a string, another kind).
    """
    if not isinstance(data, dict):
        raise _decoding(f"json: cannot unmarshal {_json_kind(data)} into Go value of type map[string]interface {{}}")
    if "Kind" in data:
        kind = data["Kind"]
    elif "kind" in data:
        kind = data["kind"]
    else:
        raise _decoding("Payload does not contain a kind/Kind key at the top level")
    if not isinstance(kind, str):
        raise _decoding("Kind value in payload is not a string")
    if kind != KIND:
        raise _decoding(invalid_kind(kind).message)
    return kind


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"


def invalid_kind(kind: str) -> InvalidRequestError:
    """The error for a kind other than `exported-services` (in a path, or once decoding has prefixed it)."""
    return InvalidRequestError(f"invalid config entry kind: {_shown(kind)}")


def decode(data: object) -> Decoded:
    """Decode a JSON body (already parsed) as an `exported-services` entry, without validating it.

    Raises:
        InvalidRequestError: `Request decoding failed: …`, Consul's decoding texts (see the module docstring).
    """
    decode_kind(data)
    assert isinstance(data, dict)  # noqa: S101 -- decode_kind refused everything else
    found = _claim({k: v for k, v in data.items() if k not in ("Kind", "kind")}, _TOP, "", _IGNORED)
    services = _list(found.get("Services"), "Services")
    _string(found.get("Partition"), "Partition")  # accepted and ignored: `Name` is the partition
    return Decoded(
        name=_string(found.get("Name"), "Name"),
        services=tuple(_service(item, f"Services[{i}]") for i, item in enumerate(services)),
        meta=_meta(found.get("Meta")),
    )


def _utf8_length(text: str) -> int:
    """Length in bytes, as Go's `len` counts a string."""
    return len(text.encode("utf-8", errors="surrogatepass"))


def _check_name(name: str) -> str:
    if not name:
        raise InvalidRequestError('exported-services Name must be the partition to export from, such as "default"')
    try:
        return normalize_partition(name)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"exported-services Name: {exc.message}") from None


def _check_meta(meta: Mapping[str, str]) -> None:
    if len(meta) > _MAX_META_PAIRS:
        raise InvalidRequestError(f"Meta exceeds maximum element count {_MAX_META_PAIRS}")
    for key, value in meta.items():
        if _utf8_length(key) > _MAX_META_KEY:
            raise InvalidRequestError(f"Meta key {_quoted(key)} exceeds maximum length {_MAX_META_KEY}")
        if _utf8_length(value) > _MAX_META_VALUE:
            raise InvalidRequestError(f"Meta value for key {_quoted(key)} exceeds maximum length {_MAX_META_VALUE}")


def _check_consumer(where: str, consumer: _Consumer) -> str:
    if not consumer.peer:
        raise InvalidRequestError(f"{where}: must define at least one of Peer, Partition, or SamenessGroup")
    if consumer.peer == WILDCARD:
        raise InvalidRequestError(f"{where}: exporting to all peers (wildcard) is not supported")
    try:
        return check_peer_name(consumer.peer)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{where}: {exc.message}") from None


def validate(decoded: Decoded) -> ExportedServices:
    """Check a decoded entry in Consul's order (the first problem wins) and return it normalised.

    Order: the name (a partition), the meta limits, then every consumer's unsupported fields (`Partition`,
    `SamenessGroup`), then per service its name, namespace and consumers, then per consumer its `Peer`.

    Raises:
        InvalidRequestError: Consul's validation text (Consul answers these with a 500; here they are 400s).
    """
    partition = _check_name(decoded.name)
    _check_meta(decoded.meta)
    for i, svc in enumerate(decoded.services):
        for j, consumer in enumerate(svc.consumers):
            if consumer.partition:
                raise InvalidRequestError(f"Services[{i}].Consumers[{j}]: partitions are not supported")
            if consumer.sameness_group:
                raise InvalidRequestError(f"Services[{i}].Consumers[{j}]: sameness-groups are not supported")
    services: list[ExportedService] = []
    for i, svc in enumerate(decoded.services):
        if not svc.name:
            raise InvalidRequestError(f"Services[{i}]: service name cannot be empty")
        if svc.namespace == WILDCARD and svc.name != WILDCARD:
            raise InvalidRequestError(f"Services[{i}]: service name must be wildcard if namespace is wildcard")
        if svc.namespace not in ("", "default", WILDCARD):
            raise InvalidRequestError(f"Services[{i}]: namespaces are not supported")
        if not svc.consumers:
            raise InvalidRequestError(f"Services[{i}]: must have at least one consumer")
        peers = tuple(_check_consumer(f"Services[{i}].Consumers[{j}]", c) for j, c in enumerate(svc.consumers))
        services.append(ExportedService(svc.name, peers))
    return ExportedServices(partition, tuple(services), dict(decoded.meta))


def parse(data: object) -> ExportedServices:
    """`validate(decode(data))`: a JSON body (already parsed) as a valid entry.

    Raises:
        InvalidRequestError: a decoding or a validation problem (see `decode` and `validate`).
    """
    return validate(decode(data))


def body(entry: ExportedServices) -> dict[str, object]:
    """The entry's stored body (`ConfigEntry.body`): Consul's keys, without `Kind`, `Name` and the indexes."""
    stored: dict[str, object] = {}
    if entry.services:
        stored["Services"] = [
            {"Name": svc.name, "Consumers": [{"Peer": peer} for peer in svc.peers]} for svc in entry.services
        ]
    if entry.meta:
        stored["Meta"] = dict(entry.meta)
    return stored


def to_config(entry: ExportedServices) -> ConfigEntry:
    """The entry as the store keeps it (kind `exported-services`, named after its partition)."""
    return ConfigEntry(KIND, entry.partition, body(entry))


def from_config(config: ConfigEntry) -> ExportedServices:
    """A stored entry back as an `ExportedServices` (it was valid when stored, so this only re-reads it).

    Raises:
        InvalidRequestError: the stored body is not a valid entry (never, unless the database was edited).
    """
    return parse({**config.body, "Kind": config.kind, "Name": config.name})


def render(config: ConfigEntry) -> dict[str, object]:
    """The entry as `GET /v1/config/exported-services/{name}` shows it: `Kind` first, then Consul's field order."""
    shown: dict[str, object] = {"Kind": config.kind, "Name": config.name}
    for key in ("Services", "Meta"):
        if key in config.body:
            shown[key] = config.body[key]
    shown["CreateIndex"] = config.create_index
    shown["ModifyIndex"] = config.modify_index
    return shown


Exports = ExportedServices | ConfigEntry | None
"""What `resolve` and `names_for_peer` take: an entry, as parsed or as stored, or None (no entry: no exports)."""


def _services(entry: Exports) -> tuple[ExportedService, ...]:
    if entry is None:
        return ()
    return (from_config(entry) if isinstance(entry, ConfigEntry) else entry).services


def resolve(entry: Exports, names_with_instances: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Every exported service with the peers it goes to (`GET /v1/exported-services`), sorted by name, peers
    sorted and merged: a named service counts even with no instances, `*` stands for every name in
    `names_with_instances` (the partition's local services that have instances), and neither `consul` nor a
    `*-sidecar-proxy` name ever counts (Consul filters those out before it sends them)."""
    local = sorted(set(names_with_instances))
    peers: dict[str, set[str]] = {}
    for svc in _services(entry):
        for name in local if svc.name == WILDCARD else (svc.name,):
            if name != EXCLUDED_FROM_EXPORT and name != WILDCARD and not name.endswith(SIDECAR_SUFFIX):
                peers.setdefault(name, set()).update(svc.peers)
    return [(name, sorted(peers[name])) for name in sorted(peers)]


def names_for_peer(entry: Exports, names_with_instances: Iterable[str], peer_name: str) -> list[str]:
    """The service names the entry exports to the peering named `peer_name` (exact match), sorted: what the
    exporter sends that peer (SPEC §14). Named services count even with no instances; `*` expands to
    `names_with_instances`; `consul` never counts."""
    return [name for name, peers in resolve(entry, names_with_instances) if peer_name in peers]


def render_resolved(resolved: Iterable[tuple[str, list[str]]]) -> list[dict[str, object]]:
    """`resolve`'s answer in the shape of `GET /v1/exported-services`."""
    return [{"Service": name, "Consumers": {"Peers": peers}} for name, peers in resolved]
