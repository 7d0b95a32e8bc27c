"""A pure ASGI middleware: believe `X-Forwarded-For` only from the operator's trusted proxies.

Anyone can send the header, so it is ignored unless the connection itself comes from an address in
`--trusted-proxies`. Then the client is the right-most address of the header that is not a trusted
proxy (each proxy appends the address it saw; only the entries our proxies added can be believed).
The ACL source checks (`AllowedCIDRs`) and the request log read `scope["client"]`, which this sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
MAX_HOPS = 32  # entries of the header looked at, from the right; a longer chain is cut


def parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    """The address in `text` (an IPv4-mapped IPv6 address as its IPv4 one), or None if it is not one."""
    try:
        ip = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forwarded_client(peer: str, values: Sequence[bytes], trusted: Sequence[Network]) -> str | None:
    """The client address that `X-Forwarded-For` values show, if the connection's `peer` is trusted.

    None when the peer is not a trusted proxy, there is no header, or its right-most untrusted entry is not
    an IP address (then the proxy's own address stays the client).
    """
    if not _trusted(parse_ip(peer), trusted):
        return None
    entries = b",".join(values).decode("latin-1").split(",")[-MAX_HOPS:]
    client: IPv4Address | IPv6Address | None = None
    for entry in reversed(entries):
        client = parse_ip(entry)
        if client is None:
            return None
        if not _trusted(client, trusted):
            break
    return str(client) if client is not None else None  # every hop trusted: the left-most is the client


def _trusted(ip: IPv4Address | IPv6Address | None, trusted: Sequence[Network]) -> bool:
    return ip is not None and any(ip in network for network in trusted)


class TrustedProxies:
    """Rewrite `scope["client"]` from `X-Forwarded-For` when the connection comes from a `trusted` network."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]) -> None:
        self._app = app
        self._trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client:
            values = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
            if values:
                address = forwarded_client(client[0], values, self._trusted)
                if address is not None:
                    scope = {**scope, "client": (address, 0)}
        await self._app(scope, receive, send)
