"""PostgreSQL's ACL tables (same database, units of work and index counter as the peerings).

`PostgresAclReads` is `PostgresStore.acl`; `PostgresAclWrites` is `PostgresTransaction.acl`.
`PostgresAclStore` is the backend-neutral `DatabaseAcl` under its older name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from peering.acl_model import AclToken, Policy, PolicyLink
from peering.errors import NameTakenError, RowMissingError, SecretAlreadyUsedError
from peering.store.acl import DatabaseAcl
from peering.store.postgres.errors import unstorable

if TYPE_CHECKING:
    from peering.store.postgres.store import PostgresTransaction

Fetch = Callable[..., Awaitable[list[asyncpg.Record]]]


_POLICY_COLUMNS = "id, name, description, rules, create_index, modify_index"
_ACCESS_COLUMNS = (
    "accessor_id, description, policy_ids, management, expiration_time, allowed_cidrs, local, create_time, "
    "create_index, modify_index"
)

POLICIES = f"SELECT {_POLICY_COLUMNS} FROM acl_policies ORDER BY name"
POLICIES_BY_ID = f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE id = ANY($1::text[]) ORDER BY name"
POLICY_BY_ID = f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE id = $1"
POLICY_BY_NAME = f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE name = $1"
POLICY_CREATE_INDEX = "SELECT create_index FROM acl_policies WHERE id = $1"
SAVE_POLICY = (
    f"INSERT INTO acl_policies ({_POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET "
    "name = excluded.name, description = excluded.description, rules = excluded.rules, "
    "modify_index = excluded.modify_index"
)
DELETE_POLICY = "DELETE FROM acl_policies WHERE id = $1"
TOKENS = f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens ORDER BY create_index, accessor_id"
TOKEN = f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens WHERE accessor_id = $1"
TOKEN_BY_SECRET = f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens WHERE secret_hash = $1"
TOKEN_CREATE_INDEX = "SELECT create_index FROM acl_tokens WHERE accessor_id = $1"  # noqa: S105 -- SQL
UPDATE_TOKEN = (
    "UPDATE acl_tokens SET description = $2, policy_ids = $3, expiration_time = $4, allowed_cidrs = $5, "  # noqa: S105
    "modify_index = $6 WHERE accessor_id = $1"
)
INSERT_TOKEN = (
    f"INSERT INTO acl_tokens (secret_hash, {_ACCESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
DELETE_TOKEN = "DELETE FROM acl_tokens WHERE accessor_id = $1"  # noqa: S105 -- SQL
# a conditional update: the one bootstrap, whoever tries it at the same time
BOOTSTRAP = "UPDATE acl_bootstrap SET done = true WHERE id = 1 AND NOT done"


def _policy(row: Any) -> Policy:
    id_, name, description, rules, create_index, modify_index = row
    return Policy(id_, name, description, rules, create_index, modify_index)


def _changed(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


PostgresAclStore = DatabaseAcl  # the name app.py and the tests know


class PostgresAclReads:
    """ACL reads of a `PostgresStore` (see `store.base.AclReads`), one statement each on its pool."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    async def _tokens(self, sql: str, *args: Any) -> list[AclToken]:
        rows = await self._fetch(sql, *args)
        wanted = sorted({pid for row in rows for pid in row[2]})
        names = {p.id: p.name for p in await self.policies(wanted)} if wanted else {}
        return [_token(row, names) for row in rows]

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        if ids is None:
            rows = await self._fetch(POLICIES)
        elif not (ids := [pid for pid in ids if not unstorable((pid,))]):  # IDs no policy can have: dropped
            return []
        else:
            rows = await self._fetch(POLICIES_BY_ID, ids)
        return [_policy(row) for row in rows]

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        rows = await self._fetch(POLICY_BY_ID, id) if id is not None else await self._fetch(POLICY_BY_NAME, name)
        return _policy(rows[0]) if rows else None

    async def tokens(self) -> list[AclToken]:
        return await self._tokens(TOKENS)

    async def token(self, accessor_id: str) -> AclToken | None:
        found = await self._tokens(TOKEN, accessor_id)
        return found[0] if found else None

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        found = await self._tokens(TOKEN_BY_SECRET, secret_hash)
        return found[0] if found else None


