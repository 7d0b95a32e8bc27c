"""The one error tree of the service. Every class carries a stable `code`; HTTP statuses live in `api.errors`.

PeeringError                      base: `str(error)` is the exact text shown to the client
├── InvalidRequestError           the request itself is wrong (bad body, name, meta, query)
│   ├── InvalidTokenError         a peering token that does not decode or verify (SPEC §4)
│   ├── RequestTooLargeError      the body is over the size limit
│   └── PeeringConflictError      the request contradicts existing state (role, same cluster, one per cluster)
│       ├── InvalidTransitionError  an event the peering's state does not allow
│       └── ConstraintError       a database constraint refused a write (typed; the caller words the message)
│           ├── NameTakenError            a name another row holds (peering per partition, ACL policy)
│           ├── RemoteClusterTakenError   another live peering of the partition holds the remote cluster
│           ├── SecretAlreadyUsedError    an ACL token secret (or AccessorID) another token holds
│           └── RowMissingError           an update of a row that is gone, or a compare-and-set that lost
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
    └── LeaseLostError            a fenced unit of work of a replica that no longer holds its lease
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


class ConstraintError(PeeringConflictError):
    """A database constraint refused a write. Raised by the store with the facts, never a user's wording:
    the service catches it and raises the SPEC message (the default text is a safe fallback, a 400)."""

    code = "constraint"

    def __init__(self, message: str = "the write conflicts with stored data") -> None:
        super().__init__(message)


class NameTakenError(ConstraintError):
    """A unique name is held by another row: a peering's name in its partition, or an ACL policy's name."""

    code = "name_taken"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__()
        self.kind = kind  # "peering" or "acl_policy"
        self.name = name


class RemoteClusterTakenError(ConstraintError):
    """Another live peering of the partition holds this remote cluster (SPEC §5.6)."""

    code = "remote_cluster_taken"

    def __init__(self, partition: str, remote_cluster: str, holder: str) -> None:
        super().__init__()
        self.partition = partition
        self.remote_cluster = remote_cluster
        self.holder = holder  # the name of the peering that holds it, read in the same unit of work


class SecretAlreadyUsedError(ConstraintError):
    """An ACL token's secret hash (`what="secret"`) or AccessorID (`what="accessor"`) belongs to another token."""

    code = "secret_already_used"

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


class RowMissingError(ConstraintError):
    """The row an update names is gone, or it changed since it was read (a compare-and-set that lost)."""

    code = "row_missing"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__()
        self.kind = kind
        self.key = key


class LeaseLostError(DatabaseUnavailableError):
    """A unit of work fenced with a lease (`UnitOfWork.fence`) whose holder lost it: nothing is written.

    Background workers stop on it; should it ever reach a client it reads as an unavailable database (503).
    """

    code = "lease_lost"

    def __init__(self, message: str = "the background lease was lost") -> None:
        super().__init__(message)
