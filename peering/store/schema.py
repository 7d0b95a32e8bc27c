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
    # 6: the catalog (SPEC §13): nodes, service instances and checks keyed by (partition, peer_name), a node's
    #    rows cascading to its instances and checks, an instance's to its checks (a node check's service_id is
    #    NULL, so the instance key skips it); each scope's index; config entries (SPEC §14) with an index per
    #    kind; the replication bookkeeping (export marks with a generation per peering, import state); the
    #    peerings' persisted imported/exported service lists. Catalog and config feed entries are written by
    #    the store in the same unit (`store/catalog_sql.py`: one per service name, not per row).
    """
    CREATE TABLE catalog_nodes (
        partition TEXT NOT NULL,
        peer_name TEXT NOT NULL,
        node TEXT NOT NULL,
        address TEXT NOT NULL,
        id TEXT NOT NULL DEFAULT '',
        datacenter TEXT NOT NULL DEFAULT '',
        tagged_addresses TEXT NOT NULL DEFAULT '{}',
        meta TEXT NOT NULL DEFAULT '{}',
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL,
        PRIMARY KEY (partition, peer_name, node)
    );
    CREATE TABLE catalog_services (
        partition TEXT NOT NULL,
        peer_name TEXT NOT NULL,
        node TEXT NOT NULL,
        id TEXT NOT NULL,
        service TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        address TEXT NOT NULL DEFAULT '',
        port INTEGER NOT NULL DEFAULT 0,
        meta TEXT NOT NULL DEFAULT '{}',
        tagged_addresses TEXT NOT NULL DEFAULT '{}',
        weights_passing INTEGER NOT NULL DEFAULT 1,
        weights_warning INTEGER NOT NULL DEFAULT 1,
        enable_tag_override INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL DEFAULT '',
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL,
        PRIMARY KEY (partition, peer_name, node, id),
        FOREIGN KEY (partition, peer_name, node) REFERENCES catalog_nodes (partition, peer_name, node)
            ON DELETE CASCADE
    );
    CREATE INDEX catalog_services_by_name ON catalog_services (partition, peer_name, service);
    CREATE TABLE catalog_checks (
        partition TEXT NOT NULL,
        peer_name TEXT NOT NULL,
        node TEXT NOT NULL,
        check_id TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('passing', 'warning', 'critical')),
        notes TEXT NOT NULL DEFAULT '',
        output TEXT NOT NULL DEFAULT '',
        service_id TEXT,
        service_name TEXT NOT NULL DEFAULT '',
        service_tags TEXT NOT NULL DEFAULT '[]',
        type TEXT NOT NULL DEFAULT '',
        ttl REAL,
        deadline TEXT,
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL,
        PRIMARY KEY (partition, peer_name, node, check_id),
        FOREIGN KEY (partition, peer_name, node) REFERENCES catalog_nodes (partition, peer_name, node)
            ON DELETE CASCADE,
        FOREIGN KEY (partition, peer_name, node, service_id)
            REFERENCES catalog_services (partition, peer_name, node, id) ON DELETE CASCADE
    );
    CREATE INDEX catalog_checks_by_service ON catalog_checks (partition, peer_name, node, service_id);
    -- the TTL timer asks for the next deadline of a local check that is not critical yet
    CREATE INDEX catalog_checks_due ON catalog_checks (deadline)
        WHERE peer_name = '' AND deadline IS NOT NULL AND status <> 'critical';
    CREATE TABLE catalog_scopes (
        partition TEXT NOT NULL,
        peer_name TEXT NOT NULL,
        modify_index INTEGER NOT NULL,
        PRIMARY KEY (partition, peer_name)
    );

    CREATE TABLE config_entries (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '{}',
        create_index INTEGER NOT NULL,
        modify_index INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE config_kinds (
        kind TEXT PRIMARY KEY,
        modify_index INTEGER NOT NULL
    );

    CREATE TABLE export_generations (
        peering_id TEXT PRIMARY KEY,
        generation TEXT NOT NULL
    );
    CREATE TABLE export_marks (
        peering_id TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (peering_id, name)
    );
    CREATE TABLE import_states (
        peering_id TEXT PRIMARY KEY,
        generation TEXT NOT NULL,
        applied_seq INTEGER NOT NULL
    );

    ALTER TABLE peerings ADD COLUMN imported_services TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE peerings ADD COLUMN exported_services TEXT NOT NULL DEFAULT '[]';
    """,
)
