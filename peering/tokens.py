"""The peering token (SPEC §4): a signed, base64-encoded JSON document, and its strict codec.

`decode` is total: any string gives a token or an `InvalidTokenError` with one of the documented
messages. Messages never repeat the token or its secret. Sizes are bounded before anything parses
(the token, then each field), lone surrogates are refused with the JSON, and every field must have
the shape its later use needs (a DNS server name, a printable secret, a datacenter and partition name,
one PEM certificate per CA entry that OpenSSL loads), so that a token that decodes can be dialed,
stored and shown without a failure half-way. Only `CA[0]` signs; TLS must chain to it alone.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from peering.errors import InvalidRequestError, InvalidTokenError
from peering.rules import check_server_address, valid_hostname

MAX_TOKEN_CHARS = 256 * 1024  # far above any real token (8 CAs of 16 KiB, 64 addresses), far below the body cap
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")  # a character outside the standard alphabet and its padding
_STRING_FIELDS = ("ServerName", "PeerID", "EstablishmentSecret", "Signature")
# the longest value of each string field, and (count, length) of each list; the peer protocol takes the
# same sizes (`api.peer`), so that whatever a token says can be sent on
_MAX_LENGTH = {
    "ServerName": 253,
    "PeerID": 64,
    "EstablishmentSecret": 128,
    "Signature": 256,  # a DER ECDSA P-256 signature is at most 72 bytes: 96 base64 characters
    "Remote.Datacenter": 64,
    "Remote.Partition": 63,
}
# an address of any length is cut short by `check_server_address`, which says "<addr> is not a valid …"
_MAX_ITEMS = {"CA": (8, 16384), "ServerAddresses": (64, MAX_TOKEN_CHARS)}
_MAX_DEPTH = 16  # a token nests 2 levels; unknown fields may nest a little, not a thousand times
_PEER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECRET = re.compile(r"[\x21-\x7e]{0,128}")  # printable ASCII: sent in JSON, hashed, never shown
_DATACENTER = re.compile(r"(?:[A-Za-z0-9_-]{1,64})?")  # as `--datacenter`; empty in older tokens
_PARTITION = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)?")  # a partition name, normalised


@dataclass(frozen=True)
class TokenRemote:
    """The acceptor's datacenter and partition."""

    datacenter: str
    partition: str


@dataclass(frozen=True)
class PeeringToken:
    """What a token carries; `CA[0]` is the acceptor's CA, which signed it."""

    ca: tuple[str, ...]
    server_addresses: tuple[str, ...]
    server_name: str
    peer_id: str
    establishment_secret: str = field(repr=False)
    remote: TokenRemote


def signed_payload(fields: Mapping[str, object]) -> bytes:
    """The canonical bytes a signature covers: every field but `Signature`, sorted, compact, UTF-8."""
    unsigned = {key: value for key, value in fields.items() if key != "Signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", errors="surrogatepass")


def encode(token: PeeringToken, sign: Callable[[bytes], bytes]) -> str:
    """The wire form of `token`, signed with `sign` (the acceptor CA key's DER ECDSA signature)."""
    fields: dict[str, Any] = {
        "CA": list(token.ca),
        "ServerAddresses": list(token.server_addresses),
        "ServerName": token.server_name,
        "PeerID": token.peer_id,
        "EstablishmentSecret": token.establishment_secret,
        "Remote": {"Datacenter": token.remote.datacenter, "Partition": token.remote.partition},
    }
    fields["Signature"] = base64.b64encode(sign(signed_payload(fields))).decode()
    try:
        outer = orjson.dumps(fields)  # compact, as the signed payload
    except TypeError:  # a lone surrogate (only a crafted token has one): escaped, as the stdlib does
        outer = json.dumps(fields, separators=(",", ":")).encode()
    return base64.b64encode(outer).decode()


def _fail(reason: str) -> InvalidTokenError:
    return InvalidTokenError(f"failed to decode token: {reason}")


