"""A TCP relay in front of a cluster's peer port: counts the bytes each way and can hold one direction.

The peer protocol is TLS end to end; the relay only moves bytes (as a load balancer's TCP passthrough
does), so the two clusters still verify each other. Put its address in the peering token
(`ServerExternalAddresses`) and the dialer connects through it; `retarget()` follows an acceptor
restarted on another port.

`limit(direction, n)` lets at most `n` more bytes through in that direction, then holds the rest (the
connections stay open, nothing is lost): a sync can be stopped half-way at a byte count chosen by the
test, whatever the timing. `unlimit()` lets everything through again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

Direction = Literal["up", "down"]  # up: dialer -> acceptor; down: acceptor -> dialer
CHUNK = 64 * 1024


class Relay:
    """See the module docstring. Thread-based: every connection has one pump per direction."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Condition()
        self._bytes: dict[Direction, int] = {"up": 0, "down": 0}
        self._allowance: dict[Direction, int | None] = {"up": None, "down": None}
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._accepter.start()

    # --- what a test uses -------------------------------------------------------------------------------

    def retarget(self, target: str) -> None:
        """Send new connections to `target` (an acceptor restarted elsewhere)."""
        with self._lock:
            self._target = target

    def bytes(self, direction: Direction) -> int:
        """Bytes relayed so far in `direction`."""
        with self._lock:
            return self._bytes[direction]

    def limit(self, direction: Direction, more: int) -> None:
        """Let at most `more` further bytes through in `direction`, then hold the rest."""
        with self._lock:
            self._allowance[direction] = more
            self._lock.notify_all()

    def unlimit(self) -> None:
        with self._lock:
            self._allowance = {"up": None, "down": None}
            self._lock.notify_all()

    def held(self, direction: Direction) -> bool:
        """Whether `direction` is limited and has used up its allowance."""
        with self._lock:
            return self._allowance[direction] == 0

    def wait_held(self, direction: Direction, timeout: float) -> bool:
        """Block until `direction` used up its allowance (True) or `timeout` s passed (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._allowance[direction] == 0, timeout)

    def drop_connections(self) -> None:
        """Close every relayed connection (the listener stays)."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        with suppress(OSError):
            self._listener.close()
        self.drop_connections()
        self._accepter.join(5)
        for thread in list(self._threads):
            thread.join(5)

    # --- the machinery ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                host, port = self._target.rsplit(":", 1)
            try:
                server = socket.create_connection((host, int(port)), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, sink, direction in ((client, server, "up"), (server, client, "down")):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, direction), name=f"relay-{direction}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _take(self, direction: Direction, wanted: int) -> int:
        """Block until some of `wanted` bytes may pass in `direction`; how many (0: the relay closed)."""
        with self._lock:
            granted = 0
            while True:
                if self._closed:
                    return 0
                allowance = self._allowance[direction]
                if allowance is None:
                    granted = wanted
                    break
                if allowance > 0:
                    granted = min(wanted, allowance)
                    self._allowance[direction] = allowance - granted
                    if allowance == granted:
                        self._lock.notify_all()  # held from now on: `wait_held` returns
                    break
                self._lock.wait()
            self._bytes[direction] += granted
            return granted

    def _pump(self, source: socket.socket, sink: socket.socket, direction: Direction) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    granted = self._take(direction, len(view))
                    if granted == 0:
                        return
                    sink.sendall(view[:granted])
                    view = view[granted:]
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(source)
            source.close()  # the other pump closes `sink`


@contextmanager
def relaying(target: str) -> Iterator[Relay]:
    relay = Relay(target)
    try:
        yield relay
    finally:
        relay.close()
