"""SQLite's ACL tables (same file, same units of work and index counter as the peerings).

`SqliteAclReads` is `SqliteStore.acl` (reads on the reader connection); `SqliteAclWrites` is
`SqliteTransaction.acl` (writes in the unit of work, on the writer). `SqliteAclStore` is the
backend-neutral `DatabaseAcl` under its older name.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from peering.acl_model import AclToken, Policy, PolicyLink
from peering.errors import NameTakenError, RowMissingError, SecretAlreadyUsedError
from peering.store.acl import DatabaseAcl
from peering.store.inline_writer import InlineWriter
from peering.store.schema import timestamp

_POLICY_COLUMNS = "id, name, description, rules, create_index, modify_index"
_ACCESS_COLUMNS = (
    "accessor_id, description, policy_ids, management, expiration_time, allowed_cidrs, local, create_time, "
    "create_index, modify_index"
)

Rows = Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]]

SqliteAclStore = DatabaseAcl  # the name app.py and the tests know


def _policy(row: Any) -> Policy:
    id_, name, description, rules, create_index, modify_index = row
    return Policy(id_, name, description, rules, create_index, modify_index)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SqliteAclReads:
    """ACL reads of a `SqliteStore` (see `store.base.AclReads`), through its reader's `rows`."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    async def _token(self, row: Any) -> AclToken:
        accessor, description, policy_ids, management, expires, cidrs, local, created, create_index, modify_index = row
        ids = json.loads(policy_ids)
        names = {p.id: p.name for p in await self.policies(ids)}
        return AclToken(
            accessor_id=accessor,
            description=description,
            policies=tuple(PolicyLink(pid, names[pid]) for pid in ids if pid in names),
            management=bool(management),
            expiration_time=_time(expires),
            allowed_cidrs=tuple(json.loads(cidrs)),
            local=bool(local),
            create_time=_time(created),
            create_index=create_index,
            modify_index=modify_index,
        )

    async def _tokens_where(self, where: str, params: tuple[Any, ...]) -> list[AclToken]:
        rows = await self._rows(f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens {where}", params)
        return [await self._token(row) for row in rows]

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        if ids is None:
            rows = await self._rows(f"SELECT {_POLICY_COLUMNS} FROM acl_policies ORDER BY name", ())
        elif not ids:
            return []
        else:
            marks = ", ".join("?" * len(ids))
            rows = await self._rows(
                f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE id IN ({marks}) ORDER BY name", tuple(ids)
            )
        return [_policy(row) for row in rows]

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        column, value = ("id", id) if id is not None else ("name", name)
        rows = await self._rows(f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE {column} = ?", (value,))
        return _policy(rows[0]) if rows else None

    async def tokens(self) -> list[AclToken]:
        return await self._tokens_where("ORDER BY create_index, accessor_id", ())

    async def token(self, accessor_id: str) -> AclToken | None:
        found = await self._tokens_where("WHERE accessor_id = ?", (accessor_id,))
        return found[0] if found else None

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        found = await self._tokens_where("WHERE secret_hash = ?", (secret_hash,))
        return found[0] if found else None


class SqliteAclWrites:
    """ACL writes of one `SqliteTransaction` (see `store.base.AclWrites`): its connection, its index."""

    def __init__(self, conn: InlineWriter, bump: Callable[[], Awaitable[int]]) -> None:
        self._conn = conn
        self._bump = bump

    async def _row(self, sql: str, params: tuple[Any, ...]) -> Any:
        rows = await self._conn.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        row = await self._row("SELECT create_index FROM acl_policies WHERE id = ?", (policy.id,))
        if update and row is None:
            raise RowMissingError("acl_policy", policy.id)  # exact: units of work are serialised
        index = await self._bump()
        create_index = row[0] if row else index
        try:
            await self._conn.execute(
                f"INSERT INTO acl_policies ({_POLICY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, description = excluded.description, rules = excluded.rules, "
                "modify_index = excluded.modify_index",
                (policy.id, policy.name, policy.description, policy.rules, create_index, index),
            )
        except sqlite3.IntegrityError:
            raise NameTakenError("acl_policy", policy.name) from None
        return replace(policy, create_index=create_index, modify_index=index)

    async def delete_policy(self, policy_id: str) -> bool:
        if await self._row("SELECT 1 FROM acl_policies WHERE id = ?", (policy_id,)) is None:
            return False
        await self._bump()  # first: the change feed's row for the delete carries this unit's index
        await self._conn.execute("DELETE FROM acl_policies WHERE id = ?", (policy_id,))
        return True

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        index = await self._bump()
        row = await self._row("SELECT create_index FROM acl_tokens WHERE accessor_id = ?", (token.accessor_id,))
        policy_ids = json.dumps([link.id for link in token.policies])
        expires = timestamp(token.expiration_time) if token.expiration_time else None
        cidrs = json.dumps(list(token.allowed_cidrs))
        if row is not None and secret_hash is not None:
            raise SecretAlreadyUsedError("accessor")
        if row is not None:
            await self._conn.execute(
                "UPDATE acl_tokens SET description = ?, policy_ids = ?, expiration_time = ?, allowed_cidrs = ?, "
                "modify_index = ? WHERE accessor_id = ?",
                (token.description, policy_ids, expires, cidrs, index, token.accessor_id),
            )
            return replace(token, create_index=row[0], modify_index=index)
        if secret_hash is None:
            raise RowMissingError("acl_token", token.accessor_id)
        created = timestamp(token.create_time or datetime.now(UTC))
        try:
            await self._conn.execute(
                f"INSERT INTO acl_tokens (secret_hash, {_ACCESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (secret_hash, token.accessor_id, token.description, policy_ids, int(token.management), expires,
                 cidrs, int(token.local), created, index, index),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise SecretAlreadyUsedError("secret") from None
        return replace(token, create_index=index, modify_index=index)

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        cursor = await self._conn.execute("UPDATE acl_bootstrap SET done = 1 WHERE id = 1 AND done = 0")
        if cursor.rowcount != 1:
            return None
        return await self.save_token(token, secret_hash)

    async def delete_token(self, accessor_id: str) -> bool:
        if await self._row("SELECT 1 FROM acl_tokens WHERE accessor_id = ?", (accessor_id,)) is None:
            return False
        await self._bump()
        await self._conn.execute("DELETE FROM acl_tokens WHERE accessor_id = ?", (accessor_id,))
        return True
