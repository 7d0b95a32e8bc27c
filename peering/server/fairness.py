"""Fair shares of the event loop between source addresses (issue 11: one source cannot monopolise the loop).

Every request of both ports runs on one event loop, so what one client makes the loop do delays every
other client's requests and the peer port's heartbeats. Admission (`admission`) bounds connections;
this bounds time. The protocols measure each of their callbacks that reads, and each step of a
request's application, and charge its CPU time to the connection's source address (`Account`). CPU time,
not wall-clock time: a callback that another process preempted is not its source's fault.

The loop is busy while more than `load` of its recent wall-clock time (0.5 by default) goes to those
callbacks. While it is busy, the sources using the most are held to a fair level: the level at which
what every source uses, counted up to that level, adds up to the busy loop's `load` (max-min fairness,
water-filling); a light source is not held. A held source's connections are not read: its bytes wait in
the kernel, costing the loop nothing. Every few milliseconds a round resumes held connections, the
lightest sources first and one connection per source in turn, for a few milliseconds of work at most,
as long as the loop is no longer busy or the source is back under the level. A source that is alone (the
others use under 1 % of the loop) is never held, so a single heavy client keeps the whole loop; trusted
proxies are exempt (their connections carry many clients).

Nothing is refused here: a request only waits (the protocol answers 429 with `Retry-After` if one waits
past its request deadline). `load` 0 turns it off.
"""

from __future__ import annotations

import asyncio
import math
import time
import types
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Generator
from ipaddress import IPv4Network, IPv6Network
from typing import Any, TypeVar

from peering.api.forwarded import parse_ip

LOAD = 0.5  # the share of the loop above which it is busy (PEERING_FAIR_SHARE_LOAD)
TAU = 0.25  # s: the time constant of the decaying figures (x seconds of use are x / TAU of the loop)
ALONE = 0.01  # others using less than this share of the loop: a source is alone, and never held
RECOUNT_EVERY = 0.1  # s between two computations of the fair level (only while the loop is busy)
PUMP_EVERY = 0.005  # s between two rounds of resuming held connections
SLICE = 0.002  # s of the loop a round of resumptions may use
MAX_ACCOUNTS = 16384  # sources remembered at once; the least recently seen one without connections goes first
NEGLIGIBLE = 0.001  # a share of the loop under which a source without connections is forgotten at a recount

T = TypeVar("T")


class Decaying:
    """Seconds of use that decay with `TAU`: `share()` is the part of the loop it stands for now."""

    __slots__ = ("at", "used")

    def __init__(self, now: float) -> None:
        self.used = 0.0
        self.at = now

    def share(self, now: float) -> float:
        if now > self.at:
            self.used *= math.exp((self.at - now) / TAU)
            self.at = now
        return self.used / TAU


class Account(Decaying):
    """The CPU time of the loop one source address used recently, and its connections waiting to be read."""

    __slots__ = ("address", "connections", "exempt", "waiting")

    def __init__(self, address: str, exempt: bool, now: float) -> None:
        super().__init__(now)
        self.address = address
        self.exempt = exempt
        self.connections = 0
        self.waiting: dict[object, Callable[[], None]] = {}  # oldest first


