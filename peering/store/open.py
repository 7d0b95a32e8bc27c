"""Backend selection, in one place (SPEC §12, §15): `--database-url` names PostgreSQL, else SQLite.

`postgresql://…` or `postgres://…` opens the shared PostgreSQL store (this process is then one
replica of a cluster); no URL opens the SQLite file in the data dir, as always; anything else is
refused with a message that never repeats the URL (it may hold a password).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from peering.errors import DatabaseUnavailableError
from peering.store.acl_sqlite import SqliteAclStore
from peering.store.base import AclStore, Store
from peering.store.cached import CachedStore
from peering.store.sqlite import SqliteStore

DATABASE_FILE = "peering.db"
SCHEMES = ("postgresql", "postgres")


def postgres_url(url: str | None) -> str | None:
    """The URL when it names PostgreSQL, None for the SQLite default.

    Raises:
        ValueError: a URL of another kind (the message does not repeat it).
    """
    if url is None or url == "":
        return None
    if urlsplit(url).scheme.lower() not in SCHEMES:
        raise ValueError("the database URL must start with postgresql:// or postgres://")
    return url


def redacted(url: str) -> str:
    """The URL without its user's password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{where}{parts.path}"


@dataclass(frozen=True)
class Database:
    """An opened backend: the peering store, the ACL store over the same database, and, with PostgreSQL,
    the URL the replica parts (notifier, lease, registry, identity) connect to."""

    store: Store
    acl: AclStore
    postgres_url: str | None


@asynccontextmanager
async def open_database(url: str | None, data_dir: Path) -> AsyncIterator[Database]:
    """Open the backend `url` selects (see the module docstring); close it on exit.

    Raises:
        ValueError: `url` is not a PostgreSQL URL.
        RuntimeError: PostgreSQL cannot be reached (the message names it without the password).
    """
    dsn = postgres_url(url)
    if dsn is not None:  # imported here: SQLite's processes never load asyncpg (about 5 MB of RSS)
        from peering.store.postgres.acl import PostgresAclStore
        from peering.store.postgres.store import PostgresStore

        try:
            postgres = await PostgresStore.open(dsn)
        except DatabaseUnavailableError as exc:
            raise RuntimeError(f"the database {redacted(dsn)} cannot be reached") from exc
        try:
            # the in-memory view follows the change feed (the notifier announces other replicas' commits,
            # a poll underneath): reads come from memory, visible on every replica within 1 s
            cached = await CachedStore.load(postgres)
            try:
                yield Database(cached, PostgresAclStore(postgres), dsn)
            finally:
                await cached.stop_polling()
        finally:
            await postgres.close()
        return
    sqlite = await SqliteStore.open(data_dir / DATABASE_FILE)
    try:
        cached = await CachedStore.load(sqlite)  # reads from memory, writes through to SQLite
        try:
            yield Database(cached, SqliteAclStore(sqlite), None)
        finally:
            await cached.stop_polling()
    finally:
        await sqlite.close()
