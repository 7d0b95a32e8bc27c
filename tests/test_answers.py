"""Kept answers (`peering.api.answers`), given by the client port's HTTP protocol from the request head: a
repeated plain read gets the bytes the app gave (but a fresh `Date`), counted and logged as the app's, and
every change that could alter an answer (a write, a link status, a token or policy written or deleted, a
token's expiry, another client address) shows at the very next request. Real servers on 127.0.0.1, raw
HTTP/1.1 over real sockets."""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.api import answers as answers_module
from peering.api.access_log import RequestNotes
from peering.api.answers import Answers
from peering.app import Runtime
from peering.metrics import Metrics
from peering.server.listeners import listening
from peering.settings import Settings
from tests.test_ha import replicas, report

pytestmark = pytest.mark.anyio

MANAGEMENT = "6b0a5c1e-9f5e-4a63-8d2b-1f4e6a7c9d10"
UNKNOWN = "f3a7a3a9-0000-4000-8000-000000000000"
_DATE = re.compile(rb"^date: [^\r]*\r\n", re.MULTILINE)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Served:
    """One cluster served in this process, and raw connections to its client port."""

    def __init__(self, runtime: Runtime, address: str, clock: Clock) -> None:
        self.runtime = runtime
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.clock = clock
        self.api = httpx.AsyncClient(base_url=f"http://{address}", timeout=10, headers={"X-Consul-Token": MANAGEMENT})

    @property
    def given(self) -> int:
        assert self.runtime.answers is not None
        return self.runtime.answers.given_total

    @asynccontextmanager
    async def connection(self, source: str = "127.0.0.1") -> AsyncIterator[Connection]:
        reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=(source, 0))
        try:
            yield Connection(reader, writer)
        finally:
            writer.close()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def get(self, target: str, *headers: str) -> bytes:
        self.send(target, *headers)
        return await self.answer()

    def send(self, target: str, *headers: str, version: str = "1.1") -> None:
        self.writer.write(_request(target, *headers, version=version))

    async def answer(self) -> bytes:
        """One whole answer (head and body), as it came."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        length = re.search(rb"\r\ncontent-length: (\d+)\r\n", head)
        assert length is not None, head
        return head + await asyncio.wait_for(self.reader.readexactly(int(length.group(1))), 10)


def _request(target: str, *headers: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"GET {target} HTTP/{version}", "Host: test", *headers, "", ""]).encode()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


def undated(answer: bytes) -> bytes:
    assert len(_DATE.findall(answer)) == 1, answer
    return _DATE.sub(b"", answer)


@asynccontextmanager
async def serving(tmp_path: Path, **extra: Any) -> AsyncIterator[Served]:
    settings = Settings(data_dir=tmp_path / "d", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", **extra)
    clock = Clock()
    async with listening(settings, background=False, clock=clock) as (runtime, bound):
        served = Served(runtime, bound.http_addr, clock)
        async with served.api:
            yield served


async def test_a_repeated_read_gets_the_apps_bytes_from_memory_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="peering.http")
    async with serving(tmp_path) as served:
        assert (await served.api.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200
        async with served.connection() as c:
            for target in ("/v1/peering/web", "/v1/peerings", "/v1/peering/web?pretty", "/v1/peerings?stale"):
                before = served.given
                first = await c.get(target)  # the app answers; the key is noted as asked for
                assert undated(await c.get(target)) == undated(first)  # the app again, and its answer is kept
                assert served.given == before
                again = [await c.get(target) for _ in range(3)]
                assert served.given == before + 3
                assert status(first) == 200
                assert all(undated(a) == undated(first) for a in again), (first, again)
            # a target that differs in any byte is another request
            before = served.given
            assert status(await c.get("/v1/peering/web?pretty=")) == 200
            assert served.given == before
        samples = served.runtime.cluster.metrics.registry
        labels = {"method": "GET", "route": "/v1/peering/{name}", "status": "200"}
        assert samples.get_sample_value("peering_http_requests_total", labels) == 5 + 5 + 1
    lines = [r for r in caplog.records if r.name == "peering.http" and r.__dict__["path"] == "/v1/peering/web"]
    assert len(lines) == 11
    assert all(r.levelname == "DEBUG" and r.__dict__["client"] == "127.0.0.1" for r in lines)


async def test_every_change_shows_at_the_next_request(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        assert (await served.api.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200
        async with served.connection() as c:
            read = await c.get("/v1/peering/web")
            listed = await c.get("/v1/peerings")
            assert undated(await c.get("/v1/peering/web")) == undated(read)  # kept
            # a write: a new peering changes the list, and the partition's index
            assert (await served.api.post("/v1/peering/token", json={"PeerName": "api"})).status_code == 200
            after = await c.get("/v1/peerings")
            assert [p["Name"] for p in httpx.Response(200, content=body(after)).json()] == ["api", "web"]
            assert body(after) != body(listed)
            # a link status (in memory, not a write)
            peering = await served.runtime.service.read(None, "web")
            at = datetime(2026, 1, 1, 12, tzinfo=UTC)
            served.runtime.cluster.tracker.heartbeat(peering.id, at)
            heard = httpx.Response(200, content=body(await c.get("/v1/peering/web"))).json()
            assert heard["StreamStatus"]["LastHeartbeat"] == "2026-01-01T12:00:00Z"
            # a delete
            assert (await served.api.delete("/v1/peering/web")).status_code == 200
            gone = body(await c.get("/v1/peering/web"))
            assert b'"State":"INITIAL"' not in gone
            assert gone == body(await c.get("/v1/peering/web?consistent"))  # never kept: made by the app
            given = served.given
            assert status(await c.get("/v1/peering/web")) == 200  # kept again once read, until the next change
            assert served.given == given + 1


async def test_acl_changes_expiry_and_addresses_show_at_the_next_request(tmp_path: Path) -> None:
    async with serving(tmp_path, acl_enabled=True, acl_initial_management_token=MANAGEMENT) as served:
        api = served.api
        assert (await api.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200
        policy = (await api.put("/v1/acl/policy", json={"Name": "read", "Rules": 'peering = "read"'})).json()

        async def token(**body: Any) -> tuple[str, str]:
            made = (await api.put("/v1/acl/token", json={"Policies": [{"Name": "read"}], **body})).json()
            return made["AccessorID"], made["SecretID"]

        deleted, deleted_secret = await token()
        _, renamed_secret = await token()
        _, expiring_secret = await token(ExpirationTTL="10s")
        _, here_secret = await token(AllowedCIDRs=["127.0.0.2/32"])

        async with served.connection() as c:

            async def twice(target: str, *headers: str) -> int:
                """Read until the answer is kept (a read that first caught up with a write keeps nothing),
                then once more: that answer is the kept one; its status."""
                await c.get(target, *headers)
                first = await c.get(target, *headers)
                given = served.given
                second = await c.get(target, *headers)
                assert served.given == given + 1
                assert undated(second) == undated(first)
                return status(first)

            # a deleted token stops working at once, whichever way it is carried
            carriers = (f"X-Consul-Token: {deleted_secret}", f"Authorization: Bearer {deleted_secret}")
            for carrier in carriers:
                assert await twice("/v1/peering/web", carrier) == 200
            assert await twice(f"/v1/peering/web?token={deleted_secret}") == 200
            assert (await api.delete(f"/v1/acl/token/{deleted}")).status_code == 200
            for carrier in carriers:
                refused = await c.get("/v1/peering/web", carrier)
                assert (status(refused), body(refused)) == (403, b"ACL not found")
            assert status(await c.get(f"/v1/peering/web?token={deleted_secret}")) == 403
            # another secret is another request
            assert status(await c.get("/v1/peering/web", f"X-Consul-Token: {UNKNOWN}")) == 403
            # a policy that no longer grants the read
            assert await twice("/v1/peerings", f"X-Consul-Token: {renamed_secret}") == 200
            changed = {"Name": "read", "Rules": 'acl = "read"'}
            assert (await api.put(f"/v1/acl/policy/{policy['ID']}", json=changed)).status_code == 200
            assert status(await c.get("/v1/peerings", f"X-Consul-Token: {renamed_secret}")) == 403
            restored = {**changed, "Rules": 'peering = "read"'}
            assert (await api.put(f"/v1/acl/policy/{policy['ID']}", json=restored)).status_code == 200
            assert await twice("/v1/peerings", f"X-Consul-Token: {renamed_secret}") == 200
            # a token past its expiry
            assert await twice("/v1/peering/web", f"X-Consul-Token: {expiring_secret}") == 200
            served.clock.now += timedelta(seconds=11)
            expired = await c.get("/v1/peering/web", f"X-Consul-Token: {expiring_secret}")
            assert (status(expired), body(expired)) == (403, b"ACL not found")
        # a token limited to one address: kept for that address only
        async with served.connection("127.0.0.2") as there:
            await there.get("/v1/peering/web", f"X-Consul-Token: {here_secret}")
            first = await there.get("/v1/peering/web", f"X-Consul-Token: {here_secret}")
            assert status(first) == 200
            given = served.given
            assert undated(await there.get("/v1/peering/web", f"X-Consul-Token: {here_secret}")) == undated(first)
            assert served.given == given + 1
        async with served.connection() as here:
            refused = await here.get("/v1/peering/web", f"X-Consul-Token: {here_secret}")
            assert status(refused) == 403
            assert body(refused).endswith(b"may not be used from 127.0.0.1")


async def test_only_a_plain_request_with_nothing_in_hand_is_answered_from_memory(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        assert (await served.api.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200
        async with served.connection() as c:
            await c.get("/v1/peering/web")
            kept = await c.get("/v1/peering/web")  # asked for twice: kept
            given = served.given
            # pipelined in one write: the first is answered from memory (nothing in hand), the second by the
            # app, the third (which waits for the second) in its turn; all in order
            c.writer.write(b"".join(_request(t) for t in ("/v1/peering/web", "/v1/peerings", "/v1/peering/web")))
            answers = [await c.answer() for _ in range(3)]
            assert [undated(a) for a in (answers[0], answers[2])] == [undated(kept)] * 2
            assert b'"Name":"web"' in body(answers[1])
            assert body(answers[1]).startswith(b"[")
            assert served.given >= given + 1
            # a GET with a body is not a plain read: the app answers it
            given = served.given
            c.writer.write(b"GET /v1/peering/web HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
            assert status(await c.answer()) == 200
            assert served.given == given
            assert undated(await c.get("/v1/peering/web")) == undated(kept)
            assert served.given == given + 1
        # HTTP/1.0, and a client that asks to close: the app answers, and the connection closes
        for version, headers in (("1.0", ()), ("1.1", ("Connection: close",))):
            async with served.connection() as c:
                given = served.given
                c.send("/v1/peering/web", *headers, version=version)
                answer = await c.answer()
                assert status(answer) == 200
                assert b"connection: close\r\n" in answer.lower()
                assert await asyncio.wait_for(c.reader.read(), 10) == b""
                assert served.given == given


def _answers(stamp: list[Any], clock: list[float]) -> Answers:
    return Answers(lambda: stamp[0], RequestNotes(Metrics()), by_source=True, clock=lambda: clock[0])


def test_an_answer_is_kept_and_given_only_while_its_stamp_holds() -> None:
    stamp: list[Any] = [1]
    clock = [100.0]
    answers = _answers(stamp, clock)
    key = answers.key(b"/v1/peerings", [(b"host", b"t"), (b"x-consul-token", b"s")], ("127.0.0.1", 1))
    assert key is not None
    assert key != answers.key(b"/v1/peerings", [(b"x-consul-token", b"s")], ("127.0.0.2", 1))  # by source
    assert answers.key(b"/v1/peerings", [(b"content-length", b"0")], None) is None
    assert answers.wanted(key) is None  # asked for once: only noted
    assert answers.wanted(key) == 1  # again: worth keeping, made from stamp 1
    answers.keep(key, 0, math.inf, [], b"[]", route=None, path="/v1/peerings")  # made before a change
    assert answers.find(key) is None
    answers.keep(key, 1, 150.0, [(b"Content-Type", b"application/json")], b"[]", route=None, path="/v1/peerings")
    kept = answers.find(key)
    assert kept is not None
    assert kept.rest == b"content-type: application/json\r\n\r\n[]"
    stamp[0] = None  # a view may be behind: nothing is given, nothing forgotten
    assert answers.find(key) is None
    assert len(answers) == 1
    stamp[0] = 1
    assert answers.find(key) is kept
    clock[0] = 150.0  # the token's expiry
    assert answers.find(key) is None
    clock[0] = 100.0
    stamp[0] = 2  # something changed: everything goes
    assert answers.find(key) is None
    assert len(answers) == 0


def test_what_is_kept_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers_module, "MAX_ANSWERS", 8)
    monkeypatch.setattr(answers_module, "MAX_BYTES", 1000)
    monkeypatch.setattr(answers_module, "MAX_ANSWER_BYTES", 300)
    answers = _answers([1], [0.0])

    def keep(i: int, size: int) -> Any:
        key = answers.key(f"/v1/peering/p{i}".encode(), [], None)
        assert key is not None
        answers.keep(key, 1, math.inf, [], b"x" * size, route=None, path="/")
        return key

    keys = [keep(i, 10) for i in range(20)]
    assert len(answers) == 8
    assert answers.find(keys[0]) is None
    assert answers.find(keys[-1]) is not None
    keep(100, 301)  # over the limit of one answer: not kept
    assert len(answers) == 8
    big = [keep(200 + i, 290) for i in range(4)]
    assert len(answers) <= 4
    assert answers.find(big[-1]) is not None
    assert sum(len(k.rest) for k in answers._kept.values()) <= 1000


def _from_memory(http: httpx.Client) -> float:
    text = http.get("/v1/agent/metrics?format=prometheus").text
    found = re.search(r"^peering_http_answers_from_memory_total (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def _meta_until(http: httpx.Client, want: str) -> float:
    """Read `web` plainly until its Meta shows `want`; the seconds it took (bounded)."""
    began = time.monotonic()
    while (read := http.get("/v1/peering/web")).status_code != 200 or read.json()["Meta"] != {"v": want}:
        assert time.monotonic() - began < 10, read.text
        time.sleep(0.01)
    return time.monotonic() - began


def test_a_write_on_another_replica_ends_the_kept_answers(tmp_path: Path, postgres: str) -> None:
    with (
        replicas(tmp_path, postgres, 2) as [one, two],
        httpx.Client(base_url=one.http_url, timeout=10) as h1,
        httpx.Client(base_url=two.http_url, timeout=10) as h2,
    ):
        assert h1.post("/v1/peering/token", json={"PeerName": "web", "Meta": {"v": "1"}}).status_code == 200
        _meta_until(h2, "1")
        before = _from_memory(h2)
        for _ in range(3):
            assert h2.get("/v1/peering/web").json()["Meta"] == {"v": "1"}
        assert _from_memory(h2) >= before + 2  # the replica gives its kept answer
        assert h1.post("/v1/peering/token", json={"PeerName": "web", "Meta": {"v": "2"}}).status_code == 200
        seen = _meta_until(h2, "2")  # NOTIFY (or the 0.5 s poll) ends the kept answer on the other replica
        assert seen < 2.0
        report("a write on one replica seen in a kept read on the other, s", round(seen, 3))


async def test_kept_answers_equal_the_apps_through_random_changes(tmp_path: Path) -> None:
    """200 random steps of writes, link statuses, ACL changes and the clock, each followed by every read
    (which may be given from memory) and the same read with `?consistent` (never kept: made by the app):
    status and body agree every time, and kept answers were given along the way."""
    rng = random.Random(20261204)
    async with serving(tmp_path, acl_enabled=True, acl_initial_management_token=MANAGEMENT) as served:
        api, tracker = served.api, served.runtime.cluster.tracker
        policy = (await api.put("/v1/acl/policy", json={"Name": "read", "Rules": 'peering = "read"'})).json()
        tokens: dict[str, str] = {}  # accessor -> secret
        secrets = [MANAGEMENT, UNKNOWN]
        targets = ["/v1/peering/web", "/v1/peering/api", "/v1/peerings", "/v1/peerings?partition=team"]
        names = [("web", None), ("api", None), ("db", "team")]

        async def make_token() -> None:
            body: dict[str, Any] = {"Policies": [{"Name": "read"}]}
            if rng.random() < 0.3:
                body["ExpirationTTL"] = f"{rng.randint(1, 30)}s"
            made = (await api.put("/v1/acl/token", json=body)).json()
            tokens[made["AccessorID"]] = made["SecretID"]
            secrets.append(made["SecretID"])

        async def step() -> None:
            kind = rng.choice(["token", "token", "delete", "beat", "acl", "acl-delete", "policy", "clock"])
            name, partition = rng.choice(names)
            if kind == "token":
                body = {"PeerName": name, "Meta": {"v": str(rng.randint(0, 3))}, "Partition": partition}
                await api.post("/v1/peering/token", json={k: v for k, v in body.items() if v is not None})
            elif kind == "delete":
                await api.delete(f"/v1/peering/{name}", params={"partition": partition} if partition else None)
            elif kind == "beat":
                listed = await served.runtime.service.list_peerings(partition)
                for peering in listed[0][:1]:
                    tracker.heartbeat(peering.id, served.clock.now)
            elif kind == "acl":
                await make_token()
            elif kind == "acl-delete" and tokens:
                accessor = rng.choice(sorted(tokens))
                await api.delete(f"/v1/acl/token/{accessor}")
                del tokens[accessor]
            elif kind == "policy":
                rules = rng.choice(['peering = "read"', 'acl = "read"'])
                await api.put(f"/v1/acl/policy/{policy['ID']}", json={"Name": "read", "Rules": rules})
            elif kind == "clock":
                served.clock.now += timedelta(seconds=rng.randint(1, 20))

        await make_token()
        async with served.connection() as c:
            for _ in range(200):
                await step()
                for _ in range(3):
                    target = rng.choice(targets)
                    carrier = rng.choice(["X-Consul-Token: {}", "Authorization: Bearer {}", "?token={}", ""])
                    secret = rng.choice(secrets)
                    headers = [carrier.format(secret)] if carrier and not carrier.startswith("?") else []
                    query = carrier.format(secret) if carrier.startswith("?") else ""
                    if query and "?" in target:
                        query = "&" + query[1:]
                    for _ in range(4):  # the first notes the key, the next keeps the answer, the last get it
                        given = await c.get(target + query, *headers)
                        made = await c.get(
                            target + query + ("&" if "?" in target + query else "?") + "consistent", *headers
                        )
                        assert (status(given), body(given)) == (status(made), body(made)), (target, query, headers)
        assert served.given > 60


async def test_blocking_queries_are_held_not_answered_from_memory(tmp_path: Path) -> None:
    """A blocking query's own plain read (made by `api.blocking` from the request's scope) keeps nothing:
    two watchers with the same target both wait for the write, then both see it."""
    async with serving(tmp_path) as served:
        assert (await served.api.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200
        registry = served.runtime.cluster.metrics.registry
        async with served.connection() as c, served.connection() as w1, served.connection() as w2:
            await c.get("/v1/peerings")
            kept = await c.get("/v1/peerings")
            index = int(re.search(rb"x-consul-index: (\d+)", kept).group(1))  # type: ignore[union-attr]
            given = served.given
            for watcher in (w1, w2):
                watcher.send(f"/v1/peerings?index={index}")
                held = 0
                for _ in range(1000):  # bounded: until the server says the watcher is held
                    held += 1
                    if registry.get_sample_value("peering_blocking_queries") == (1 if watcher is w1 else 2):
                        break
                    await asyncio.sleep(0.01)
                assert held < 1000, "the blocking query was not held"
            assert served.given == given
            assert (await served.api.post("/v1/peering/token", json={"PeerName": "api"})).status_code == 200
            for watcher in (w1, w2):
                woken = await watcher.answer()
                assert int(re.search(rb"x-consul-index: (\d+)", woken).group(1)) > index  # type: ignore[union-attr]
                assert b'"Name":"api"' in body(woken)


def test_a_token_deleted_on_another_replica_stops_its_kept_answers(tmp_path: Path, postgres: str) -> None:
    acls = ("--acl-enabled", "--acl-initial-management-token", MANAGEMENT)
    manage = {"X-Consul-Token": MANAGEMENT}
    with (
        replicas(tmp_path, postgres, 2, *acls) as [one, two],
        httpx.Client(base_url=one.http_url, timeout=10, headers=manage) as h1,
        httpx.Client(base_url=two.http_url, timeout=10) as h2,
        httpx.Client(base_url=two.http_url, timeout=10, headers=manage) as h2_manage,
    ):
        assert h1.post("/v1/peering/token", json={"PeerName": "web"}).status_code == 200
        assert h1.put("/v1/acl/policy", json={"Name": "read", "Rules": 'peering = "read"'}).status_code == 200
        made = h1.put("/v1/acl/token", json={"Policies": [{"Name": "read"}]}).json()
        reader = {"X-Consul-Token": made["SecretID"]}
        began = time.monotonic()
        while h2.get("/v1/peering/web", headers=reader).status_code != 200:  # the other replica has it
            assert time.monotonic() - began < 10
            time.sleep(0.01)
        before = _from_memory(h2_manage)
        for _ in range(3):
            assert h2.get("/v1/peering/web", headers=reader).status_code == 200
        after = _from_memory(h2_manage)
        assert after >= before + 1  # given from memory there
        assert h1.delete(f"/v1/acl/token/{made['AccessorID']}").status_code == 200
        began = time.monotonic()
        while (refused := h2.get("/v1/peering/web", headers=reader)).status_code == 200:
            assert time.monotonic() - began < 2.0, "the deleted token still reads on the other replica"
            time.sleep(0.005)
        assert (refused.status_code, refused.text) == (403, "ACL not found")
        report(
            "a token deleted on one replica refused by a kept read on the other, s", round(time.monotonic() - began, 3)
        )