class Fairness:
    """The fair shares of one process's event loop (both listeners share it)."""

    def __init__(self, load: float = LOAD, exempt: Collection[IPv4Network | IPv6Network] = ()) -> None:
        now = time.perf_counter()
        self.load = load
        self._exempt = tuple(exempt)
        self._accounts: OrderedDict[str, Account] = OrderedDict()  # least recently seen first
        self._wall = Decaying(now)  # the loop's time in measured callbacks, every source together
        self._cpu = Decaying(now)  # the CPU time of the same
        self._level = math.inf  # the fair level (a CPU share), as of `_counted`
        self._counted = -math.inf
        self._waiting: dict[Account, None] = {}  # sources with connections waiting to be read
        self._pump: asyncio.TimerHandle | None = None
        self._cpu_started = -1.0  # of the callback being measured; -1 when none is

    # -- accounting

    def opened(self, address: str) -> Account:
        """The account of a new connection from `address` (made on first use); `closed` when it goes.

        An account outlives its connections (an attacker may open one per request) until a recount finds
        it negligible or, past `MAX_ACCOUNTS`, it is the least recently seen one.
        """
        account = self._accounts.get(address)
        if account is None:
            if len(self._accounts) >= MAX_ACCOUNTS:
                self._forget_one()
            ip = parse_ip(address) if self._exempt else None
            exempt = ip is not None and any(ip in network for network in self._exempt)
            account = self._accounts[address] = Account(address, exempt, time.perf_counter())
        else:
            self._accounts.move_to_end(address)
        account.connections += 1
        return account

    def closed(self, account: Account, key: object) -> None:
        """A connection of `account` went away (`key`: what it waited as, if it did)."""
        account.connections -= 1
        account.waiting.pop(key, None)

    def _forget_one(self) -> None:
        for address, account in self._accounts.items():
            if not account.connections:
                del self._accounts[address]
                return
        self._accounts.popitem(last=False)  # every source has connections: theirs go on uncounted

    def begin(self) -> float:
        """Start measuring a callback: its start, or -1 inside one already measured (nested) or when off."""
        if self._cpu_started >= 0 or self.load <= 0:
            return -1.0
        self._cpu_started = time.thread_time()
        return time.perf_counter()

    def end(self, account: Account | None, started: float) -> None:
        """Charge what the callback since `begin` took (a no-op for a nested one) to `account`."""
        if started < 0:
            return
        cpu = time.thread_time() - self._cpu_started
        self._cpu_started = -1.0
        now = time.perf_counter()
        self._wall.share(now)
        self._wall.used += now - started
        self._cpu.share(now)
        self._cpu.used += cpu
        if account is not None:
            account.share(now)
            account.used += cpu

    def charged(self, account: Account | None, coroutine: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """`coroutine`, awaitable, with each of its steps charged to `account`."""
        return _charged(self, account, coroutine)

    # -- holding

    def over(self, account: Account) -> bool:
        """Whether the source must wait before more of its bytes are read: the loop is busy, the source is
        not alone and it uses more than the fair level."""
        if self.load <= 0 or account.exempt:
            return False
        now = time.perf_counter()
        if self._wall.share(now) <= self.load:
            return False
        own = account.share(now)
        if self._cpu.share(now) - own < ALONE:
            return False
        if now - self._counted >= RECOUNT_EVERY:
            self._recount(now)
        return own > self._level

    def _recount(self, now: float) -> None:
        """The fair level: the CPU share at which the sources' shares, each counted up to it, add up to the
        part of `load` that is CPU time (the rest is the loop waiting for a CPU)."""
        self._counted = now
        uses: list[float] = []
        for address, account in list(self._accounts.items()):
            use = account.share(now)
            if use < NEGLIGIBLE and not account.connections:
                del self._accounts[address]
            else:
                uses.append(use)
        uses.sort()
        wall = self._wall.share(now)
        remaining = self.load * (min(self._cpu.share(now) / wall, 1.0) if wall > 0 else 1.0)
        self._level = math.inf
        for position, use in enumerate(uses):
            left = len(uses) - position
            if use * left >= remaining:
                self._level = remaining / left
                return
            remaining -= use

    def hold(self, account: Account, key: object, resume: Callable[[], None]) -> None:
        """Queue a connection (`key`) of a held source; `resume` reads it on when the source may go on."""
        account.waiting[key] = resume
        self._waiting[account] = None
        if self._pump is None:
            self._pump = asyncio.get_running_loop().call_later(PUMP_EVERY, self._resume_some)

    def _resume_some(self) -> None:
        """Resume waiting connections of the sources that may go on, the lightest first and one connection
        per source in turn, for at most one `SLICE` of the loop."""
        self._pump = None
        try:
            self._resume_round()
        finally:
            if self._waiting:
                self._pump = asyncio.get_running_loop().call_later(PUMP_EVERY, self._resume_some)

    def _resume_round(self) -> None:
        now = time.perf_counter()
        until = now + SLICE
        for account in [account for account in self._waiting if not account.waiting]:
            del self._waiting[account]
        order = sorted(self._waiting, key=lambda account: account.share(now))
        while order and time.perf_counter() < until:
            going_on = []
            for account in order:
                if time.perf_counter() >= until:
                    break
                if self.over(account):
                    continue
                key = next(iter(account.waiting))
                resume = account.waiting.pop(key)
                if account.waiting:
                    going_on.append(account)
                else:
                    self._waiting.pop(account, None)
                resume()
            order = going_on


@types.coroutine
def _charged(fairness: Fairness, account: Account | None, coroutine: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
    """Drive `coroutine` as `await` would, measuring each step (the task's other steps are not this one's)."""
    value: Any = None
    thrown: BaseException | None = None
    while True:
        started = fairness.begin()
        try:
            yielded = coroutine.send(value) if thrown is None else coroutine.throw(thrown)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            fairness.end(account, started)
        try:
            value, thrown = (yield yielded), None
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # noqa: BLE001 -- a cancellation, handed on to the coroutine
            value, thrown = None, exc
