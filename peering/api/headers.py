"""A pure ASGI middleware that adds `X-Consul-Default-ACL-Policy` to every answer when ACLs are on (to every
answer of the full app: `fast_path` adds the same header to its own)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def policy_header(policy: str) -> tuple[bytes, bytes]:
    """The raw header (the fast path adds it to its own answers, this middleware to the others)."""
    return b"x-consul-default-acl-policy", policy.encode("latin-1")


class DefaultAclPolicyHeader:
    """Tell clients the default ACL policy, as Consul does."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self._app = app
        self._header = policy_header(policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self._app(scope, receive, with_header)
