"""A small synchronous client for the peering HTTP API, shaped like Consul's Go `api` package.

`ApiConfig.resolve` turns the API flags and their `CONSUL_*` variables into an address, token and
partition; `PeeringClient` sends one request per call over `httpx.Client` and raises `ApiError`
subclasses whose text reads like the Go client's errors.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from peering import __version__

DEFAULT_ADDRESS = "127.0.0.1:8500"
# establish and check wait for the remote cluster, so reads may take much longer than connecting
TIMEOUT = httpx.Timeout(10.0, read=60.0)

JSONObject = dict[str, Any]


class ConfigError(Exception):
    """The API flags or variables cannot be used (bad address, unreadable token file)."""


class ApiError(Exception):
    """A request failed; the text is what the Go client would say."""


class UnexpectedResponseError(ApiError):
    """The API answered with a status other than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Unexpected response code: {status} ({body})")
        self.status = status
        self.body = body


class RequestFailedError(ApiError):
    """The request never got an answer: connection refused, timeout, TLS failure…"""


class InvalidResponseError(ApiError):
    """The API answered 200 with a body that is not what the endpoint returns."""


@dataclass(frozen=True)
class ApiConfig:
    """Where to send requests, as whom, and in which partition."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    partition: str | None = None

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        *,
        http_addr: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        partition: str | None = None,
    ) -> ApiConfig:
        """Combine flags and environment: a flag wins over its variable, a token file over a token.

        Raises:
            ConfigError: the address is not `host:port` or an http(s) URL, or the token file cannot be read.
        """
        if http_addr:
            base_url = _base_url(http_addr, "-http-addr")
        elif environ.get("CONSUL_HTTP_ADDR"):
            base_url = _base_url(environ["CONSUL_HTTP_ADDR"], "CONSUL_HTTP_ADDR")
        else:
            base_url = _base_url(DEFAULT_ADDRESS, "the default address")
        # evaluated in order and only as far as needed: a broken CONSUL_HTTP_TOKEN_FILE does not matter with -token
        sources: tuple[Callable[[], str | None], ...] = (
            lambda: _read_token_file(token_file),
            lambda: token,
            lambda: _read_token_file(environ.get("CONSUL_HTTP_TOKEN_FILE")),
            lambda: environ.get("CONSUL_HTTP_TOKEN"),
        )
        chosen = next((value for value in (source() for source in sources) if value), None)
        return cls(base_url=base_url, token=chosen, partition=partition or environ.get("CONSUL_PARTITION") or None)


def _base_url(address: str, source: str) -> str:
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"Invalid {source} {address!r}: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise ConfigError(f"Invalid {source} {address!r}: unknown protocol scheme {url.scheme!r} (use http or https)")
    if not url.host or url.path not in ("", "/") or url.query:
        raise ConfigError(f"Invalid {source} {address!r}: expected host:port or http(s)://host:port")
    return str(url.copy_with(path="/"))


def _read_token_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"Error loading token file {path!r}: {reason}") from exc


class PeeringClient:
    """The peering endpoints of one agent; use as a context manager so the connection is closed."""

    def __init__(self, config: ApiConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": f"peering-cli/{__version__}"}
        if config.token:
            headers["X-Consul-Token"] = config.token
        self._partition = config.partition
        self._http = httpx.Client(base_url=config.base_url, headers=headers, timeout=TIMEOUT, transport=transport)

    def __enter__(self) -> PeeringClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def generate_token(
        self, name: str, *, meta: Mapping[str, str] | None = None, server_external_addresses: list[str] | None = None
    ) -> str:
        """`POST /v1/peering/token`: the new token.

        Raises:
            ApiError: the request failed or was refused.
        """
        body: JSONObject = {"PeerName": name, **self._partition_field()}
        if meta:
            body["Meta"] = dict(meta)
        if server_external_addresses:
            body["ServerExternalAddresses"] = server_external_addresses
        answer = self.request("POST", "/v1/peering/token", body)
        token = answer.get("PeeringToken") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise InvalidResponseError("response has no PeeringToken")
        return token

    def establish(self, name: str, peering_token: str, *, meta: Mapping[str, str] | None = None) -> None:
        """`POST /v1/peering/establish`: returns once the peering is active.

        Raises:
            ApiError: the request failed or was refused.
        """
        body: JSONObject = {"PeerName": name, "PeeringToken": peering_token, **self._partition_field()}
        if meta:
            body["Meta"] = dict(meta)
        self.request("POST", "/v1/peering/establish", body)

    def read(self, name: str) -> JSONObject | None:
        """`GET /v1/peering/<name>`: the peering, or None when there is none by that name.

        Raises:
            ApiError: the request failed or was refused.
        """
        try:
            answer = self.request("GET", f"/v1/peering/{quote(name, safe='')}")
        except UnexpectedResponseError as exc:
            if exc.status == 404:
                return None
            raise
        return _object(answer)

    def list_peerings(self) -> list[JSONObject]:
        """`GET /v1/peerings`: every peering of the partition.

        Raises:
            ApiError: the request failed or was refused.
        """
        answer = self.request("GET", "/v1/peerings")
        if not isinstance(answer, list):
            raise InvalidResponseError("expected a JSON array")
        return [_object(item) for item in answer]

    def delete(self, name: str) -> None:
        """`DELETE /v1/peering/<name>`: starts the deletion (also fine for unknown names).

        Raises:
            ApiError: the request failed or was refused.
        """
        self.request("DELETE", f"/v1/peering/{quote(name, safe='')}", parse=False)

    def check(self, name: str, peering_token: str) -> JSONObject:
        """`POST /v1/peering/check`: whether establish would succeed with this token.

        Raises:
            ApiError: the request failed or was refused.
        """
        body: JSONObject = {"PeerName": name, "PeeringToken": peering_token, **self._partition_field()}
        result = _object(self.request("POST", "/v1/peering/check", body))
        if not isinstance(result.get("IsValid"), bool):
            raise InvalidResponseError("response has no IsValid")
        return result

    def _partition_field(self) -> JSONObject:
        return {"Partition": self._partition} if self._partition else {}

    def request(
        self,
        method: str,
        path: str,
        body: JSONObject | None = None,
        *,
        parse: bool = True,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request (with `query` and the partition, if any) and return the decoded JSON answer.

        Raises:
            ApiError: the request failed, or the answer is not 200 (or, with `parse`, not JSON).
        """
        params = {**(query or {}), **({"partition": self._partition} if self._partition else {})} or None
        request = self._http.build_request(method, path, params=params, json=body)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise RequestFailedError(f'{method.title()} "{request.url}": {_reason(exc, request.url)}') from exc
        if response.status_code != 200:
            raise UnexpectedResponseError(response.status_code, response.text.strip())
        if not parse:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponseError(f"response body is not JSON: {exc}") from exc


