"""Answers kept for the hottest plain reads, given again by the HTTP protocol from the request head alone
(issue 16: a read by name against a raw ASGI app).

The fast path (`fast_path`) keeps the 200 answer of a plain read of one peering or of a partition's list
(no blocking query, not `?consistent`) under its request's key: a digest of the exact request target, the
headers that could change the answer (the ACL token in both its headers, a proxy's client address) and,
with ACLs on, the client's own address (a token's AllowedCIDRs). The HTTP protocol (`server.parsers`) looks the key
up as soon as a request head is in; an answer that is still valid is written at once with the current
`Date`, and the request never reaches the app. It is counted in the metrics and logged as the app's
answers are (`access_log.RequestNotes`).

Validity is exact, not a time to live. An answer is kept with the stamp of what it was made from (the
in-memory peering view's version, the link statuses' version, the ACL cache's epoch) and given only while
the stamp is the same; while a view may be behind the database (another writer announced an index it
lacks) there is no stamp, and the request goes to the app, which catches up. Taking the stamp starts a
view's poll when it is due, as the app's reads do. With ACLs on, an answer is given only until the token's
expiry. A write, a heartbeat, an ACL change on any replica:
the stamp moves and every kept answer goes at once.

An answer is kept from the second request for its key on (the first only notes the key), so reads that
never repeat pay a lookup, not a copy. What is kept is bounded (`MAX_ANSWERS` answers, `MAX_BYTES` in all,
none over `MAX_ANSWER_BYTES`); the oldest go first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from peering.api.access_log import RequestNotes

MAX_ANSWERS = 1024
MAX_BYTES = 16 * 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
MAX_ASKED = 8192  # keys remembered as asked for once; beyond that they are forgotten all at once
# a scope key: (the request target, its `Answers.key`) of a request whose answer may be kept, set by the protocol
ANSWER_KEY = "peering.answer_key"

# request headers that may change an answer: they are part of the key
_KEYED = frozenset({b"x-consul-token", b"authorization", b"x-forwarded-for", b"forwarded", b"x-real-ip"})
# request headers of a request that is not a plain read (a body comes, or the client waits to send one)
_NOT_PLAIN = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
_OK = b"HTTP/1.1 200 OK\r\n"

Key = bytes  # a digest of the request's target, keyed headers and (ACLs on) client address: no secret is held


def request_target(scope: MutableMapping[str, Any]) -> bytes:
    """The request target a scope was made from (as the protocol keys it), without a root path."""
    path: bytes = scope["raw_path"]
    query: bytes = scope["query_string"]
    return path + b"?" + query if query else path


@dataclass(frozen=True, slots=True)
class Kept:
    """One kept answer (valid while `Answers` holds it): its headers and body as uvicorn writes them (after
    the status line and `Date`)."""

    until: float  # POSIX seconds (the token's expiry); infinity: none
    rest: bytes
    route: Any  # what the router put in scope["route"] (the metrics label by its path)
    path: str


class Answers:
    """The kept answers of one HTTP listener.

    `stamp` gives what answers are made from now (None: no answer may be given or kept now); `clock` is the
    wall clock the ACLs decide expiry by (POSIX seconds); `by_source`: answers depend on the client's address.
    """

    def __init__(
        self,
        stamp: Callable[[], Hashable | None],
        notes: RequestNotes,
        *,
        by_source: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stamp = stamp
        self._notes = notes
        self._by_source = by_source
        self._clock = clock
        self._kept: OrderedDict[Key, Kept] = OrderedDict()  # oldest first
        self._asked: set[Key] = set()  # keys asked for once (`wanted`)
        self._bytes = 0
        self._valid_for: Hashable | None = None  # the stamp of every answer in `_kept`
        self._dated: tuple[object, bytes] = (None, b"")  # uvicorn's default headers -> status line and them
        self.given_total = 0  # answers given from here so far

    def __len__(self) -> int:
        return len(self._kept)

    def key(self, target: bytes, headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> Key | None:
        """The key of a GET request with this target (as sent), headers (names lower-cased) and client; None
        when its answer may not be kept (a body comes with it). A digest of them all, each part prefixed by
        its length: the key holds no secret (`?token=` and the token headers are in it)."""
        parts = [target]
        for name, value in headers:
            if name in _KEYED:
                parts += (name, value)
            elif name in _NOT_PLAIN:
                return None
        if self._by_source:
            parts.append(client[0].encode() if client else b"")
        return blake2b(b"".join([len(part).to_bytes(4, "big") + part for part in parts]), digest_size=16).digest()

    def wanted(self, key: Key) -> Hashable | None:
        """The stamp to make the answer for `key` with (taken before making it, to keep it), if it is worth
        keeping: only from the second time a key is asked for, so that requests that never repeat cost only
        this lookup; None when it is not kept."""
        if key not in self._asked:
            if len(self._asked) >= MAX_ASKED:
                self._asked.clear()
            self._asked.add(key)
            return None
        return self._stamp()

    def find(self, key: Key) -> Kept | None:
        """The answer kept for `key` if it is still the answer."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        stamp = self._stamp()
        if stamp is None:
            return None
        if stamp != self._valid_for:
            self._forget()
            return None
        if kept.until != math.inf and self._clock() >= kept.until:
            return None
        return kept

    def keep(
        self,
        key: Key,
        stamp: Hashable,
        until: float,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        route: Any,
        path: str,
    ) -> None:
        """Keep a 200 answer made from `stamp` (taken before it was made): only if nothing changed since."""
        if len(body) > MAX_ANSWER_BYTES or stamp != self._stamp():
            return
        if stamp != self._valid_for:
            self._forget()
            self._valid_for = stamp
        rest = b"".join([b"%s: %s\r\n" % (name.lower(), value) for name, value in headers]) + b"\r\n" + body
        old = self._kept.pop(key, None)
        if old is not None:
            self._bytes -= len(old.rest)
        while self._kept and (len(self._kept) >= MAX_ANSWERS or self._bytes + len(rest) > MAX_BYTES):
            self._bytes -= len(self._kept.popitem(last=False)[1].rest)
        self._kept[key] = Kept(until, rest, route, path)
        self._bytes += len(rest)

    def head(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The status line and uvicorn's default headers (`Date`) of an answer given now."""
        seen, head = self._dated
        if seen is not default_headers:  # uvicorn makes a new list each second
            head = _OK + b"".join([b"%s: %s\r\n" % (name, value) for name, value in default_headers])
            self._dated = (default_headers, head)
        return head

    def given(self, kept: Kept, client: tuple[str, int] | None, seconds: float) -> None:
        """Count and log an answer given from here, as the request log does the app's."""
        self.given_total += 1
        scope = {"route": kept.route, "method": "GET", "path": kept.path, "client": client}
        self._notes.note(scope, 200, seconds, from_memory=True)

    def _forget(self) -> None:
        self._kept.clear()
        self._bytes = 0
        self._valid_for = None
