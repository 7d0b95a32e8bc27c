"""A hostile peer for the attack tests: a TLS server with the attacker's own certificate that answers the
dialer's peer calls with whatever the test chose, or with a body that does not end."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from peering.identity import ClusterIdentity
from tests.attack import LEGIT


@dataclass
class HostilePeer:
    """A TLS peer with the attacker's certificate (so a token it signed passes the dialer's pinning).

    With `body`, it answers every request with it; otherwise with `size` bytes of JSON (announced in
    Content-Length) streamed until the client stops reading. `sent` counts the bytes of each answer.
    """

    identity: ClusterIdentity
    size: int = 0
    body: bytes | None = None
    address: str = ""
    sent: list[int] = field(default_factory=list)
    _server: socket.socket | None = None

    def _serve_one(self, conn: ssl.SSLSocket) -> None:
        sent = 0
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            size = self.size if self.body is None else len(self.body)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
            if self.body is not None:
                conn.sendall(head.encode() + self.body)
                sent = len(self.body)
                return
            conn.sendall(head.encode() + b'{"StreamSecret": "')
            sent = 18
            filler = b"x" * 65536
            while sent + len(filler) < self.size:
                conn.sendall(filler)
                sent += len(filler)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
            with suppress(OSError):
                conn.close()

    def _accept(self, server: ssl.SSLContext, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            try:
                conn = server.wrap_socket(sock, server_side=True)
            except OSError:
                sock.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    @contextmanager
    def running(self) -> Iterator[HostilePeer]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.identity.cert_path, self.identity.key_path)
        listener = socket.create_server((LEGIT, 0))
        self.address = f"{LEGIT}:{listener.getsockname()[1]}"
        threading.Thread(target=self._accept, args=(context, listener), daemon=True).start()
        try:
            yield self
        finally:
            listener.close()
