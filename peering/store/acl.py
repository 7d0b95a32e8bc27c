"""The ACL repository over any `Database`: reads from `database.acl`, each write one unit of work
(`unit.acl`), so ACL rows take their indexes from the same counter, in the same transactions, as
every other kind of data. Backend-neutral: nothing here knows SQL."""

from __future__ import annotations

from peering.acl_model import AclToken, Policy
from peering.store.base import Database


class DatabaseAcl:
    """`store.base.AclStore` on the units of work of a `Database`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        return await self._db.acl.policies(ids)

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        return await self._db.acl.policy(id=id, name=name)

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        async with self._db.transaction() as unit:
            return await unit.acl.save_policy(policy, update=update)

    async def delete_policy(self, policy_id: str) -> bool:
        async with self._db.transaction() as unit:
            return await unit.acl.delete_policy(policy_id)

    async def tokens(self) -> list[AclToken]:
        return await self._db.acl.tokens()

    async def token(self, accessor_id: str) -> AclToken | None:
        return await self._db.acl.token(accessor_id)

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        return await self._db.acl.token_by_secret(secret_hash)

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        async with self._db.transaction() as unit:
            return await unit.acl.save_token(token, secret_hash)

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        async with self._db.transaction() as unit:
            return await unit.acl.bootstrap(token, secret_hash)

    async def delete_token(self, accessor_id: str) -> bool:
        async with self._db.transaction() as unit:
            return await unit.acl.delete_token(accessor_id)
