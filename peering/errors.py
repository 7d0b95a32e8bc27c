"""The one error tree of the service. Every class carries a stable `code`; HTTP statuses live in `api.errors`.

PeeringError                      base: `str(error)` is the exact text shown to the client
├── InvalidRequestError           the request itself is wrong (bad body, name, meta, query)
│   ├── InvalidTokenError         a peering token that does not decode or verify (SPEC §4)
│   ├── RequestTooLargeError      the body is over the size limit
│   └── PeeringConflictError      the request contradicts existing state (role, same cluster, one per cluster)
│       └── InvalidTransitionError  an event the peering's state does not allow
├── PermissionDeniedError         an ACL rule or an unknown ACL secret refuses the caller
├── AclDisabledError              an `/v1/acl/` endpoint was called while ACLs are off
├── SecretRejectedError           the acceptor refused an establishment or stream secret
├── NotFoundError                 a read names something that does not exist
│   ├── PeeringNotFoundError      no peering with that name in that partition
│   └── AclNotFoundError          no ACL policy or token with that ID or name
├── PeerError                     the remote cluster could not be reached or answered badly
│   ├── PeerUnreachableError      connection refused, timeout, TLS failure
│   └── PeerProtocolError         the remote answered with something we do not understand
└── DatabaseUnavailableError      the database (PostgreSQL) is down, restarting or out of reach
"""

from __future__ import annotations


class PeeringError(Exception):
    """Base of every error the service reports to a client. The message is shown verbatim."""

    code = "peering_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(PeeringError):
    """The request is malformed or breaks a validation rule."""

    code = "invalid_request"


class InvalidTokenError(InvalidRequestError):
    """A peering token failed decoding or verification."""

    code = "invalid_token"


class PeeringConflictError(InvalidRequestError):
    """The request conflicts with a peering that already exists."""

    code = "conflict"


class PermissionDeniedError(PeeringError):
    """The caller's ACL token does not grant what the request needs."""

    code = "permission_denied"


class AclDisabledError(PeeringError):
    """An `/v1/acl/` endpoint was called while ACLs are off (Consul answers 401 `ACL support disabled`)."""

    code = "acl_disabled"


class SecretRejectedError(PeeringError):
    """A peering secret was unknown, superseded or already used."""

    code = "secret_rejected"


class NotFoundError(PeeringError):
    """A read names something that does not exist."""

    code = "not_found"


class AclNotFoundError(NotFoundError):
    """No ACL policy or token with that ID or name."""

    code = "acl_not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"Requested {what} does not exist")


class PeeringNotFoundError(NotFoundError):
    """No peering has this name in this partition."""

    code = "peering_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f'Peering not found for "{name}"')
        self.name = name


class PeerError(PeeringError):
    """The remote cluster failed us."""

    code = "peer_error"


class PeerUnreachableError(PeerError):
    """The remote cluster could not be reached (refused, timed out, TLS rejected)."""

    code = "peer_unreachable"


class PeerProtocolError(PeerError):
    """The remote cluster answered, but not as the peer protocol says it should."""

    code = "peer_protocol"


class InvalidTransitionError(PeeringConflictError):
    """An event that the peering's current state does not allow (see `domain.transition`)."""

    code = "invalid_transition"


class RequestTooLargeError(InvalidRequestError):
    """The request body is over the size limit."""

    code = "too_large"


class DatabaseUnavailableError(PeeringError):
    """The database cannot be used right now (down, restarting, unreachable, too slow): retry later.

    Nothing the request wrote was acknowledged (a write cut off at its COMMIT may or may not have landed).
    """

    code = "database_unavailable"

    def __init__(self, message: str = "database unavailable") -> None:
        super().__init__(message)
