"""Both HTTP protocols (httptools, the default, and h11) keep the same guarantees over real sockets: the head
cap (431), the request deadline (408), the early 413 for `Expect: 100-continue`, pipelining, and admission
(idle connections make room, busy ones are refused), on the client port and the TLS peer port."""

from __future__ import annotations

import asyncio
import gc
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest

from peering.api.body import MAX_BODY_BYTES
from peering.identity import client_ssl_context
from peering.server import MAX_HEAD_BYTES
from tests.test_peering import Node

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("kind", ["httptools", "h11"])]

BOUND = 0.5  # the request deadline these clusters get
LEADER = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"


@asynccontextmanager
async def serving(tmp_path: Path, kind: str, **settings: Any) -> AsyncIterator[Node]:
    node = Node("a", tmp_path / "a", "dc1", **settings)
    node.options = {"http_protocol": kind, "request_timeout": BOUND}
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _connect(
    address: str, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), ssl=tls, server_hostname="server.dc1.consul" if tls else None)


async def _until_closed(reader: asyncio.StreamReader, bound: float = 5.0) -> bytes:
    """Everything the server sends until it closes (a reset after the answer ends it too)."""
    received = b""
    with anyio.fail_after(bound), suppress(ConnectionResetError, ssl.SSLError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def _exchange(address: str, *writes: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    """Send `writes` one by one (each its own segment) and read until the server closes."""
    reader, writer = await _connect(address, tls)
    try:
        with suppress(ConnectionResetError):
            for data in writes:
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(0)
        return await _until_closed(reader)
    finally:
        writer.close()


async def test_a_head_over_the_cap_is_a_431_in_one_read_or_many(tmp_path: Path, kind: str) -> None:
    async with serving(tmp_path, kind) as node:
        big = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        assert (await _exchange(node.http_addr, big)).startswith(b"HTTP/1.1 431 ")
        pieces = [big[start : start + 4096] for start in range(0, len(big), 4096)]
        assert (await _exchange(node.http_addr, *pieces)).startswith(b"HTTP/1.1 431 ")
        # the second head of a keep-alive connection counts from its own start
        if kind == "httptools":  # also a head that comes whole in one read after another (h11 serves it)
            kept = await _exchange(node.http_addr, LEADER + big)
            assert kept.endswith(b"request head over 16384 bytes")  # (the first may go unanswered: closed)
        under = {"X-Big": "v" * (MAX_HEAD_BYTES - 1024)}
        assert (await node.api.get("/v1/status/leader", headers=under)).status_code == 200


async def test_pipelined_requests_are_all_answered_in_order(tmp_path: Path, kind: str) -> None:
    async with serving(tmp_path, kind) as node:
        reader, writer = await _connect(node.http_addr)
        try:
            missing = b"GET /v1/peering/nope HTTP/1.1\r\nHost: x\r\n\r\n"
            writer.write(LEADER + missing + LEADER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            answer = await _until_closed(reader)
        finally:
            writer.close()
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"404", b"200"]


@pytest.mark.slow
async def test_a_stalled_request_is_a_408_and_a_full_one_is_not_cut(tmp_path: Path, kind: str) -> None:
    async with serving(tmp_path, kind) as node:
        context = client_ssl_context([(node.data / "ca.pem").read_text()])
        stalls = {
            "head": (node.http_addr, None, b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n"),
            "kept-alive head": (node.http_addr, None, LEADER + b"GET / HTTP/1.1\r\n"),
            "body": (node.http_addr, None, b"POST /v1/peering/token HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"),
            "TLS head": (node.peering_addr, context, b"POST /peering/v1/heartbeat HTTP/1.1\r\nHost: x\r\n"),
        }
        for name, (address, tls, start) in stalls.items():
            started = time.monotonic()
            answer = await _exchange(address, start, tls=tls)
            assert answer.endswith(b"request timeout"), name
            assert b"HTTP/1.1 408 " in answer, name
            assert BOUND * 0.8 <= time.monotonic() - started <= BOUND + 1.0, name
        index = (await node.api.get("/v1/peerings")).headers["X-Consul-Index"]
        started = time.monotonic()
        waited = await node.api.get(f"/v1/peerings?index={index}&wait={int(BOUND * 3000)}ms")
        assert waited.status_code == 200
        assert time.monotonic() - started >= BOUND * 3


async def test_expect_continue_over_the_limit_is_a_413_without_a_100(tmp_path: Path, kind: str) -> None:
    async with serving(tmp_path, kind) as node:
        context = client_ssl_context([(node.data / "ca.pem").read_text()])
        for address, tls, path in ((node.http_addr, None, "/v1/peering/token"),
                                   (node.peering_addr, context, "/peering/v1/heartbeat")):  # fmt: skip
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\nExpect: 100-continue\r\n\r\n"
            answer = await _exchange(address, head.encode(), tls=tls)
            assert answer.startswith(b"HTTP/1.1 413 "), (address, answer)
        reader, writer = await _connect(node.http_addr)
        try:
            body = b'{"PeerName": "under"}'
            writer.write(
                b"POST /v1/peering/token HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                % len(body)
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()


async def test_a_body_sent_after_100_continue_has_a_deadline_of_its_own(tmp_path: Path, kind: str) -> None:
    """The deadline is off while the client waits for the server's `100 Continue` and starts again when it
    goes out: a head at 0.6 of the deadline and its body at 0.6 after the 100 (1.2 from the connection's
    start) is answered; a client that sends no body after the 100 gets its 408."""
    async with serving(tmp_path, kind) as node:
        body = b'{"PeerName": "later"}'
        head = (
            b"POST /v1/peering/token HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
            % len(body)
        )
        reader, writer = await _connect(node.http_addr)
        try:
            await asyncio.sleep(BOUND * 0.6)  # a slow client, within the deadline for its head
            writer.write(head)
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            await asyncio.sleep(BOUND * 0.6)
            writer.write(body)
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
        reader, writer = await _connect(node.http_addr)
        try:
            writer.write(head)
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            started = time.monotonic()
            assert (await _until_closed(reader)).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - started >= BOUND * 0.9
        finally:
            writer.close()


@pytest.mark.slow
async def test_idle_connections_make_room_and_busy_ones_refuse(tmp_path: Path, kind: str) -> None:
    """Two connections per source: a third evicts the oldest idle one; with two blocking queries in
    progress, a third gets the 429; a connection whose query was answered is idle again (evictable), one
    whose query still waits is not."""
    async with serving(tmp_path, kind, http_max_conns_per_client=2) as node:
        index = (await node.api.get("/v1/peerings")).headers["X-Consul-Index"]
        await node.api.aclose()  # its pooled connection would count too
        oldest = await _connect(node.http_addr)
        busy = [await _connect(node.http_addr) for _ in range(2)]
        assert await _until_closed(oldest[0]) == b""  # evicted to admit the second of `busy`
        for seconds, (_, writer) in zip((1, 3), busy, strict=True):
            writer.write(f"GET /v1/peerings?index={index}&wait={seconds}s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
        await asyncio.sleep(0.2)  # the server reads the queries (nothing to await from out here)
        refused = await _exchange(node.http_addr, b"")
        assert refused.startswith(b"HTTP/1.1 429 "), refused
        assert refused.endswith(b"rate limit your calls")
        assert (await busy[0][0].readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
        newcomer = await _connect(node.http_addr)  # evicts the first of `busy`, idle again
        assert (await _until_closed(busy[0][0])).endswith(b"[]")
        assert (await busy[1][0].readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")  # kept while busy
        for _, writer in (oldest, *busy, newcomer):
            writer.close()


async def test_a_closed_connection_is_freed_without_the_cyclic_collector(tmp_path: Path, kind: str) -> None:
    """A connection that closed leaves no reference cycle behind (its protocol, transport and request cycle
    go by reference counting), on both ports: cycles left thousands of closed connections of an attack to
    the collector, whose full collections then held the event loop for 70-150 ms."""
    from peering.server.protocol import HttpProtocol

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, HttpProtocol))

    async with serving(tmp_path, kind) as node:
        await node.api.aclose()
        context = client_ssl_context([(node.data / "ca.pem").read_text()])
        close = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        heartbeat = (
            b"POST /peering/v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        gc.collect()
        gc.disable()
        try:
            before = alive()
            for _ in range(20):
                assert (await _exchange(node.http_addr, close)).startswith(b"HTTP/1.1 200 ")
                assert (await _exchange(node.peering_addr, heartbeat, tls=context)).startswith(b"HTTP/1.1 ")
            with anyio.fail_after(5):  # the server's side closes right after the answer
                while alive() > before:
                    await asyncio.sleep(0.01)
        finally:
            gc.enable()
