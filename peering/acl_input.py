"""Bounds and decoders for what ACL requests carry (SPEC §8): texts, names, durations and times.

Every check here is cheap, runs before anything costly (a permission check, a database read, a parse)
and fails with an `InvalidRequestError`: nothing a client sends reaches an encoder, the database or
date arithmetic unbounded. Durations are read as Go reads them (`1h30m`, or integer nanoseconds, as
Go's client sends a `time.Duration`) and, like Go's, end at 2^63-1 ns (about 292 years). Stdlib only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from peering.errors import InvalidRequestError

MAX_DESCRIPTION_BYTES = 8 * 1024
MAX_REFERENCE_CHARS = 256  # a policy link's ID or Name, a Datacenters entry
MAX_POLICY_LINKS = 128
MAX_CIDRS = 128
MAX_CIDR_CHARS = 64  # the longest IPv6 CIDR block is 43 characters
MAX_DURATION_NS = 2**63 - 1  # Go's time.Duration
MAX_TTL = timedelta(microseconds=MAX_DURATION_NS // 1000)
MAX_TTL_TEXT = "2562047h47m16.854775807s"  # as Go prints the longest duration

_POLICY_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Consul's rule for policy names
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_MAX_DURATION_CHARS = 64
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class PolicyRef:
    """A token request's link to a policy, by ID or by name."""

    id: str = ""
    name: str = ""


@dataclass(frozen=True)
class TokenSpec:
    """What a token create/update asks for."""

    description: str = ""
    policies: Sequence[PolicyRef] = ()
    expiration_time: datetime | None = None
    expiration_ttl: timedelta | None = None
    allowed_cidrs: Sequence[str] = ()
    secret_id: str | None = None
    accessor_id: str | None = None
    local: bool = False


