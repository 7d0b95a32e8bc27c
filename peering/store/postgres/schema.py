"""Versioned PostgreSQL schema: migration N brings `schema_version` from N-1 to N.

The same tables, constraints and index rules as the SQLite schema (`store/schema.py`), in PostgreSQL
types. Text that is compared or sorted is `COLLATE "C"`, so that `lower()` folds ASCII only and
ordering is by bytes, as in SQLite, whatever the database's default locale. `meta` is `json`, not
`jsonb`, because `json` keeps the text as written (key order included), as SQLite's TEXT does.
Replicas starting together migrate one at a time (a transaction-scoped advisory lock).
"""

from __future__ import annotations

import asyncpg

from peering.store.postgres.batch_sql import SAVE_ACCEPTORS_FUNCTION

# any fixed number: the advisory lock that serialises migrations of one database
MIGRATION_LOCK = 0x70656572  # "peer"

MIGRATIONS: tuple[str, ...] = (
    # 1: everything SQLite's migrations 1-4 hold: peerings, their secrets, the index counter (starting at
    #    1, so that the first write gets 2 and an empty result answers the floor index 1), the partitions'
    #    indexes, ACL policies, tokens and bootstrap state
    """
    CREATE TABLE counter (
        id integer PRIMARY KEY CHECK (id = 1),
        value bigint NOT NULL
    );
    INSERT INTO counter (id, value) VALUES (1, 1);

    CREATE TABLE partitions (
        name text COLLATE "C" PRIMARY KEY,
        modify_index bigint NOT NULL
    );

    CREATE TABLE peerings (
        id text PRIMARY KEY,
        partition text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        role text NOT NULL CHECK (role IN ('acceptor', 'dialer')),
        state text NOT NULL CHECK (state IN ('INITIAL', 'ACTIVE', 'FAILING', 'TERMINATED')),
        meta json NOT NULL DEFAULT '{}',
        deleted_at timestamptz,
        remove_after timestamptz,
        peer_id text NOT NULL DEFAULT '',
        peer_ca_pems text[] NOT NULL DEFAULT '{}',
        peer_server_name text NOT NULL DEFAULT '',
        peer_server_addresses text[] NOT NULL DEFAULT '{}',
        remote_datacenter text NOT NULL DEFAULT '',
        remote_partition text NOT NULL DEFAULT '',
        remote_cluster text COLLATE "C" NOT NULL DEFAULT '',
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL
    );
    -- names are unique within a partition, compared lower-cased
    CREATE UNIQUE INDEX peerings_by_name ON peerings (partition, lower(name));
    -- at most one live peering per remote cluster in a partition (SPEC §5.6)
    CREATE UNIQUE INDEX peerings_by_remote_cluster ON peerings (partition, remote_cluster)
        WHERE remote_cluster <> '' AND state <> 'TERMINATED' AND deleted_at IS NULL;
    -- the background pass asks these on every burst of writes: index them, not scan every peering
    CREATE INDEX peerings_removal ON peerings (remove_after) WHERE remove_after IS NOT NULL;
    CREATE INDEX peerings_live ON peerings (state) WHERE deleted_at IS NULL AND state IN ('ACTIVE', 'FAILING');

    CREATE TABLE secrets (
        peering_id text PRIMARY KEY REFERENCES peerings (id) ON DELETE CASCADE,
        establishment_hash text,
        stream_hash text,
        stream_secret text
    );

    CREATE TABLE acl_policies (
        id text PRIMARY KEY,
        name text COLLATE "C" NOT NULL,
        description text NOT NULL DEFAULT '',
        rules text NOT NULL DEFAULT '',
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        CONSTRAINT acl_policies_name_key UNIQUE (name)
    );
    CREATE TABLE acl_tokens (
        accessor_id text COLLATE "C" PRIMARY KEY,
        secret_hash text NOT NULL,
        description text NOT NULL DEFAULT '',
        policy_ids text[] NOT NULL DEFAULT '{}',
        management boolean NOT NULL DEFAULT false,
        expiration_time timestamptz,
        allowed_cidrs text[] NOT NULL DEFAULT '{}',
        local boolean NOT NULL DEFAULT false,
        create_time timestamptz NOT NULL,
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        CONSTRAINT acl_tokens_secret_hash_key UNIQUE (secret_hash)
    );
    CREATE TABLE acl_bootstrap (
        id integer PRIMARY KEY CHECK (id = 1),
        done boolean NOT NULL
    );
    INSERT INTO acl_bootstrap (id, done) VALUES (1, false);
    """,
    # 2: the change feed, as SQLite's migration 5: one row per changed row and unit of work, written by
    #    triggers in the same statement; a delete is a tombstone with the deleting unit's index; the horizon
    #    starts at the current index (rows written before have no entry)
    """
    CREATE TABLE changes (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        idx bigint NOT NULL,
        kind text NOT NULL,
        key text NOT NULL,
        deleted boolean NOT NULL
    );
    CREATE INDEX changes_by_index ON changes (idx);
    CREATE TABLE change_horizon (
        id integer PRIMARY KEY CHECK (id = 1),
        value bigint NOT NULL
    );
    INSERT INTO change_horizon (id, value) SELECT 1, value FROM counter WHERE id = 1;

    CREATE FUNCTION changes_peerings() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'peering', OLD.id, true FROM counter WHERE id = 1;
        ELSE
            INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'peering', NEW.id, false);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER changes_peerings_insert AFTER INSERT ON peerings FOR EACH ROW EXECUTE FUNCTION changes_peerings();
    CREATE TRIGGER changes_peerings_update AFTER UPDATE ON peerings FOR EACH ROW
        WHEN (NEW.modify_index <> OLD.modify_index) EXECUTE FUNCTION changes_peerings();
    CREATE TRIGGER changes_peerings_delete AFTER DELETE ON peerings FOR EACH ROW EXECUTE FUNCTION changes_peerings();

    CREATE FUNCTION changes_acl_policies() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'acl_policy', OLD.id, true FROM counter WHERE id = 1;
        ELSE
            INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_policy', NEW.id, false);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER changes_acl_policies_insert AFTER INSERT ON acl_policies FOR EACH ROW EXECUTE FUNCTION changes_acl_policies();
    CREATE TRIGGER changes_acl_policies_update AFTER UPDATE ON acl_policies FOR EACH ROW
        WHEN (NEW.modify_index <> OLD.modify_index) EXECUTE FUNCTION changes_acl_policies();
    CREATE TRIGGER changes_acl_policies_delete AFTER DELETE ON acl_policies FOR EACH ROW EXECUTE FUNCTION changes_acl_policies();

    CREATE FUNCTION changes_acl_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO changes (idx, kind, key, deleted) SELECT value, 'acl_token', OLD.accessor_id, true FROM counter WHERE id = 1;
        ELSE
            INSERT INTO changes (idx, kind, key, deleted) VALUES (NEW.modify_index, 'acl_token', NEW.accessor_id, false);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER changes_acl_tokens_insert AFTER INSERT ON acl_tokens FOR EACH ROW EXECUTE FUNCTION changes_acl_tokens();
    CREATE TRIGGER changes_acl_tokens_update AFTER UPDATE ON acl_tokens FOR EACH ROW
        WHEN (NEW.modify_index <> OLD.modify_index) EXECUTE FUNCTION changes_acl_tokens();
    CREATE TRIGGER changes_acl_tokens_delete AFTER DELETE ON acl_tokens FOR EACH ROW EXECUTE FUNCTION changes_acl_tokens();
    """,
    # 3: the catalog, config entries, replication bookkeeping and the peerings' imported/exported lists, as
    #    SQLite's migration 6 (feed entries written by the store, `store/catalog_sql.py`)
    """
    CREATE TABLE catalog_nodes (
        partition text COLLATE "C" NOT NULL,
        peer_name text COLLATE "C" NOT NULL,
        node text COLLATE "C" NOT NULL,
        address text NOT NULL,
        id text NOT NULL DEFAULT '',
        datacenter text NOT NULL DEFAULT '',
        tagged_addresses json NOT NULL DEFAULT '{}',
        meta json NOT NULL DEFAULT '{}',
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        PRIMARY KEY (partition, peer_name, node)
    );
    CREATE TABLE catalog_services (
        partition text COLLATE "C" NOT NULL,
        peer_name text COLLATE "C" NOT NULL,
        node text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        service text COLLATE "C" NOT NULL,
        tags json NOT NULL DEFAULT '[]',
        address text NOT NULL DEFAULT '',
        port integer NOT NULL DEFAULT 0,
        meta json NOT NULL DEFAULT '{}',
        tagged_addresses json NOT NULL DEFAULT '{}',
        weights_passing integer NOT NULL DEFAULT 1,
        weights_warning integer NOT NULL DEFAULT 1,
        enable_tag_override boolean NOT NULL DEFAULT false,
        kind text NOT NULL DEFAULT '',
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        PRIMARY KEY (partition, peer_name, node, id),
        FOREIGN KEY (partition, peer_name, node) REFERENCES catalog_nodes (partition, peer_name, node)
            ON DELETE CASCADE
    );
    CREATE INDEX catalog_services_by_name ON catalog_services (partition, peer_name, service);
    CREATE TABLE catalog_checks (
        partition text COLLATE "C" NOT NULL,
        peer_name text COLLATE "C" NOT NULL,
        node text COLLATE "C" NOT NULL,
        check_id text COLLATE "C" NOT NULL,
        name text NOT NULL,
        status text NOT NULL CHECK (status IN ('passing', 'warning', 'critical')),
        notes text NOT NULL DEFAULT '',
        output text NOT NULL DEFAULT '',
        service_id text COLLATE "C",
        service_name text NOT NULL DEFAULT '',
        service_tags json NOT NULL DEFAULT '[]',
        type text NOT NULL DEFAULT '',
        ttl double precision,
        deadline timestamptz,
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        PRIMARY KEY (partition, peer_name, node, check_id),
        FOREIGN KEY (partition, peer_name, node) REFERENCES catalog_nodes (partition, peer_name, node)
            ON DELETE CASCADE,
        FOREIGN KEY (partition, peer_name, node, service_id)
            REFERENCES catalog_services (partition, peer_name, node, id) ON DELETE CASCADE
    );
    CREATE INDEX catalog_checks_by_service ON catalog_checks (partition, peer_name, node, service_id);
    CREATE INDEX catalog_checks_due ON catalog_checks (deadline)
        WHERE peer_name = '' AND deadline IS NOT NULL AND status <> 'critical';
    CREATE TABLE catalog_scopes (
        partition text COLLATE "C" NOT NULL,
        peer_name text COLLATE "C" NOT NULL,
        modify_index bigint NOT NULL,
        PRIMARY KEY (partition, peer_name)
    );

    CREATE TABLE config_entries (
        kind text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        body json NOT NULL DEFAULT '{}',
        create_index bigint NOT NULL,
        modify_index bigint NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE config_kinds (
        kind text COLLATE "C" PRIMARY KEY,
        modify_index bigint NOT NULL
    );

    CREATE TABLE export_generations (
        peering_id text PRIMARY KEY,
        generation text NOT NULL
    );
    CREATE TABLE export_marks (
        peering_id text NOT NULL,
        name text COLLATE "C" NOT NULL,
        hash text NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (peering_id, name)
    );
    CREATE TABLE import_states (
        peering_id text PRIMARY KEY,
        generation text NOT NULL,
        applied_seq bigint NOT NULL
    );

    ALTER TABLE peerings ADD COLUMN imported_services text[] NOT NULL DEFAULT '{}';
    ALTER TABLE peerings ADD COLUMN exported_services text[] NOT NULL DEFAULT '{}';
    """,
    # 4: a peering saved in one round trip instead of four (the counter bumped when the unit has no index
    #    yet, a savepoint, the upsert, its release): the upsert and the partitions' indexes inside an
    #    exception block (a subtransaction, as the savepoint was), so a unique violation undoes the save
    #    only and is answered as the violated index's name; the bump stays (the unit keeps its index)
    """
    CREATE FUNCTION save_peering(
        v_index bigint, p_id text, p_partition text, p_name text, p_role text, p_state text, p_meta json,
        p_deleted_at timestamptz, p_peer_id text, p_peer_ca_pems text[], p_peer_server_name text,
        p_peer_server_addresses text[], p_remote_datacenter text, p_remote_partition text, p_remote_cluster text,
        p_create_index bigint, p_imported_services text[], p_exported_services text[],
        OUT saved_index bigint, OUT violated text
    ) LANGUAGE plpgsql AS $$
    DECLARE
        old_partition text;
    BEGIN
        IF v_index IS NULL THEN
            UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value INTO v_index;
        END IF;
        saved_index := v_index;
        BEGIN
            SELECT partition INTO old_partition FROM peerings WHERE id = p_id;
            INSERT INTO peerings (id, partition, name, role, state, meta, deleted_at, peer_id, peer_ca_pems,
                peer_server_name, peer_server_addresses, remote_datacenter, remote_partition, remote_cluster,
                create_index, modify_index, imported_services, exported_services)
            VALUES (p_id, p_partition, p_name, p_role, p_state, p_meta, p_deleted_at, p_peer_id, p_peer_ca_pems,
                p_peer_server_name, p_peer_server_addresses, p_remote_datacenter, p_remote_partition,
                p_remote_cluster, CASE WHEN p_create_index > 0 THEN p_create_index ELSE v_index END, v_index,
                p_imported_services, p_exported_services)
            ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, name = excluded.name,
                role = excluded.role, state = excluded.state, meta = excluded.meta, deleted_at = excluded.deleted_at,
                peer_id = excluded.peer_id, peer_ca_pems = excluded.peer_ca_pems,
                peer_server_name = excluded.peer_server_name, peer_server_addresses = excluded.peer_server_addresses,
                remote_datacenter = excluded.remote_datacenter, remote_partition = excluded.remote_partition,
                remote_cluster = excluded.remote_cluster, imported_services = excluded.imported_services,
                exported_services = excluded.exported_services, modify_index = excluded.modify_index;
            INSERT INTO partitions (name, modify_index)
            SELECT DISTINCT part, v_index FROM unnest(ARRAY[p_partition, old_partition]) AS part WHERE part IS NOT NULL
            ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
        END;
    END
    $$;
    """,
    # 5: tokens' acceptor peerings saved a batch per statement (`batch_sql.py`)
    SAVE_ACCEPTORS_FUNCTION,
)


async def migrate(conn: asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
    """Bring the database to the newest schema (creating it when empty), in one transaction.

    Raises:
        RuntimeError: the database has a newer schema than this program knows.
    """
    async with conn.transaction():
        await conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL);"
            "INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )
        version = int(await conn.fetchval("SELECT version FROM schema_version WHERE id = 1"))
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema version {version} is newer than this program ({len(MIGRATIONS)})")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("UPDATE schema_version SET version = $1 WHERE id = 1", number)
