"""Faults between clusters, and limits on what a client can hold (SPEC §3, §3.2, §5, §6, §11).

Every fault ends in a documented state with a clear message, and heals when the fault ends. Covered
elsewhere, not repeated here: an acceptor (then a dialer) restarted while heartbeats flow — the other
side turns FAILING, then ACTIVE again — is a step of `test_peering.test_the_whole_walk`; an address that
refuses, one that does not speak TLS and another cluster's peering port are
`test_peering.test_an_unreachable_or_impostor_acceptor_is_a_502_and_stores_nothing`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from peering.api.body import MAX_BODY_BYTES
from peering.api.peer import MAX_PEER_BODY_BYTES
from peering.cluster import utcnow
from peering.identity import client_ssl_context, load_or_create
from peering.outbound import Outbound
from peering.peer_client import RETRY_PAUSE, PeerClient, PeerTarget
from peering.server import MAX_HEAD_BYTES
from tests.fake_peer import Reply, fake_peer
from tests.test_peering import HEARTBEAT_TIMEOUT, Node, clusters, state_is

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ESTABLISH_BOUND = 3.0 + 0.5  # SPEC §3.2: an unreachable acceptor is a 502 after 3 s (plus scheduling slack)
STALL_BOUND = 0.5  # the request timeout the limit tests give their cluster
EXCHANGE, PROBE, HEARTBEAT = "/peering/v1/exchange", "/peering/v1/probe", "/peering/v1/heartbeat"
ANY_STATUS = {"Status": bool}  # a non-empty string at `Status`
# one answer that satisfies exchange, probe and heartbeat alike (peers ignore fields they do not know)
GOOD = Reply(
    body=b'{"StreamSecret": "s", "Datacenter": "dc1", "ServerName": "server.dc1.consul", "Version": "9",'
    b' "ProtocolVersion": "1", "Status": "ACTIVE"}'
)


class WallClock:
    """The wall clock with an offset a test can change: an NTP step, a VM resumed, an operator's `date -s`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    """Start the nodes (with whatever `options` they were given); stop those still running at the end."""
    try:
        for node in nodes:
            await node.start()
        yield
    finally:
        for node in nodes:
            if node._stack is not None:
                await node.stop()


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def check(node: Node, token: str, name: str = "cluster-a") -> dict[str, Any]:
    response = await node.api.post("/v1/peering/check", json={"PeerName": name, "PeeringToken": token})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def assert_refused_at_once(node: Node, token: str, address: str, reason: str, probe_reason: str = "") -> None:
    """Establishing with `token` (whose peer at `address` answers badly) is a 502 naming the address and the
    `reason`, at once, and check says IsValid false with its own wording (`probe_reason`, else `reason`)."""
    response, elapsed = await timed(node.establish("cluster-a", token))
    assert (response.status_code, response.text) == (
        502,
        f'failed to exchange peering secret through address "{address}": {reason}',
    )
    assert elapsed < 1.0  # a peer that answers nonsense is not asked again and again
    checked = await check(node, token)
    assert checked["IsValid"] is False
    assert checked["ErrorMessage"] == (
        f'failed to check peering token through address "{address}": {probe_reason or reason}'
    )


async def test_an_acceptor_down_during_establish_is_a_502_and_the_token_works_once_it_is_back(
    tmp_path: Path,
) -> None:
    """Establishing while the acceptor is down is a 502 `… connection refused` once the establish timeout
    is over, storing nothing on either side; the token was not consumed, so once the acceptor is back it
    establishes."""
    a, b = Node("a", tmp_path / "a", "dc1"), Node("b", tmp_path / "b", "dc2")
    b.options = {"establish_timeout": 1.0}  # the default 3 s is held in the slow-peer test; this one is shorter
    async with running(a, b):
        token = await a.token("cluster-b")
        await a.stop()
        response, elapsed = await timed(b.establish("cluster-a", token))
        assert (response.status_code, response.text) == (
            502,
            f'failed to exchange peering secret through address "{a.peering_addr}": connection refused',
        )
        assert 1.0 - RETRY_PAUSE <= elapsed <= 1.0 + 0.5  # refusals are retried until the timeout, not beyond
        assert (await b.api.get("/v1/peerings")).json() == []

        await a.start()
        assert (await a.read("cluster-b"))["State"] == "INITIAL"
        again = await b.establish("cluster-a", token)
        assert (again.status_code, again.text) == (200, "{}")
        assert (await a.read("cluster-b"))["State"] == "ACTIVE"
        assert (await b.read("cluster-a"))["State"] == "ACTIVE"