class PostgresAclWrites:
    """ACL writes of one `PostgresTransaction` (see `store.base.AclWrites`)."""

    def __init__(self, tx: PostgresTransaction) -> None:
        self._tx = tx

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        tx = self._tx
        existing = await tx.fetchval(POLICY_CREATE_INDEX, policy.id)
        if update and existing is None:
            raise RowMissingError("acl_policy", policy.id)  # exact: units of work are serialised
        index = await tx.bump()
        create_index = existing if existing is not None else index
        # a savepoint keeps the unit usable after the conflict, as SQLite's statement rollback does
        await tx.execute("SAVEPOINT acl")
        try:
            await tx.execute(SAVE_POLICY, policy.id, policy.name, policy.description, policy.rules, create_index, index)
        except asyncpg.UniqueViolationError:
            await tx.execute("ROLLBACK TO SAVEPOINT acl")
            raise NameTakenError("acl_policy", policy.name) from None
        finally:
            await tx.execute("RELEASE SAVEPOINT acl")
        return replace(policy, create_index=create_index, modify_index=index)

    async def delete_policy(self, policy_id: str) -> bool:
        if unstorable((policy_id,)) or await self._tx.fetchval(POLICY_CREATE_INDEX, policy_id) is None:
            return False  # no policy has such an ID
        await self._tx.bump()  # first: the change feed's row for the delete carries this unit's index
        await self._tx.execute(DELETE_POLICY, policy_id)
        return True

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        return await _upsert_token(self._tx, token, secret_hash)

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        if _changed(await self._tx.execute(BOOTSTRAP)) != 1:
            return None
        return await _upsert_token(self._tx, token, secret_hash)

    async def delete_token(self, accessor_id: str) -> bool:
        if unstorable((accessor_id,)) or await self._tx.fetchval(TOKEN_CREATE_INDEX, accessor_id) is None:
            return False  # no token has such an AccessorID
        await self._tx.bump()
        await self._tx.execute(DELETE_TOKEN, accessor_id)
        return True


def _token(row: Any, names: dict[str, str]) -> AclToken:
    accessor, description, policy_ids, management, expires, cidrs, local, created, create_index, modify_index = row
    return AclToken(
        accessor_id=accessor,
        description=description,
        policies=tuple(PolicyLink(pid, names[pid]) for pid in policy_ids if pid in names),
        management=management,
        expiration_time=expires,
        allowed_cidrs=tuple(cidrs),
        local=local,
        create_time=created,
        create_index=create_index,
        modify_index=modify_index,
    )


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


async def _upsert_token(tx: PostgresTransaction, token: AclToken, secret_hash: str | None) -> AclToken:
    index = await tx.bump()
    create_index = await tx.fetchval(TOKEN_CREATE_INDEX, token.accessor_id)
    policy_ids = [link.id for link in token.policies]
    expires = _utc(token.expiration_time)
    cidrs = list(token.allowed_cidrs)
    if create_index is not None and secret_hash is not None:
        raise SecretAlreadyUsedError("accessor")
    if create_index is not None:
        await tx.execute(UPDATE_TOKEN, token.accessor_id, token.description, policy_ids, expires, cidrs, index)
        return replace(token, create_index=create_index, modify_index=index)
    if secret_hash is None:
        raise RowMissingError("acl_token", token.accessor_id)
    created = _utc(token.create_time or datetime.now(UTC))
    await tx.execute("SAVEPOINT acl")
    try:
        await tx.execute(
            INSERT_TOKEN, secret_hash, token.accessor_id, token.description, policy_ids, token.management, expires,
            cidrs, token.local, created, index, index,
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        await tx.execute("ROLLBACK TO SAVEPOINT acl")
        raise SecretAlreadyUsedError("secret") from None
    finally:
        await tx.execute("RELEASE SAVEPOINT acl")
    return replace(token, create_index=index, modify_index=index)
