"""SQLite implementation of the ACL store (same file, same index counter as the peerings)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from peering.acl_model import AclToken, Policy, PolicyLink
from peering.errors import NameTakenError, RowMissingError, SecretAlreadyUsedError
from peering.store.sqlite import SqliteStore, SqliteTransaction, _timestamp

_POLICY_COLUMNS = "id, name, description, rules, create_index, modify_index"
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
    """ACL tables of a `SqliteStore` (see `store.base.AclStore`); reads on its reader, writes in its transactions."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

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
        rows = await self._store.read_rows(f"SELECT {_ACCESS_COLUMNS} FROM acl_tokens {where}", params)
        return [await self._token(row) for row in rows]

    # policies

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        if ids is None:
            rows = await self._store.read_rows(f"SELECT {_POLICY_COLUMNS} FROM acl_policies ORDER BY name")
        elif not ids:
            return []
        else:
            marks = ", ".join("?" * len(ids))
            rows = await self._store.read_rows(
                f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE id IN ({marks}) ORDER BY name", tuple(ids)
            )
        return [_policy(row) for row in rows]

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        column, value = ("id", id) if id is not None else ("name", name)
        rows = await self._store.read_rows(f"SELECT {_POLICY_COLUMNS} FROM acl_policies WHERE {column} = ?", (value,))
        return _policy(rows[0]) if rows else None

    async def save_policy(self, policy: Policy) -> Policy:
        async with self._store.transaction() as tx:
            index = await tx.bump()
            row = await tx.fetch_row("SELECT create_index FROM acl_policies WHERE id = ?", (policy.id,))
            create_index = row[0] if row else index
            try:
                await tx.execute(
                    f"INSERT INTO acl_policies ({_POLICY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "name = excluded.name, description = excluded.description, rules = excluded.rules, "
                    "modify_index = excluded.modify_index",
                    (policy.id, policy.name, policy.description, policy.rules, create_index, index),
                )
            except sqlite3.IntegrityError:
                raise NameTakenError("acl_policy", policy.name) from None
        return replace(policy, create_index=create_index, modify_index=index)

    async def delete_policy(self, policy_id: str) -> bool:
        async with self._store.transaction() as tx:
            deleted = await tx.execute("DELETE FROM acl_policies WHERE id = ?", (policy_id,)) == 1
            if deleted:
                await tx.bump()
        return deleted

    # tokens

    async def tokens(self) -> list[AclToken]:
        return await self._tokens_where("ORDER BY create_index, accessor_id", ())

    async def token(self, accessor_id: str) -> AclToken | None:
        found = await self._tokens_where("WHERE accessor_id = ?", (accessor_id,))
        return found[0] if found else None

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        found = await self._tokens_where("WHERE secret_hash = ?", (secret_hash,))
        return found[0] if found else None

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        async with self._store.transaction() as tx:
            return await _upsert_token(tx, token, secret_hash)

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        async with self._store.transaction() as tx:
            if await tx.execute("UPDATE acl_bootstrap SET done = 1 WHERE id = 1 AND done = 0") != 1:
                return None
            return await _upsert_token(tx, token, secret_hash)

    async def delete_token(self, accessor_id: str) -> bool:
        async with self._store.transaction() as tx:
            deleted = await tx.execute("DELETE FROM acl_tokens WHERE accessor_id = ?", (accessor_id,)) == 1
            if deleted:
                await tx.bump()
        return deleted


async def _upsert_token(tx: SqliteTransaction, token: AclToken, secret_hash: str | None) -> AclToken:
    index = await tx.bump()
    row = await tx.fetch_row("SELECT create_index FROM acl_tokens WHERE accessor_id = ?", (token.accessor_id,))
    policy_ids = json.dumps([link.id for link in token.policies])
    expires = _timestamp(token.expiration_time) if token.expiration_time else None
    cidrs = json.dumps(list(token.allowed_cidrs))
    if row is not None and secret_hash is not None:
        raise SecretAlreadyUsedError("accessor")
    if row is not None:
        await tx.execute(
            "UPDATE acl_tokens SET description = ?, policy_ids = ?, expiration_time = ?, allowed_cidrs = ?, "
            "modify_index = ? WHERE accessor_id = ?",
            (token.description, policy_ids, expires, cidrs, index, token.accessor_id),
        )
        return replace(token, create_index=row[0], modify_index=index)
    if secret_hash is None:
        raise RowMissingError("acl_token", token.accessor_id)
    created = _timestamp(token.create_time or datetime.now(UTC))
    try:
        await tx.execute(
            f"INSERT INTO acl_tokens (secret_hash, {_ACCESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (secret_hash, token.accessor_id, token.description, policy_ids, int(token.management), expires, cidrs,
             int(token.local), created, index, index),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise SecretAlreadyUsedError("secret") from None
    return replace(token, create_index=index, modify_index=index)
