"""Input rules shared by every entry point: peer names, partitions and meta (stdlib only)."""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping

from peering.errors import InvalidRequestError

DEFAULT_PARTITION = "default"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PEER_NAME_PATTERN = f"^{_LABEL.pattern}$"  # as the OpenAPI documents it
_META_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_MAX_META_PAIRS = 64
_MAX_META_VALUE = 512
_MAX_SHOWN = 256


def _shown(value: str) -> str:
    """Cap user input echoed in a message so one error cannot be a megabyte long."""
    return value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."


def check_peer_name(name: str) -> str:
    """Return the peer name if it is a valid DNS label in lower case.

    Raises:
        InvalidRequestError: the name breaks the rule of SPEC §3.1.
    """
    if _LABEL.fullmatch(name) is None:
        raise InvalidRequestError(
            f"{_shown(name)} is not a valid peer name: a valid peering name must consist of lower case "
            "alphanumeric characters or '-', and must start and end with an alphanumeric character"
        )
    return name


def normalize_partition(partition: str | None) -> str:
    """Return the partition a request addresses: `default` when empty, lower-cased otherwise.

    Raises:
        InvalidRequestError: the partition name is not a DNS label.
    """
    if not partition:
        return DEFAULT_PARTITION
    # ASCII only, checked before lower(): the Kelvin sign `\u212a` lowers to `k` and must not pass for it
    lowered = partition.lower() if partition.isascii() else ""
    if _LABEL.fullmatch(lowered) is None:
        raise InvalidRequestError(
            f"{_shown(partition)} is not a valid partition name: a valid partition name must consist of "
            "alphanumeric characters or '-', and must start and end with an alphanumeric character"
        )
    return sys.intern(lowered)  # every peering of the partition holds this one string, not a copy each


def check_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Return a copy of the meta map if it follows Consul's meta-tag rules.

    Raises:
        InvalidRequestError: too many pairs, or a bad key or value (`meta tags failed validation: ...`).
    """
    if not meta:
        return {}
    if len(meta) > _MAX_META_PAIRS:
        raise _meta_error(f"Node metadata cannot contain more than {_MAX_META_PAIRS} key/value pairs")
    for key, value in meta.items():
        problem = _meta_pair_problem(key, value)
        if problem is not None:
            raise _meta_error(f"Couldn't load metadata pair ('{_shown(key)}', '{_shown(value)}'): {problem}")
    return dict(meta)


def _utf8_length(text: str) -> int:
    """Length in UTF-8 bytes, as Go's `len` counts a string (a lone surrogate as the 3 bytes Go would have)."""
    return len(text.encode("utf-8", errors="surrogatepass"))


def _meta_pair_problem(key: str, value: str) -> str | None:
    # lengths in bytes, as Consul counts them (its messages say characters)
    if key == "":
        return "Key cannot be blank"
    if _utf8_length(key) > 128:
        return "Key is too long (limit: 128 characters)"
    if _META_KEY.fullmatch(key) is None:
        return "Key contains invalid characters"
    if key.startswith("consul-"):
        return "Key prefix 'consul-' is reserved for internal use"
    if _utf8_length(value) > _MAX_META_VALUE:
        return f"Value is too long (limit: {_MAX_META_VALUE} characters)"
    return None


def _meta_error(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"meta tags failed validation: {detail}")


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]")
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only, and few: int() of a 5,000-digit string raises
MAX_ADDRESS_LENGTH = 253 + 1 + 5  # the longest host name, ':', the longest port


def valid_hostname(host: str) -> bool:
    """Whether `host` is a DNS name (letters, digits, `-`, `_`; labels of at most 63; at most 253 in all)."""
    return len(host) <= 254 and _HOSTNAME.fullmatch(host) is not None  # bounded before the regex runs


def check_server_address(address: str) -> str:
    """Return `address` if it is `host:port` with a port in 1..65535 (IPv6 hosts in brackets).

    Total on any string: the length is bounded before anything is parsed, and the address is echoed
    with control characters and lone surrogates escaped (so the message can always be encoded).

    Raises:
        InvalidRequestError: `<addr> is not a valid peering server address`.
    """
    host, sep, port = address[: MAX_ADDRESS_LENGTH + 1].rpartition(":")
    valid = len(address) <= MAX_ADDRESS_LENGTH and bool(sep) and _PORT.fullmatch(port) is not None
    if valid and 1 <= int(port) <= 65535:
        bracketed = _BRACKETED.fullmatch(host)
        valid = _is_ipv6(bracketed.group(1)) if bracketed else valid_hostname(host)
    else:
        valid = False
    if not valid:
        raise InvalidRequestError(f"{_escaped(_shown(address))} is not a valid peering server address")
    return address


def _escaped(text: str) -> str:
    """`text` with every unprintable character (controls, lone surrogates) as a `\\uXXXX` escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in text)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
