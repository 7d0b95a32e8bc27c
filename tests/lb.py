"""A small TCP load balancer for the replica tests: one address in front of several replicas.

Round-robin per connection over `backends` (a list the test may change while it runs), skipping a
backend that refuses the connection, bytes copied both ways unchanged (TLS passes through: the peers
see the replicas' own certificates). It runs on an asyncio loop in a thread of its own, on 127.0.0.1
at a port the OS picked, and `stop()` closes the listener and every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class LoadBalancer:
    """See the module docstring."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = list(backends)
        self.address = ""
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lb", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> LoadBalancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            host, port = backend.rsplit(":", 1)
            try:
                async with asyncio.timeout(2.0):
                    return await asyncio.open_connection(host, int(port))
            except (OSError, TimeoutError):
                continue  # dead or not yet up: the next one
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect() if self.backends else None
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._open):
                w.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def balancing(backends: list[str]) -> Iterator[LoadBalancer]:
    """A running load balancer over `backends`, stopped at the end."""
    lb = LoadBalancer(backends).start()
    try:
        yield lb
    finally:
        lb.stop()
