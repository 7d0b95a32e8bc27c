"""The replication streams (SPEC §14): only the dialer opens connections, yet both sides export.

On the dialer, per live link (`link()`, run by the link keeper beside the heartbeats):
- pull: long-polls the acceptor's exports after what it applied (`PullRequest`), applies each page and
  asks again at once; the acceptor answers within milliseconds of a change (push, not poll);
- push: waits on its own exporter until it moves past what the acceptor said it applied, sends the
  pages (`PushRequest`); idle, an empty page every `IDLE` s tells it how far the acceptor is (and the
  acceptor that it is caught up).
On the acceptor, `pull()` answers a long-poll and `push()` applies a page, both for the dialer holding the
link's stream secret (checked as a heartbeat's, in constant time).
Both: `purge()` removes what a deleted or terminated peering imported, in batches, and its bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pydantic import ValidationError

from peering.cluster import Cluster, hash_secret, same_secret
from peering.domain import Peering, Role
from peering.errors import InvalidRequestError, PeeringError, PeerProtocolError, SecretRejectedError
from peering.inbound import RejectionLog
from peering.outbound import log_fields, target_of
from peering.peer.exporter import Exporter
from peering.peer.importer import Importer, NotImportingError
from peering.peer.payload import exportable
from peering.peer.wire import (
    MAX_REPLICATION_BODY_BYTES,
    ExportPage,
    ImportProgress,
    PeerModel,
    PullRequest,
    PushRequest,
)
from peering.peer_client import PeerClient
from peering.store.base import Fence

log = logging.getLogger("peering.replication")

LONG_POLL = 10.0  # seconds a pull waits for a change
IDLE = 10.0  # seconds between two empty pushes while nothing changes
TRANSFER = 10.0  # seconds, beyond the wait, for one page to travel
MAX_BACKOFF = 30.0
PURGE_BATCH = 256  # nodes deleted per unit when a peering's imports go
CONFIRMED = max(LONG_POLL, IDLE) + TRANSFER  # lag: a caught-up message older than this no longer counts
_BAD_STREAM = "invalid peering stream secret"

M = TypeVar("M", bound=PeerModel)


def backoff(failures: int) -> float:
    """Seconds before the next attempt after `failures` failed ones in a row."""
    return min(MAX_BACKOFF, 0.2 * (1 << min(failures, 10)))


@dataclass
class _Progress:
    """How current this side's imports from one peer are (for the lag figure)."""

    started: float
    caught_up: float | None = None  # monotonic: the last page that brought everything up to the exporter's head
    heard: float | None = None  # monotonic: the last page received
    current: bool = False  # the last page reached the head


