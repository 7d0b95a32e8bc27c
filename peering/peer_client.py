"""Calls to another cluster's peering endpoint: HTTPS pinned to the peer's CA and server name.

Translates every httpx failure into the error tree at this boundary (house style rule 4). An answer
is read as raw bytes up to `MAX_ANSWER_BYTES` while it streams (never decompressed, never buffered
past the cap), then decoded strictly: whatever a peer sends is an answer or a `PeerError`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from peering.errors import InvalidRequestError, PeerProtocolError, PeerUnreachableError, SecretRejectedError

PROTOCOL_PREFIX = "/peering/v1"
RETRY_PAUSE = 0.15
MAX_IN_FLIGHT = 64  # calls to peers at once, over all peers: many links cannot open unbounded connections
MAX_CLIENTS = 256  # pooled clients kept, one per set of pinned CAs (any token brings its own CA: bound them)
RETRY_STATUSES = frozenset({502, 503, 504})  # a proxy in front of the peer, or a peer over its concurrency limit
MAX_ANSWER_BYTES = 64 * 1024  # the longest peer answer read (every protocol answer is well under 1 KiB)
_MAX_PEER_TEXT = 512
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")  # a peer's error text reaches our client: plain ASCII only
_ACTIONS = {
    "exchange": "exchange peering secret",
    "heartbeat": "send heartbeat",
    "terminate": "send termination",
    "probe": "check peering token",
    "exports/pull": "pull exported services",
    "exports/push": "push exported services",
}


@dataclass(frozen=True)
class PeerTarget:
    """Where a peer listens and how to recognise it."""

    addresses: tuple[str, ...]
    ca_pems: tuple[str, ...]
    server_name: str


def _chain(exc: BaseException) -> str:
    """The texts of an exception and its causes (httpx wraps the OS error that says what happened)."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 5:
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(texts)


