"""A fake peer for fault tests: a TLS server that presents a real cluster's server certificate (so a
dialer's CA pinning passes) and answers every peer-protocol call with whatever the test sets."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

HANG_LIMIT = 30.0  # seconds a held answer waits at most for `release()` (the fake is closed long before)


PADDING_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """One canned answer: an HTTP status and a body; `hang` holds it until `FakePeer.release()`;
    `trickle` sends it one byte every `trickle` s (a peer that keeps each read alive but never finishes);
    `padding` bytes of filler follow the body, made as they are sent (a 300 MB answer costs the fake
    nothing), announced in Content-Length or, with `chunked`, sent chunked without a length; `headers`
    are added to the answer's head."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    hang: bool = False
    trickle: float = 0.0
    padding: int = 0
    chunked: bool = False
    headers: tuple[tuple[str, str], ...] = ()


class FakePeer:
    """Serves the replies in `queue` one per request, then `reply` to every further one; records the
    paths asked for and how many requests were held at once."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.queue: list[Reply] = []
        self.tasks: set[asyncio.Task[object]] = set()
        self.paths: list[str] = []
        self.bodies: list[bytes] = []  # the request bodies, in the order of `paths`
        self.sent = 0  # bytes of answers (head and body) written so far
        self.address = ""
        self.in_flight = 0  # requests received and not yet answered
        self.most_in_flight = 0
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()

    def release(self) -> None:
        """Let every held answer (and every later one) go out."""
        self._released.set()

    async def requests(self, count: int, within: float) -> bool:
        """Wait until `count` requests arrived in all; False if that did not happen `within` s."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(lambda: len(self.paths) >= count)
        except TimeoutError:
            return False
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            reply = self.queue.pop(0) if self.queue else self.reply
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            async with self._changed:
                self.bodies.append(body)
                self.paths.append(lines[0].split(" ")[1])
                self._changed.notify_all()
            try:
                if reply.hang:
                    async with asyncio.timeout(HANG_LIMIT):
                        await self._released.wait()
            finally:
                self.in_flight -= 1
            framing = (
                "Transfer-Encoding: chunked" if reply.chunked else f"Content-Length: {len(reply.body) + reply.padding}"
            )
            extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
            top = f"HTTP/1.1 {reply.status} X\r\nContent-Type: {reply.content_type}\r\n{framing}\r\n{extra}"
            answer = f"{top}Connection: close\r\n\r\n".encode() + (b"" if reply.chunked else reply.body)
            if not reply.trickle:
                self._write(writer, answer)
            for byte in answer if reply.trickle else b"":
                await asyncio.sleep(reply.trickle)  # the fault itself: a peer this slow
                self._write(writer, bytes([byte]))
                await writer.drain()
            if reply.chunked or reply.padding:
                await self._send_body(writer, reply)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            pass  # the dialer gave up, or sent something this fake does not parse: just hang up
        finally:
            self.tasks.discard(task)
            writer.close()
            with suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent += len(data)

    async def _send_body(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """The body (when chunked) and the padding, a piece at a time, each once the reader took the last."""

        def pieces() -> Iterator[bytes]:
            if reply.chunked and reply.body:
                yield reply.body
            left = reply.padding
            while left > 0:
                size = min(PADDING_CHUNK, left)
                left -= size
                yield b" " * size  # whitespace: a padded JSON answer is still JSON

        for piece in pieces():
            self._write(writer, f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if reply.chunked else piece)
            await writer.drain()
        if reply.chunked:
            self._write(writer, b"0\r\n\r\n")


@asynccontextmanager
async def fake_peer(data_dir: Path, reply: Reply, address: str = "127.0.0.1:0") -> AsyncIterator[FakePeer]:
    """Run a `FakePeer` with the server certificate of the cluster whose data dir is `data_dir`.

    `address` may be the port of a stopped cluster, so that the fake takes over that cluster's live links.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(data_dir / "server.pem", data_dir / "server-key.pem")
    peer = FakePeer(reply)
    host, port = address.rsplit(":", 1)
    server = await asyncio.start_server(peer._handle, host, int(port), ssl=context, reuse_address=True)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    peer.address = f"{bound_host}:{bound_port}"
    try:
        yield peer
    finally:
        peer.release()
        server.close()
        for task in list(peer.tasks):
            task.cancel()
        await asyncio.gather(*peer.tasks, return_exceptions=True)
        await server.wait_closed()
