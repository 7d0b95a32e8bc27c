"""Versioned SQLite schema: migration N brings `PRAGMA user_version` from N-1 to N."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    """Fixed-width UTC text, so that comparing strings in SQL compares times (how every time is stored)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


MIGRATIONS: tuple[str, ...] = (
    # 1: peerings, their secrets, the index counter and per-partition indexes
    """
    CREATE TABLE counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO counter (id, value) VALUES (1, 0);

    CREATE TABLE partitions (
        name TEXT PRIMARY KEY,
        modify_index INTEGER NOT NULL
    );

    CREATE TABLE peerings (
        id TEXT PRIMARY KEY,
        partition TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('acceptor', 'dialer')),
        state TEXT NOT NULL CHECK (state IN ('INITIAL', 'ACTIVE', 'FAILING', 'TERMINATED')),
        meta TEXT NOT NULL DEFAULT '{}',
        deleted_at TEXT,
        remove_after TEXT,
        peer_id TEXT NOT NULL DEFAULT '',
        peer_ca_pems TEXT NOT NULL DEFAULT '[]',
        peer_server_name TEXT NOT NULL DEFAULT '',
        peer_server_addresses TEXT NOT NULL DEFAULT '[]',
        remote_datacenter TEXT NOT NULL DEFAULT '',
        remote_partition TEXT NOT NULL DEFAULT '',
        remote_cluster TEXT NOT NULL DEFAULT '',
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL
    );
    -- names are unique within a partition, compared lower-cased
    CREATE UNIQUE INDEX peerings_by_name ON peerings (partition, lower(name));
    -- at most one live peering per remote cluster in a partition (SPEC §5.6)
    CREATE UNIQUE INDEX peerings_by_remote_cluster ON peerings (partition, remote_cluster)
        WHERE remote_cluster != '' AND state != 'TERMINATED' AND deleted_at IS NULL;
    CREATE INDEX peerings_by_removal ON peerings (remove_after) WHERE remove_after IS NOT NULL;

    CREATE TABLE secrets (
        peering_id TEXT PRIMARY KEY REFERENCES peerings (id) ON DELETE CASCADE,
        establishment_hash TEXT,
        stream_hash TEXT,
        stream_secret TEXT
    );
    """,
    # 2: ACL policies and tokens (secrets only as SHA-256 hashes), bootstrap state
    """
    CREATE TABLE acl_policies (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        rules TEXT NOT NULL DEFAULT '',
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL
    );
    CREATE TABLE acl_tokens (
        accessor_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        policy_ids TEXT NOT NULL DEFAULT '[]',
        management INTEGER NOT NULL DEFAULT 0,
        expiration_time TEXT,
        allowed_cidrs TEXT NOT NULL DEFAULT '[]',
        local INTEGER NOT NULL DEFAULT 0,
        create_time TEXT NOT NULL,
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL
    );
    CREATE TABLE acl_bootstrap (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        done INTEGER NOT NULL
    );
    INSERT INTO acl_bootstrap (id, done) VALUES (1, 0);
    """,
    # 3: the partitions' indexes are kept by triggers, in the same statement as the peering write;
    #    indexes for the background pass
    """
    CREATE TRIGGER partitions_after_insert AFTER INSERT ON peerings BEGIN
        INSERT INTO partitions (name, modify_index) VALUES (NEW.partition, NEW.modify_index)
        ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
    END;
    CREATE TRIGGER partitions_after_update AFTER UPDATE ON peerings BEGIN
        INSERT INTO partitions (name, modify_index) VALUES (NEW.partition, NEW.modify_index)
        ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
        INSERT INTO partitions (name, modify_index) SELECT OLD.partition, NEW.modify_index
        WHERE OLD.partition != NEW.partition
        ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
    END;
    -- the background pass asks these on every burst of writes: index them, not scan every peering
    CREATE INDEX peerings_removal ON peerings (remove_after) WHERE remove_after IS NOT NULL;
    CREATE INDEX peerings_live ON peerings (state) WHERE deleted_at IS NULL AND state IN ('ACTIVE', 'FAILING');
    CREATE TRIGGER partitions_after_delete AFTER DELETE ON peerings BEGIN
        INSERT INTO partitions (name, modify_index) SELECT OLD.partition, value FROM counter WHERE id = 1
        ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
    END;
    """,
    # 4: the counter starts at 1, so that the first write gets 2: an empty result answers the floor index 1,
    #    and a watcher blocking on it must see the first write as a change. A database that was written to
    #    already handed out indexes of 1 and up, and every later write is above them: it stays as it is.
    """
    UPDATE counter SET value = 1 WHERE id = 1 AND value = 0;
    """,
    # 5: the change feed: one row per changed row and unit of work, written by triggers in the same statement
    #    (no extra round trip); a delete is a tombstone (deleted = 1) with the deleting unit's index (it took
    #    the index before deleting). Rows older than the horizon may be reaped: a reader behind it reloads.
    #    Rows written before this migration have no feed entry: the horizon starts at the current index.
    """
    CREATE TABLE changes (
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        deleted INTEGER NOT NULL
    );
    CREATE INDEX changes_by_index ON changes (idx);
    CREATE TABLE change_horizon (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO change_horizon (id, value) SELECT 1, value FROM counter WHERE id = 1;
    CREATE TRIGGER changes_peerings_insert AFTER INSERT ON peerings BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'peering', NEW.id, 0);
    END;
    CREATE TRIGGER changes_peerings_update AFTER UPDATE ON peerings WHEN NEW.modify_index != OLD.modify_index BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'peering', NEW.id, 0);
    END;
    CREATE TRIGGER changes_peerings_delete AFTER DELETE ON peerings BEGIN
        INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'peering', OLD.id, 1 FROM counter WHERE id = 1;
    END;
    CREATE TRIGGER changes_acl_policies_insert AFTER INSERT ON acl_policies BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_policy', NEW.id, 0);
    END;
    CREATE TRIGGER changes_acl_policies_update AFTER UPDATE ON acl_policies WHEN NEW.modify_index != OLD.modify_index BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_policy', NEW.id, 0);
    END;
    CREATE TRIGGER changes_acl_policies_delete AFTER DELETE ON acl_policies BEGIN
        INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'acl_policy', OLD.id, 1 FROM counter WHERE id = 1;
    END;
    CREATE TRIGGER changes_acl_tokens_insert AFTER INSERT ON acl_tokens BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_token', NEW.accessor_id, 0);
    END;
    CREATE TRIGGER changes_acl_tokens_update AFTER UPDATE ON acl_tokens WHEN NEW.modify_index != OLD.modify_index BEGIN
        INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_token', NEW.accessor_id, 0);
    END;
    CREATE TRIGGER changes_acl_tokens_delete AFTER DELETE ON acl_tokens BEGIN
        INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'acl_token', OLD.accessor_id, 1 FROM counter WHERE id = 1;
    END;
    """,
)
