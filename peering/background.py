"""Periodic work that runs while this process holds leadership: removing deleted peerings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from peering.leadership import Leadership
from peering.service import PeeringService

log = logging.getLogger("peering.background")


async def _removal_loop(service: PeeringService, leadership: Leadership, interval: float) -> None:
    while True:
        try:
            if await leadership.is_leader():
                await service.remove_due()
        except Exception:
            # one bad pass must not end the loop; the next pass retries
            log.exception("removing deleted peerings failed")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running(service: PeeringService, leadership: Leadership, *, removal_interval: float) -> AsyncIterator[None]:
    """Run the background loops for the duration of the block, then stop them."""
    task = asyncio.create_task(_removal_loop(service, leadership, removal_interval), name="peering-removals")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
