-- Named queries of the projections, loaded once by projections.runner.QUERIES.

-- checkpoint_get --
-- Where a projection stands: $1 name
SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1;

-- checkpoint_init --
-- A projection that never ran stands at the start of the log: $1 name
INSERT INTO projection_checkpoints (name, transaction_id, position)
VALUES ($1, '0', 0)
ON CONFLICT (name) DO NOTHING;

-- checkpoint_advance --
-- Move a projection's checkpoint, only from where its runner left it (in the transaction that applied the events): $1 name, $2 transaction id, $3 position, $4 from transaction id, $5 from position
UPDATE projection_checkpoints
SET transaction_id = $2, position = $3, updated_at = now()
WHERE name = $1 AND transaction_id = $4 AND position = $5;

-- checkpoint_put --
-- Set a projection's checkpoint, wherever it stood (a replay swapping its tables in): $1 name, $2 transaction id, $3 position
INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
SET transaction_id = excluded.transaction_id, position = excluded.position, updated_at = now();

-- events_after --
-- How many events come after a tailing cursor: $1 transaction id, $2 position
SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::xid8, $2::bigint);

-- oldest_after --
-- How many seconds ago the oldest event after a tailing cursor was recorded, by the database's clock (null: none comes after): $1 transaction id, $2 position
SELECT extract(epoch FROM now() - recorded_at)::float8 FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
ORDER BY transaction_id, position
LIMIT 1;

-- runner_lock --
-- Become the one runner of a projection (waits while another session is), until this session ends: $1 lock name
SELECT pg_advisory_lock(hashtextextended($1, 0));

-- progress_notify --
-- Tell waiters a projection moved on (after commit): $1 channel, $2 projection name
SELECT pg_notify($1, $2);

-- dead_letter_add --
-- Keep an event the projection could not apply, with the error (in the transaction that moves the checkpoint past it): $1 account, $2 projection, $3 position, $4 transaction id, $5 event id, $6 stream, $7 type, $8 error
INSERT INTO projection_dead_letters (account_id, projection, position, transaction_id, event_id, stream, type, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING;

-- dead_letters_count --
-- How many events a projection has dead-lettered: $1 projection
SELECT count(*) FROM projection_dead_letters WHERE projection = $1;

-- state_page --
-- One page of an account's state in title order (each title under its guid, with all its ids): $1 account, $2 after guid, $3 watched filter (null: any), $4 kind (null: any), $5 updated after (null: any), $6 limit
SELECT guid, title_ids_of(account_id, guid) AS ids, coalesce(watched, false) AS watched,
       watched_at, rating, rated_at, updated_at
FROM watch_state
WHERE account_id = $1 AND guid > $2
  AND (watch_position IS NOT NULL OR rating IS NOT NULL)
  AND ($3::boolean IS NULL OR coalesce(watched, false) = $3)
  AND ($4::text IS NULL OR kind = $4)
  AND ($5::timestamptz IS NULL OR updated_at > $5)
ORDER BY guid
LIMIT $6;

-- state_one --
-- One title's state, found by any of its ids: $1 account, $2 id
SELECT guid, title_ids_of(account_id, guid) AS ids, coalesce(watched, false) AS watched,
       watched_at, rating, rated_at, updated_at
FROM watch_state
WHERE account_id = $1 AND guid = title_of($1, $2)
  AND (watch_position IS NOT NULL OR rating IS NOT NULL);

-- history_page --
-- One page of an account's history, newest first, after a (at, position) cursor, each record under its title's guid; a baseline record counts only as the first record of its title (rule 7), the title as the account's ids link it now (rule 1b): $1 account, $2 any id of a title (null: all titles), $3 before at, $4 before position, $5 limit
SELECT h.event_id, coalesce(t.title, h.guid) AS guid, h.type, h.at, h.position
FROM watch_history h
LEFT JOIN title_ids t ON t.account_id = h.account_id AND t.id = h.guid
WHERE h.account_id = $1
  AND ($2::text IS NULL OR h.guid = ANY (title_ids_of($1, title_of($1, $2))))
  AND (h.at, h.position) < ($3, $4)
  AND (NOT h.baseline OR NOT EXISTS (
      SELECT 1 FROM watch_history f
      WHERE f.account_id = h.account_id
        AND f.guid = ANY (title_ids_of(h.account_id, coalesce(t.title, h.guid)))
        AND f.position < h.position))
ORDER BY h.at DESC, h.position DESC
LIMIT $5;

-- server_accounts --
-- Accounts the queues know to have access to a server: $1 id
SELECT account_id FROM sync_access WHERE server_id = $1;

-- profile_counts --
-- Distinct movies and episodes with a watched record in the history, a title counted once whichever of its ids its records used; a baseline record counts only as its title's first record: $1 account
WITH records AS (
    SELECT coalesce(t.title, h.guid) AS title, h.kind, h.type, h.baseline, h.position,
           min(h.position) OVER (PARTITION BY coalesce(t.title, h.guid)) AS first
    FROM watch_history h
    LEFT JOIN title_ids t ON t.account_id = h.account_id AND t.id = h.guid
    WHERE h.account_id = $1
)
SELECT count(DISTINCT title) FILTER (WHERE kind = 'movie') AS movies,
       count(DISTINCT title) FILTER (WHERE kind = 'episode') AS episodes
FROM records
WHERE type = 'watched' AND (NOT baseline OR position = first);

-- projection_status --
-- Every projection's checkpoint and the log's head: no parameters
SELECT c.name, c.transaction_id, c.position,
       (SELECT coalesce(max(position), 0) FROM events) AS head
FROM projection_checkpoints c
ORDER BY c.name;

-- log_head --
-- The highest position in the log (0 when empty): no parameters
SELECT coalesce(max(position), 0) FROM events;

-- checkpoints_all --
-- Every projection's checkpoint: no parameters
SELECT name, transaction_id, position FROM projection_checkpoints;
