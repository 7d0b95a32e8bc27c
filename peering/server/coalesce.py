"""One write to the socket for a response's head and body (issue 16: the fast stack's cost per answer).

uvicorn's httptools protocol writes a response's head and its body with two `transport.write` calls, and
the event loop sends each at once: two system calls (and, on loopback, two wake-ups of the client) for
an answer that fits one. `Coalesced` is what a request's cycle writes to instead of the transport: it
keeps a first write back until the next one, which takes it along, or until the end of the loop's turn
(`call_soon`), so a head and a body sent in one step of the app leave together, and a head whose body
comes later (or never: HEAD, 204) leaves within the same turn. Order is kept: a close sends what is kept
first. Only the cycle's writes go through it; the protocol's own refusals write to the transport.
"""

from __future__ import annotations

import asyncio


class Coalesced:
    """The transport as a request cycle uses it (`write`, `close`, `is_closing`), one per connection."""

    __slots__ = ("_kept", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: bytes | None = None

    def write(self, data: bytes) -> None:
        kept = self._kept
        if kept is not None:
            self._kept = None
            self._transport.writelines((kept, data))  # uvloop: one writev, no copy
        elif data:
            self._kept = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is kept back, if anything (a no-op once the transport closes)."""
        kept, self._kept = self._kept, None
        if kept is not None and not self._transport.is_closing():
            self._transport.write(kept)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
