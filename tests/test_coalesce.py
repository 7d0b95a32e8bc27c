"""peering/server/coalesce.py: a response's head and body leave in one write; nothing is reordered or lost."""

from __future__ import annotations

import asyncio

import pytest

from peering.server.coalesce import Coalesced


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: tuple[bytes, ...]) -> None:
        self.writes.append(b"".join(chunks))  # one system call for several buffers

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_a_head_waits_for_its_body_and_leaves_with_it() -> None:
    transport = _Transport()
    writes = Coalesced(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    writes.write(b"body")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    writes.write(b"")  # an empty write keeps nothing back
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


@pytest.mark.anyio
async def test_a_lone_write_leaves_within_the_turn_and_a_close_sends_what_is_kept_first() -> None:
    transport = _Transport()
    writes = Coalesced(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body follows (HEAD, 204, 100 Continue)
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    writes.write(b"last words")
    writes.close()
    assert transport.writes[-1] == b"last words"
    assert transport.closed
    await asyncio.sleep(0)  # the turn's flush finds nothing left (and the transport closing)
    assert len(transport.writes) == 2
