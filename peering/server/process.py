"""The `peering serve` process: run the cluster until SIGTERM/SIGINT, exit 0 after a clean shutdown.

The event loop is uvloop's (libuv): with httptools it is the fastest stack uvicorn has.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import uvloop

from peering import logs
from peering.server.listeners import listening
from peering.server.lock import StartupError
from peering.server.memory import trimming, tune_allocator
from peering.settings import Settings

log = logging.getLogger("peering.server")


async def serve(settings: Settings) -> None:
    """Run the cluster until SIGTERM/SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        log.info("received %s, shutting down", signame)
        stop.set()

    async with listening(settings) as (runtime, bound):
        # before the ready line: a SIGTERM sent as soon as it is read must still give a clean shutdown
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        log.info(
            "cluster ready",
            extra={
                "cluster_id": runtime.identity.cluster_id,
                "datacenter": settings.datacenter,
                "http_addr": bound.http_addr,
                "peering_addr": bound.peering_addr,
                "advertise_addr": runtime.advertise_addresses[0],
                "data_dir": str(settings.data_dir),
            },
        )
        # what start-up built (modules, the apps, schemas) lives as long as the process: out of the cyclic
        # collector's way, a full collection no longer walks it (under a connection flood those collections
        # held the event loop for 0.3-0.5 s)
        gc.collect()
        gc.freeze()  # (with many blocking queries held, `peering.api.frozen` collects less often too)
        trimmer = asyncio.create_task(trimming())  # gives back what bursts of connections and bodies freed
        try:
            await stop.wait()
        finally:
            trimmer.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("stopped")


def run(settings: Settings) -> int:
    """The `peering serve` command: exit 0 after a clean shutdown, 1 when the cluster cannot start."""
    logs.configure(settings.log_level, settings.log_format)
    tune_allocator()  # before the loop's threads exist: see peering/server/memory.py
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings))
    except StartupError as exc:
        log.error("%s", exc)  # the whole reason in one line, not a traceback
        return 1
    except (OSError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