class Replication:
    """Both sides of the streams (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        peers: PeerClient,
        rejections: RejectionLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._peers = peers
        self._rejections = rejections or RejectionLog()
        self._monotonic = monotonic
        self.exporter = Exporter(cluster)
        self.importer = Importer(cluster)
        self._progress: dict[str, _Progress] = {}
        self._purged: set[str] = set()  # terminated peerings whose imports are gone (this process)

    # --- the dialer ---------------------------------------------------------------------------------------

    async def link(self, peering_id: str, valid: Callable[[], bool]) -> None:
        """Pull and push for one dialer link until it is no longer live (or `valid()` turns false)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._loop(peering_id, valid, self._pull_once), name=f"pull-{peering_id}")
            group.create_task(self._loop(peering_id, valid, self._push_once), name=f"push-{peering_id}")

    async def _loop(
        self,
        peering_id: str,
        valid: Callable[[], bool],
        step: Callable[[Peering, dict[str, object]], Awaitable[None]],
    ) -> None:
        failures = 0
        memory: dict[str, object] = {}  # what one direction keeps between steps
        while True:
            if self._cluster.notifier.closed:  # shutting down: waits end at once, so do not loop on them
                await asyncio.sleep(IDLE)
                continue
            peering = await self._cluster.store.get_by_id(peering_id)
            if peering is None or not exportable(peering) or not valid():
                return
            try:
                await step(peering, memory)
                failures = 0
            except NotImportingError:
                return
            except (PeerProtocolError, InvalidRequestError, SecretRejectedError) as exc:
                failures += 1
                log.warning("replication refused: %s", exc.message, extra=log_fields(peering))
                await asyncio.sleep(backoff(failures))
            except PeeringError as exc:  # the peer down (PeerUnreachableError), the database away: retried
                failures += 1
                log.debug("replication failed: %s", exc.message, extra=log_fields(peering))
                await asyncio.sleep(backoff(failures))
            except Exception:
                failures += 1
                log.exception("replication failed unexpectedly", extra=log_fields(peering))
                await asyncio.sleep(backoff(failures))

    async def _call(self, peering: Peering, operation: str, body: PeerModel, answer: type[M], wait: float) -> M:
        raw = await self._peers.call(
            target_of(peering),
            operation,
            body.model_dump(by_alias=True),
            max_answer=MAX_REPLICATION_BODY_BYTES,
            attempt_timeout=wait + TRANSFER,
        )
        self._cluster.tracker.received(peering.id, self._cluster.now())
        try:
            return answer.model_validate(raw)
        except ValidationError as exc:
            where = ".".join(str(part) for part in exc.errors()[0]["loc"])
            raise PeerProtocolError(f"the peer's {operation} answer is not valid at {where or 'the top'}") from None

    async def _secret(self, peering: Peering) -> str:
        return (await self._cluster.store.secrets(peering.id)).stream_secret or ""

    async def _pull_once(self, peering: Peering, memory: dict[str, object]) -> None:
        state = await self.importer.state(peering.id)
        request = PullRequest(
            PeerID=peering.peer_id,
            StreamSecret=await self._secret(peering),
            Generation=state.generation,
            SinceSeq=state.applied_seq,
            WaitMs=int(LONG_POLL * 1000),
        )
        page = await self._call(peering, "exports/pull", request, ExportPage, LONG_POLL)
        base = 0 if page.full else state.applied_seq  # a full page starts over (a new generation too)
        if await self.importer.apply(peering, page, base) is not None:
            self._heard(peering, page)

    async def _push_once(self, peering: Peering, memory: dict[str, object]) -> None:
        progress = memory.get("progress")
        if not isinstance(progress, ImportProgress):
            ask = PushRequest(PeerID=peering.peer_id, StreamSecret=await self._secret(peering))
            memory["progress"] = await self._call(peering, "exports/push", ask, ImportProgress, 0.0)
            return
        exporter = self.exporter
        page = await exporter.page(peering, progress.generation, progress.applied_seq)
        if not page.full and not page.upserts and page.services is None:
            await exporter.wait(peering, progress.generation, progress.applied_seq, IDLE)
            page = await exporter.page(peering, progress.generation, progress.applied_seq)
        base = 0 if page.full else progress.applied_seq
        push = PushRequest(PeerID=peering.peer_id, StreamSecret=await self._secret(peering), BaseSeq=base, Page=page)
        answer = await self._call(peering, "exports/push", push, ImportProgress, 0.0)
        memory["progress"] = answer
        if not answer.accepted:
            log.info("the peer asked for exports from another point", extra=log_fields(peering))

    # --- the acceptor -------------------------------------------------------------------------------------

    async def _authenticated(self, request: PullRequest | PushRequest) -> Peering:
        """The acceptor link this request's stream secret proves (the steps of a heartbeat's check).

        Raises:
            SecretRejectedError: unknown ID or wrong secret (alike).
            InvalidRequestError: the link is not live (terminated, deleted, not established).
        """
        store = self._cluster.store
        peering = await store.get_by_id(request.peer_id)
        secrets = await store.secrets(request.peer_id)
        valid = same_secret(hash_secret(request.stream_secret), secrets.stream_hash)
        if peering is None or peering.role is not Role.ACCEPTOR or not valid:
            self._rejections.warning(
                "rejected a replication request with a wrong stream secret",
                log_fields(peering) if peering is not None else {},
            )
            raise SecretRejectedError(_BAD_STREAM)
        if not exportable(peering):
            raise InvalidRequestError(f"the peering is {peering.state.value}, not replicating")
        self._cluster.tracker.received(peering.id, self._cluster.now())
        return peering

    async def pull(self, request: PullRequest) -> ExportPage:
        """Answer a dialer's long-poll: this side's exports after its import state, once there are any."""
        peering = await self._authenticated(request)
        await self.exporter.wait(peering, request.generation, request.since_seq, request.wait_ms / 1000)
        page = await self.exporter.page(peering, request.generation, request.since_seq)
        self._cluster.tracker.sent(peering.id, self._cluster.now())
        return page

    async def push(self, request: PushRequest) -> ImportProgress:
        """Apply a dialer's page (or, without one, say how far this side got).

        Raises:
            InvalidRequestError: the page is not usable (logged, nothing applied).
        """
        peering = await self._authenticated(request)
        importer = self.importer
        accepted = request.page is not None
        if request.page is not None:
            try:
                applied = await importer.apply(peering, request.page, request.base_seq)
            except NotImportingError:
                raise InvalidRequestError("the peering is not replicating") from None
            except InvalidRequestError as exc:
                self._rejections.warning("rejected a replication page", {**log_fields(peering), "reason": exc.message})
                raise
            accepted = applied is not None
            if accepted:
                self._heard(peering, request.page)
        state = await importer.state(peering.id)
        return ImportProgress(Generation=state.generation, AppliedSeq=state.applied_seq, Accepted=accepted)

    def refused(self, reason: str) -> None:
        """Log a replication message refused before it was read (too large, malformed), rate-limited."""
        self._rejections.warning("rejected a replication message", {"reason": reason[:200]})

    # --- both ---------------------------------------------------------------------------------------------

    def _heard(self, peering: Peering, page: ExportPage) -> None:
        now = self._monotonic()
        progress = self._progress.get(peering.id)
        if progress is None:
            progress = self._progress[peering.id] = _Progress(started=now)
            self._cluster.metrics.replication_lag(peering.name, peering.partition, lambda: self.lag(peering.id))
        progress.heard = now
        progress.current = page.seq >= page.head and not page.more
        if progress.current:
            progress.caught_up = now

    def lag(self, peering_id: str) -> float:
        """Seconds this side's imports from the peer may be behind its exports: 0 while the last page reached
        the exporter's head and came within `CONFIRMED` s; else the time since they last did."""
        progress = self._progress.get(peering_id)
        if progress is None:
            return 0.0
        now = self._monotonic()
        if progress.current and progress.heard is not None and now - progress.heard <= CONFIRMED:
            return 0.0
        return now - (progress.caught_up if progress.caught_up is not None else progress.started)

    async def purge(self, peering: Peering, fence: Fence | None = None) -> int:
        """Remove everything imported through a deleted or terminated peering (batched), then its marks and
        import state; the record's service lists are emptied. Returns how many nodes went.

        Raises:
            LeaseLostError: `fence` no longer holds (what was removed stays removed; the rest waits).
        """
        removed = 0
        while True:
            async with self._cluster.write() as tx:
                if fence is not None:
                    await tx.fence(fence)
                count = await tx.catalog.delete_peer(peering.partition, peering.name, PURGE_BATCH)
                if count < PURGE_BATCH:  # the last batch: the bookkeeping goes in the same unit as the last rows
                    await tx.replication.forget(peering.id)
                    current = await tx.get_by_id(peering.id)
                    if current is not None and (current.imported_services or current.exported_services):
                        await tx.save(replace(current, imported_services=(), exported_services=()))
            removed += count
            if count < PURGE_BATCH:
                break
            await asyncio.sleep(0)  # other units get their turn between batches
        self.importer.forget(peering.id)
        if self._progress.pop(peering.id, None) is not None:
            self._cluster.metrics.forget_replication(peering.name, peering.partition)
        if removed:
            log.info("removed what the peering imported", extra={**log_fields(peering), "nodes": removed})
        return removed

    async def purge_terminated(self, fence: Fence | None = None) -> None:
        """Purge every terminated peering not purged yet by this process (FAILING ones keep their imports)."""
        peerings = await self._cluster.store.terminated()
        self._purged &= {p.id for p in peerings}  # removed ones, and any no longer terminated, leave the set
        for peering in peerings:
            if peering.id not in self._purged:
                await self.purge(peering, fence)
                self._purged.add(peering.id)
