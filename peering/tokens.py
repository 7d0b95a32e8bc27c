"""The peering token (SPEC §4): a signed, base64-encoded JSON document, and its strict codec.

`decode` is total: any string gives a token or an `InvalidTokenError` with one of the documented
messages. Messages never repeat the token or its secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from peering.errors import InvalidRequestError, InvalidTokenError
from peering.rules import check_server_address

_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_STRING_FIELDS = ("ServerName", "PeerID", "EstablishmentSecret", "Signature")
_LIST_FIELDS = ("CA", "ServerAddresses")


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
    return base64.b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode()


def _fail(reason: str) -> InvalidTokenError:
    return InvalidTokenError(f"failed to decode token: {reason}")


def _base64(raw: str) -> bytes:
    text = raw.replace("\r", "").replace("\n", "")
    for position, char in enumerate(text):
        if char not in _B64_ALPHABET and char != "=":
            raise _fail(f"illegal base64 data at input byte {position}")
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
    return tuple(value)


def _parse(data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise _fail("unexpected end of JSON input")
    try:
        fields = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail("invalid UTF-8 in JSON input") from None
    except RecursionError:
        raise _fail("exceeded max depth") from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not isinstance(fields, dict):
        raise _fail(f"json: cannot unmarshal {_json_kind(fields)} into Go value of type PeeringToken")
    return fields


def _check_ca(pem: str) -> PublicKeyTypes:
    """The public key of a CA entry (certificates parse lazily, so the key is loaded here)."""
    if "-----BEGIN" not in pem:
        raise InvalidTokenError("peering token invalid CA: no PEM-encoded data found")
    try:
        return x509.load_pem_x509_certificate(pem.encode("utf-8", errors="surrogatepass")).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidTokenError("peering token invalid CA: malformed certificate") from None


def _verify(key: PublicKeyTypes, fields: Mapping[str, Any], signature: str) -> None:
    invalid = InvalidTokenError("peering token signature is invalid")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise invalid
    try:
        key.verify(base64.b64decode(signature, validate=True), signed_payload(fields), ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise invalid from None


def decode(raw: str) -> PeeringToken:
    """Decode and verify a token, checking in Consul's order, then the signature with `CA[0]`.

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
    ca_keys = [_check_ca(pem) for pem in ca]
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
    if not ca_keys:
        raise InvalidTokenError("peering token invalid CA: no CA certificate in token")
    _verify(ca_keys[0], fields, signature)
    return PeeringToken(ca, addresses, server_name, peer_id, secret, token_remote)
