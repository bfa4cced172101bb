-- Named queries of the event store, loaded once by eventstore.queries.
-- Each block starts with `-- name --`; the next comment line says what it does and its parameters.

-- append --
-- Append to one stream: $1 account_id, $2 stream, $3 expected version (null: any), $4 event ids, $5 types, $6 schema versions, $7 data, $8 idempotency keys, $9 the 1-based index of each key's event
SELECT input_index, event_id, event_position, stream_version, recorded_at, transaction_id, duplicate, conflict
FROM eventstore_append_v2($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- append_many --
-- Append to many streams in one transaction: $1 account ids, $2 streams, $3 events a stream, $4 keys a stream, $5 event ids, $6 types, $7 schema versions, $8 data, $9 idempotency keys, $10 the 1-based index of each key's event within its stream
SELECT stream_index, input_index, event_id, event_position, stream_version, recorded_at, transaction_id, duplicate, false AS conflict
FROM eventstore_append_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- purge_expected --
-- Remove events of one account and append a tombstone, if the stream is at the expected version: $1 account_id, $2 stream, $3 positions, $4 tombstone id, $5 type, $6 schema version, $7 data, $8 expected version (null: any)
SELECT deleted, tombstone_position, tombstone_version, tombstone_transaction_id, conflict
FROM eventstore_purge_v2($1, $2, $3, $4, $5, $6, $7, $8);

-- read_stream --
-- One stream's events in version order: $1 account_id, $2 stream, $3 after version, $4 limit
SELECT position, stream, version, event_id, type, schema_version, data, recorded_at, transaction_id
FROM events
WHERE account_id = $1 AND stream = $2 AND version > $3
ORDER BY version
LIMIT $4;

-- read_all --
-- The whole log in position order: $1 after position, $2 limit
SELECT position, stream, version, event_id, type, schema_version, data, recorded_at, transaction_id
FROM events
WHERE position > $1
ORDER BY position
LIMIT $2;

-- export_page --
-- A page of the whole log in position order, as exported (with idempotency keys): $1 after position, $2 limit
SELECT e.position, e.stream, e.version, e.event_id, e.type, e.schema_version, e.data, e.recorded_at,
       ARRAY(SELECT k.key FROM event_keys k
             WHERE k.account_id = e.account_id AND k.position = e.position ORDER BY k.key)
FROM events e
WHERE e.position > $1
ORDER BY e.position
LIMIT $2;

-- export_no_idle_timeout --
-- Let this transaction idle while the export's reader catches up (a read-only snapshot holds no writer back): no parameters
SELECT set_config('idle_in_transaction_session_timeout', '0', true);

-- read_category --
-- The events of every stream of one category, in position order: $1 category, $2 after position, $3 limit
SELECT position, stream, version, event_id, type, schema_version, data, recorded_at, transaction_id
FROM events
WHERE category = $1 AND position > $2
ORDER BY position
LIMIT $3;

-- read_safe --
-- Events after a cursor whose transactions all ended, in (transaction id, position) order: $1 after transaction id, $2 after position, $3 limit.
-- A last row with a null position and held_back = true says some committed rows are still behind an older open transaction.
WITH horizon AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
), page AS (
    SELECT e.position, e.stream, e.version, e.event_id, e.type, e.schema_version, e.data,
           e.recorded_at, e.transaction_id
    FROM events e, horizon h
    WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint) AND e.transaction_id < h.xmin
    ORDER BY e.transaction_id, e.position
    LIMIT $3
)
SELECT position, stream, version, event_id, type, schema_version, data, recorded_at, transaction_id,
       false AS held_back
FROM page
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true
FROM horizon h
WHERE EXISTS (
    SELECT 1 FROM events e
    WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint) AND e.transaction_id >= h.xmin
)
ORDER BY held_back, transaction_id, position;

-- head --
-- The highest position in the log (0 when empty): no parameters
SELECT coalesce((SELECT max(position) FROM events), 0) AS position;

-- stream_version --
-- A stream's current version (0 when empty): $1 account_id, $2 stream
SELECT coalesce(max(version), 0) FROM events WHERE account_id = $1 AND stream = $2;

-- notify --
-- Wake every listener of the log (a hint, sent after commit): $1 channel
SELECT pg_notify($1, '');

-- migrations_table --
-- The table recording applied migrations; the one table a migration cannot create, as it records them: no parameters
CREATE TABLE IF NOT EXISTS schema_migrations (
    package     text        NOT NULL,
    version     integer     NOT NULL,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version)
);

-- migrations_exists --
-- Whether the migrations table exists: no parameters
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- migrations_applied --
-- Every applied migration: no parameters
SELECT package, version FROM schema_migrations;

-- migration_record --
-- Record a migration as applied: $1 package, $2 version, $3 name
INSERT INTO schema_migrations (package, version, name) VALUES ($1, $2, $3);

-- migrations_lock --
-- Take the session lock that makes concurrent migrators take turns: $1 lock key
SELECT pg_advisory_lock($1);

-- migrations_unlock --
-- Release it: $1 lock key
SELECT pg_advisory_unlock($1);

-- last_cursor --
-- The tailing cursor of the last event in tailing order (null when empty): no parameters
SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1;
