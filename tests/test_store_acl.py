"""The ACL store contract, on SQLite and on PostgreSQL alike: policies, tokens (secrets only as hashes),
the one bootstrap, and the index counter shared with the peerings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from peering.acl_model import AclToken, Policy, PolicyLink
from peering.domain import Peering, PeeringState, Role
from peering.errors import NameTakenError, RowMissingError, SecretAlreadyUsedError
from peering.store.base import AclStore, Store
from tests.postgres import BACKENDS, Backend, backend_for

pytestmark = pytest.mark.anyio

CREATED = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
A1 = "00000000-0000-4000-8000-0000000000a1"
A2 = "00000000-0000-4000-8000-0000000000a2"
A3 = "00000000-0000-4000-8000-0000000000a3"


@dataclass
class Stores:
    peerings: Store
    acl: AclStore


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request.param, tmp_path, lambda: str(request.getfixturevalue("postgres")))


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[Stores]:
    s = await backend.open()
    yield Stores(s, backend.acl(s))
    await s.close()


def token(accessor: str, *policies: Policy, **kw: object) -> AclToken:
    links = tuple(PolicyLink(p.id, p.name) for p in policies)
    return AclToken(accessor, policies=links, create_time=CREATED, **kw)  # type: ignore[arg-type]


async def test_policies_take_indexes_from_the_shared_counter(stores: Stores) -> None:
    acl = stores.acl
    p = await acl.save_policy(Policy("p1", "readers", "d", 'peering = "read"'))
    assert (p.create_index, p.modify_index) == (2, 2)
    async with stores.peerings.transaction() as tx:
        await tx.save(Peering("1", "a", "default", Role.ACCEPTOR, PeeringState.INITIAL))
    updated = await acl.save_policy(replace(p, description="new"))
    assert (updated.create_index, updated.modify_index) == (2, 4)
    assert await stores.peerings.current_index() == 4
    assert await acl.policy(id="p1") == updated
    assert await acl.policy(name="readers") == updated
    assert await acl.policy(name="READERS") is None  # policy names are compared exactly
    assert await acl.policy(id="nope") is None


async def test_policy_names_are_unique(stores: Stores) -> None:
    await stores.acl.save_policy(Policy("p1", "readers", "", ""))
    with pytest.raises(NameTakenError) as taken:
        await stores.acl.save_policy(Policy("p2", "readers", "", ""))
    assert (taken.value.kind, taken.value.name) == ("acl_policy", "readers")
    assert [p.id for p in await stores.acl.policies()] == ["p1"]
    assert await stores.peerings.current_index() == 2  # the refused write took no index


async def test_policies_are_listed_by_name(stores: Stores) -> None:
    for pid, name in [("1", "b"), ("2", "B"), ("3", "a-b"), ("4", "a1")]:
        await stores.acl.save_policy(Policy(pid, name, "", ""))
    assert [p.name for p in await stores.acl.policies()] == ["B", "a-b", "a1", "b"]  # by bytes
    assert [p.id for p in await stores.acl.policies(["4", "1", "missing"])] == ["4", "1"]
    assert await stores.acl.policies([]) == []


async def test_deleting_a_policy(stores: Stores) -> None:
    await stores.acl.save_policy(Policy("p1", "readers", "", ""))
    assert await stores.acl.delete_policy("p1")
    assert await stores.peerings.current_index() == 3
    assert not await stores.acl.delete_policy("p1")
    assert await stores.peerings.current_index() == 3  # deleting nothing is no write
    assert await stores.acl.policies() == []


async def test_a_token_round_trips_with_its_policies_named(stores: Stores) -> None:
    readers = await stores.acl.save_policy(Policy("p1", "readers", "", ""))
    writers = await stores.acl.save_policy(Policy("p2", "writers", "", ""))
    expires = CREATED + timedelta(hours=1)
    new = token(A1, writers, readers, description="d", expiration_time=expires, allowed_cidrs=("10.0.0.0/8",))
    saved = await stores.acl.save_token(replace(new, local=True), "hash-1")
    assert (saved.create_index, saved.modify_index) == (4, 4)
    read = await stores.acl.token(A1)
    assert read == replace(saved, secret_id=None)
    assert read is not None
    assert read.policies == (PolicyLink("p2", "writers"), PolicyLink("p1", "readers"))  # in the token's order
    assert (read.expiration_time, read.create_time, read.local, read.management) == (expires, CREATED, True, False)
    assert await stores.acl.token_by_secret("hash-1") == read
    assert await stores.acl.token_by_secret("hash-2") is None
    assert await stores.acl.token(A2) is None
    await stores.acl.delete_policy("p1")  # a deleted policy drops out of the token's links
    assert [link.name for link in (await stores.acl.token(A1)).policies] == ["writers"]  # type: ignore[union-attr]


async def test_updating_a_token_keeps_its_secret_and_creation(stores: Stores) -> None:
    readers = await stores.acl.save_policy(Policy("p1", "readers", "", ""))
    saved = await stores.acl.save_token(token(A1, management=True), "hash-1")
    changed = replace(saved, description="changed", policies=(PolicyLink("p1", "readers"),), allowed_cidrs=("::1",))
    updated = await stores.acl.save_token(changed)
    assert (updated.create_index, updated.modify_index) == (saved.create_index, saved.modify_index + 1)
    read = await stores.acl.token_by_secret("hash-1")
    assert read is not None
    assert (read.description, read.policies, read.allowed_cidrs) == (
        "changed",
        (PolicyLink(readers.id, "readers"),),
        ("::1",),
    )
    assert (read.management, read.create_time) == (True, CREATED)


async def test_token_rules(stores: Stores) -> None:
    await stores.acl.save_token(token(A1), "hash-1")
    with pytest.raises(SecretAlreadyUsedError) as accessor_taken:
        await stores.acl.save_token(token(A1), "hash-2")
    with pytest.raises(SecretAlreadyUsedError) as secret_taken:
        await stores.acl.save_token(token(A2), "hash-1")
    assert (accessor_taken.value.what, secret_taken.value.what) == ("accessor", "secret")
    with pytest.raises(RowMissingError):  # an update (no secret) of a token that is not there
        await stores.acl.save_token(token(A3))
    assert [t.accessor_id for t in await stores.acl.tokens()] == [A1]
    assert await stores.peerings.current_index() == 2  # the refused writes took no index


async def test_tokens_are_listed_oldest_first(stores: Stores) -> None:
    for accessor in (A3, A1, A2):
        await stores.acl.save_token(token(accessor), f"hash-{accessor}")
    await stores.acl.save_token(replace(token(A3), description="touched"))  # an update does not reorder
    assert [t.accessor_id for t in await stores.acl.tokens()] == [A3, A1, A2]


async def test_deleting_a_token(stores: Stores) -> None:
    await stores.acl.save_token(token(A1), "hash-1")
    assert await stores.acl.delete_token(A1)
    assert not await stores.acl.delete_token(A1)
    assert await stores.acl.token_by_secret("hash-1") is None
    assert await stores.peerings.current_index() == 3


async def test_bootstrap_happens_once_even_when_raced(stores: Stores) -> None:
    results = await asyncio.gather(
        *(stores.acl.bootstrap(token(accessor, management=True), f"hash-{accessor}") for accessor in (A1, A2, A3))
    )
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert [t.accessor_id for t in await stores.acl.tokens()] == [done[0].accessor_id]
    assert await stores.acl.bootstrap(token("00000000-0000-4000-8000-0000000000b1"), "hash-b1") is None


async def test_a_failed_bootstrap_can_be_tried_again(stores: Stores) -> None:
    await stores.acl.save_token(token(A1), "taken")
    with pytest.raises(SecretAlreadyUsedError):
        await stores.acl.bootstrap(token(A2, management=True), "taken")
    assert await stores.acl.bootstrap(token(A2, management=True), "fresh") is not None


async def test_acl_data_survives_a_reopen(backend: Backend) -> None:
    s = await backend.open()
    acl = backend.acl(s)
    policy = await acl.save_policy(Policy("p1", "readers", "desc", 'peering = "read"'))
    saved = await acl.save_token(token(A1, policy, expiration_time=CREATED + timedelta(days=1)), "hash-1")
    await s.close()
    s = await backend.open()
    try:
        acl = backend.acl(s)
        assert await acl.policies() == [policy]
        assert await acl.token(A1) == saved
        assert await acl.bootstrap(token(A2), "hash-2") is not None  # saving tokens is no bootstrap
    finally:
        await s.close()


async def test_one_unit_of_work_holds_peerings_and_acl_rows_under_one_index(stores: Stores) -> None:
    """ACL rows are written through the same units of work as peerings (the seam), not a store of their own."""
    async with stores.peerings.transaction() as unit:
        peering = await unit.save(Peering("1", "a", "default", Role.ACCEPTOR, PeeringState.INITIAL))
        policy = await unit.acl.save_policy(Policy("p1", "readers", "", ""))
        saved = await unit.acl.save_token(token(A1, policy), "hash-1")
    assert peering.modify_index == policy.modify_index == saved.modify_index == unit.index == 2

    async def failing() -> None:
        async with stores.peerings.transaction() as unit:
            await unit.acl.save_policy(Policy("p2", "writers", "", ""))
            await unit.save(Peering("2", "b", "default", Role.ACCEPTOR, PeeringState.INITIAL))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert await stores.acl.policy(id="p2") is None  # undone with the peering
    assert await stores.peerings.get_by_id("2") is None
    assert await stores.peerings.current_index() == 2
    async with stores.peerings.transaction() as unit:
        assert await unit.acl.delete_token("nobody") is False
        assert not unit.wrote  # deleting nothing takes no index


async def test_a_policy_update_never_recreates_a_deleted_policy(stores: Stores) -> None:
    """An update (the caller read the policy earlier) of one deleted since is refused, not an insert."""
    p = await stores.acl.save_policy(Policy("p1", "readers", "", ""))
    updated = await stores.acl.save_policy(replace(p, description="new"), update=True)
    assert (updated.create_index, updated.modify_index) == (2, 3)
    assert await stores.acl.delete_policy("p1")
    with pytest.raises(RowMissingError) as missing:
        await stores.acl.save_policy(replace(p, description="late"), update=True)
    assert (missing.value.kind, missing.value.key) == ("acl_policy", "p1")
    assert await stores.acl.policy(id="p1") is None
    assert await stores.peerings.current_index() == 4  # the refused update took no index
