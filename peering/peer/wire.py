"""Every message of the peer protocol (SPEC §6, §14), typed once and used by both sides.

The acceptor decodes requests with these models (`api/peer.py`); the dialer builds its requests with them
and decodes every answer with them (`outbound.py`, `peer/dialer.py`). Models are strict (a number is
never a string), ignore unknown fields (a newer peer may add some) and bound every string, list and map,
so whatever a peer sends is either a message or a refusal, and a refusal never costs more memory than
the body cap of its route.

Replication (SPEC §14) moves `ExportPage`s: the exporter's full list of exported names (on the last page
of a batch, when it changed since the importer's point or on a full resync) and, per changed name, the
full instance set as Consul's `CheckServiceNode`s, each with one
`<serviceID>:overall-check`. `Generation` names the exporter's sequence; `Seq` says every change up to it
is in this page or an earlier one; `Head` is the exporter's newest. Semantic rules the types cannot say
(instances belong to their service, no duplicates) are `page_problem`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from peering.catalog.model import OVERALL_CHECK_SUFFIX
from peering.rules import MAX_ADDRESS_LENGTH, valid_hostname

MAX_PEER_BODY_BYTES = 64 * 1024  # handshake routes: the largest, an exchange, carries one CA and a few addresses
MAX_REPLICATION_BODY_BYTES = 16 * 1024 * 1024  # a pull answer or a push: one page, or one service bigger than it
MAX_SERVICE_BYTES = 12 * 1024 * 1024  # one service's instance set, so that a page with the list fits the body cap
PAGE_BUDGET = 512 * 1024  # bytes of instance data a page aims at (a single bigger service goes alone)
MAX_EXPORTED_NAMES = 10_000  # names in one exported-services list
MAX_PAGE_SERVICES = 10_000  # services in one page
MAX_INSTANCES = 10_000  # instances of one service
MAX_CHECKS = 1  # checks on one instance: its `<serviceID>:overall-check`, or none
MAX_WAIT_MS = 30_000  # the longest long-poll
MAX_SEQ = 2**62  # sequence numbers stay well inside every integer type on the way
STATUSES = ("passing", "warning", "critical")


class PeerModel(BaseModel):
    """Peer messages: strict types, unknown fields ignored so that newer peers can add some."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# --- the handshake: exchange, probe, heartbeat, terminate ---------------------------------------------------


