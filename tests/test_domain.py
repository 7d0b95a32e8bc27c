"""The transition table, state x event x role, written out independently of the code."""

from __future__ import annotations

import itertools

import pytest

from peering.domain import Event, Peering, PeeringState, Role, transition
from peering.errors import InvalidTransitionError

INIT, A, F, T = PeeringState.INITIAL, PeeringState.ACTIVE, PeeringState.FAILING, PeeringState.TERMINATED
E = Event

# (role, state, event) -> expected next state, None when the event is refused
EXPECTED: dict[tuple[Role, PeeringState, Event], PeeringState | None] = {}
for role, state, event in itertools.product(Role, PeeringState, Event):
    EXPECTED[(role, state, event)] = None
for role, state in itertools.product(Role, PeeringState):
    EXPECTED[(role, state, E.DELETED)] = T
    EXPECTED[(role, state, E.PEER_TERMINATED)] = T
EXPECTED.update(
    {
        (Role.ACCEPTOR, INIT, E.TOKEN_GENERATED): INIT,
        (Role.ACCEPTOR, A, E.TOKEN_GENERATED): A,
        (Role.ACCEPTOR, F, E.TOKEN_GENERATED): F,
        (Role.ACCEPTOR, T, E.TOKEN_GENERATED): INIT,
        (Role.ACCEPTOR, INIT, E.HEARTBEAT_OK): A,
        (Role.ACCEPTOR, A, E.HEARTBEAT_OK): A,
        (Role.ACCEPTOR, F, E.HEARTBEAT_OK): A,
        (Role.ACCEPTOR, A, E.HEARTBEAT_TIMEOUT): F,
        (Role.ACCEPTOR, F, E.HEARTBEAT_TIMEOUT): F,
        (Role.DIALER, INIT, E.ESTABLISHED): A,
        (Role.DIALER, A, E.ESTABLISHED): A,
        (Role.DIALER, F, E.ESTABLISHED): A,
        (Role.DIALER, T, E.ESTABLISHED): A,
        (Role.DIALER, A, E.HEARTBEAT_OK): A,
        (Role.DIALER, F, E.HEARTBEAT_OK): A,
        (Role.DIALER, A, E.HEARTBEAT_TIMEOUT): F,
        (Role.DIALER, F, E.HEARTBEAT_TIMEOUT): F,
    }
)


@pytest.mark.parametrize(("role", "state", "event"), list(EXPECTED), ids=lambda v: str(v))
def test_transition(role: Role, state: PeeringState, event: Event) -> None:
    expected = EXPECTED[(role, state, event)]
    if expected is None:
        with pytest.raises(InvalidTransitionError, match=f"state {state}"):
            transition(role, state, event)
    else:
        assert transition(role, state, event) is expected


def test_the_table_covers_every_combination() -> None:
    assert len(EXPECTED) == len(Role) * len(PeeringState) * len(Event)


def test_a_peering_knows_when_it_is_deleted() -> None:
    from datetime import UTC, datetime

    p = Peering("id", "n", "default", Role.ACCEPTOR, INIT)
    assert not p.is_deleted
    assert Peering("id", "n", "default", Role.ACCEPTOR, T, deleted_at=datetime.now(UTC)).is_deleted