def _base64(raw: str) -> bytes:
    if len(raw) > MAX_TOKEN_CHARS:
        raise _fail(f"the token is over {MAX_TOKEN_CHARS} characters")
    text = raw.replace("\r", "").replace("\n", "")
    illegal = _NOT_BASE64.search(text)
    if illegal is not None:
        raise _fail(f"illegal base64 data at input byte {illegal.start()}")
    body = text.rstrip("=")
    if "=" in body or len(text) % 4 != 0 or len(text) - len(body) > 2:
        raise _fail(f"illegal base64 data at input byte {len(body) - len(body) % 4}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _fail(f"illegal base64 data at input byte {len(body) - len(body) % 4}") from None


def _json_kind(value: object) -> str:
    kinds = ((bool, "bool"), ((int, float), "number"), (str, "string"), (list, "array"), (dict, "object"))
    return next((name for types, name in kinds if isinstance(value, types)), "null")


def _type_error(value: object, path: str, go_type: str) -> InvalidTokenError:
    return _fail(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field PeeringToken.{path} of type {go_type}"
    )


def _string(fields: Mapping[str, Any], key: str, path: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(value, path, "string")
    if len(value) > _MAX_LENGTH[path]:
        raise _fail(f"PeeringToken.{path} is over {_MAX_LENGTH[path]} characters")
    return value


def _strings(fields: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = fields.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _type_error(value, key, "[]string")
    for item in value:
        if not isinstance(item, str):
            raise _type_error(item, key, "string")
    most, longest = _MAX_ITEMS[key]
    if len(value) > most:
        raise _fail(f"PeeringToken.{key} has more than {most} entries")
    if any(len(item) > longest for item in value):
        raise _fail(f"PeeringToken.{key} has an entry over {longest} characters")
    return tuple(value)


def _depth(value: object, limit: int) -> bool:
    """Whether `value` nests no deeper than `limit` (an unknown field is signed too, and the canonical
    encoder recurses: a deep one must be refused here, not overflow the stack there)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return True


def _parse(data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise _fail("unexpected end of JSON input")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("invalid UTF-8 in JSON input") from None
    try:
        # orjson refuses lone surrogates (which no encoder downstream could write) and nesting past 1024
        fields = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _fail(str(exc)) from None
    if not isinstance(fields, dict):
        raise _fail(f"json: cannot unmarshal {_json_kind(fields)} into Go value of type PeeringToken")
    if not _depth(fields, _MAX_DEPTH):
        raise _fail("exceeded max depth")
    return fields


def _check_ca(pem: str) -> x509.Certificate:
    """The certificate of a CA entry: exactly one PEM certificate, which both cryptography and OpenSSL
    (the TLS stack that will trust it) accept. Certificates parse lazily, so the key is loaded here."""
    if "-----BEGIN" not in pem:
        raise InvalidTokenError("peering token invalid CA: no PEM-encoded data found")
    if not pem.isascii() or pem.count("-----BEGIN") != 1:
        raise InvalidTokenError("peering token invalid CA: an entry must hold exactly one PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        cert.public_key()
        _openssl_loads(cert.public_bytes(serialization.Encoding.DER))
    except (ValueError, TypeError, UnsupportedAlgorithm, ssl.SSLError):
        raise InvalidTokenError("peering token invalid CA: malformed certificate") from None
    return cert


@functools.lru_cache(maxsize=64)
def _openssl_loads(der: bytes) -> None:
    """Raises ssl.SSLError unless OpenSSL takes `der` as a CA (a new context costs about 0.3 ms: the CAs
    tokens bring again and again, one acceptor's, are checked once; a refused one is not remembered)."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)


def _verify(key: PublicKeyTypes, fields: Mapping[str, Any], signature: str) -> None:
    invalid = InvalidTokenError("peering token signature is invalid")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise invalid
    try:
        key.verify(base64.b64decode(signature, validate=True), signed_payload(fields), ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature, RecursionError):
        raise invalid from None


def _check_shapes(token: PeeringToken) -> None:
    """What the dialer will put on the wire, in its store and in its answers must be well-formed: checked
    before the token is used, so that nothing fails half-way once the acceptor has consumed the secret."""
    checks = (
        ("ServerName", valid_hostname(token.server_name)),
        ("PeerID", _PEER_ID.fullmatch(token.peer_id) is not None),
        ("EstablishmentSecret", _SECRET.fullmatch(token.establishment_secret) is not None),
        ("Remote.Datacenter", _DATACENTER.fullmatch(token.remote.datacenter) is not None),
        ("Remote.Partition", _PARTITION.fullmatch(token.remote.partition) is not None),
    )
    for path, valid in checks:
        if not valid:
            raise _fail(f"PeeringToken.{path} is not valid")


def decode(raw: str) -> PeeringToken:
    """Decode and verify a token, checking in Consul's order, then the shape of every field, then the
    signature with `CA[0]`.

    Total: any string gives a token or an `InvalidTokenError`; every field is bounded in size before
    anything parses it.

    Raises:
        InvalidTokenError: the token does not decode, is incomplete, or its signature does not verify.
    """
    fields = _parse(_base64(raw))
    ca = _strings(fields, "CA")
    addresses = _strings(fields, "ServerAddresses")
    server_name, peer_id, secret, signature = (_string(fields, key, key) for key in _STRING_FIELDS)
    remote = fields.get("Remote")
    remote = {} if remote is None else remote
    if not isinstance(remote, dict):
        raise _type_error(remote, "Remote", "PeeringTokenRemote")
    token_remote = TokenRemote(
        _string(remote, "Datacenter", "Remote.Datacenter"), _string(remote, "Partition", "Remote.Partition")
    )
    certificates = [_check_ca(pem) for pem in ca]
    if not addresses:
        raise InvalidTokenError("peering token server addresses value is empty")
    for address in addresses:
        try:
            check_server_address(address)
        except InvalidRequestError as exc:
            raise InvalidTokenError(exc.message) from None
    if not server_name:
        raise InvalidTokenError("peering token server name value is empty")
    if not peer_id:
        raise InvalidTokenError("peering token peer ID value is empty")
    if not certificates:
        raise InvalidTokenError("peering token invalid CA: no CA certificate in token")
    token = PeeringToken(ca, addresses, server_name, peer_id, secret, token_remote)
    _check_shapes(token)
    _verify(certificates[0].public_key(), fields, signature)
    return token
