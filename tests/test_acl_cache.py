"""ACL resolution from memory (issue 16, `peering/acl_cache.py`): a resolved secret reads nothing the second time,
and every change stops or starts working exactly when it should: this process's writes at once, another
writer's (the SQLite file, a PostgreSQL replica) when the change feed shows it, an expiry at the expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from peering import acl_cache
from peering.acl import AclService
from peering.acl_cache import CachedAcl
from peering.acl_input import PolicyRef, TokenSpec
from peering.acl_model import ALLOW_ALL, Level
from peering.errors import PermissionDeniedError
from peering.store.acl import DatabaseAcl
from peering.store.base import Store
from peering.store.open import DATABASE_FILE
from peering.store.postgres.notify import PostgresNotifier
from peering.store.postgres.store import PostgresStore
from peering.store.sqlite import SqliteStore
from tests.test_acl import MANAGEMENT_SECRET, Acl, _acl_cluster

pytestmark = pytest.mark.anyio

READS = ("token", "token_by_secret", "policies", "policy", "tokens")


class Monotonic:
    """A monotonic clock the test moves by hand (the cache's poll is due only when the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def pass_poll(self) -> None:
        self.now += acl_cache.POLL + 0.01


def _cache(service: AclService) -> CachedAcl:
    cache = service._store
    assert isinstance(cache, CachedAcl)
    return cache


def count_reads(service: AclService, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the cache reads the ACL store underneath, by method."""
    inner = _cache(service)._inner
    counts = dict.fromkeys(READS, 0)
    for name in READS:
        real = getattr(inner, name)

        def counted(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(inner, name, counted)
    return counts


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


@pytest.fixture
def monotonic(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    """The clock of the cluster's ACL cache: it polls the feed only when the test moves it."""
    clock = Monotonic()
    monkeypatch.setattr(_cache(acl.runtime.acl)._poll, "_monotonic", clock)
    return clock


async def _polled(service: AclService, clock: Monotonic) -> None:
    """Pass the poll, let a resolution find it due (memory answers; the feed is read beside it) and wait
    for that read."""
    clock.pass_poll()
    _cache(service).held(None)
    await _cache(service).settled()


async def _reader(acl: Acl, rules: str = 'peering = "read"', **fields: Any) -> tuple[dict[str, Any], str]:
    policy = await acl.policy("reader", rules)
    return policy, str((await acl.token("reader", **fields))["SecretID"])


async def _status(acl: Acl, secret: str) -> tuple[int, str]:
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        response = await client.get("/v1/peerings")
    return response.status_code, response.text


async def test_a_second_resolution_reads_nothing(
    acl: Acl, monotonic: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once resolved, a secret's token, policies and parsed rules come from memory: no store read per request."""
    _, secret = await _reader(acl)
    service = acl.runtime.acl
    reads = count_reads(service, monkeypatch)
    caller = service.caller(secret, "127.0.0.1")
    await caller.require("peering", Level.READ)
    assert (reads["token_by_secret"], reads["policies"]) == (1, 1)
    for _ in range(100):
        await caller.require("peering", Level.READ)
        await service.caller(None, "127.0.0.1").allowed_named("service", "web", Level.READ)  # anonymous too
    assert reads == {"token": 1, "token_by_secret": 1, "policies": 1, "policy": 0, "tokens": 0}
    assert (await _status(acl, secret))[0] == 200
    assert reads["token_by_secret"] == 1


async def test_held_answers_only_what_memory_knows_and_refuses_nothing(acl: Acl, monotonic: Monotonic) -> None:
    """`AclService.held`, the await-free first try of every check: the resolved token while the feed is read and
    the entry held (also when the poll is due: the feed is read beside it); None (the full resolution
    decides) before the first resolution, for an expired token and outside AllowedCIDRs."""
    _, secret = await _reader(acl, ExpirationTTL="10s", AllowedCIDRs=["127.0.0.0/8"])
    service = acl.runtime.acl
    assert service.held(secret, "127.0.0.1") is None  # not resolved yet
    accessor = await _accessor(acl, secret)
    held = service.held(secret, "127.0.0.1")
    assert held is not None
    assert held.token.accessor_id == accessor
    assert service.held(secret, "10.0.0.1") is None
    with pytest.raises(PermissionDeniedError, match=r"may not be used from 10\.0\.0\.1$"):
        await service.caller(secret, "10.0.0.1").require("peering", Level.READ)
    monotonic.pass_poll()
    assert service.held(secret, "127.0.0.1") is not None  # the poll is due: memory answers, the feed is read beside
    await _cache(service).settled()
    assert service.held(secret, "127.0.0.1") is not None
    acl.clock.now += timedelta(seconds=10)
    assert service.held(secret, "127.0.0.1") is None
    assert await _status(acl, secret) == (403, "ACL not found")


async def test_a_changed_policy_applies_to_the_next_request(acl: Acl) -> None:
    policy, secret = await _reader(acl)
    assert (await _status(acl, secret))[0] == 200
    body = {"Name": "reader", "Rules": 'peering = "deny"'}
    await acl.management("PUT", f"/v1/acl/policy/{policy['ID']}", body)
    assert await _status(acl, secret) == (
        403,
        f"Permission denied: token with AccessorID '{await _accessor(acl, secret)}' lacks permission 'peering:read'",
    )
    await acl.management("PUT", f"/v1/acl/policy/{policy['ID']}", {**body, "Rules": 'peering = "write"'})
    assert (await _status(acl, secret))[0] == 200


async def _accessor(acl: Acl, secret: str) -> str:
    return (await acl.runtime.acl.resolve(secret, "127.0.0.1")).accessor_id


async def test_a_deleted_token_is_not_found_at_once(acl: Acl) -> None:
    _, secret = await _reader(acl)
    assert (await _status(acl, secret))[0] == 200
    await acl.management("DELETE", f"/v1/acl/token/{await _accessor(acl, secret)}")
    assert await _status(acl, secret) == (403, "ACL not found")


async def test_a_changed_token_and_a_deleted_policy_apply_at_once(acl: Acl) -> None:
    policy, secret = await _reader(acl)
    await acl.policy("writer", 'peering = "write"')
    accessor = await _accessor(acl, secret)
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        assert (await client.post("/v1/peering/token", json={"PeerName": "a"})).status_code == 403
        await acl.management("PUT", f"/v1/acl/token/{accessor}", {"Policies": [{"Name": "writer"}]})
        assert (await client.post("/v1/peering/token", json={"PeerName": "a"})).status_code == 200
        await acl.management("PUT", f"/v1/acl/token/{accessor}", {"Policies": [{"Name": "reader"}]})
        assert (await client.get("/v1/peerings")).status_code == 200
        await acl.management("DELETE", f"/v1/acl/policy/{policy['ID']}")
        assert (await client.get("/v1/peerings")).status_code == 403  # no policy left: the default (deny)


async def test_a_token_expires_at_its_expiry_though_held_in_memory(acl: Acl) -> None:
    _, secret = await _reader(acl, ExpirationTTL="10s")
    assert (await _status(acl, secret))[0] == 200
    acl.clock.now += timedelta(seconds=9.999)
    assert (await _status(acl, secret))[0] == 200
    acl.clock.now += timedelta(milliseconds=1)
    assert await _status(acl, secret) == (403, "ACL not found")


async def test_an_unknown_secret_works_once_a_token_has_it(acl: Acl) -> None:
    """A secret remembered as unknown is forgotten as soon as any token is written."""
    secret = "0e9b8a2c-1d3f-4e5a-9b7c-6d8e0f1a2b3c"
    assert await _status(acl, secret) == (403, "ACL not found")
    await acl.policy("reader", 'peering = "read"')
    await acl.token("reader", SecretID=secret)
    assert (await _status(acl, secret))[0] == 200


async def test_allowed_cidrs_are_checked_at_every_use(acl: Acl) -> None:
    _, secret = await _reader(acl, AllowedCIDRs=["10.0.0.0/8"])
    async with acl.client(source="10.1.2.3", **{"X-Consul-Token": secret}) as inside:
        assert (await inside.get("/v1/peerings")).status_code == 200
    assert (await _status(acl, secret))[0] == 403  # the same token, cached, from 127.0.0.1


async def test_the_cache_is_bounded(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_cache, "MAX_ENTRIES", 2)
    _, first = await _reader(acl)
    secrets = [first] + [str((await acl.token("reader"))["SecretID"]) for _ in range(3)]
    for secret in secrets:
        assert (await _status(acl, secret))[0] == 200
    assert _cache(acl.runtime.acl).size == 2
    assert (await _status(acl, secrets[0]))[0] == 200  # read again, the oldest other one out
    assert _cache(acl.runtime.acl).size == 2


async def test_a_load_overtaken_by_a_change_is_not_kept(
    acl: Acl, monotonic: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolution that read the token before a change committed answers with what it read (it began first),
    but does not keep it: the next resolution reads the change."""
    policy, secret = await _reader(acl)
    service, cache = acl.runtime.acl, _cache(acl.runtime.acl)
    inner = cache._inner
    real_policies = inner.policies
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_policies(ids: list[str] | None = None) -> Any:
        found = await real_policies(ids)
        if ids is not None:
            entered.set()
            await release.wait()
        return found

    monkeypatch.setattr(inner, "policies", slow_policies)
    pending = asyncio.create_task(service.caller(secret, "127.0.0.1").require("peering", Level.READ))
    await entered.wait()
    monkeypatch.setattr(inner, "policies", real_policies)
    await service.save_policy(ALLOW_ALL, policy["ID"], "reader", "", 'peering = "deny"')
    await cache.catch_up()  # the feed is read too before the load ends: nothing later would correct it
    release.set()
    await pending  # it read the old rules
    with pytest.raises(PermissionDeniedError, match="lacks permission 'peering:read'"):
        await service.caller(secret, "127.0.0.1").require("peering", Level.READ)


# -- another writer on the same SQLite file: seen through the change feed


@pytest.fixture
async def other(acl: Acl) -> AsyncIterator[AclService]:
    """The ACL service of a second process on the cluster's SQLite file (it announces nothing)."""
    store = await SqliteStore.open(acl.runtime.settings.data_dir / DATABASE_FILE)
    yield AclService(DatabaseAcl(store), enabled=True, default_policy="deny")
    await store.close()


async def test_another_writers_changes_are_seen_when_the_feed_is_read(
    acl: Acl, other: AclService, monotonic: Monotonic
) -> None:
    policy, secret = await _reader(acl)
    accessor = await _accessor(acl, secret)
    assert (await _status(acl, secret))[0] == 200
    await other.save_policy(ALLOW_ALL, policy["ID"], "reader", "", 'peering = "deny"')
    assert (await _status(acl, secret))[0] == 200  # from memory: the poll is not due and nothing announced it
    await _polled(acl.runtime.acl, monotonic)
    assert (await _status(acl, secret))[0] == 403
    await other.save_policy(ALLOW_ALL, policy["ID"], "reader", "", 'peering = "read"')
    await _cache(acl.runtime.acl).catch_up()
    assert (await _status(acl, secret))[0] == 200
    await other.delete_token(ALLOW_ALL, accessor)
    await _polled(acl.runtime.acl, monotonic)
    assert await _status(acl, secret) == (403, "ACL not found")


async def test_an_announced_write_is_read_before_the_poll(acl: Acl, other: AclService, monotonic: Monotonic) -> None:
    _, secret = await _reader(acl)
    assert (await _status(acl, secret))[0] == 200
    await other.delete_token(ALLOW_ALL, await _accessor(acl, secret))
    acl.runtime.cluster.notifier.notify(await acl.runtime.cluster.store.current_index())
    assert await _status(acl, secret) == (403, "ACL not found")


async def test_a_feed_reaped_past_what_was_read_forgets_everything(
    acl: Acl, other: AclService, monotonic: Monotonic
) -> None:
    policy, secret = await _reader(acl)
    assert (await _status(acl, secret))[0] == 200
    await other.save_policy(ALLOW_ALL, policy["ID"], "reader", "", 'peering = "deny"')
    store = acl.runtime.cluster.store
    assert await store.reap_changes(await store.current_index() + 1) >= 1  # the change is gone from the feed
    await _polled(acl.runtime.acl, monotonic)
    assert (await _status(acl, secret))[0] == 403


# -- replicas on PostgreSQL


@dataclass
class Replica:
    store: PostgresStore
    notifier: PostgresNotifier | None
    acl: AclService


@asynccontextmanager
async def replica(dsn: str, *, notify: bool = True) -> AsyncIterator[Replica]:
    store = await PostgresStore.open(dsn)
    notifier = PostgresNotifier(dsn, poll=30.0) if notify else None  # the counter's poll never does it
    try:
        if notifier is not None:
            notifier.start()
            async with asyncio.timeout(10):
                await notifier.connected.wait()
        feed: Store = store
        acl = AclService(DatabaseAcl(store), enabled=True, default_policy="deny", feed=feed, notifier=notifier)
        await acl.start(MANAGEMENT_SECRET)
        yield Replica(store, notifier, acl)
    finally:
        if notifier is not None:
            await notifier.aclose()
        await store.close()


async def _reader_on(service: AclService, rules: str = 'peering = "read"') -> tuple[str, str, str]:
    policy = await service.save_policy(ALLOW_ALL, None, "reader", "", rules)
    token = await service.create_token(ALLOW_ALL, TokenSpec(policies=[PolicyRef(id=policy.id)]))
    assert token.secret_id is not None
    return policy.id, token.accessor_id, token.secret_id


async def _may_read(service: AclService, secret: str) -> bool:
    try:
        await service.caller(secret, "127.0.0.1").require("peering", Level.READ)
    except PermissionDeniedError as exc:
        if str(exc) == "ACL not found":
            raise
        return False
    return True


async def test_a_token_deleted_through_one_replica_is_refused_on_the_other(postgres: str) -> None:
    """NOTIFY carries replica 1's ACL write to replica 2, whose next resolution reads the feed: well within 1 s."""
    async with replica(postgres) as one, replica(postgres) as two:
        assert two.notifier is not None
        policy_id, accessor, secret = await _reader_on(one.acl)
        assert await _may_read(two.acl, secret)
        watch = two.notifier.watch()
        began = time.monotonic()
        await one.acl.save_policy(ALLOW_ALL, policy_id, "reader", "", 'peering = "deny"')
        assert await watch.wait(5.0)
        assert not await _may_read(two.acl, secret)
        watch = two.notifier.watch()
        await one.acl.delete_token(ALLOW_ALL, accessor)
        assert await watch.wait(5.0)
        with pytest.raises(PermissionDeniedError, match=r"^ACL not found$"):
            await _may_read(two.acl, secret)
        assert time.monotonic() - began < 1.0


async def test_without_notify_a_replica_sees_the_change_at_its_poll(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replica(postgres) as one, replica(postgres, notify=False) as two:
        clock = Monotonic()
        monkeypatch.setattr(_cache(two.acl)._poll, "_monotonic", clock)
        _, accessor, secret = await _reader_on(one.acl)
        assert await _may_read(two.acl, secret)
        await one.acl.delete_token(ALLOW_ALL, accessor)
        assert await _may_read(two.acl, secret)  # from memory until its poll
        await _polled(two.acl, clock)
        with pytest.raises(PermissionDeniedError, match=r"^ACL not found$"):
            await _may_read(two.acl, secret)


async def test_tokens_with_the_same_policies_share_their_grants(acl: Acl) -> None:
    """Merged grants are held once per set of policies, however many tokens have it (memory stays bounded by
    the policies, not the tokens)."""
    _, first = await _reader(acl)
    second = str((await acl.token("reader"))["SecretID"])
    await acl.policy("other", 'service_prefix "" { policy = "read" }')
    third = str((await acl.token("reader", "other"))["SecretID"])
    service = acl.runtime.acl
    one, two, three = [await service.authority(s, "127.0.0.1") for s in (first, second, third)]
    assert one.token.accessor_id != two.token.accessor_id
    assert one.grants is two.grants
    assert three.grants is not one.grants