def shown(value: str, limit: int = 64) -> str:
    """A client's value quoted for an error text, cut so that no message echoes a megabyte."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_text(label: str, value: str, max_bytes: int) -> str:
    """Return `value` if it is text (no lone surrogate) of at most `max_bytes` bytes of UTF-8.

    Raises:
        InvalidRequestError: `<label> is over the limit of N bytes`, or it holds a lone surrogate.
    """
    too_long = InvalidRequestError(f"{label} is over the limit of {max_bytes} bytes")
    if len(value) > max_bytes:  # every character is at least one byte: no need to encode a megabyte
        raise too_long
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{label} contains a lone surrogate, which is not a character") from None
    if size > max_bytes:
        raise too_long
    return value


def check_policy_name(name: str) -> str:
    """Return the policy name if Consul would accept it.

    Raises:
        InvalidRequestError: empty, or not 1-128 of `A-Z a-z 0-9 - _` (Consul's messages).
    """
    if not name:
        raise InvalidRequestError("Invalid Policy: no Name is set")
    if _POLICY_NAME.fullmatch(name) is None:
        raise InvalidRequestError("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
    return name


def check_uuid(label: str, value: str) -> str:
    """Return `value` if it is a UUID. Raises InvalidRequestError `Invalid Token: <label> must be a valid UUID`."""
    if len(value) != 36 or _UUID.fullmatch(value) is None:
        raise InvalidRequestError(f"Invalid Token: {label} must be a valid UUID")
    return value


def _bad_ttl(value: object) -> InvalidRequestError:
    text = shown(value) if isinstance(value, str) else str(value)[:64]
    return InvalidRequestError(f"Invalid ExpirationTTL {text}: not a duration")


def expiration_ttl(value: str | int | float) -> timedelta:
    """An `ExpirationTTL`: a Go duration string (`1h30m`, `90s`) or integer nanoseconds.

    Raises:
        InvalidRequestError: neither form, or longer than Go's longest duration (`MAX_TTL_TEXT`).
    """
    if isinstance(value, float):
        raise InvalidRequestError(
            'Invalid ExpirationTTL: a duration is a string such as "1h" or an integer number of nanoseconds'
        )
    nanoseconds = value if isinstance(value, int) else _go_duration(value)
    if abs(nanoseconds) > MAX_DURATION_NS:
        raise InvalidRequestError(f"Invalid ExpirationTTL: over the longest duration, {MAX_TTL_TEXT}")
    return timedelta(microseconds=-(-nanoseconds // 1000))  # rounded up: a positive TTL stays positive


def _go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string, computed exactly (ASCII digits only, length capped first)."""
    if len(text) > _MAX_DURATION_CHARS:
        raise _bad_ttl(text)
    body = text[1:] if text[:1] in "+-" else text
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return 0
    position, total = 0, 0
    while position < len(body):
        part = _DURATION_PART.match(body, position)
        if part is None or not (part[1] or part[2]):
            raise _bad_ttl(text)
        unit = _UNIT_NS[part[3]]
        total += int(part[1] or "0") * unit
        if part[2]:
            total += int(part[2]) * unit // 10 ** len(part[2])
        if total > MAX_DURATION_NS:
            raise InvalidRequestError(f"Invalid ExpirationTTL: over the longest duration, {MAX_TTL_TEXT}")
        position = part.end()
    if position == 0:
        raise _bad_ttl(text)
    return sign * total


def expiration_time(text: str) -> datetime:
    """An `ExpirationTime` in RFC 3339 (as Go writes it: `2026-01-02T03:04:05.123456789Z`), in UTC.

    Raises:
        InvalidRequestError: not RFC 3339 or not a real time (a 31 February, year 0, offsets past the calendar).
    """
    match = _RFC3339.fullmatch(text) if len(text) <= 64 else None
    if match is None:
        raise InvalidRequestError(f"Invalid ExpirationTime {shown(text)}: not an RFC 3339 time")
    stamp, fraction, zone = match[1], (match[2] or "")[:6], match[3].upper()
    iso = f"{stamp.upper()}{'.' + fraction.ljust(6, '0') if fraction else ''}{'+00:00' if zone == 'Z' else zone}"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequestError(f"Invalid ExpirationTime {shown(text)}: not a valid time") from None


def network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an `AllowedCIDRs` entry. Raises InvalidRequestError if it is not a CIDR block."""
    check_text("Invalid AllowedCIDRs entry", cidr, MAX_CIDR_CHARS)
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise InvalidRequestError(f"Invalid AllowedCIDRs entry {shown(cidr)}: not a CIDR block") from None


def check_token_spec(spec: TokenSpec) -> None:
    """The cheap checks of a token request, made before any permission check or database read.

    Raises:
        InvalidRequestError: a field over its limit, not text, or a CIDR that is not one.
    """
    check_text("Invalid Token: Description", spec.description, MAX_DESCRIPTION_BYTES)
    for label, value in (("AccessorID", spec.accessor_id), ("SecretID", spec.secret_id)):
        if value:
            check_text(f"Invalid Token: {label}", value, MAX_REFERENCE_CHARS)
    if len(spec.policies) > MAX_POLICY_LINKS:
        raise InvalidRequestError(f"Invalid Token: more than {MAX_POLICY_LINKS} Policies")
    for ref in spec.policies:
        check_text("Invalid Policy: ID", ref.id, MAX_REFERENCE_CHARS)
        check_text("Invalid Policy: Name", ref.name, MAX_REFERENCE_CHARS)
    if len(spec.allowed_cidrs) > MAX_CIDRS:
        raise InvalidRequestError(f"Invalid Token: more than {MAX_CIDRS} AllowedCIDRs")
    for cidr in spec.allowed_cidrs:
        network(cidr)


def token_expiry(spec: TokenSpec, now: Callable[[], datetime]) -> datetime | None:
    """The expiration time a new token gets from `spec` (its TTL from `now()`, or its time), or None.

    Raises:
        InvalidRequestError: both set; a TTL that is not positive; a time in the past or beyond MAX_TTL.
    """
    if spec.expiration_time is not None and spec.expiration_ttl is not None:
        raise InvalidRequestError("Expiration TTL and Expiration Time cannot both be set")
    if spec.expiration_ttl is not None:
        if spec.expiration_ttl <= timedelta(0):
            raise InvalidRequestError("Token Expiration TTL must be positive")
        return now() + min(spec.expiration_ttl, MAX_TTL)  # parsed within MAX_TTL: no overflow
    if spec.expiration_time is not None:
        current = now()
        if spec.expiration_time <= current:
            raise InvalidRequestError("ExpirationTime cannot be in the past")
        if spec.expiration_time - current > MAX_TTL:
            raise InvalidRequestError(f"ExpirationTime is too far in the future: at most {MAX_TTL_TEXT} from now")
    return spec.expiration_time


def inside(source: str | None, cidrs: Sequence[str]) -> bool:
    """Whether the source address is in one of the (already validated) blocks."""
    try:
        address = ipaddress.ip_address(source or "")
    except ValueError:
        return False
    return any(address in network(cidr) for cidr in cidrs)
