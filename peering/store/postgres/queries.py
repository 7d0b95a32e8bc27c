"""The SQL of the PostgreSQL store, in one place (hand-written; `$n` parameters, values always bound).

Every write transaction starts by locking the counter row (`BEGIN_WRITE`): writers are serialised,
as the store protocol promises and SQLite's single writer guarantees, so a transaction's reads stay
true until it commits and index order is commit order. Reads outside a transaction are single
statements, each of which sees one snapshot under READ COMMITTED.
"""

from __future__ import annotations

COLUMNS = (
    "id",
    "partition",
    "name",
    "role",
    "state",
    "meta",
    "deleted_at",
    "peer_id",
    "peer_ca_pems",
    "peer_server_name",
    "peer_server_addresses",
    "remote_datacenter",
    "remote_partition",
    "remote_cluster",
    "create_index",
    "modify_index",
    "imported_services",
    "exported_services",
)
_COLS = ", ".join(COLUMNS)
_NAMED = 'lower(name) = lower($2::text COLLATE "C")'  # ASCII folding, as SQLite's lower()

# one simple-query round trip: the transaction and the writers' lock (the counter row, never bumped here)
BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT 1 FROM counter WHERE id = 1 FOR UPDATE"
BUMP = "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value"
CURRENT_INDEX = "SELECT value FROM counter WHERE id = 1"
# a fenced unit: the lease row, still ours and unexpired, locked until the commit (so no takeover lands
# between this check and the unit's writes); the table is S2's (`cluster_schema.py`)
FENCE = (
    "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp() FOR UPDATE"
)

GET = f"SELECT {_COLS} FROM peerings WHERE partition = $1 AND {_NAMED}"
GET_BY_ID = f"SELECT {_COLS} FROM peerings WHERE id = $1"
EXISTS = "SELECT 1 FROM peerings WHERE id = $1"

# insert or update by ID, and the partitions' indexes (old and new partition), in one round trip: the
# function of migration 4 (`schema.py`); $1 is the unit's index (NULL: bump the counter first), then the
# columns but modify_index (the index is it); answers the index and the violated unique index, if any
SAVE = f"SELECT saved_index, violated FROM save_peering({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
MODIFY = COLUMNS.index("modify_index")  # the column SAVE leaves out of its parameters


def save_args(index: int | None, columns: tuple[object, ...]) -> tuple[object, ...]:
    """SAVE's parameters: the unit's index, then the bound values of `COLUMNS` without modify_index."""
    return (index, *columns[:MODIFY], *columns[MODIFY + 1 :])


# the live peering of another ID that holds this remote cluster (for the conflict's message)
HOLDER_OF_CLUSTER = (
    "SELECT name FROM peerings WHERE partition = $1 AND remote_cluster = $2 AND remote_cluster <> '' "
    "AND state <> 'TERMINATED' AND deleted_at IS NULL AND id <> $3"
)
REMOVE = """
WITH gone AS (DELETE FROM peerings WHERE id = $1 RETURNING partition)
INSERT INTO partitions (name, modify_index) SELECT partition, $2::bigint FROM gone
ON CONFLICT (name) DO UPDATE SET modify_index = excluded.modify_index
"""
SCHEDULE_REMOVAL = "UPDATE peerings SET remove_after = $2 WHERE id = $1"

SECRETS = "SELECT establishment_hash, stream_hash, stream_secret FROM secrets WHERE peering_id = $1"
SET_SECRETS = (
    "INSERT INTO secrets (peering_id, establishment_hash, stream_hash, stream_secret) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (peering_id) DO UPDATE SET establishment_hash = excluded.establishment_hash, "
    "stream_hash = excluded.stream_hash, stream_secret = excluded.stream_secret"
)
SET_ESTABLISHMENT_HASH = (
    "INSERT INTO secrets (peering_id, establishment_hash) VALUES ($1, $2) "
    "ON CONFLICT (peering_id) DO UPDATE SET establishment_hash = excluded.establishment_hash"
)
SET_STREAM_HASH = (
    "INSERT INTO secrets (peering_id, stream_hash) VALUES ($1, $2) "
    "ON CONFLICT (peering_id) DO UPDATE SET stream_hash = excluded.stream_hash"
)
# a conditional update: of two concurrent consumers, the second waits for the first's row lock, then
# re-checks the condition (READ COMMITTED) and changes nothing
CONSUME_ESTABLISHMENT_SECRET = (
    "UPDATE secrets SET establishment_hash = NULL WHERE peering_id = $1 AND establishment_hash = $2"  # noqa: S105
)

# one statement, so one snapshot: the partition's index beside its rows (a row of NULLs when it has none)
LIST = f"""
SELECT coalesce((SELECT modify_index FROM partitions WHERE name = $1), 1), {", ".join(f"p.{c}" for c in COLUMNS)}
FROM (SELECT 1) AS one LEFT JOIN peerings AS p ON p.partition = $1
ORDER BY lower(p.name)
"""
PARTITION_INDEX = "SELECT modify_index FROM partitions WHERE name = $1"
EVERY_PEERING = f"SELECT {_COLS} FROM peerings ORDER BY partition, lower(name)"
DUE_REMOVALS = (
    f"SELECT {_COLS} FROM peerings WHERE remove_after IS NOT NULL AND remove_after <= $1 ORDER BY remove_after"
)
AWAITING_NOTICE = (
    f"SELECT {_COLS} FROM peerings WHERE remove_after IS NOT NULL AND remove_after > $1 ORDER BY remove_after"
)
TERMINATED = f"SELECT {_COLS} FROM peerings WHERE state = 'TERMINATED'"
LIVE_LINKS = (
    f"SELECT {_COLS} FROM peerings WHERE deleted_at IS NULL AND state IN ('ACTIVE', 'FAILING') "
    "AND (role = 'dialer' OR remote_cluster <> '')"
)

# the change feed's page after $1: every entry up to the index of the $2-th one (whole units), or all of
# them; the counter and the horizon beside it, from the same snapshot (one statement). Rows: a header
# row (idx NULL) with counter, horizon and whether the page was cut, then the entries.
CHANGES = """
WITH cut AS (SELECT idx FROM changes WHERE idx > $1 ORDER BY idx LIMIT 1 OFFSET $2)
SELECT NULL::bigint, NULL::text, NULL::text, NULL::boolean, (SELECT value FROM counter WHERE id = 1),
    (SELECT value FROM change_horizon WHERE id = 1), EXISTS (SELECT 1 FROM cut), 0::bigint
UNION ALL
SELECT idx, kind, key, deleted, NULL, NULL, NULL, seq FROM changes
WHERE idx > $1 AND idx <= coalesce((SELECT idx FROM cut), idx)
ORDER BY 8
"""
REAP_CHANGES = "DELETE FROM changes WHERE idx < $1"
RAISE_HORIZON = (
    "UPDATE change_horizon SET value = greatest(value, least($1::bigint - 1, (SELECT value FROM counter WHERE id = 1)))"
)
