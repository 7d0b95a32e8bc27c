"""The HTTP protocols of both listeners: `protocol.HttpProtocol`'s guarantees on uvicorn's httptools protocol
or on its h11 one, and on httptools the kept answers of plain reads (`api.answers`).

httptools (llhttp, in C) is the default: it serves several times what h11 (pure Python) does. h11 stays
selectable (`protocol_class(..., kind="h11")`) so that the tests can hold both to the same guarantees.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.h11_impl import RequestResponseCycle as H11Cycle
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as ToolsCycle

from peering.api.answers import ANSWER_KEY, Answers
from peering.server.admission import Gate
from peering.server.coalesce import Coalesced
from peering.server.fairness import Fairness
from peering.server.protocol import HEAD_TOO_LARGE, MAX_HEAD_BYTES, HttpProtocol, log

Kind = Literal["httptools", "h11"]
DEFAULT_KIND: Kind = "httptools"


class H11Http(HttpProtocol, H11Protocol):
    """The guarantees on uvicorn's h11 protocol, which parses one request at a time."""

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the whole request arrived (or the connection is done with)
        cycle: H11Cycle | None = self.cycle  # None until the first request head
        if self.slot is not None and cycle is not None and not cycle.response_complete:
            self.slot.busy()

    def on_response_complete(self) -> None:
        if self.slot is not None:
            self.slot.idle()
        self._arm()
        super().on_response_complete()  # may start a pipelined request: busy again

    def _read(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # a request head is (still) coming
            trailing = self.conn.trailing_data[0]
            if self._head_over(0, trailing + data):
                return
        H11Protocol.data_received(self, data)

    def _answering(self) -> bool:
        return self.conn.their_state is not h11.IDLE and bool(self.cycle.response_started)


class HttpToolsHttp(HttpProtocol, HttpToolsProtocol):
    """The guarantees on uvicorn's httptools protocol.

    llhttp parses every request of a read at once (pipelined ones are queued by uvicorn), through
    callbacks: the state here says where the connection is. `_head` counts the bytes of a head still
    coming (None from the end of a head to the end of its request), `_receiving` is true from a request's
    first byte to its last.
    """

    _head: int | None = 0
    _heads = 0  # heads complete so far
    _receiving = False
    _head_refused = False
    _writes: Coalesced | None = None
    _given = False  # the request in hand was answered from `answers`, without the app

    def _read(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        heads, head = self._heads, self._head
        if head is not None and self._head_over(head, data):
            return
        HttpToolsProtocol.data_received(self, data)
        if head is not None and self._heads == heads and self._head is not None:
            self._head += len(data)  # the head goes on in the next read (or the read held no end llhttp took)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving = True

    def on_headers_complete(self) -> None:
        self._head = None
        self._heads += 1
        # a head that came whole within one read (pipelined after another, say) was not counted by bytes
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            self._head_refused = True
            raise _HeadTooLargeError  # stops llhttp; uvicorn answers the parser error with `send_400_response`
        if self.answers is not None and self._give_kept(self.answers):
            return
        super().on_headers_complete()
        cycle: ToolsCycle | None = self.cycle  # None after a first head that upgrades
        if cycle is not None:  # its head and body leave in one write (`coalesce`)
            if self._writes is None:
                self._writes = Coalesced(self.transport, self.loop)
            cycle.transport = self._writes  # type: ignore[assignment]
        if self.slot is not None and cycle is not None and not cycle.response_complete:
            self.slot.busy()

    def _give_kept(self, answers: Answers) -> bool:
        """Answer a plain GET from `answers` if an answer kept for it is still valid and this connection has
        nothing else in hand; otherwise the app answers it (and may keep its answer: `ANSWER_KEY`)."""
        parser = self.parser
        if parser.get_method() != b"GET" or parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            return False
        key = answers.key(self.url, self.headers, self.client)
        if key is None:
            return False
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]  # uvicorn's TypedDict, extended
        scope[ANSWER_KEY] = (self.url, key)  # the target it was keyed by, and the key
        cycle: ToolsCycle | None = self.cycle
        if self.pipeline or (cycle is not None and not cycle.response_complete) or self.flow.write_paused:
            return False  # answers leave in order, and not past a client that does not read
        if self.transport.is_closing():
            return False
        started = time.perf_counter()
        kept = answers.find(key)
        if kept is None:
            return False
        if self._writes is not None:
            self._writes.flush()  # what the last answer left kept back goes first
        self.transport.writelines((answers.head(self.server_state.default_headers), kept.rest))
        self._given = True
        answers.given(kept, self.client, time.perf_counter() - started)
        return True

    def on_message_complete(self) -> None:
        if self._given:  # as after an answer of the app's (`on_response_complete`): wait for the next request
            self._given = False
            self._receiving = False
            self._head = 0
            self.server_state.total_requests += 1
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            self._arm()
            return
        super().on_message_complete()
        self._receiving = False
        self._head = 0
        cycle: ToolsCycle | None = self.cycle
        if cycle is not None and cycle.response_complete:
            self._arm()  # answered before its body was in: the deadline is for the next request now
        else:
            self._disarm()  # the whole request arrived

    def on_response_complete(self) -> None:
        if self.slot is not None:
            self.slot.idle()
        super().on_response_complete()  # may start a pipelined request: busy again
        if not self.cycle.response_complete and self.slot is not None:
            self.slot.busy()
        # the deadline runs when no request that arrived in full waits for its answer
        if not self.pipeline and (self.cycle.response_complete or (self._receiving and self._head is None)):
            self._arm()

    def send_400_response(self, msg: str) -> None:
        if self._head_refused:
            log.debug("refusing a request head over %d bytes", MAX_HEAD_BYTES)
            self._refuse(HEAD_TOO_LARGE)
        else:
            super().send_400_response(msg)

    def _answering(self) -> bool:
        return self._receiving and self._head is None and bool(self.cycle.response_started)


class _HeadTooLargeError(Exception):
    """Raised in a parser callback to stop parsing a head over the cap."""


PROTOCOLS: dict[Kind, type[HttpProtocol]] = {"httptools": HttpToolsHttp, "h11": H11Http}


def protocol_class(
    gate: Gate, fairness: Fairness, request_timeout: float, kind: Kind = DEFAULT_KIND
) -> type[HttpProtocol]:
    """The HTTP protocol class for one listener: its gate, the process's fairness and the request deadline,
    on httptools or h11."""
    attributes = {"gate": gate, "fairness": fairness, "request_timeout": request_timeout, "lingering": [0]}
    return type("PeeringHttpProtocol", (PROTOCOLS[kind],), attributes)
