"""The peering entity, its states and the one transition table (pure, stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from peering.errors import InvalidTransitionError


class PeeringState(StrEnum):
    """What the API shows as `State` (SPEC §5)."""

    INITIAL = "INITIAL"
    ACTIVE = "ACTIVE"
    FAILING = "FAILING"
    TERMINATED = "TERMINATED"


class Role(StrEnum):
    """Which end of the peering this cluster is."""

    ACCEPTOR = "acceptor"  # generated the token, is dialed
    DIALER = "dialer"  # called establish, dials


class Event(StrEnum):
    """Something that happens to a peering."""

    TOKEN_GENERATED = "token-generated"  # noqa: S105 -- an event name, not a password; acceptor: a (new) token was issued for the name
    ESTABLISHED = "established"  # dialer: the secret exchange succeeded
    HEARTBEAT_OK = "heartbeat-ok"  # a heartbeat went through (answered on the dialer, received on the acceptor)
    HEARTBEAT_TIMEOUT = "heartbeat-timeout"  # no good heartbeat for --heartbeat-timeout
    PEER_TERMINATED = "peer-terminated"  # the other side deleted the peering
    DELETED = "deleted"  # deleted here


_S = PeeringState
_E = Event

# (role, state, event) -> next state. Anything missing is not allowed.
_TABLE: Mapping[tuple[Role, PeeringState, Event], PeeringState] = MappingProxyType(
    {
        # acceptor
        (Role.ACCEPTOR, _S.INITIAL, _E.TOKEN_GENERATED): _S.INITIAL,
        (Role.ACCEPTOR, _S.ACTIVE, _E.TOKEN_GENERATED): _S.ACTIVE,
        (Role.ACCEPTOR, _S.FAILING, _E.TOKEN_GENERATED): _S.FAILING,
        (Role.ACCEPTOR, _S.TERMINATED, _E.TOKEN_GENERATED): _S.INITIAL,  # §5.4
        (Role.ACCEPTOR, _S.INITIAL, _E.HEARTBEAT_OK): _S.ACTIVE,
        (Role.ACCEPTOR, _S.ACTIVE, _E.HEARTBEAT_OK): _S.ACTIVE,
        (Role.ACCEPTOR, _S.FAILING, _E.HEARTBEAT_OK): _S.ACTIVE,  # §5.1
        (Role.ACCEPTOR, _S.ACTIVE, _E.HEARTBEAT_TIMEOUT): _S.FAILING,
        (Role.ACCEPTOR, _S.FAILING, _E.HEARTBEAT_TIMEOUT): _S.FAILING,
        # dialer: a new dialer record is created by ESTABLISHED from INITIAL
        (Role.DIALER, _S.INITIAL, _E.ESTABLISHED): _S.ACTIVE,
        (Role.DIALER, _S.ACTIVE, _E.ESTABLISHED): _S.ACTIVE,
        (Role.DIALER, _S.FAILING, _E.ESTABLISHED): _S.ACTIVE,
        (Role.DIALER, _S.TERMINATED, _E.ESTABLISHED): _S.ACTIVE,  # §5.4
        (Role.DIALER, _S.ACTIVE, _E.HEARTBEAT_OK): _S.ACTIVE,
        (Role.DIALER, _S.FAILING, _E.HEARTBEAT_OK): _S.ACTIVE,  # §5.1
        (Role.DIALER, _S.ACTIVE, _E.HEARTBEAT_TIMEOUT): _S.FAILING,
        (Role.DIALER, _S.FAILING, _E.HEARTBEAT_TIMEOUT): _S.FAILING,
    }
    | {(role, state, _E.PEER_TERMINATED): _S.TERMINATED for role in Role for state in _S}
    | {(role, state, _E.DELETED): _S.TERMINATED for role in Role for state in _S}
)


def transition(role: Role, state: PeeringState, event: Event) -> PeeringState:
    """Return the state a peering moves to when `event` happens to it.

    Raises:
        InvalidTransitionError: the event is not allowed in this state for this role.
    """
    try:
        return _TABLE[(role, state, event)]
    except KeyError:
        raise InvalidTransitionError(f"peering in state {state} ({role}) does not accept event {event}") from None


@dataclass(frozen=True)
class StreamStatus:
    """Liveness of the link, kept in memory (not a write, so it never bumps an index)."""

    last_heartbeat: datetime | None = None
    last_receive: datetime | None = None
    last_send: datetime | None = None


NO_STREAM = StreamStatus()
"""The status of a link nothing has happened on (one shared instance, so "unchanged" is an identity test)."""


@dataclass(frozen=True)
class Remote:
    """The other cluster, as far as it is known."""

    datacenter: str = ""
    partition: str = ""

    @staticmethod
    def of(datacenter: str, partition: str) -> Remote:
        """The remote with these fields; the one shared unknown remote when both are empty."""
        return Remote(datacenter, partition) if datacenter or partition else _UNKNOWN


_UNKNOWN = Remote()


@dataclass(frozen=True, slots=True)
class Peering:
    """One peering as stored; secrets are not part of it."""

    id: str
    name: str
    partition: str
    role: Role
    state: PeeringState
    meta: Mapping[str, str] = field(default_factory=dict)
    deleted_at: datetime | None = None
    peer_id: str = ""
    peer_ca_pems: tuple[str, ...] = ()
    peer_server_name: str = ""
    peer_server_addresses: tuple[str, ...] = ()
    remote: Remote = _UNKNOWN
    remote_cluster: str = ""  # fingerprint of the other cluster's CA, once known (SPEC §5.6)
    create_index: int = 0
    modify_index: int = 0
    stream: StreamStatus = NO_STREAM
    imported_services: tuple[str, ...] = ()  # names imported through this peering (SPEC §14), persisted
    exported_services: tuple[str, ...] = ()  # names exported to its peer, persisted

    @property
    def is_deleted(self) -> bool:
        """True once deleted here: the record only waits for removal."""
        return self.deleted_at is not None
