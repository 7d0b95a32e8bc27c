"""asyncpg's errors in the project's terms: a lost or refused database is `DatabaseUnavailableError`.

Constraint errors (a taken name, a taken remote cluster, a used secret) are translated where they
happen (`store.py`, `acl.py`), because the message needs the row's context. Text PostgreSQL cannot
hold (a NUL character; a lone surrogate, which is no UTF-8) is caught before it is sent: as a key it
matches nothing, as a value it is refused as invalid (`unstorable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import asyncpg

from peering.errors import DatabaseUnavailableError, InvalidRequestError

# the server is gone, going, not yet there, or out of connections; or we gave up waiting for it
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable (ConnectionError and socket errors are OSErrors)
    TimeoutError,  # connect, acquire or statement over its time budget
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection that died under a query
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,  # 57P01: a fast or immediate shutdown ended our session
    asyncpg.CrashShutdownError,  # 57P02: another backend crashed, the server restarts
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.QueryCanceledError,  # 57014: statement_timeout or a cancel request
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used right now (as opposed to a wrong statement)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        # the client's protocol state broke (a restart cut a pooled connection mid-operation): the
        # connection cannot be used, the statement was never the problem
        return True
    # "connection is closed", "pool is closing": the interface's word for a dead connection; "another
    # operation is in progress / is cancelling": a connection a restart left mid-operation; "released back
    # to the pool": a pooled connection that died under its user went back to the pool by itself (the
    # store never uses one after giving it back). Its other errors (bad arguments, misuse) are bugs and
    # must stay loud
    return isinstance(exc, asyncpg.InterfaceError) and any(word in str(exc) for word in _DEAD_CONNECTION)


# what asyncpg's InterfaceError says of a connection that cannot run a statement now
_DEAD_CONNECTION = (
    "clos",
    "another operation is in progress",
    "another operation is cancelling",
    "released back to the pool",
)


@contextmanager
def unavailable_as_error() -> Iterator[None]:
    """Turn "the database cannot be used" errors raised inside into `DatabaseUnavailableError`."""
    try:
        yield
    except DatabaseUnavailableError:
        raise
    except BaseException as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailableError() from exc
        raise


def _unstorable_text(text: str) -> bool:
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def unstorable(values: Iterable[object]) -> bool:
    """Whether any of these bound values (or the texts in a list of them) cannot be PostgreSQL text."""
    for value in values:
        if isinstance(value, str) and _unstorable_text(value):
            return True
        if isinstance(value, list | tuple) and unstorable(value):
            return True
    return False


def unstorable_error() -> InvalidRequestError:
    """The error for a value that cannot be stored (SQLite would keep a NUL; PostgreSQL text cannot)."""
    return InvalidRequestError("Invalid request: text with a NUL character or a lone surrogate cannot be stored")