async def test_a_peer_answering_garbage_is_a_502_that_stores_nothing(tmp_path: Path) -> None:
    """A peer with the acceptor's own certificate that answers non-JSON, a JSON array, an object without a
    valid StreamSecret, a lone surrogate or an HTTP 500 makes establish a 502 naming the address and what was wrong, at once,
    storing nothing, and check says IsValid false; a 503 (a busy peer) is retried within the bound."""
    cases = [
        (Reply(body=b"<html>hi</html>", content_type="text/html"), "the peer answered with malformed JSON", None),
        (Reply(body=b""), "the peer answered with malformed JSON", None),
        (
            Reply(body=b"[1, 2]"),
            "the peer's answer has no valid StreamSecret",
            "the peer's answer has no valid Datacenter",
        ),
        (
            Reply(body=b'{"StreamSecret": 5, "Datacenter": "dc1", "ServerName": "server.dc1.consul", "Version": "1"}'),
            "the peer's answer has no valid StreamSecret",
            "the peer's answer has no valid ProtocolVersion",
        ),
        (Reply(status=500, body=b"boom", content_type="text/plain"), "the peer answered with status 500", None),
        (  # a lone surrogate, which no encoder downstream could write: refused with the JSON
            Reply(body=b'{"StreamSecret": "\\ud800", "Datacenter": "dc1", "ServerName": "s", "Version": "1"}'),
            "the peer answered with malformed JSON",
            None,
        ),
    ]
    async with clusters(tmp_path) as (a, b):
        for reply, reason, probe_reason in cases:
            async with fake_peer(a.data, reply) as fake:
                token = await a.token("cluster-b", ServerExternalAddresses=[fake.address])
                await assert_refused_at_once(b, token, fake.address, reason, probe_reason or "")
                assert fake.paths == [EXCHANGE, PROBE]
                assert (await b.api.get("/v1/peerings")).json() == []
        assert (await a.read("cluster-b"))["State"] == "INITIAL"

        # a busy peer (503, as uvicorn answers over its concurrency limit) is asked again until the deadline
        async with fake_peer(a.data, GOOD) as fake:
            fake.queue = [Reply(status=503, body=b"Service Unavailable", content_type="text/plain")]
            token = await a.token("cluster-b", ServerExternalAddresses=[fake.address])
            response = await b.establish("cluster-a", token)
            assert (response.status_code, response.text) == (200, "{}")
            assert fake.paths[:3] == [EXCHANGE, EXCHANGE, HEARTBEAT]
            assert (await b.read("cluster-a"))["State"] == "ACTIVE"


async def test_a_live_link_whose_peer_answers_garbage_fails_and_recovers(tmp_path: Path) -> None:
    """When a fake with the acceptor's certificate takes over the acceptor's address and answers heartbeats
    with an unknown Status, the dialer turns FAILING after the heartbeat timeout (it is no success), and
    ACTIVE again once the real acceptor is back; a heartbeat answered with non-JSON, an HTTP 500 or a JSON
    array does not go through either."""
    async with clusters(tmp_path) as (a, b):
        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        await a.stop()
        async with fake_peer(a.data, Reply(body=b'{"Status": "SUNNY"}'), address=a.peering_addr) as fake:
            await b.wait_for("cluster-a", state_is("FAILING"), timeout=HEARTBEAT_TIMEOUT + 4)
            assert HEARTBEAT in fake.paths
            # besides heartbeats, only the replication streams of the live link (SPEC §14) asked it
            assert set(fake.paths) <= {HEARTBEAT, "/peering/v1/exports/pull", "/peering/v1/exports/push"}
        await a.start()
        await b.wait_for("cluster-a", state_is("ACTIVE"))
        await a.wait_for("cluster-b", state_is("ACTIVE"))

        # each kind of garbage, one heartbeat at a time, straight through the dialer's heartbeat logic
        stored = await b.runtime.cluster.store.get("default", "cluster-a")
        assert stored is not None
        peers = PeerClient(client_ssl_context, attempt_timeout=1.0)
        outbound = Outbound(b.runtime.cluster, peers)
        try:
            async with fake_peer(a.data, GOOD) as fake:
                aimed = replace(stored, peer_server_addresses=(fake.address,))
                for garbage in (
                    Reply(body=b"not json", content_type="text/plain"),
                    Reply(status=500, body=b"boom"),
                    Reply(body=b"[]"),
                    Reply(body=b'{"Status": 1}'),
                    Reply(body=b'{"Status": "SUNNY"}'),
                ):
                    fake.reply = garbage
                    assert await outbound.heartbeat(aimed) is False, garbage
                fake.reply = GOOD
                assert await outbound.heartbeat(aimed) is True
        finally:
            await peers.aclose()
        await b.wait_for("cluster-a", state_is("ACTIVE"))  # single failures within the timeout change nothing


