"""SQLite persistence of ACL policies and tokens (same file, same index counter as peerings)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from peering.acl_model import AclToken, Policy, PolicyLink
from peering.errors import InvalidRequestError
from peering.store.sqlite import SqliteStore, _timestamp

_POLICY = "id, name, description, rules, create_index, modify_index"
_ACCESS_COLUMNS = (
    "accessor_id, description, policy_ids, management, expiration_time, allowed_cidrs, local, create_time, "
    "create_index, modify_index"
)


def _policy(row: Any) -> Policy:
    id_, name, description, rules, create_index, modify_index = row
    return Policy(id_, name, description, rules, create_index, modify_index)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SqliteAclStore:
    """ACL tables of a `SqliteStore`; reads on its reader, writes in its transactions."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        async with self._store._read_lock, self._store._reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _token(self, row: Any) -> AclToken:
        accessor, description, policy_ids, management, expires, cidrs, local, created, create_index, modify_index = row
        names = {p.id: p.name for p in await self.policies(json.loads(policy_ids))}
        return AclToken(
            accessor_id=accessor,
            description=description,
            policies=tuple(PolicyLink(pid, names[pid]) for pid in json.loads(policy_ids) if pid in names),
            management=bool(management),
            expiration_time=_time(expires),
            allowed_cidrs=tuple(json.loads(cidrs)),
            local=bool(local),
            create_time=_time(created),
            create_index=create_index,
            modify_index=modify_index,
        )

    # policies

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        """Every policy (sorted by name), or those with these IDs."""
        rows = await self._rows(f"SELECT {_POLICY} FROM acl_policies ORDER BY name")
        return [p for p in map(_policy, rows) if ids is None or p.id in ids]

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        """One policy by ID or by name."""
        column, value = ("id", id) if id is not None else ("name", name)
        rows = await self._rows(f"SELECT {_POLICY} FROM acl_policies WHERE {column} = ?", (value,))
        return _policy(rows[0]) if rows else None

    async def save_policy(self, policy: Policy) -> Policy:
        """Insert or update a policy; names are unique.

        Raises:
            InvalidRequestError: another policy has this name.
        """
        async with self._store.transaction() as tx:
            index = await tx._bump()
            conn = tx._conn
            async with conn.execute("SELECT create_index FROM acl_policies WHERE id = ?", (policy.id,)) as cur:
                row = await cur.fetchone()
            create_index = row[0] if row else index
            try:
                await conn.execute(
                    f"INSERT INTO acl_policies ({_POLICY}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "name = excluded.name, description = excluded.description, rules = excluded.rules, "
                    "modify_index = excluded.modify_index",
                    (policy.id, policy.name, policy.description, policy.rules, create_index, index),
                )
            except sqlite3.IntegrityError:
                raise InvalidRequestError(
                    f'Invalid Policy: A Policy with Name "{policy.name}" already exists'
                ) from None
        return replace(policy, create_index=create_index, modify_index=index)

    async def delete_policy(self, policy_id: str) -> bool:
        """Delete a policy (tokens simply lose the link); False if there was none."""
        async with self._store.transaction() as tx:
            async with tx._conn.execute("DELETE FROM acl_policies WHERE id = ?", (policy_id,)) as cur:
                deleted = cur.rowcount == 1
            if deleted:
                await tx._bump()
        return deleted

    # tokens

    async def tokens(self) -> list[AclToken]:
        """Every token, oldest first."""
        return [
            await self._token(row)
            for row in await self._rows(f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens ORDER BY create_index")
        ]

    async def token(self, accessor_id: str) -> AclToken | None:
        """One token by AccessorID."""
        rows = await self._rows(f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens WHERE accessor_id = ?", (accessor_id,))
        return await self._token(rows[0]) if rows else None

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        """The token whose secret hashes to `secret_hash`."""
        rows = await self._rows(f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens WHERE secret_hash = ?", (secret_hash,))
        return await self._token(rows[0]) if rows else None

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        """Insert (with its secret's hash) or update a token.

        Raises:
            InvalidRequestError: the secret is already in use by another token.
        """
        async with self._store.transaction() as tx:
            return await _upsert_token(tx._conn, token, secret_hash, await tx._bump())

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        """Insert the bootstrap token, unless a bootstrap was done before (then None)."""
        async with self._store.transaction() as tx:
            async with tx._conn.execute("UPDATE acl_bootstrap SET done = 1 WHERE id = 1 AND done = 0") as cur:
                if cur.rowcount != 1:
                    return None
            return await _upsert_token(tx._conn, token, secret_hash, await tx._bump())

    async def delete_token(self, accessor_id: str) -> bool:
        """Delete a token; False if there was none."""
        async with self._store.transaction() as tx:
            async with tx._conn.execute("DELETE FROM acl_tokens WHERE accessor_id = ?", (accessor_id,)) as cur:
                deleted = cur.rowcount == 1
            if deleted:
                await tx._bump()
        return deleted


async def _upsert_token(conn: aiosqlite.Connection, token: AclToken, secret_hash: str | None, index: int) -> AclToken:
    async with conn.execute("SELECT create_index FROM acl_tokens WHERE accessor_id = ?", (token.accessor_id,)) as cur:
        row = await cur.fetchone()
    policy_ids = json.dumps([link.id for link in token.policies])
    expires = _timestamp(token.expiration_time) if token.expiration_time else None
    cidrs = json.dumps(list(token.allowed_cidrs))
    if row is None:
        if secret_hash is None:
            raise InvalidRequestError("a new token needs a secret")
        try:
            await conn.execute(
                f"INSERT INTO acl_tokens (secret_hash, {_ACCESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (secret_hash, token.accessor_id, token.description, policy_ids, int(token.management), expires, cidrs,
                 int(token.local), _timestamp(token.create_time or datetime.now(UTC)), index, index),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise InvalidRequestError("Invalid Token: SecretID is already in use") from None
        create_index = index
    else:
        create_index = row[0]
        await conn.execute(
            "UPDATE acl_tokens SET description = ?, policy_ids = ?, expiration_time = ?, allowed_cidrs = ?, "
            "modify_index = ? WHERE accessor_id = ?",
            (token.description, policy_ids, expires, cidrs, index, token.accessor_id),
        )
    return replace(token, create_index=create_index, modify_index=index)
