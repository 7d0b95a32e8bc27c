"""Blocking queries held outside the route stack (issue 16: 10,000 watchers on one replica).

A blocking query (`GET ...?index=N`, SPEC §3) that would wait costs, held inside its route, the whole
FastAPI stack of the request (routing, exit stacks, the solved dependencies, the endpoint) plus the
tasks and timers of the wait: about 33 KiB a query, 330 MiB for 10,000. And each write woke every
waiter to read and render the same answer again, one by one.

This middleware holds them itself. It answers a blocking query's request once without `index` and
`wait` (a plain read through the app below, so every check, message and header is the route's own):
when that answer's `X-Consul-Index` already passes `N`, it is the answer. Otherwise the request is
parked: its task waits only for its client to go (`receive()`), and the parked queries that ask the
same thing (path, query, headers, client address: what a route's answer can depend on) share one
group. After a write (the notifier fired) each group is read once more, and its answer goes to every
member whose index it passes; at a member's deadline it gets the group's current answer. A client that
goes away is out of its group at once (its `receive()` returns). At shutdown (`notifier.close()`) every
parked query is answered, as the routes answer theirs.

What it does not take, it hands to the app unchanged, where the routes block as before: an answer that
is not a 200 with an index (an unknown peering's 404 is answered after the wait), a malformed `index`
or `wait` (the route's 400), no `index`, `index=0` or `wait=0` (answered at once anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peering.api.access_log import INTERNAL, RequestNotes
from peering.api.delivery import WOKEN, Answer, Courier, deliver
from peering.api.frozen import Freezer, for_loop
from peering.api.query import CLIENT_CLOSED, blocking_params
from peering.metrics import Metrics
from peering.notifier import Notifier, Watch

log = logging.getLogger("peering.api")

_INDEX_HEADER = b"x-consul-index"
BUCKET = 0.1  # s: deadlines are kept in steps of this (a wait ends up to this much late)
FRESH_FOR = 1.0  # s: a group's answer that new members may take as theirs (see `_fresh`)
_FOLLOW_SECONDS = 3600.0  # the dispatcher's wait for the next write, renewed for ever
_FAILED = (500, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")], b"Internal Server Error")


class _Member:
    """One parked request (`send` is dropped once it is answered or gone: nothing else keeps its request)."""

    __slots__ = ("answered", "bucket", "expired", "group", "min_index", "scope", "send", "sent")

    def __init__(self, scope: Scope, send: Send, min_index: int, group: _Group, bucket: int) -> None:
        self.scope = scope  # the request's own (its task holds it anyway)
        self.send: Send | None = send
        self.min_index = min_index
        self.group = group
        self.bucket = bucket
        self.expired = False
        self.answered = False  # an answer is on its way (in the outbox) ...
        self.sent = 0  # ... or was sent: its status


@dataclass(eq=False, slots=True)
class _Group:
    """Parked requests that ask the same thing; `base` is the scope their plain read runs with."""

    key: tuple[Any, ...]
    base: Scope
    members: dict[_Member, None] = field(default_factory=dict)
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    answer: Answer | None = None  # the last read's answer, the dispatcher's generation and the loop's
    generation: int = -1  # time when that read started, and the route it matched (for the request log)
    read_at: float = -math.inf
    route: Any = None


class BlockingQueries:
    """The middleware; `notifier` is the one the store's writes fire, `metrics` counts parked queries."""

    def __init__(
        self, app: ASGIApp, *, notifier: Notifier, metrics: Metrics | None = None, notes: RequestNotes | None = None
    ) -> None:
        self._app = app
        self._notifier = notifier
        self._metrics = metrics
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._buckets: dict[int, dict[_Member, None]] = {}  # members by deadline, in steps of `BUCKET` s
        self._generation = 0  # dispatcher wake-ups so far (a read that started before one may be stale)
        self._follower: asyncio.Task[None] | None = None
        self._courier: Courier[_Member] = Courier(self._take)
        self._woken = self._courier.defer  # one bound method for every answer
        self._freezer: Freezer | None = None  # the event loop's, from the first parked query on
        self._notes = notes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = None
        if scope["type"] == "http" and scope["method"] == "GET" and scope["query_string"]:
            wanted = blocking_params(scope["query_string"])
        if wanted is None or self._notifier.closed:
            await self._app(scope, receive, send)
            return
        arrived = time.perf_counter()
        min_index = wanted.min_index
        key = _key(scope, wanted.plain)
        group = self._groups.get(key)
        if group is not None and not wanted.consistent and self._fresh(group, min_index):
            member = self._join(key, scope, scope, send, min_index, wanted.wait)  # nothing newer to read yet
            if group.route is not None:
                scope["route"] = group.route
        else:
            self._follow()  # before the read: a write from here on is seen by the dispatcher
            generation, started = self._generation, asyncio.get_running_loop().time()
            base = {**scope, "query_string": wanted.plain}
            answer = await self._read(base, scope)
            if answer.index is None:
                await self._app(scope, receive, send)  # the route blocks (or refuses) as it always did
                return
            if answer.index > min_index:
                await deliver(send, answer)
                self._note(scope, answer.status, arrived)
                return
            member = self._join(key, base, scope, send, min_index, wanted.wait)
            group = member.group
            if generation != self._generation:
                self._trigger(group)  # a write came between the read and now
            elif started > group.read_at:
                group.answer, group.generation, group.read_at = answer, generation, started
                group.route = scope.get("route")
            del answer, base, group  # what a parked request keeps is its member and this frame: nothing more
        try:
            with self._metrics.blocking_query() if self._metrics is not None else contextlib.nullcontext():
                while (await receive())["type"] != "http.disconnect":
                    pass  # returns when the client goes, or when its answer is sent
        finally:
            self._leave(member)
        if not member.sent:
            log.debug("blocking query abandoned by the client")  # the request log line names the path
            await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        self._note(scope, member.sent or CLIENT_CLOSED, arrived)

    def _note(self, scope: Scope, status: int, arrived: float) -> None:
        """The request log line and metrics of a request answered here (those the app answers are the
        app's: `RequestLog` runs inside)."""
        if self._notes is not None:
            self._notes.note(scope, status, time.perf_counter() - arrived)

    async def _read(self, base: Scope, origin: Scope | None = None) -> Answer:
        """The plain read of `base` through the app, captured (the matched route is copied to `origin`,
        where the request log finds it)."""
        scope = dict(base)
        scope[INTERNAL] = True  # not a request of its own: the request log counts the watchers instead
        status, headers, body = 500, [], bytearray()

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        first: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> Message:
            return first.pop() if first else {"type": "http.disconnect"}

        await self._app(scope, receive, capture)
        if origin is not None and "route" in scope:
            origin["route"] = scope["route"]
        index = None
        if status == 200:
            for name, value in headers:
                if name == _INDEX_HEADER and value.isdigit():
                    index = int(value)
        return Answer(status, headers, bytes(body), index)

    def _join(
        self, key: tuple[Any, ...], base: Scope, scope: Scope, send: Send, min_index: int, wait: float
    ) -> _Member:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, base)
        loop = asyncio.get_running_loop()
        bucket = math.ceil((loop.time() + wait) / BUCKET)
        member = _Member(scope, send, min_index, group, bucket)
        group.members[member] = None
        if self._freezer is None:
            self._freezer = for_loop()
        self._freezer.joined()
        due = self._buckets.get(bucket)
        if due is None:
            due = self._buckets[bucket] = {}
            loop.call_at(bucket * BUCKET, self._expire, bucket)
        due[member] = None
        return member

    def _fresh(self, group: _Group, index: int | None = None) -> bool:
        """Whether `group`'s last answer is what a read would answer now: no write came since its read
        started, none is in progress, it is under `FRESH_FOR` s old (a token that expired since is refused
        by the next read) and, with `index`, it has nothing newer than `index` to tell."""
        answer = group.answer
        return (
            answer is not None
            and answer.index is not None
            and (index is None or answer.index <= index)
            and group.task is None
            and group.generation == self._generation
            and asyncio.get_running_loop().time() - group.read_at < FRESH_FOR
        )

    def _follow(self) -> None:
        """Start the dispatcher once; its first watch is taken now, before any read it must cover."""
        if self._follower is None or self._follower.done():
            watch = self._notifier.watch()
            self._follower = asyncio.get_running_loop().create_task(self._dispatch(watch), name="blocking-queries")

    async def _dispatch(self, watch: Watch) -> None:
        while True:
            if not await watch.wait(_FOLLOW_SECONDS):
                continue
            watch = self._notifier.watch()
            self._generation += 1
            closed = self._notifier.closed
            for group in list(self._groups.values()):
                if closed:
                    for member in group.members:
                        member.expired = True
                self._trigger(group)
            if closed:
                return

    def _trigger(self, group: _Group) -> None:
        """Read `group` again (once more after the read in progress, if there is one)."""
        group.dirty = True
        if group.task is None:
            group.task = asyncio.get_running_loop().create_task(self._reread(group))

    async def _reread(self, group: _Group) -> None:
        try:
            while group.dirty and group.members:
                group.dirty = False
                generation, started = self._generation, asyncio.get_running_loop().time()
                try:
                    answer = await self._read(group.base)
                except Exception:
                    log.exception("a parked blocking query's read failed")
                    answer = Answer(*_FAILED, None)
                group.answer, group.generation, group.read_at = answer, generation, started
                for member in list(group.members):
                    if answer.index is None or answer.index > member.min_index or member.expired:
                        self._answer(member, answer)
        finally:
            group.task = None
            if not group.members:
                self._emptied(group)

    def _expire(self, bucket: int) -> None:
        """The members due now get their group's answer, read again unless no write came since."""
        for member in self._buckets.pop(bucket, {}):
            member.expired = True
            group = member.group
            if self._fresh(group) and group.answer is not None:
                self._answer(member, group.answer)
            else:
                self._trigger(group)

    def _answer(self, member: _Member, answer: Answer) -> None:
        if member.answered or member.send is None:
            return
        member.answered = True
        self._courier.post(member, answer)

    def _take(self, member: _Member, answer: Answer) -> Send | None:
        """`member`'s `Send` as the courier sends its answer (None: its client left meanwhile)."""
        send = member.send
        if send is not None:
            member.sent = answer.status
            member.scope[WOKEN] = self._woken
            self._leave(member)
        return send

    def _leave(self, member: _Member) -> None:
        if member.send is None:
            return  # left already
        member.send = None
        if self._freezer is not None:
            self._freezer.left()
        due = self._buckets.get(member.bucket)
        if due is not None:
            due.pop(member, None)
        group = member.group
        if member in group.members:
            del group.members[member]
            if not group.members and group.task is None:
                self._emptied(group)

    def _emptied(self, group: _Group) -> None:
        """`group` has no members: it goes once its answer is no longer fresh (the watchers it answered
        ask again at once, and take that answer as theirs instead of reading again)."""

        def drop() -> None:
            if not group.members and group.task is None and self._groups.get(group.key) is group:
                del self._groups[group.key]

        asyncio.get_running_loop().call_later(FRESH_FOR, drop)


def _key(scope: Scope, plain: bytes) -> tuple[Any, ...]:
    """What a route's answer to a plain read can depend on: path, query, client address, headers."""
    client = scope.get("client")
    return (scope.get("root_path", ""), scope["path"], plain, client[0] if client else "", tuple(scope["headers"]))
