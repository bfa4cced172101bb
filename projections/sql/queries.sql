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

-- state_watch --
-- Fold a watched/unwatched action into the state if it is the latest by (at, position): $1 account, $2 guid, $3 kind, $4 watched, $5 at, $6 position, $7 recorded at
INSERT INTO watch_state AS s (account_id, guid, kind, watched, watched_at, watch_position, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (account_id, guid) DO UPDATE
SET watched = excluded.watched,
    watched_at = excluded.watched_at,
    watch_position = excluded.watch_position,
    updated_at = greatest(s.updated_at, excluded.updated_at)
WHERE s.watch_position IS NULL
   OR (excluded.watched_at, excluded.watch_position) > (s.watched_at, s.watch_position);

-- state_rate --
-- Fold a rated/unrated action (rating null: unrated) into the state if it is the latest by (at, position): $1 account, $2 guid, $3 kind, $4 rating, $5 at, $6 position, $7 recorded at
INSERT INTO watch_state AS s (account_id, guid, kind, rating, rated_at, rate_position, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (account_id, guid) DO UPDATE
SET rating = excluded.rating,
    rated_at = excluded.rated_at,
    rate_position = excluded.rate_position,
    updated_at = greatest(s.updated_at, excluded.updated_at)
WHERE s.rate_position IS NULL
   OR (excluded.rated_at, excluded.rate_position) > (s.rated_at, s.rate_position);

-- history_record --
-- Record a watched/unwatched action in the history: $1 account, $2 position, $3 event id, $4 guid, $5 kind, $6 type, $7 at
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING;

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
