"""Establish and check (SPEC §3.2, §7): the dialer's side of a new peering, from the token's checks to the
stored link. `PeeringService` delegates both here; callers keep importing the request and result types
from `peering.service`.

Correctness across replicas rests on the compare-and-set in `_save_dialer` (the database serialises units
of work); the per-name lock only saves the work of a second exchange inside one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from peering import tokens
from peering.acl_model import Access, Level
from peering.cluster import Cluster
from peering.domain import Event, Peering, PeeringState, Remote, Role, transition
from peering.errors import PeeringConflictError, PeeringError, PermissionDeniedError
from peering.identity import fingerprint
from peering.locks import KeyedLocks
from peering.outbound import Outbound, log_fields, token_target
from peering.rules import check_meta, check_peer_name, normalize_partition
from peering.store.base import Secrets

log = logging.getLogger("peering.service")  # the service's logger: the log lines are the service's


@dataclass(frozen=True)
class EstablishRequest:
    """What `POST /v1/peering/establish` (and `/check`) asks for, already decoded."""

    name: str
    token: str
    partition: str | None = None
    meta: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CheckResult:
    """Whether establish would succeed with a token, and what the token says about the remote."""

    is_valid: bool
    error_message: str | None
    remote_server_name: str = ""
    remote_datacenter: str = ""
    remote_peer_id: str = ""
    remote_server_version: str = ""
    remote_server_compat_version: str = ""


@dataclass(frozen=True)
class _Plan:
    """An establish that passed every local check."""

    name: str
    partition: str
    meta: dict[str, str]
    token: tokens.PeeringToken
    remote_cluster: str
    existing: Peering | None


class Establisher:
    """Run establish and check for one cluster (see the module docstring)."""

    def __init__(self, cluster: Cluster, outbound: Outbound) -> None:
        self._cluster = cluster
        self._outbound = outbound
        self.name_locks: KeyedLocks[tuple[str, str]] = KeyedLocks()  # (partition, name) of establishes

    async def _plan(self, request: EstablishRequest, access: Access) -> _Plan:
        """Every check establish makes before dialing (SPEC §3.2), in Consul's order (ACLs after validation)."""
        name = check_peer_name(request.name)
        partition = normalize_partition(request.partition)
        token = tokens.decode(request.token)
        meta = check_meta(request.meta)
        await access.require("peering", Level.WRITE)
        remote_cluster = fingerprint(token.ca[0])
        if remote_cluster == self._cluster.identity.ca_fingerprint:
            raise PeeringConflictError("cannot create a peering within the same cluster")
        store = self._cluster.store
        existing = await store.get(partition, name)
        if existing is not None:
            if existing.role is Role.ACCEPTOR:
                raise PeeringConflictError(
                    f'cannot create peering with name: "{name}"; there is an existing peering expecting to be dialed'
                )
            refuse_deleted(existing)
        listed, _ = await store.list_peerings(partition)
        for other in listed:
            live = not other.is_deleted and other.state is not PeeringState.TERMINATED
            if live and other.remote_cluster == remote_cluster and other.name != name:
                raise PeeringConflictError(f'a peering with this cluster already exists: "{other.name}"')
        return _Plan(name, partition, meta, token, remote_cluster, existing)

    async def establish(self, request: EstablishRequest, access: Access) -> Peering:
        """`PeeringService.establish` (documented there)."""
        try:
            # validated before anything is keyed by them; the lock goes once nobody holds or awaits it
            key = (normalize_partition(request.partition), check_peer_name(request.name))
            async with self.name_locks.hold(key):
                plan = await self._plan(request, access)
                peering_id = plan.existing.id if plan.existing else self._cluster.new_id()
                answer = await self._outbound.exchange(plan.token, plan.partition, peering_id)
                secret = answer["StreamSecret"]
                # the first heartbeat goes out now, not one interval later (SPEC §3.2), while the link is saved
                first = asyncio.ensure_future(
                    self._outbound.send_heartbeat(token_target(plan.token), plan.token.peer_id, secret)
                )
                try:
                    saved = await self._save_dialer(plan, peering_id, secret)
                except BaseException:
                    first.cancel()
                    first.add_done_callback(_retrieved)
                    # the acceptor consumed the secret: undo its side too (SPEC §3.2, nothing left behind)
                    await self._outbound.abandon(plan.token, secret)
                    raise
        except PeeringError as exc:
            self._cluster.metrics.establish(exc.code)
            raise
        self._cluster.metrics.establish("ok")
        self._cluster.tracker.forget(saved.id)
        log.info("peering established", extra={**log_fields(saved), "remote_datacenter": saved.remote.datacenter})
        await self._outbound.heartbeat_answered(saved, first)
        return saved

    async def _save_dialer(self, plan: _Plan, peering_id: str, stream_secret: str) -> Peering:
        """Save the dialer if the name still holds what the plan read outside this unit (compare-and-set; the
        re-read is exact, units being serialised): otherwise the race is lost (PeeringConflictError), and the
        caller undoes the exchange. The in-process name lock only saves work; correctness rests on this."""
        token = plan.token
        async with self._cluster.write() as tx:
            current = await tx.get(plan.partition, plan.name)
            expected = plan.existing.modify_index if plan.existing is not None else None
            if (current.modify_index if current is not None else None) != expected:
                raise PeeringConflictError(
                    f'cannot create peering with name: "{plan.name}"; the name is already in use'
                )
            base = current or Peering(peering_id, plan.name, plan.partition, Role.DIALER, PeeringState.INITIAL)
            saved = await tx.save(
                replace(
                    base,
                    state=transition(Role.DIALER, base.state, Event.ESTABLISHED),
                    meta=plan.meta,
                    peer_id=token.peer_id,
                    peer_ca_pems=token.ca,
                    peer_server_name=token.server_name,
                    peer_server_addresses=token.server_addresses,
                    remote=Remote(token.remote.datacenter, token.remote.partition),
                    remote_cluster=plan.remote_cluster,
                )
            )
            await tx.set_secrets(saved.id, Secrets(stream_secret=stream_secret))
        return saved

    async def check(self, request: EstablishRequest, access: Access) -> CheckResult:
        """`PeeringService.check` (documented there)."""
        token: tokens.PeeringToken | None = None
        try:
            plan = await self._plan(request, access)
            token = plan.token
            answer = await self._outbound.probe(token, plan.partition)
        except PermissionDeniedError:
            raise
        except PeeringError as exc:
            if token is None:
                token = _decoded_or_none(request.token)
            return CheckResult(
                False,
                exc.message,
                remote_server_name=token.server_name if token else "",
                remote_datacenter=token.remote.datacenter if token else "",
                remote_peer_id=token.peer_id if token else "",
            )
        return CheckResult(
            True,
            None,
            remote_server_name=answer["ServerName"],
            remote_datacenter=answer["Datacenter"],
            remote_peer_id=token.peer_id,
            remote_server_version=answer["Version"],
            remote_server_compat_version=answer["ProtocolVersion"],
        )


def refuse_deleted(existing: Peering) -> None:
    """Refuse to reuse a name whose peering is marked for deletion (establish and token generation alike).

    Raises:
        PeeringConflictError: the peering is being deleted.
    """
    if existing.is_deleted:
        raise PeeringConflictError(
            f'cannot create peering with name: "{existing.name}"; the peering is marked for deletion'
        )


def _retrieved(call: asyncio.Future[Any]) -> None:
    """The first heartbeat of an establish that failed after all: its outcome does not matter."""
    if not call.cancelled():
        call.exception()


def _decoded_or_none(raw: str) -> tokens.PeeringToken | None:
    try:
        return tokens.decode(raw)
    except PeeringError:
        return None
