"""Config entries and replication bookkeeping of the seam (`store/catalog_seam.py`), in SQL both backends
speak, written once (bound to a backend as `store/catalog_sql.py` is, through its `Sql` and `Snapshot`).

Config entries: one row per (kind, name), the index of the last write per kind in `config_kinds`, a
"config_entry" feed entry (`<kind>/<name>`) per write in the same unit; saving the body already stored
writes nothing and takes no index. Replication bookkeeping takes no index and is not in the feed.
"""

# ruff: noqa: S608 -- only constant column lists and clauses are interpolated; every value is bound

from __future__ import annotations

import json
from dataclasses import replace

from peering.catalog.model import ConfigEntry
from peering.store.catalog_rows import CONFIG_COLUMNS, config_from, config_row, marks
from peering.store.catalog_seam import ExportMark, ImportState
from peering.store.catalog_sql import Bump, Snapshot, Sql


async def _entry(db: Sql, kind: str, name: str) -> ConfigEntry | None:
    rows = await db.rows(f"SELECT {CONFIG_COLUMNS} FROM config_entries WHERE kind = ? AND name = ?", (kind, name))
    return config_from(rows[0]) if rows else None


async def _kind_index(db: Sql, kind: str) -> int:
    rows = await db.rows("SELECT modify_index FROM config_kinds WHERE kind = ?", (kind,))
    return max(1, int(rows[0][0])) if rows else 1


class ConfigSqlReads:
    """`ConfigReads` over a backend's read snapshots."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    async def config_entry(self, kind: str, name: str) -> tuple[ConfigEntry | None, int]:
        async with self._snapshot() as db:
            return await _entry(db, kind, name), await _kind_index(db, kind)

    async def config_entries(self, kind: str) -> tuple[list[ConfigEntry], int]:
        async with self._snapshot() as db:
            rows = await db.rows(f"SELECT {CONFIG_COLUMNS} FROM config_entries WHERE kind = ? ORDER BY name", (kind,))
            return [config_from(row) for row in rows], await _kind_index(db, kind)


class ConfigSqlWrites:
    """`ConfigWrites` on one unit of work's connection, taking its index through `bump`."""

    def __init__(self, db: Sql, bump: Bump) -> None:
        self._db = db
        self._bump = bump

    async def _written(self, kind: str, name: str, *, deleted: bool) -> None:
        index = await self._bump()
        await self._db.rows(
            "INSERT INTO config_kinds (kind, modify_index) VALUES (?, ?) "
            "ON CONFLICT (kind) DO UPDATE SET modify_index = excluded.modify_index",
            (kind, index),
        )
        await self._db.rows(
            "INSERT INTO changes (idx, kind, key, deleted) VALUES (?, 'config_entry', ?, ?)",
            (index, f"{kind}/{name}", deleted),
        )

    async def config_entry(self, kind: str, name: str) -> ConfigEntry | None:
        return await _entry(self._db, kind, name)

    async def save_config_entry(self, entry: ConfigEntry, cas: int | None = None) -> ConfigEntry | None:
        stored = await _entry(self._db, entry.kind, entry.name)
        if cas is not None and (stored.modify_index if stored is not None else 0) != cas:
            return None  # exact: units of work are serialised
        if stored is not None and stored.body == json.loads(json.dumps(dict(entry.body))):
            return stored
        index = await self._bump()
        saved = replace(entry, create_index=stored.create_index if stored else index, modify_index=index)
        await self._db.rows(
            f"INSERT INTO config_entries ({CONFIG_COLUMNS}) VALUES ({marks(CONFIG_COLUMNS)}) "
            "ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, modify_index = excluded.modify_index",
            config_row(saved),
        )
        await self._written(entry.kind, entry.name, deleted=False)
        return saved

    async def delete_config_entry(self, kind: str, name: str, cas: int | None = None) -> bool:
        stored = await _entry(self._db, kind, name)
        if stored is None or cas == 0 or (cas is not None and stored.modify_index != cas):
            return False
        await self._bump()
        await self._db.rows("DELETE FROM config_entries WHERE kind = ? AND name = ?", (kind, name))
        await self._written(kind, name, deleted=True)
        return True


async def _marks(db: Sql, peering_id: str) -> tuple[str, list[ExportMark]]:
    generation = await db.rows("SELECT generation FROM export_generations WHERE peering_id = ?", (peering_id,))
    rows = await db.rows("SELECT name, hash, seq FROM export_marks WHERE peering_id = ? ORDER BY name", (peering_id,))
    return (generation[0][0] if generation else ""), [ExportMark(name, hash_, int(seq)) for name, hash_, seq in rows]


async def _import_state(db: Sql, peering_id: str) -> ImportState | None:
    rows = await db.rows("SELECT generation, applied_seq FROM import_states WHERE peering_id = ?", (peering_id,))
    return ImportState(peering_id, rows[0][0], int(rows[0][1])) if rows else None


class ReplicationSqlReads:
    """`ReplicationReads` over a backend's read snapshots."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    async def export_marks(self, peering_id: str) -> tuple[str, list[ExportMark]]:
        async with self._snapshot() as db:
            return await _marks(db, peering_id)

    async def import_state(self, peering_id: str) -> ImportState | None:
        async with self._snapshot() as db:
            return await _import_state(db, peering_id)


class ReplicationSqlWrites:
    """`ReplicationWrites` on one unit of work's connection (no index, no feed)."""

    def __init__(self, db: Sql) -> None:
        self._db = db

    async def export_marks(self, peering_id: str) -> tuple[str, list[ExportMark]]:
        return await _marks(self._db, peering_id)

    async def save_export_marks(
        self, peering_id: str, generation: str, marks: list[ExportMark], dropped: list[str]
    ) -> None:
        await self._db.rows(
            "INSERT INTO export_generations (peering_id, generation) VALUES (?, ?) "
            "ON CONFLICT (peering_id) DO UPDATE SET generation = excluded.generation",
            (peering_id, generation),
        )
        for name in dropped:
            await self._db.rows("DELETE FROM export_marks WHERE peering_id = ? AND name = ?", (peering_id, name))
        for mark in marks:
            await self._db.rows(
                "INSERT INTO export_marks (peering_id, name, hash, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (peering_id, name) DO UPDATE SET hash = excluded.hash, seq = excluded.seq",
                (peering_id, mark.name, mark.hash, mark.seq),
            )

    async def import_state(self, peering_id: str) -> ImportState | None:
        return await _import_state(self._db, peering_id)

    async def save_import_state(self, state: ImportState) -> None:
        await self._db.rows(
            "INSERT INTO import_states (peering_id, generation, applied_seq) VALUES (?, ?, ?) "
            "ON CONFLICT (peering_id) DO UPDATE SET generation = excluded.generation, applied_seq = excluded.applied_seq",
            (state.peering_id, state.generation, state.applied_seq),
        )

    async def forget(self, peering_id: str) -> None:
        for table in ("export_marks", "export_generations", "import_states"):
            await self._db.rows(f"DELETE FROM {table} WHERE peering_id = ?", (peering_id,))
