"""Liveness of each link, in memory: when heartbeats and messages last went through (SPEC §3.6).

Not a write: it never bumps an index or wakes a blocking query. After a restart it starts empty,
and a link's age is counted from the start of the process.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from peering.domain import StreamStatus


class StreamTracker:
    """The `StreamStatus` of every peering this process has talked to."""

    def __init__(self, started: datetime) -> None:
        self.started = started
        self._status: dict[str, StreamStatus] = {}

    def get(self, peering_id: str) -> StreamStatus:
        """The status of a peering (all `None` until something happened)."""
        return self._status.get(peering_id, StreamStatus())

    def heartbeat(self, peering_id: str, at: datetime) -> None:
        """A heartbeat went through: received and answered (acceptor) or sent and answered (dialer)."""
        self._status[peering_id] = StreamStatus(last_heartbeat=at, last_receive=at, last_send=at)

    def sent(self, peering_id: str, at: datetime) -> None:
        """A message was sent (or attempted) to the peer."""
        self._status[peering_id] = replace(self.get(peering_id), last_send=at)

    def received(self, peering_id: str, at: datetime) -> None:
        """A message arrived from the peer."""
        self._status[peering_id] = replace(self.get(peering_id), last_receive=at)

    def silent_since(self, peering_id: str) -> datetime:
        """Since when no heartbeat went through (the process start if never)."""
        last = self.get(peering_id).last_heartbeat
        return last if last is not None else self.started

    def forget(self, peering_id: str) -> None:
        """Drop a removed peering."""
        self._status.pop(peering_id, None)
