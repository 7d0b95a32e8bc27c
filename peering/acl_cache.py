"""ACL resolution from memory (issue 16): secret → token → policies → what they grant, read once, kept exact.

`CachedAcl` is the `AclStore` the ACL service uses. Its reads and writes go to the store underneath; on top
it keeps, per secret hash, the resolved `Authority` (the token with its merged, parsed grants). That entry
is dropped
- at once when this process writes ACL rows (every write goes through here), and
- when the change feed (`Store.changes_since`) shows an `acl_token` row (that token's entries) or an
  `acl_policy` row (every entry: a policy's rules and a token's links to it change together) written
  by anyone: another process on the SQLite file, another replica on PostgreSQL.
The feed is read before a resolution whenever the notifier announced an index the cache has not read up
to (NOTIFY from the other replicas); a read of the feed runs beside the resolutions, which answer from
memory, when `poll` seconds passed since the last read (the safety net: no correctness depends on a
notification; `store.poll`). An entry being loaded while an invalidation happens is not kept
(the load started before the change; the next resolution reads again). A token's expiry is checked by
the caller at every use, never cached. Without a feed nothing is kept (every resolution reads the store).
Secrets themselves are never held: only their SHA-256 hashes, as the store holds them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from peering.acl_model import ANONYMOUS_ACCESSOR, AclToken, Authority, Grants, Policy, Rules
from peering.notifier import Notifier
from peering.store.base import AclStore, Changes
from peering.store.poll import Poll

POLL = 0.5  # seconds between two reads of the feed without notification (the peering view's too)
MAX_ENTRIES = 10_000  # resolved secrets kept (least recently used out)
MAX_UNKNOWN = 4096  # secret hashes known to name no token (forgotten at once when any token is written)
MAX_SHARED = 1024  # distinct sets of policies whose merged grants are shared by the tokens that have them
_PAGE = 1000
_ANONYMOUS = ""  # the entry key of a request without a secret


class Feed(Protocol):
    """What the cache needs of the database (`store.base.Store` has it)."""

    async def changes_since(self, since: int, limit: int = 1000) -> Changes:
        """The change feed after index `since`, in one snapshot."""

    async def current_index(self) -> int:
        """The index of the last committed write."""


Parse = Callable[[Policy], Awaitable[Rules]]


class CachedAcl:
    """`store.base.AclStore` plus `resolve()`, which answers from memory (see the module docstring)."""

    def __init__(
        self,
        inner: AclStore,
        parse: Parse,
        *,
        default_allow: bool,
        feed: Feed | None = None,
        notifier: Notifier | None = None,
        poll: float = POLL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._parse = parse
        self._default_allow = default_allow
        self._shared: OrderedDict[tuple[tuple[str, str], ...], Grants] = OrderedDict()  # (ID, rules) of each
        self._feed = feed
        self._notifier = notifier
        self._poll = Poll("ACL cache", self.catch_up, every=poll, monotonic=monotonic, first=0.0)
        self._entries: OrderedDict[str, Authority] = OrderedDict()  # secret hash (or "") -> resolved
        self._keys: dict[str, set[str]] = {}  # AccessorID -> its entries' keys
        self._unknown: set[str] = set()
        self._epoch = 0  # moves on every invalidation: a load that saw it move keeps nothing
        self._synced: int | None = None  # the feed is applied up to here (None: not read yet)
        self._lock = asyncio.Lock()

    # -- resolution

    async def resolve(self, secret_hash: str | None) -> Authority | None:
        """What the token with this secret hash (None: the anonymous token) may do; None when no token has it.

        Expiry and AllowedCIDRs are the caller's to check, at every use.
        """
        if self._feed is None:
            return await self._load(secret_hash)
        await self._fresh()
        key = secret_hash or _ANONYMOUS
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        if key in self._unknown:
            return None
        epoch = self._epoch
        entry = await self._load(secret_hash)
        if epoch == self._epoch and self._synced is not None:  # nothing changed while it loaded: keep it
            self._keep(key, entry)
        return entry

    def held(self, secret_hash: str | None) -> Authority | None:
        """What `resolve` answers when memory alone answers it (the feed read and the entry held); None when
        only `resolve` can say (the feed must be read first, or the secret is not held)."""
        if self._feed is None or self._behind():
            return None
        self._poll.start_if_due()
        key = secret_hash or _ANONYMOUS
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def stamp(self) -> int | None:
        """A number that moves whenever a resolution may answer differently (every invalidation); None while
        `resolve` would first read the feed (no feed: always None). As `held`, it starts the poll if due."""
        if self._feed is None or self._behind():
            return None
        self._poll.start_if_due()
        return self._epoch

    async def _load(self, secret_hash: str | None) -> Authority | None:
        if secret_hash is None:
            token = await self._inner.token(ANONYMOUS_ACCESSOR)
        else:
            token = await self._inner.token_by_secret(secret_hash)
        if token is None:
            return None
        if token.management:
            return Authority(token, None, self._default_allow)
        policies = await self._inner.policies([link.id for link in token.policies]) if token.policies else []
        return Authority(token, await self.grants(policies), self._default_allow)

    async def grants(self, policies: list[Policy]) -> Grants:
        """What these policies grant together, shared by every token that has the same ones (by ID and rules)."""
        key = tuple((p.id, p.rules) for p in policies)
        grants = self._shared.get(key)
        if grants is not None:
            self._shared.move_to_end(key)
            return grants
        grants = Grants([await self._parse(p) for p in policies])
        self._shared[key] = grants
        if len(self._shared) > MAX_SHARED:
            self._shared.popitem(last=False)
        return grants

    def _keep(self, key: str, entry: Authority | None) -> None:
        if entry is None:
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.clear()
            self._unknown.add(key)
            return
        self._entries[key] = entry
        self._keys.setdefault(entry.token.accessor_id, set()).add(key)
        if len(self._entries) > MAX_ENTRIES:
            _, old = self._entries.popitem(last=False)
            keys = self._keys.get(old.token.accessor_id, set())
            keys.intersection_update(self._entries)
            if not keys:
                self._keys.pop(old.token.accessor_id, None)

    @property
    def size(self) -> int:
        """How many resolved secrets are held."""
        return len(self._entries)

    # -- invalidation

    def forget_token(self, accessor_id: str) -> None:
        """A token was written or deleted: its entries go, and so do the unknown secrets (it may have one)."""
        self._epoch += 1
        self._unknown.clear()
        for key in self._keys.pop(accessor_id, ()):
            self._entries.pop(key, None)

    def forget_all(self) -> None:
        """A policy was written or deleted (or the feed was reaped past what was read): everything goes."""
        self._epoch += 1
        self._unknown.clear()
        self._entries.clear()
        self._keys.clear()

    def _behind(self) -> bool:
        """Whether the feed must be read before answering: never read, or an index announced past it."""
        announced = self._notifier.index if self._notifier is not None else 0
        return self._synced is None or announced > self._synced

    async def _fresh(self) -> None:
        if self._behind():
            async with self._lock:
                if self._behind():  # not if another resolution caught up while this one waited
                    await self._read_feed()
        else:
            self._poll.start_if_due()

    async def settled(self) -> None:
        """Wait for the poll's read of the feed in progress, if any."""
        await self._poll.settled()

    async def stop_polling(self) -> None:
        """Cancel the poll's read of the feed in progress, if any (before the database underneath closes)."""
        await self._poll.stop()

    async def catch_up(self) -> None:
        """Apply every ACL change of the feed after what was read, now."""
        async with self._lock:
            await self._read_feed()

    async def _read_feed(self) -> None:
        if self._feed is None:
            return
        self._poll.caught_up()
        if self._synced is None:
            start = await self._feed.current_index()
            self.forget_all()  # nothing loaded before `start` is kept
            self._synced = start
        while True:
            page = await self._feed.changes_since(self._synced, _PAGE)
            # no await from here on: resolutions see the cache before this page or after it
            if page.horizon > self._synced:
                self.forget_all()  # entries were reaped before they were read
            for change in page.changes:
                if change.kind == "acl_policy":
                    self.forget_all()
                elif change.kind == "acl_token":
                    self.forget_token(change.key)
            self._synced = max(self._synced, page.upto)
            if len(page.changes) < _PAGE:
                return

    def _written(self, index: int) -> None:
        if self._notifier is not None:
            self._notifier.notify(index)  # the other replicas read the feed now, not at their next poll

    # -- AclStore: reads pass through, writes invalidate

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        return await self._inner.policies(ids)

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        return await self._inner.policy(id=id, name=name)

    async def tokens(self) -> list[AclToken]:
        return await self._inner.tokens()

    async def token(self, accessor_id: str) -> AclToken | None:
        return await self._inner.token(accessor_id)

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        return await self._inner.token_by_secret(secret_hash)

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        try:
            saved = await self._inner.save_policy(policy, update=update)
        finally:
            self.forget_all()  # even when it failed: it may have committed before the error
        self._written(saved.modify_index)
        return saved

    async def delete_policy(self, policy_id: str) -> bool:
        try:
            deleted = await self._inner.delete_policy(policy_id)
        finally:
            self.forget_all()
        self._written(0)
        return deleted

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        try:
            saved = await self._inner.save_token(token, secret_hash)
        finally:
            self.forget_token(token.accessor_id)
        self._written(saved.modify_index)
        return saved

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        try:
            saved = await self._inner.bootstrap(token, secret_hash)
        finally:
            self.forget_token(token.accessor_id)
        self._written(saved.modify_index if saved is not None else 0)
        return saved

    async def delete_token(self, accessor_id: str) -> bool:
        try:
            deleted = await self._inner.delete_token(accessor_id)
        finally:
            self.forget_token(accessor_id)
        self._written(0)
        return deleted
