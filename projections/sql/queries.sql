-- Named queries of the projections, loaded once by projections.runner.QUERIES.

-- checkpoint_get --
-- Where a projection stands: $1 name
SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1;

-- checkpoint_set --
-- Move a projection's checkpoint (in the transaction that applied the events): $1 name, $2 transaction id, $3 position
INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
SET transaction_id = excluded.transaction_id, position = excluded.position, updated_at = now();

-- events_after --
-- How many events come after a tailing cursor: $1 transaction id, $2 position
SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::xid8, $2::bigint);

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

-- state_watch --
-- Fold a watched/unwatched action into the state if it is the latest by (at, position), and queue the new state for every server of the account while sync is on: $1 account, $2 guid, $3 kind, $4 watched, $5 at, $6 position, $7 recorded at
WITH changed AS (
    INSERT INTO watch_state AS s (account_id, guid, kind, watched, watched_at, watch_position, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (account_id, guid) DO UPDATE
    SET watched = excluded.watched,
        watched_at = excluded.watched_at,
        watch_position = excluded.watch_position,
        updated_at = greatest(s.updated_at, excluded.updated_at)
    WHERE s.watch_position IS NULL
       OR (excluded.watched_at, excluded.watch_position) > (s.watched_at, s.watch_position)
    RETURNING s.account_id, s.guid
)
INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
SELECT c.account_id, a.server_id, 'state', c.guid, nextval('sync_queue_seq')
FROM changed c
JOIN sync_accounts sa ON sa.account_id = c.account_id AND sa.sync_enabled
JOIN sync_access a ON a.account_id = c.account_id
ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE SET seq = excluded.seq;

-- state_rate --
-- Fold a rated/unrated action (rating null: unrated) into the state if it is the latest by (at, position), and queue it like state_watch: $1 account, $2 guid, $3 kind, $4 rating, $5 at, $6 position, $7 recorded at
WITH changed AS (
    INSERT INTO watch_state AS s (account_id, guid, kind, rating, rated_at, rate_position, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (account_id, guid) DO UPDATE
    SET rating = excluded.rating,
        rated_at = excluded.rated_at,
        rate_position = excluded.rate_position,
        updated_at = greatest(s.updated_at, excluded.updated_at)
    WHERE s.rate_position IS NULL
       OR (excluded.rated_at, excluded.rate_position) > (s.rated_at, s.rate_position)
    RETURNING s.account_id, s.guid
)
INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
SELECT c.account_id, a.server_id, 'state', c.guid, nextval('sync_queue_seq')
FROM changed c
JOIN sync_accounts sa ON sa.account_id = c.account_id AND sa.sync_enabled
JOIN sync_access a ON a.account_id = c.account_id
ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE SET seq = excluded.seq;

-- history_record --
-- Record a watched/unwatched action in the history: $1 account, $2 position, $3 event id, $4 guid, $5 kind, $6 type, $7 at
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING;

-- history_baseline --
-- Record a baseline watched/unwatched record, only if the account has no history for the title yet: $1 account, $2 position, $3 event id, $4 guid, $5 kind, $6 type, $7 at
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at)
SELECT $1, $2, $3, $4, $5, $6, $7
WHERE NOT EXISTS (SELECT 1 FROM watch_history h WHERE h.account_id = $1 AND h.guid = $4)
ON CONFLICT DO NOTHING;

-- queue_account --
-- A new account, sync off, for the queues: $1 account
INSERT INTO sync_accounts (account_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- queue_sync --
-- Record an account's sync setting for the queues: $1 account, $2 enabled
UPDATE sync_accounts SET sync_enabled = $2 WHERE account_id = $1;

-- queue_drop_account --
-- Drop every pending item of an account (sync turned off): $1 account
DELETE FROM sync_queue WHERE account_id = $1;

-- queue_access_add --
-- A server the account now has access to (registered it, or it was shared): $1 account, $2 server
INSERT INTO sync_access (account_id, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING;

-- queue_access_remove --
-- A server the account no longer has access to, and its pending items for it: $1 account, $2 server
WITH gone AS (DELETE FROM sync_access WHERE account_id = $1 AND server_id = $2)
DELETE FROM sync_queue WHERE account_id = $1 AND server_id = $2;

-- queue_backfill --
-- While sync is on, queue an account's whole current state and a baseline request for one server or all of its servers: $1 account, $2 server (null: all)
INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
SELECT a.account_id, a.server_id, t.kind, t.guid, nextval('sync_queue_seq')
FROM sync_access a
JOIN sync_accounts sa ON sa.account_id = a.account_id AND sa.sync_enabled
CROSS JOIN LATERAL (
    SELECT 'baseline_request' AS kind, '' AS guid
    UNION ALL
    SELECT 'state', w.guid
    FROM watch_state w
    WHERE w.account_id = a.account_id AND (w.watch_position IS NOT NULL OR w.rating IS NOT NULL)
) t
WHERE a.account_id = $1 AND ($2::text IS NULL OR a.server_id = $2)
ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE SET seq = excluded.seq;

-- state_page --
-- One page of an account's state in GUID order: $1 account, $2 after guid, $3 watched filter (null: any), $4 kind (null: any), $5 updated after (null: any), $6 limit
SELECT guid, coalesce(watched, false) AS watched, watched_at, rating, rated_at, updated_at
FROM watch_state
WHERE account_id = $1 AND guid > $2
  AND (watch_position IS NOT NULL OR rating IS NOT NULL)
  AND ($3::boolean IS NULL OR coalesce(watched, false) = $3)
  AND ($4::text IS NULL OR kind = $4)
  AND ($5::timestamptz IS NULL OR updated_at > $5)
ORDER BY guid
LIMIT $6;

-- state_one --
-- One title's state: $1 account, $2 guid
SELECT guid, coalesce(watched, false) AS watched, watched_at, rating, rated_at, updated_at
FROM watch_state
WHERE account_id = $1 AND guid = $2 AND (watch_position IS NOT NULL OR rating IS NOT NULL);

-- history_page --
-- One page of an account's history, newest first, after a (at, position) cursor: $1 account, $2 guid (null: all), $3 before at, $4 before position, $5 limit
SELECT event_id, guid, type, at, position
FROM watch_history
WHERE account_id = $1
  AND ($2::text IS NULL OR guid = $2)
  AND (at, position) < ($3, $4)
ORDER BY at DESC, position DESC
LIMIT $5;

-- profile_counts --
-- Distinct movies and episodes with a watched record in the history: $1 account
SELECT count(DISTINCT guid) FILTER (WHERE kind = 'movie') AS movies,
       count(DISTINCT guid) FILTER (WHERE kind = 'episode') AS episodes
FROM watch_history
WHERE account_id = $1 AND type = 'watched';

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