def _matching(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


# what each string field of a handshake answer must look like (the dialer stores, logs and shows them)
ANSWER_CHECKS: dict[str, Callable[[str], bool]] = {
    "StreamSecret": _matching(r"[\x21-\x7e]{1,128}"),  # printable ASCII: stored, and sent back as proof
    "Datacenter": _matching(r"[A-Za-z0-9_-]{1,64}"),  # as `--datacenter`
    "ServerName": valid_hostname,
    "Version": _matching(r"[\x20-\x7e]{1,64}"),
    "ProtocolVersion": _matching(r"[0-9]{1,8}"),
    "Status": _matching("ACTIVE|TERMINATED"),
}


def _checked(key: str) -> AfterValidator:
    check = ANSWER_CHECKS[key]

    def validate(value: str) -> str:
        if not check(value):
            raise ValueError(f"not a valid {key}")
        return value

    return AfterValidator(validate)


class DialerIdentity(PeerModel):
    cluster_id: str = Field(alias="ClusterID", max_length=64)
    peering_id: str = Field(default="", alias="PeeringID", max_length=64)
    ca: str = Field(alias="CA", max_length=16384)
    datacenter: str = Field(alias="Datacenter", max_length=64)
    partition: str = Field(alias="Partition", max_length=64)
    server_name: str = Field(alias="ServerName", max_length=256)
    addresses: list[Annotated[str, Field(max_length=MAX_ADDRESS_LENGTH)]] = Field(alias="Addresses", max_length=16)
    version: str = Field(default="", alias="Version", max_length=64)
    protocol_version: str = Field(default="", alias="ProtocolVersion", max_length=8)


class SecretRequest(PeerModel):
    """exchange and probe: the token's one-time secret and who is dialing."""

    peer_id: str = Field(alias="PeerID", max_length=64)
    establishment_secret: str = Field(alias="EstablishmentSecret", max_length=128)
    dialer: DialerIdentity = Field(alias="Dialer")


class StreamRequest(PeerModel):
    """heartbeat and terminate (and the start of every replication request): the link's stream secret."""

    peer_id: str = Field(alias="PeerID", max_length=64)
    stream_secret: str = Field(alias="StreamSecret", max_length=128)


class ProbeAnswer(PeerModel):
    datacenter: Annotated[str, _checked("Datacenter")] = Field(alias="Datacenter")
    server_name: Annotated[str, _checked("ServerName")] = Field(alias="ServerName")
    version: Annotated[str, _checked("Version")] = Field(alias="Version")
    protocol_version: Annotated[str, _checked("ProtocolVersion")] = Field(alias="ProtocolVersion")


class ExchangeAnswer(PeerModel):
    # StreamSecret first: a dialer that got a valid one undoes the exchange when the rest is wrong
    stream_secret: Annotated[str, _checked("StreamSecret")] = Field(alias="StreamSecret")
    datacenter: Annotated[str, _checked("Datacenter")] = Field(alias="Datacenter")
    server_name: Annotated[str, _checked("ServerName")] = Field(alias="ServerName")
    version: Annotated[str, _checked("Version")] = Field(alias="Version")


class HeartbeatAnswer(PeerModel):
    status: Annotated[str, _checked("Status")] = Field(alias="Status")


def answer_checks(model: type[PeerModel]) -> dict[str, Callable[[str], bool]]:
    """The per-field checks of a handshake answer, in field order (what `PeerClient.call(expect=)` takes, so
    that a bad field is named in the error before the model is built)."""
    return {str(field.alias): ANSWER_CHECKS[str(field.alias)] for field in model.model_fields.values()}


# --- replication ------------------------------------------------------------------------------------------

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_NO_NUL = r"^[^\x00]*$"  # no database stores it (PostgreSQL refuses it in text)
Ident = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]  # a name or an ID
Text = Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)]
LongText = Annotated[str, StringConstraints(max_length=4096, pattern=_NO_NUL)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_NUL)]
MetaValue = Annotated[str, StringConstraints(max_length=512, pattern=_NO_NUL)]
Meta = Annotated[dict[MetaKey, MetaValue], Field(max_length=64)]
Tags = Annotated[list[Text], Field(max_length=128)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Generation = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9-]*$")]


class WireNode(PeerModel):
    id: str = Field(default="", alias="ID", max_length=64, pattern=_NO_NUL)
    node: Ident = Field(alias="Node")
    address: Text = Field(default="", alias="Address")
    datacenter: str = Field(default="", alias="Datacenter", max_length=64, pattern=_NO_NUL)
    tagged_addresses: Meta = Field(default_factory=dict, alias="TaggedAddresses")
    meta: Meta = Field(default_factory=dict, alias="Meta")


class WireWeights(PeerModel):
    passing: int = Field(default=1, alias="Passing", ge=0, le=1_000_000)
    warning: int = Field(default=1, alias="Warning", ge=0, le=1_000_000)


class WireService(PeerModel):
    kind: str = Field(default="", alias="Kind", max_length=64, pattern=_NO_NUL)
    id: Ident = Field(alias="ID")
    service: Ident = Field(alias="Service")
    tags: Tags = Field(default_factory=list, alias="Tags")
    address: Text = Field(default="", alias="Address")
    port: int = Field(default=0, alias="Port", ge=0, le=65535)
    meta: Meta = Field(default_factory=dict, alias="Meta")
    tagged_addresses: Meta = Field(default_factory=dict, alias="TaggedAddresses")
    weights: WireWeights = Field(default_factory=WireWeights, alias="Weights")
    enable_tag_override: bool = Field(default=False, alias="EnableTagOverride")