async def test_a_slow_peer_is_a_502_within_the_establish_bound(tmp_path: Path) -> None:
    """A peer that holds its answer, or trickles it a byte at a time (so that no single read times out),
    longer than the per-attempt timeout: establish is a 502 `… i/o timeout` within the 3 s bound and stores
    nothing, and check says IsValid false with the same reason."""
    async with (
        clusters(tmp_path) as (a, b),
        fake_peer(a.data, Reply(hang=True)) as hanging,
        fake_peer(a.data, replace(GOOD, trickle=0.2)) as trickling,
    ):
        hang_token = await a.token("b-one", ServerExternalAddresses=[hanging.address])
        trickle_token = await a.token("b-two", ServerExternalAddresses=[trickling.address])
        results: dict[str, tuple[httpx.Response, float]] = {}

        async def run(key: str, call: Callable[[], Awaitable[httpx.Response]]) -> None:
            results[key] = await timed(call())

        check_body = {"PeerName": "a-three", "PeeringToken": hang_token}
        async with anyio.create_task_group() as group:  # all three at once: the whole test takes one bound
            group.start_soon(run, "hang", lambda: b.establish("a-one", hang_token))
            group.start_soon(run, "trickle", lambda: b.establish("a-two", trickle_token))
            group.start_soon(run, "check", lambda: b.api.post("/v1/peering/check", json=check_body))
        for key, fake in (("hang", hanging), ("trickle", trickling)):
            response, elapsed = results[key]
            assert (response.status_code, response.text) == (
                502,
                f'failed to exchange peering secret through address "{fake.address}": i/o timeout',
            )
            assert elapsed <= ESTABLISH_BOUND, key
            assert fake.paths.count(EXCHANGE) >= 2, key  # a timeout is worth another try within the bound
        checked, elapsed = results["check"]
        assert checked.json()["IsValid"] is False
        assert checked.json()["ErrorMessage"] == (
            f'failed to check peering token through address "{hanging.address}": i/o timeout'
        )
        assert elapsed <= ESTABLISH_BOUND
        assert (await b.api.get("/v1/peerings")).json() == []


async def test_a_peer_with_another_ca_is_refused_at_once(tmp_path: Path) -> None:
    """A peer whose certificate has the right server name but comes from another CA: establish is a 502
    `… tls: failed to verify certificate …` at once (TLS failures are not retried), nothing is sent to it
    and nothing stored, and check says IsValid false with the same reason."""
    async with clusters(tmp_path) as (a, b):
        load_or_create(tmp_path / "other", "dc1")  # another cluster also named dc1: same server name, its own CA
        async with fake_peer(tmp_path / "other", GOOD) as impostor:
            token = await a.token("cluster-b", ServerExternalAddresses=[impostor.address])
            response, elapsed = await timed(b.establish("cluster-a", token))
            reason = "tls: failed to verify certificate (unknown authority or wrong server name)"
            assert (response.status_code, response.text) == (
                502,
                f'failed to exchange peering secret through address "{impostor.address}": {reason}',
            )
            assert elapsed < 1.0
            checked = await check(b, token)
            assert checked["IsValid"] is False
            assert (
                checked["ErrorMessage"]
                == f'failed to check peering token through address "{impostor.address}": {reason}'
            )
            assert impostor.paths == []
        assert (await b.api.get("/v1/peerings")).json() == []
        assert (await a.read("cluster-b"))["State"] == "INITIAL"


