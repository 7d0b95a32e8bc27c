"""A pure ASGI middleware that adds `X-Consul-Default-ACL-Policy` to every answer when ACLs are on."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DefaultAclPolicyHeader:
    """Tell clients the default ACL policy, as Consul does."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self._app = app
        self._header = (b"x-consul-default-acl-policy", policy.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self._app(scope, receive, with_header)
