-- Replays, point-in-time copies and verification (projections/replay.py).

-- safe_cursor --
-- The last event in tailing order whose transaction, and every earlier one, has ended: a rebuild up to it misses nothing: no parameters
SELECT e.transaction_id, e.position
FROM events e
WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.transaction_id DESC, e.position DESC
LIMIT 1;

-- slice_end --
-- Where a slice of at most $5 events after a cursor ends (null: fewer are left before $3, $4): $1 after transaction id, $2 after position, $3 through transaction id, $4 through position, $5 events
SELECT e.transaction_id, e.position
FROM events e
WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
  AND (e.transaction_id, e.position) <= ($3::xid8, $4::bigint)
ORDER BY e.transaction_id, e.position
OFFSET $5 - 1
LIMIT 1;

-- events_between --
-- How many events lie after one cursor up to another: $1 after transaction id, $2 after position, $3 through transaction id, $4 through position
SELECT count(*)
FROM events e
WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
  AND (e.transaction_id, e.position) <= ($3::xid8, $4::bigint);

-- replay_lock --
-- One replay or verify at a time (they share the side schema), until this session ends or unlocks: $1 lock name
SELECT pg_try_advisory_lock(hashtextextended($1, 0));

-- replay_unlock --
-- Let the next replay run: $1 lock name
SELECT pg_advisory_unlock(hashtextextended($1, 0));

-- current_schema --
-- The schema the live tables are in: no parameters
SELECT current_schema();

-- schema_comment --
-- What a schema says it is (null: no comment; no row: no such schema): $1 schema
SELECT obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE n.nspname = $1;

-- table_indexes --
-- A table's indexes, and the constraint each one backs (if any): $1 schema, $2 table
SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,
       c.conname AS constraint_name, c.contype AS constraint_type
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE n.nspname = $1 AND t.relname = $2
ORDER BY ic.relname;

-- dead_letters_clear --
-- Forget a projection's dead letters up to a cursor (a replay retried them), telling what each said: $1 projection, $2 through transaction id, $3 through position
DELETE FROM projection_dead_letters d
WHERE d.projection = $1 AND (d.transaction_id, d.position) <= ($2::xid8, $3::bigint)
RETURNING d.account_id, d.position, d.error;

-- dead_letter_put --
-- Keep an event a replay's rebuild left out: $1 account, $2 projection, $3 position, $4 transaction id, $5 event id, $6 stream, $7 type, $8 error
INSERT INTO projection_dead_letters
    (account_id, projection, position, transaction_id, event_id, stream, type, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING;

-- checkpoints_lock --
-- Lock the projections' checkpoints for a swap, and read them (a runner's next batch waits, then finds its checkpoint moved): $1 projection names
SELECT name, transaction_id, position FROM projection_checkpoints
WHERE name = ANY($1::text[])
ORDER BY name
FOR UPDATE;