async def test_wall_clock_jumps_neither_fail_a_healthy_link_nor_keep_a_dead_one(tmp_path: Path) -> None:
    """Heartbeat timeouts are measured on a monotonic clock: a day's jump forward leaves a healthy link
    ACTIVE on both sides (no write at all) while shown times follow the wall clock, and after jumps
    backward a stopped peer still turns the other side FAILING within the timeout."""
    a, b = Node("a", tmp_path / "a", "dc1"), Node("b", tmp_path / "b", "dc2")
    clocks = {a: WallClock(), b: WallClock()}
    for node, clock in clocks.items():
        node.options = {"clock": clock}
    async with running(a, b):
        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        indexes = {a: (await a.read("cluster-b"))["ModifyIndex"], b: (await b.read("cluster-a"))["ModifyIndex"]}
        for clock in clocks.values():
            clock.offset = timedelta(days=1)
        jumped = utcnow() + timedelta(days=1) - timedelta(seconds=1)  # the shown times have whole seconds

        async def unchanged(node: Node, name: str) -> None:
            # a blocking query returns at the first write (a state change), else after 1.2 timeouts
            wait = f"{int(HEARTBEAT_TIMEOUT * 1200)}ms"
            response = await node.api.get(f"/v1/peering/{name}?index={indexes[node]}&wait={wait}")
            assert (response.json()["State"], response.json()["ModifyIndex"]) == ("ACTIVE", indexes[node])
            shown = datetime.fromisoformat(response.json()["StreamStatus"]["LastHeartbeat"])
            assert shown >= jumped  # heartbeats went on after the jump, and are shown on the wall clock

        async with anyio.create_task_group() as group:
            group.start_soon(unchanged, a, "cluster-b")
            group.start_soon(unchanged, b, "cluster-a")

        for clock in clocks.values():
            clock.offset = timedelta(days=-1)
        await b.stop()
        await a.wait_for("cluster-b", state_is("FAILING"), timeout=HEARTBEAT_TIMEOUT + 4)
        await b.start()
        await a.wait_for("cluster-b", state_is("ACTIVE"))
        for clock in clocks.values():
            clock.offset = timedelta(days=-2)
        await a.stop()
        await b.wait_for("cluster-a", state_is("FAILING"), timeout=HEARTBEAT_TIMEOUT + 4)