def _reason(exc: httpx.HTTPError) -> tuple[str, bool]:
    """A short, secret-free reason for a failed call, worded like Go's network errors, and whether it is
    lasting: a server with the wrong certificate, or one that does not speak TLS, will not change by retrying."""
    text = _chain(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "i/o timeout", False
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "tls: failed to verify certificate (unknown authority or wrong server name)", True
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text.lower():
        return "tls: handshake failed (the address does not speak TLS)", True
    if "UNEXPECTED_EOF" in text:  # also a server going down mid-handshake: worth another try
        return "tls: handshake failed (the address does not speak TLS)", False
    if "refused" in text.lower():
        return "connection refused", False
    return str(exc) or type(exc).__name__, False


class _AddressFailedError(PeerUnreachableError):
    """One address failed; `lasting` when retrying it cannot help."""

    def __init__(self, message: str, lasting: bool) -> None:
        super().__init__(message)
        self.lasting = lasting


class InvalidAnswerError(PeerProtocolError):
    """The peer answered 200 with a JSON object that lacks a valid field; `answer` is that object (a
    dialer may still need a part of it, e.g. to undo an exchange the acceptor completed)."""

    def __init__(self, message: str, answer: dict[str, Any]) -> None:
        super().__init__(message)
        self.answer = answer


class _TooLargeError(Exception):
    """The answer is over the cap."""


class _UnusableCaError(Exception):
    """The pinned CA is not a certificate the TLS stack accepts (it will not change by retrying)."""


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """The raw body, refusing more than `cap` bytes before they are buffered.

    Raises:
        _TooLargeError: the announced or the actual length is over `cap`.
    """
    announced = response.headers.get("content-length", "")
    if len(announced) > 12 or (announced.isdigit() and int(announced) > cap):
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > cap:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


class PeerClient:
    """Sends peer-protocol requests, at most `max_in_flight` at once; one keep-alive client per set of pinned
    CAs, at most `max_clients` of them (the least recently used idle one goes first).

    Every attempt (waiting for a slot, connecting, TLS, the whole answer) ends within `attempt_timeout`.
    """

    def __init__(
        self,
        tls_context: Callable[[Sequence[str]], ssl.SSLContext],
        *,
        attempt_timeout: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._tls_context = tls_context
        self._timeout = attempt_timeout
        self._clients: dict[tuple[str, ...], httpx.AsyncClient] = {}  # least recently used first
        self._busy: dict[tuple[str, ...], int] = {}  # calls in flight per client: only idle ones are let go
        self._max_clients = max_clients
        self._closing: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)

    @contextmanager
    def _using(self, ca_pems: tuple[str, ...]) -> Iterator[httpx.AsyncClient]:
        client = self._clients.pop(ca_pems, None)
        if client is None:
            try:
                verify = self._tls_context(ca_pems)
            except ValueError:
                raise _UnusableCaError from None
            client = httpx.AsyncClient(
                verify=verify,
                timeout=self._timeout,
                trust_env=False,  # a proxy from the environment must never sit between two clusters
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            )
            idle = [key for key in self._clients if not self._busy.get(key)]
            for key in idle[: max(0, len(self._clients) + 1 - self._max_clients)]:
                closing = asyncio.create_task(self._clients.pop(key).aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self._clients[ca_pems] = client
        self._busy[ca_pems] = self._busy.get(ca_pems, 0) + 1
        try:
            yield client
        finally:
            left = self._busy.pop(ca_pems) - 1
            if left:
                self._busy[ca_pems] = left

    async def call(
        self,
        target: PeerTarget,
        operation: str,
        body: dict[str, Any],
        *,
        within: float = 0.0,
        expect: Mapping[str, Callable[[str], bool]] | None = None,
        max_answer: int = MAX_ANSWER_BYTES,
        attempt_timeout: float | None = None,
    ) -> dict[str, Any]:
        """POST `body` to the peer's `operation`, trying each address in turn, retrying until `within` s pass
        (no attempt outlives that deadline; with `within=0`, one full attempt per address). The answer must
        be a JSON object of at most `max_answer` bytes with, at every key of `expect`, a string that the
        key's check accepts. `attempt_timeout` replaces the client's own for this call (a long-poll).

        Raises:
            PeerUnreachableError: no address answered (refused, timed out, TLS rejected).
            SecretRejectedError: the peer refused the secret (403).
            InvalidRequestError: the peer refused the request as conflicting (400).
            InvalidAnswerError: the answer is a JSON object without a valid value at a key of `expect`.
            PeerProtocolError: the peer answered something else the protocol does not allow.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        failures: dict[str, str] = {}
        while True:
            lasting = True
            for address in target.addresses:
                remaining = deadline - loop.time()
                if within > 0 and remaining <= 0 and failures:
                    break
                timeout = attempt_timeout or self._timeout
                budget = timeout if within <= 0 else max(0.0, min(timeout, remaining))
                try:
                    return await self._post(target, address, operation, body, budget, expect or {}, max_answer)
                except _AddressFailedError as exc:
                    failures[address] = exc.message
                    lasting = lasting and exc.lasting
            if lasting or loop.time() + RETRY_PAUSE >= deadline:
                raise PeerUnreachableError("; ".join(failures.values()))
            await asyncio.sleep(RETRY_PAUSE)

    async def _post(
        self,
        target: PeerTarget,
        address: str,
        operation: str,
        body: dict[str, Any],
        budget: float,
        expect: Mapping[str, Callable[[str], bool]],
        max_answer: int,
    ) -> dict[str, Any]:
        url = f"https://{address}{PROTOCOL_PREFIX}/{operation}"
        failed = f'failed to {_ACTIONS.get(operation, operation)} through address "{address}"'
        try:
            # httpx's timeout is per phase (a peer trickling its answer resets it): bound the whole attempt too
            async with asyncio.timeout(budget), self._slots:
                with self._using(target.ca_pems) as client:
                    async with client.stream(
                        "POST",
                        url,
                        json=body,
                        timeout=budget,
                        # raw bytes only: a compressed answer could inflate far past the cap in one chunk
                        headers={"Accept-Encoding": "identity"},
                        extensions={"sni_hostname": target.server_name},
                    ) as response:
                        status = response.status_code
                        encoding = response.headers.get("content-encoding", "identity").strip().lower()
                        if encoding != "identity":
                            raise PeerProtocolError(f"{failed}: the peer answered with a compressed body")
                        raw = await _read_capped(response, max_answer)
        except TimeoutError:
            raise _AddressFailedError(f"{failed}: i/o timeout", False) from None
        except _TooLargeError:
            raise PeerProtocolError(f"{failed}: the peer's answer is over {max_answer} bytes") from None
        except _UnusableCaError:
            raise _AddressFailedError(f"{failed}: tls: the peer's CA certificate is not usable", True) from None
        except httpx.HTTPError as exc:
            reason, lasting = _reason(exc)
            raise _AddressFailedError(f"{failed}: {reason}", lasting) from exc
        return _answer(failed, status, raw, expect)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await asyncio.gather(*self._closing, return_exceptions=True)
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _answer(failed: str, status: int, raw: bytes, expect: Mapping[str, Callable[[str], bool]]) -> dict[str, Any]:
    """The decoded answer of a peer (see `PeerClient.call`)."""
    text = _UNPRINTABLE.sub("?", raw[:_MAX_PEER_TEXT].decode("utf-8", errors="replace"))
    if status == 403:
        raise SecretRejectedError(text)
    if status == 400:
        raise InvalidRequestError(text)
    if status in RETRY_STATUSES:
        raise _AddressFailedError(f"{failed}: the peer answered with status {status}", False)
    if status != 200:
        raise PeerProtocolError(f"{failed}: the peer answered with status {status}")
    try:
        answer = orjson.loads(raw)  # refuses lone surrogates, and nesting past 1024 levels
    except orjson.JSONDecodeError:
        raise PeerProtocolError(f"{failed}: the peer answered with malformed JSON") from None
    if not isinstance(answer, dict):
        answer = {}
    for key, valid in expect.items():
        value = answer.get(key)
        if not isinstance(value, str) or not valid(value):
            raise InvalidAnswerError(f"{failed}: the peer's answer has no valid {key}", answer)
    return answer
