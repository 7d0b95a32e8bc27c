"""Liveness of each link, in memory: when heartbeats and messages last went through (SPEC §3.6).

Not a write: it never bumps an index or wakes a blocking query. After a restart it starts empty,
and a link's age is counted from the first time it is asked for.

Times shown to clients are wall-clock; how long a link has been silent is measured on a monotonic
clock, so that a wall-clock jump (NTP step, VM resume, operator) never fails a healthy link nor
keeps a dead one alive.

With several replicas a heartbeat reaches whichever replica the peer dialed, so the tracker is shared
through the database (`store/postgres/liveness.py`): `take_heard()` hands over the heartbeats this
process saw since the last call, and `merge()` folds in those another replica saw (as an age, so that
the replicas' clocks never meet). The background owner's timeout then counts the latest heartbeat seen
by any replica, and every replica shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from peering.domain import NO_STREAM, StreamStatus


class StreamTracker:
    """The `StreamStatus` of every peering this process has talked to."""

    def __init__(self, started: datetime, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.started = started
        self._monotonic = monotonic
        self._status: dict[str, StreamStatus] = {}
        self._heard: dict[str, float] = {}  # monotonic time of the last heartbeat
        self._rejected: dict[str, float] = {}  # monotonic time the current run of rejected heartbeats began
        self._fresh: dict[str, datetime] = {}  # heartbeats not yet handed to `take_heard` (bounded: known IDs)
        self.version = 0  # bumped on every change, so views built from the statuses know when to rebuild

    def __len__(self) -> int:
        return len(self._status)

    def get(self, peering_id: str) -> StreamStatus:
        """The status of a peering (all `None` until something happened)."""
        return self._status.get(peering_id, NO_STREAM)

    def heartbeat(self, peering_id: str, at: datetime) -> None:
        """A heartbeat went through: received and answered (acceptor) or sent and answered (dialer)."""
        self._status[peering_id] = StreamStatus(last_heartbeat=at, last_receive=at, last_send=at)
        self.version += 1
        self._heard[peering_id] = self._monotonic()
        self._rejected.pop(peering_id, None)
        self._fresh[peering_id] = at

    def take_heard(self) -> dict[str, datetime]:
        """The heartbeats that went through here since the last call (peering ID → when)."""
        fresh, self._fresh = self._fresh, {}
        return fresh

    def merge(self, peering_id: str, at: datetime, age: float) -> None:
        """A heartbeat went through on another replica `age` seconds ago, at its wall-clock time `at`.

        Only a newer one than this process knows changes anything."""
        heard = self._monotonic() - max(0.0, age)
        if heard <= self._heard.get(peering_id, float("-inf")):
            return
        self._heard[peering_id] = heard
        self._rejected.pop(peering_id, None)
        current = self.get(peering_id)
        if current.last_heartbeat is None or at > current.last_heartbeat:
            self._status[peering_id] = StreamStatus(last_heartbeat=at, last_receive=at, last_send=at)
            self.version += 1

    def sent(self, peering_id: str, at: datetime) -> None:
        """A message was sent (or attempted) to the peer."""
        self._status[peering_id] = replace(self.get(peering_id), last_send=at)
        self.version += 1

    def received(self, peering_id: str, at: datetime) -> None:
        """A message arrived from the peer."""
        self._status[peering_id] = replace(self.get(peering_id), last_receive=at)
        self.version += 1

    def silent_for(self, peering_id: str) -> float:
        """Seconds since a heartbeat last went through (since this was first asked if never), monotonic."""
        # never heard: counted from the first time this process asked, so that a link another replica just
        # established (and heard) is not silent here for as long as this process has been running
        now = self._monotonic()
        return now - self._heard.setdefault(peering_id, now)

    def rejected_for(self, peering_id: str) -> float:
        """The peer rejected a heartbeat: seconds since the rejections began (0 for the first of a run; a
        heartbeat that goes through ends the run). Monotonic, and only for known peerings (bounded)."""
        now = self._monotonic()
        return now - self._rejected.setdefault(peering_id, now)

    def forget(self, peering_id: str) -> None:
        """Drop a removed peering."""
        self._status.pop(peering_id, None)
        self.version += 1
        self._heard.pop(peering_id, None)
        self._rejected.pop(peering_id, None)
        self._fresh.pop(peering_id, None)