async def test_bodies_over_one_mib_are_refused_with_or_without_a_length(tmp_path: Path) -> None:
    """Over the real listeners, a body over 1 MiB is a 413 whether it announces its length or comes chunked
    without one (HTTP port; the TLS peer port's limit is lower and refuses the same way); a body just under
    the limit is read either way."""
    a = Node("a", tmp_path / "a", "dc1")
    too_large = f"Request body too large: the limit is {MAX_BODY_BYTES} bytes"

    def chunked(payload: bytes) -> Callable[[], AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 65536):
                yield payload[start : start + 65536]

        return chunks

    async with running(a):
        over = b'{"PeerName": "a", "Meta": {"k": "' + b"v" * MAX_BODY_BYTES + b'"}}'
        for name, content in (("announced", over), ("chunked", chunked(over)())):
            response = await a.api.post("/v1/peering/token", content=content)
            assert (response.status_code, response.text) == (413, too_large), name
            assert ("content-length" in response.request.headers) is (name == "announced")
        for name in ("near-announced", "near-chunked"):
            near = b'{"PeerName": "' + name.encode() + b'"' + b" " * (MAX_BODY_BYTES - 40) + b"}"
            body = near if name == "near-announced" else chunked(near)()
            assert (await a.api.post("/v1/peering/token", content=body)).status_code == 200, name

        context = client_ssl_context([(a.data / "ca.pem").read_text()])
        async with httpx.AsyncClient(base_url=f"https://{a.peering_addr}", verify=context, timeout=10) as peer:
            peer_too_large = f"Request body too large: the limit is {MAX_PEER_BODY_BYTES} bytes"
            over_peer = b'{"PeerID": "' + b"x" * MAX_PEER_BODY_BYTES + b'"}'
            for content in (over, chunked(over)(), over_peer, chunked(over_peer)()):
                response = await peer.post("/peering/v1/heartbeat", content=content)
                assert (response.status_code, response.text) == (413, peer_too_large)
        assert (await a.api.get("/v1/status/leader")).status_code == 200


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset after the answer ends it too)."""
    received = b""
    with suppress(ConnectionResetError, ssl.SSLError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_an_oversized_request_head_is_refused_and_others_are_served(tmp_path: Path) -> None:
    """A request head over 16 KiB (one huge header, or many small ones) is answered 431 and its connection
    closed — also when it arrives whole in one read — or, for a megabyte, cut off; a head under the limit is
    served, and so is everyone else."""
    a = Node("a", tmp_path / "a", "dc1")
    async with running(a):
        host, port = a.http_addr.rsplit(":", 1)
        request = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n"
        heads = {
            "one big header": b"X-Big: " + b"v" * (MAX_HEAD_BYTES + 100) + b"\r\n",
            "many headers": b"".join(b"X-%d: %s\r\n" % (i, b"v" * 60) for i in range(MAX_HEAD_BYTES // 60)),
            "a megabyte": b"X-Big: " + b"v" * (1 << 20) + b"\r\n",
        }
        for name, headers in heads.items():
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                with suppress(ConnectionResetError):
                    writer.write(request + headers + b"\r\n")
                    await writer.drain()
                with anyio.fail_after(5):
                    answer = await _read_all(reader)  # ends: the server closed the connection
            finally:
                writer.close()
            if name != "a megabyte" or answer:  # a megabyte may be cut off before the answer is read
                assert answer.startswith(b"HTTP/1.1 431 "), name
            assert (await a.api.get("/v1/status/leader")).status_code == 200
        under = await a.api.get("/v1/status/leader", headers={"X-Big": "v" * (MAX_HEAD_BYTES - 1024)})
        assert under.status_code == 200


async def test_a_stalled_request_is_closed_within_the_bound_while_others_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that trickle a request a byte at a time (slowloris) — a new head, the next head on a kept-alive
    connection, a body, a head on the TLS peer port — get a 408 and are closed within the request timeout,
    while every other client is served at once and a blocking query outlasts the bound; nothing is logged
    as an error."""
    a = Node("a", tmp_path / "a", "dc1")
    a.options = {"request_timeout": STALL_BOUND}
    async with running(a):
        host, port = a.http_addr.rsplit(":", 1)
        peer_host, peer_port = a.peering_addr.rsplit(":", 1)
        context = client_ssl_context([(a.data / "ca.pem").read_text()])
        head = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n"
        stalls: dict[str, tuple[str, int, ssl.SSLContext | None, bytes, bytes]] = {
            "new head": (host, int(port), None, b"", head + b"X-Slow: "),
            "kept-alive head": (host, int(port), None, head + b"\r\n", head + b"X-Slow: "),
            "body": (
                host,
                int(port),
                None,
                b"",
                b"POST /v1/peering/token HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n{",
            ),
            "TLS head": (
                peer_host,
                int(peer_port),
                context,
                b"",
                b"POST /peering/v1/heartbeat HTTP/1.1\r\nHost: x\r\n",
            ),
        }
        stalling = {name: asyncio.Event() for name in stalls}
        results: dict[str, tuple[bytes, float]] = {}

        async def stall(name: str) -> None:
            stall_host, stall_port, tls, first, start = stalls[name]
            reader, writer = await asyncio.open_connection(stall_host, stall_port, ssl=tls)
            try:
                if first:  # one complete request and its answer first: the connection is then kept alive
                    writer.write(first)
                    answered = await reader.readuntil(b"\r\n\r\n")
                    length = int(answered.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                started = time.monotonic()
                writer.write(start)
                stalling[name].set()

                async def trickle() -> None:
                    with suppress(ConnectionError):
                        while not writer.is_closing():
                            await asyncio.sleep(0.05)  # the fault itself: a client this slow
                            writer.write(b"a")
                            await writer.drain()

                async with anyio.create_task_group() as group:
                    group.start_soon(trickle)
                    with anyio.fail_after(STALL_BOUND + 5):
                        answer = await _read_all(reader)
                    group.cancel_scope.cancel()
                results[name] = (answer, time.monotonic() - started)
            finally:
                writer.close()

        async with anyio.create_task_group() as group:
            for name in stalls:
                group.start_soon(stall, name)
            for event in stalling.values():
                await event.wait()
            for _ in range(5):  # served while the stalled connections are held
                response, elapsed = await timed(a.api.get("/v1/status/leader"))
                assert response.status_code == 200
                assert elapsed < STALL_BOUND
            # a request that arrived in full is not cut by the bound: a blocking query waits out its time
            index = (await a.api.get("/v1/peerings")).headers["X-Consul-Index"]
            waited, elapsed = await timed(a.api.get(f"/v1/peerings?index={index}&wait={int(STALL_BOUND * 2000)}ms"))
            assert (waited.status_code, waited.json()) == (200, [])
            assert elapsed >= STALL_BOUND * 2
        for name, (answer, elapsed) in results.items():
            assert answer.startswith(b"HTTP/1.1 408 "), name
            assert STALL_BOUND * 0.8 <= elapsed <= STALL_BOUND + 1.0, (name, elapsed)
        assert (await a.api.get("/v1/status/leader")).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_calls_to_peers_are_bounded_in_number(tmp_path: Path) -> None:
    """Outgoing peer calls beyond `max_in_flight` wait for a slot instead of opening more connections: six
    heartbeats to a peer that holds its answers reach it two at a time, and all succeed once it answers."""
    identity = load_or_create(tmp_path / "a", "dc1")
    async with fake_peer(tmp_path / "a", replace(GOOD, hang=True)) as fake:
        peers = PeerClient(client_ssl_context, attempt_timeout=10.0, max_in_flight=2)
        target = PeerTarget((fake.address,), (identity.ca_pem,), identity.server_name)
        answers: list[Any] = []

        async def heartbeat() -> None:
            answers.append(await peers.call(target, "heartbeat", {}, expect=ANY_STATUS))

        try:
            async with anyio.create_task_group() as group:
                for _ in range(6):
                    group.start_soon(heartbeat)
                assert await fake.requests(2, within=5)
                assert not await fake.requests(3, within=0.5)  # the other four wait for a slot
                fake.release()
        finally:
            await peers.aclose()
        assert len(answers) == 6
        assert all(answer["Status"] == "ACTIVE" for answer in answers)
        assert fake.most_in_flight == 2
        assert len(fake.paths) == 6


async def test_pooled_peer_clients_are_bounded_and_a_busy_one_is_kept(tmp_path: Path) -> None:
    """The pool keeps at most `max_clients` clients (one per set of pinned CAs, and any token can bring a new
    CA): the least recently used idle one goes, while one with a call in flight stays and its call succeeds."""
    names = ("one", "two", "three")
    identities = {name: load_or_create(tmp_path / name, "dc1") for name in names}
    peers = PeerClient(client_ssl_context, attempt_timeout=10.0, max_clients=2)
    answers: list[Any] = []
    async with (
        fake_peer(tmp_path / "one", replace(GOOD, hang=True)) as one,
        fake_peer(tmp_path / "two", GOOD) as two,
        fake_peer(tmp_path / "three", GOOD) as three,
    ):
        fakes = {"one": one, "two": two, "three": three}
        targets = {
            name: PeerTarget((fakes[name].address,), (identity.ca_pem,), identity.server_name)
            for name, identity in identities.items()
        }

        async def heartbeat(name: str) -> None:
            answers.append(await peers.call(targets[name], "heartbeat", {}, expect=ANY_STATUS))

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(heartbeat, "one")
                assert await one.requests(1, within=5)  # one's call is in flight
                await heartbeat("two")
                await heartbeat("three")  # the pool is full: two (idle) goes, one (busy) stays
                assert set(peers._clients) == {targets["one"].ca_pems, targets["three"].ca_pems}
                one.release()
        finally:
            await peers.aclose()
    assert [answer["Status"] for answer in answers] == ["ACTIVE"] * 3