def _object(value: Any) -> JSONObject:
    if not isinstance(value, dict):
        raise InvalidResponseError("expected a JSON object")
    return value


_ERRNO = re.compile(r"^\[Errno -?\d+\] ")
# what OpenSSL says when the bytes that come back are not TLS at all (an HTTP answer, mostly)
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def _reason(exc: httpx.HTTPError, url: httpx.URL) -> str:
    """A short reason in the Go client's style: `connection refused`, not a traceback."""
    tls = _ssl_error(exc)
    if tls is not None:
        if tls.reason in _NOT_TLS:
            return f"the server does not speak TLS here (is it http://{url.netloc.decode()}?)"
        if isinstance(tls, ssl.SSLCertVerificationError):
            return f"TLS handshake failed: certificate verify failed: {tls.verify_message}"
        # "SSLV3_ALERT_HANDSHAKE_FAILURE" reads as "sslv3 alert handshake failure", without "(_ssl.c:1006)"
        return f"TLS handshake failed: {(tls.reason or type(tls).__name__).replace('_', ' ').lower()}"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the response"
    text = _ERRNO.sub("", str(exc).strip())
    if not text:
        return type(exc).__name__
    if len(text) > 1 and text[0].isupper() and text[1].islower():  # "Connection refused", not "TLS …"
        text = text[0].lower() + text[1:]
    return text


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The `ssl.SSLError` behind an httpx error (httpx wraps httpcore's, which wraps it), if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: a cause chain is short, but nothing stops a cycle
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
