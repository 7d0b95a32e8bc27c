"""Connection admission for one listener: a cap on its connections and on each source address's.

Idle connections (waiting for a first request head, between keep-alive requests, or still in the TLS
handshake) are what an attacker can open for free, so they never lock anyone out: when the listener or
a source is at its cap, the connection idle the longest is closed to make room. Only when every
connection in the way has a request in progress is the new one refused (the caller answers 429).

This works on transports, not on HTTP: the HTTP protocol (httptools or h11) only says
when a request starts (`Slot.busy`) and when its response is complete (`Slot.idle`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from ipaddress import IPv4Network, IPv6Network

from peering.api.forwarded import parse_ip

log = logging.getLogger("peering.server")

WARN_EVERY = 60.0  # seconds between two warnings of one listener about its limits (an attacker fills no log)


class Refused(enum.Enum):
    """Why a connection was refused; the value is the text of the 429 answer."""

    SOURCE = "Your IP is issuing too many concurrent connections, please rate limit your calls"
    LISTENER = "Too many concurrent connections, please retry later"


class Slot:
    """One admitted connection's place in its gate; idle until `busy()`."""

    __slots__ = ("_close", "_gate", "_source", "busy_now", "released")

    def __init__(self, gate: Gate, source: _Source, close: Callable[[], None]) -> None:
        self._gate = gate
        self._source = source
        self._close = close
        self.busy_now = False
        self.released = False

    def busy(self) -> None:
        """A request is in progress: this connection is not to be evicted until `idle()`."""
        if not self.busy_now and not self.released:
            self.busy_now = True
            del self._gate.idle[self]
            del self._source.idle[self]

    def idle(self) -> None:
        """No request in progress: this connection is the newest candidate for eviction."""
        if self.busy_now and not self.released:
            self.busy_now = False
            self._gate.idle[self] = None
            self._source.idle[self] = None

    def release(self) -> None:
        """The connection is gone (idempotent)."""
        if self.released:
            return
        self.released = True
        self._close = _nothing  # no reference cycle left through the connection's protocol
        if not self.busy_now:
            del self._gate.idle[self]
            del self._source.idle[self]
        self._gate.count -= 1
        self._source.count -= 1
        if self._source.count == 0:
            del self._gate.sources[self._source.address]

    def evict(self) -> None:
        close = self._close
        self.release()
        close()


def _nothing() -> None:
    pass


class _Source:
    __slots__ = ("address", "count", "idle")

    def __init__(self, address: str) -> None:
        self.address = address
        self.count = 0
        self.idle: OrderedDict[Slot, None] = OrderedDict()  # oldest idle first


class Gate:
    """Admission for one listener (`name` is used in log lines).

    `capacity`: connections the listener holds at most; `per_source`: connections one source address
    holds at most, except addresses in `exempt` (trusted proxies, whose connections carry many clients).
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int,
        per_source: int,
        exempt: Collection[IPv4Network | IPv6Network] = (),
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.per_source = per_source
        self._exempt = tuple(exempt)
        self.count = 0
        self.idle: OrderedDict[Slot, None] = OrderedDict()  # oldest idle first
        self.sources: dict[str, _Source] = {}
        self._pressure = 0  # evictions and refusals since the last warning
        self._warned_at = -WARN_EVERY

    def admit(self, address: str, close: Callable[[], None]) -> Slot | Refused:
        """A slot for a new connection from `address`, making room by evicting idle ones, or why not.

        `close` is how this gate closes the connection when it is evicted later.
        """
        source = self.sources.get(address)
        if source is None:
            source = self.sources[address] = _Source(address)
        if source.count >= self.per_source and not self._exempted(address) and not self._evict(source.idle):
            return self._refuse(source, Refused.SOURCE)
        if self.count >= self.capacity and not self._evict(self.idle):
            return self._refuse(source, Refused.LISTENER)
        slot = Slot(self, source, close)
        self.count += 1
        source.count += 1
        self.idle[slot] = None
        source.idle[slot] = None
        return slot

    def _evict(self, idle: OrderedDict[Slot, None]) -> bool:
        if not idle:
            return False
        oldest = next(iter(idle))
        oldest.evict()
        self._note("closing idle connections to admit new ones")
        return True

    def _refuse(self, source: _Source, why: Refused) -> Refused:
        if source.count == 0:  # made for this call only
            del self.sources[source.address]
        self._note("refusing connections: every connection in the way has a request in progress")
        return why

    def _exempted(self, address: str) -> bool:
        if not self._exempt:
            return False
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in self._exempt)

    def _note(self, what: str) -> None:
        self._pressure += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            log.warning(
                "connection limit reached on the %s port: %s",
                self.name,
                what,
                extra={"connections": self.count, "limit": self.capacity, "per_source": self.per_source,
                       "events": self._pressure},
            )  # fmt: skip
            self._warned_at = now
            self._pressure = 0
