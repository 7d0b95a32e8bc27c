"""The SQL of token generations saved a batch per statement (`batch.py`): migration 5's function, and the
statement and parameters that call it.

Tokens' acceptor peerings saved in one statement, a batch of units of work (`store/postgres/batch.py`):
parameters are columns, one element per unit (the four list columns as JSON text); each unit's
peering of that name is compared with the one its caller planned from (nothing written if it changed
since: the caller re-reads), then the upsert and the new establishment hash in an exception block
of its own, so that a unique violation leaves nothing of that unit behind; each saved unit takes
the next index (the counter and the partitions' indexes are written once, at the end). One row per
unit, in order: its index, or the violated index's name and the live peering holding the remote
cluster, or NULLs (changed since)
"""

from __future__ import annotations

import orjson

from peering.store.postgres.queries import COLUMNS, MODIFY

SAVE_ACCEPTORS_FUNCTION = """
    CREATE FUNCTION save_acceptors(
        p_expected bigint[], p_hash text[], p_id text[], p_partition text[], p_name text[], p_role text[],
        p_state text[], p_meta text[], p_deleted_at timestamptz[], p_peer_id text[], p_peer_ca_pems text[],
        p_peer_server_name text[], p_peer_server_addresses text[], p_remote_datacenter text[],
        p_remote_partition text[], p_remote_cluster text[], p_create_index bigint[], p_imported_services text[],
        p_exported_services text[],
        OUT saved_index bigint, OUT violated text, OUT holder text
    ) RETURNS SETOF record LANGUAGE plpgsql AS $$
    DECLARE
        u record;
        last_index bigint;
        first_index bigint;
        current_id text;
        current_index bigint;
        saved_partitions text[] := '{}';
        saved_indexes bigint[] := '{}';
    BEGIN
        SELECT value INTO last_index FROM counter WHERE id = 1;
        first_index := last_index;
        FOR u IN SELECT * FROM unnest(p_expected, p_hash, p_id, p_partition, p_name, p_role, p_state, p_meta,
                p_deleted_at, p_peer_id, p_peer_ca_pems, p_peer_server_name, p_peer_server_addresses,
                p_remote_datacenter, p_remote_partition, p_remote_cluster, p_create_index, p_imported_services,
                p_exported_services) WITH ORDINALITY AS t (expected, hash, id, partition, name, role, state, meta,
                deleted_at, peer_id, peer_ca_pems, peer_server_name, peer_server_addresses, remote_datacenter,
                remote_partition, remote_cluster, create_index, imported_services, exported_services, n)
            ORDER BY t.n
        LOOP
            saved_index := NULL;
            violated := NULL;
            holder := NULL;
            SELECT p.id, p.modify_index INTO current_id, current_index FROM peerings AS p
            WHERE p.partition = u.partition AND lower(p.name) = lower(u.name COLLATE "C");
            IF (u.expected = 0 AND current_id IS NULL) OR (u.expected <> 0 AND current_id = u.id
                AND current_index = u.expected) THEN
                BEGIN
                    INSERT INTO peerings (id, partition, name, role, state, meta, deleted_at, peer_id, peer_ca_pems,
                        peer_server_name, peer_server_addresses, remote_datacenter, remote_partition, remote_cluster,
                        create_index, modify_index, imported_services, exported_services)
                    VALUES (u.id, u.partition, u.name, u.role, u.state, u.meta::json, u.deleted_at, u.peer_id,
                        ARRAY(SELECT json_array_elements_text(u.peer_ca_pems::json)), u.peer_server_name,
                        ARRAY(SELECT json_array_elements_text(u.peer_server_addresses::json)), u.remote_datacenter,
                        u.remote_partition, u.remote_cluster,
                        CASE WHEN u.create_index > 0 THEN u.create_index ELSE last_index + 1 END, last_index + 1,
                        ARRAY(SELECT json_array_elements_text(u.imported_services::json)),
                        ARRAY(SELECT json_array_elements_text(u.exported_services::json)))
                    ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, name = excluded.name,
                        role = excluded.role, state = excluded.state, meta = excluded.meta,
                        deleted_at = excluded.deleted_at, peer_id = excluded.peer_id,
                        peer_ca_pems = excluded.peer_ca_pems, peer_server_name = excluded.peer_server_name,
                        peer_server_addresses = excluded.peer_server_addresses,
                        remote_datacenter = excluded.remote_datacenter, remote_partition = excluded.remote_partition,
                        remote_cluster = excluded.remote_cluster, imported_services = excluded.imported_services,
                        exported_services = excluded.exported_services, modify_index = excluded.modify_index;
                    INSERT INTO secrets (peering_id, establishment_hash) VALUES (u.id, u.hash)
                    ON CONFLICT (peering_id) DO UPDATE SET establishment_hash = excluded.establishment_hash;
                    last_index := last_index + 1;
                    saved_index := last_index;
                    saved_partitions := saved_partitions || u.partition;
                    saved_indexes := saved_indexes || last_index;
                EXCEPTION WHEN unique_violation THEN
                    GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
                    SELECT p.name INTO holder FROM peerings AS p WHERE p.partition = u.partition
                        AND p.remote_cluster = u.remote_cluster AND p.remote_cluster <> ''
                        AND p.state <> 'TERMINATED' AND p.deleted_at IS NULL AND p.id <> u.id;
                END;
            END IF;
            RETURN NEXT;
        END LOOP;
        IF last_index > first_index THEN
            UPDATE counter SET value = last_index WHERE id = 1;
            INSERT INTO partitions (name, modify_index)
            SELECT part, max(idx) FROM unnest(saved_partitions, saved_indexes) AS s (part, idx) GROUP BY part
            ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index;
        END IF;
    END
    $$;
    """

# the call: one array per parameter of `save_acceptor_args`, an
# element per unit; one row per unit, in order: its index, or the violated index and the cluster's holder,
# or NULLs (the row changed since: nothing written)
SAVE_ACCEPTORS = (
    "SELECT saved_index, violated, holder FROM save_acceptors("
    "$1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], "
    "$9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], "
    "$17::bigint[], $18::text[], $19::text[])"
)
_LISTS = tuple(i for i, name in enumerate(COLUMNS) if name.endswith(("_pems", "_addresses", "_services")))


def save_acceptor_args(expected_index: int, secret_hash: str, columns: tuple[object, ...]) -> tuple[object, ...]:
    """One unit's element of each SAVE_ACCEPTORS array: the planned-from row's modify_index (0: no row of that
    name), the hash, then the bound values of `COLUMNS` without modify_index, the lists as JSON text."""
    values = tuple(orjson.dumps(v).decode() if i in _LISTS else v for i, v in enumerate(columns))
    return (expected_index, secret_hash, *values[:MODIFY], *values[MODIFY + 1 :])