class WireCheck(PeerModel):
    node: Ident = Field(alias="Node")
    check_id: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_NO_CONTROL)] = Field(
        alias="CheckID"
    )
    name: Text = Field(default="", alias="Name")
    status: Literal["passing", "warning", "critical"] = Field(alias="Status")
    notes: LongText = Field(default="", alias="Notes")
    output: LongText = Field(default="", alias="Output")
    service_id: Text = Field(default="", alias="ServiceID")
    service_name: Text = Field(default="", alias="ServiceName")
    service_tags: Tags = Field(default_factory=list, alias="ServiceTags")
    type: str = Field(default="", alias="Type", max_length=32, pattern=_NO_NUL)


class CheckServiceNode(PeerModel):
    """One instance as a peer receives it: its node, itself, its checks (indexes are never sent: zeroed)."""

    node: WireNode = Field(alias="Node")
    service: WireService = Field(alias="Service")
    checks: list[WireCheck] = Field(default_factory=list, alias="Checks", max_length=MAX_CHECKS)


class ExportedService(PeerModel):
    """The full instance set of one exported name (empty: exported, no instances)."""

    name: Ident = Field(alias="Name")
    nodes: list[CheckServiceNode] = Field(alias="Nodes", max_length=MAX_INSTANCES)


class ExportPage(PeerModel):
    """A batch of the exporter's state for one peering (see the module docstring)."""

    generation: Generation = Field(alias="Generation")
    seq: Seq = Field(alias="Seq")
    head: Seq = Field(alias="Head")
    full: bool = Field(alias="Full")  # sent from the start (an unknown generation or a gap): a full resync
    more: bool = Field(alias="More")  # another page follows at once
    # every exported name, sorted; on the last page of a batch when it changed (None: unchanged, or not yet)
    services: list[Ident] | None = Field(default=None, alias="Services", max_length=MAX_EXPORTED_NAMES)
    upserts: list[ExportedService] = Field(default_factory=list, alias="Upserts", max_length=MAX_PAGE_SERVICES)


class PullRequest(StreamRequest):
    """The dialer asks for the acceptor's exports after `since_seq` of `generation` (long-poll up to `wait_ms`)."""

    generation: Generation = Field(alias="Generation")
    since_seq: Seq = Field(alias="SinceSeq")
    wait_ms: int = Field(default=0, alias="WaitMs", ge=0, le=MAX_WAIT_MS)


class PushRequest(StreamRequest):
    """The dialer sends its own exports, continuing from `base_seq` (what the acceptor said it applied);
    without a page it only asks how far the acceptor got."""

    base_seq: Seq = Field(default=0, alias="BaseSeq")
    page: ExportPage | None = Field(default=None, alias="Page")


class ImportProgress(PeerModel):
    """An importer's answer to a push: how far it got with the exporter's sequence, and whether it took the page
    (False: the page does not continue what it applied; resend from `applied_seq`, or in full)."""

    generation: Generation = Field(alias="Generation")
    applied_seq: Seq = Field(alias="AppliedSeq")
    accepted: bool = Field(alias="Accepted")


def page_problem(page: ExportPage) -> str | None:
    """What makes a well-typed page unusable (None: nothing): every instance belongs to its service and
    appears once, the one check of an instance is its `<serviceID>:overall-check`, a name is upserted once, `Seq` is at most `Head`."""
    if page.seq > page.head:
        return f"Seq {page.seq} is past Head {page.head}"
    if page.services is not None and page.services != sorted(set(page.services)):
        return "Services is not sorted and unique"
    names: set[str] = set()
    for exported in page.upserts:
        if exported.name in names:
            return f"service {exported.name!r} is upserted twice"
        names.add(exported.name)
        seen: set[tuple[str, str]] = set()
        for entry in exported.nodes:
            key = (entry.node.node, entry.service.id)
            if entry.service.service != exported.name:
                return f"instance {entry.service.id!r} of service {exported.name!r} names {entry.service.service!r}"
            if key in seen:
                return f"instance {entry.service.id!r} on node {entry.node.node!r} appears twice"
            seen.add(key)
            for check in entry.checks:
                if (
                    check.node != entry.node.node
                    or check.service_id != entry.service.id
                    or check.check_id != entry.service.id + OVERALL_CHECK_SUFFIX
                ):
                    return f"check {check.check_id!r} is not the overall check of instance {entry.service.id!r}"
    return None
