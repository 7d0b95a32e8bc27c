"""Keeping held blocking queries out of the cyclic garbage collector's way (issue 16).

Each held query keeps about 55 objects the collector tracks (its connection, its request's coroutines,
the middlewares' closures), which it does not free: they go by reference counting when the query ends.
Python's collector still walks every one of them at each full collection, and a full collection comes
whenever a quarter more objects than it last kept have survived the younger ones: with 10,000 queries
held, about 640,000 objects, 0.3-0.4 s with the event loop held, on every wake-up and every re-arm of
the watchers, while the other requests wait.

So the objects of parked queries are frozen (`gc.freeze()`: moved where collections do not look) every
`FREEZE_EVERY` new parked queries, which costs nothing. What is frozen is still freed when its count
drops; only a reference cycle among frozen objects would wait. So once most of the queries have gone
(fewer than a quarter of the most parked since the last thaw, for `THAW_AFTER` s), everything is thawed,
collected once (a short pause: few queries are left) and frozen again, as the process froze what it
built at start-up (`peering.server.process`).

While that many are held, the youngest generation is also collected every `MANY_YOUNG` net allocations
instead of Python's 700: an answer and its re-arm allocate about a hundred objects that die young, so a
wake-up of 10,000 watchers ran some 300 collections (about a tenth of its time). The thaw puts the usual
threshold back: kept for good, it left more cyclic garbage uncollected after a burst of other requests
(the hostile-clients attack ended 38-50 MiB over its start instead of 30-35).

Open connections count as well (`peering.server.protocol`), in the same Freezer of the event loop
(`for_loop`; the collector is the process's): 2,000 idle connections of an attack kept some 60 ms of
walking in every full collection. A freeze needs `FREEZE_EVERY` of them held at once, not only that many
since the last freeze, so that a server with a few connections that come and go never freezes (a cycle
among frozen objects would wait for the thaw, and no thaw comes without a peak).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref

log = logging.getLogger("peering.api")

FREEZE_EVERY = 1024  # parked queries since the last freeze
THAW_AFTER = 5.0  # s with few parked queries before a thaw
MANY_YOUNG = 20_000  # the youngest generation's threshold while many queries are parked


class Freezer:
    """Counts parked queries and open connections, and freezes or thaws the collector's view of them."""

    def __init__(self, every: int = FREEZE_EVERY, thaw_after: float = THAW_AFTER) -> None:
        self._every = every
        self._thaw_after = thaw_after
        self.parked = 0
        self._fresh = 0  # queries parked since the last freeze (whether still parked or not)
        self._peak = 0  # the most parked at once since the last thaw
        self._thaw: asyncio.TimerHandle | None = None
        self._young: int | None = None  # the youngest generation's threshold before `MANY_YOUNG`

    def joined(self) -> None:
        self.parked += 1
        self._fresh += 1
        self._peak = max(self._peak, self.parked)
        if self._fresh >= self._every and self.parked >= self._every:
            self._fresh = 0
            gc.freeze()
            young, *older = gc.get_threshold()
            if young < MANY_YOUNG:
                self._young = young
                gc.set_threshold(MANY_YOUNG, *older)
        if self._thaw is not None and self.parked * 4 >= self._peak:
            self._thaw.cancel()
            self._thaw = None

    def left(self) -> None:
        self.parked -= 1
        if self._thaw is None and self._peak >= self._every and self.parked * 4 < self._peak:
            self._thaw = asyncio.get_running_loop().call_later(self._thaw_after, self._thaw_now)

    def _thaw_now(self) -> None:
        self._thaw = None
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        if self._young is not None:
            gc.set_threshold(self._young, *gc.get_threshold()[1:])
            self._young = None
        self._peak, self._fresh = self.parked, 0
        log.debug(
            "blocking queries: collected %d objects in %.0f ms after they went",
            collected,
            (time.perf_counter() - started) * 1000,
        )


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Freezer] = weakref.WeakKeyDictionary()


def for_loop() -> Freezer:
    """The Freezer of the running event loop, shared by its held queries and its open connections."""
    loop = asyncio.get_running_loop()
    freezer = _BY_LOOP.get(loop)
    if freezer is None:
        freezer = _BY_LOOP[loop] = Freezer()
    return freezer
