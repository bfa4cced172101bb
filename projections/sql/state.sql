-- The watch state projection's statements (projections/state.py): its live fold, and its
-- set-based rebuild of a slice of the log. It owns watch_state, sync_accounts and sync_access,
-- and folds the servers' outbound queue (sync_queue, owned by projections/queues.py) as state
-- changes. The rebuild statements take the same parameters, a slice of the log in tailing
-- order: $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound).
-- Run in order over consecutive slices they give what the live fold gives over the same events:
-- last-writer-wins is a maximum, so folding a slice merges like folding its events one by one.
-- Event data is checked before it is cast: an event the live fold dead-letters (it cannot decode
-- it, or the database refuses its values) is left out here too, instead of failing the rebuild.

-- state_watch --
-- Fold a watched/unwatched action into its title's state if it is the latest by (at, position), linking the action's ids first (title_link), and queue the new state for every server of the account while sync is on: $1 account, $2 the action's ids (its guid first), $3 kind, $4 watched, $5 at, $6 position, $7 recorded at
SELECT state_put_watch($1, title_link($1, $2::text[], true), $3, $4, $5, $6, $7, true);

-- state_watch_titled --
-- state_watch for an action naming its title by several ids, the title they name given (title_link_titled): $1 and $3 to $7 as state_watch's, $2 the first of its ids in shown order, $8 its other ids
SELECT state_put_watch($1, title_link_titled($1, $2, $8::text[], true), $3, $4, $5, $6, $7, true);

-- state_link_fresh --
-- Link the batch's new titles before its folds (title_link_fresh): $1 each id's account, $2 its set's title (the first of the set's ids in shown order), $3 the set's other ids
SELECT title_link_fresh($1::text[], $2::text[], $3::text[]);

-- state_keep --
-- Fold a watch state carried across a history deletion: like state_watch, but it queues nothing (the state did not change, and a deletion sends nothing to servers): $1 account, $2 the title's ids (its guid first), $3 kind, $4 watched, $5 at, $6 position, $7 when the deciding record was recorded
SELECT state_put_watch($1, title_link($1, $2::text[], true), $3, $4, $5, $6, $7, false);

-- state_keep_titled --
-- state_keep for a title named by several ids, the title they name given (title_link_titled): $1 and $3 to $7 as state_keep's, $2 the first of its ids in shown order, $8 its other ids
SELECT state_put_watch($1, title_link_titled($1, $2, $8::text[], true), $3, $4, $5, $6, $7, false);

-- state_rate --
-- Fold a rated/unrated action (rating null: unrated) into its title's state like state_watch: $1 account, $2 the action's ids (its guid first), $3 kind, $4 rating, $5 at, $6 position, $7 recorded at
SELECT state_put_rate($1, title_link($1, $2::text[], true), $3, $4::smallint, $5, $6, $7, true);

-- state_rate_titled --
-- state_rate for an action naming its title by several ids, the title they name given (title_link_titled): $1 and $3 to $7 as state_rate's, $2 the first of its ids in shown order, $8 its other ids
SELECT state_put_rate($1, title_link_titled($1, $2, $8::text[], true), $3, $4::smallint, $5, $6, $7, true);

-- state_watch_one --
-- state_watch for an action naming its title by one id (title_of, as title_link finds it): $1 account, $2 the id, $3 to $7 as state_watch's
SELECT state_put_watch($1, title_of($1, $2), $3, $4, $5, $6, $7, true);

-- state_watch_many --
-- state_watch_one for a run of actions at once (the live fold's set-based form), each parameter an array of state_watch_one's, one element an action. Last-writer-wins is a maximum: the run's latest action by (at, position) for each title is folded in as state_put_watch would fold it, a new row taking the kind of the run's first action on its title; a title whose state changed is queued once for every server of the account while sync is on (state_queue)
WITH action AS (
    SELECT a.account_id, coalesce(t.title, a.id) AS title, a.kind, a.watched, a.at, a.position,
           a.recorded, a.n
    FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::timestamptz[], $6::bigint[],
                $7::timestamptz[]) WITH ORDINALITY AS a (account_id, id, kind, watched, at, position, recorded, n)
    LEFT JOIN title_ids t ON t.account_id = a.account_id AND t.id = a.id
), latest AS (
    SELECT DISTINCT ON (account_id, title)
           account_id, title, first_value(kind) OVER (PARTITION BY account_id, title ORDER BY n) AS kind,
           watched, at, position, recorded
    FROM action
    ORDER BY account_id, title, at DESC, position DESC
), changed AS (
    INSERT INTO watch_state AS s
        (account_id, guid, kind, watched, watched_at, watch_position, watch_recorded_at, updated_at)
    SELECT account_id, title, kind, watched, at, position, recorded, recorded FROM latest
    ON CONFLICT (account_id, guid) DO UPDATE
    SET watched = excluded.watched,
        watched_at = excluded.watched_at,
        watch_position = excluded.watch_position,
        watch_recorded_at = excluded.watch_recorded_at,
        updated_at = greatest(excluded.watch_recorded_at, s.rate_recorded_at)
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

-- state_rate_one --
-- state_rate for an action naming its title by one id (title_of, as title_link finds it): $1 account, $2 the id, $3 to $7 as state_rate's
SELECT state_put_rate($1, title_of($1, $2), $3, $4::smallint, $5, $6, $7, true);

-- state_rate_many --
-- state_rate_one for a run of actions at once (the live fold's set-based form), each parameter an array of state_rate_one's, one element an action. Last-writer-wins is a maximum: the run's latest action by (at, position) for each title is folded in as state_put_rate would fold it, a new row taking the kind of the run's first action on its title; a title whose state changed is queued once for every server of the account while sync is on (state_queue)
WITH action AS (
    SELECT a.account_id, coalesce(t.title, a.id) AS title, a.kind, a.rating, a.at, a.position,
           a.recorded, a.n
    FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[], $6::bigint[],
                $7::timestamptz[]) WITH ORDINALITY AS a (account_id, id, kind, rating, at, position, recorded, n)
    LEFT JOIN title_ids t ON t.account_id = a.account_id AND t.id = a.id
), latest AS (
    SELECT DISTINCT ON (account_id, title)
           account_id, title, first_value(kind) OVER (PARTITION BY account_id, title ORDER BY n) AS kind,
           rating, at, position, recorded
    FROM action
    ORDER BY account_id, title, at DESC, position DESC
), changed AS (
    INSERT INTO watch_state AS s
        (account_id, guid, kind, rating, rated_at, rate_position, rate_recorded_at, updated_at)
    SELECT account_id, title, kind, rating, at, position, recorded, recorded FROM latest
    ON CONFLICT (account_id, guid) DO UPDATE
    SET rating = excluded.rating,
        rated_at = excluded.rated_at,
        rate_position = excluded.rate_position,
        rate_recorded_at = excluded.rate_recorded_at,
        updated_at = greatest(s.watch_recorded_at, excluded.rate_recorded_at)
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

-- account_add --
-- A new account, sync off: $1 account
INSERT INTO sync_accounts (account_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- account_sync --
-- Record an account's sync setting: $1 account, $2 enabled
UPDATE sync_accounts SET sync_enabled = $2 WHERE account_id = $1;

-- access_add --
-- A server the account now has access to (registered it, or accepted its share): $1 account, $2 server
INSERT INTO sync_access (account_id, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING;

-- access_remove --
-- A server the account no longer has access to: $1 account, $2 server
DELETE FROM sync_access WHERE account_id = $1 AND server_id = $2;

-- rebuild_state_cut --
-- Forget the state of every account whose state was deleted within the slice (rule 11): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
DELETE FROM watch_state s
USING (
    SELECT DISTINCT e.account_id
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.type = 'state_deleted'
) d
WHERE s.account_id = d.account_id;

-- rebuild_title_links --
-- Link the ids of the slice's actions that name their title by more than one (title_link, leaving the queues alone), every distinct set of ids once: links are a union, so their order does not matter. Before a state deletion too: the watch records it leaves stay in the log, and the ratings it purged are gone from it: $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
SELECT count(title_link(l.account_id, l.ids, false))
FROM (
    SELECT DISTINCT e.account_id,
           ARRAY[e.data ->> 'guid'] || ARRAY(SELECT jsonb_array_elements_text(e.data -> 'ids')) AS ids
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.schema_version = 1
      AND e.type IN ('watched', 'unwatched', 'watch_state_kept', 'rated', 'unrated')
      AND jsonb_typeof(e.data -> 'ids') = 'array' AND jsonb_array_length(e.data -> 'ids') > 0
      AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')
      AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND CASE WHEN e.type <> 'rated' THEN true
               WHEN e.data ->> 'rating' ~ '^-?\d{1,5}$' THEN (e.data ->> 'rating')::integer BETWEEN -32768 AND 32767
               ELSE false END
      AND (e.type <> 'watch_state_kept' OR (
               jsonb_typeof(e.data -> 'watched') = 'boolean'
               AND e.data ->> 'recorded_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$'))
) l;

-- rebuild_state_watch --
-- Fold the slice's watch records (and watch states kept across history deletions) after the account's last state deletion in it, by title (after rebuild_title_links): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH cut AS (
    SELECT DISTINCT ON (e.account_id) e.account_id, e.transaction_id, e.position
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.type = 'state_deleted'
    ORDER BY e.account_id, e.transaction_id DESC, e.position DESC
),
latest AS (
    SELECT DISTINCT ON (e.account_id, coalesce(t.title, e.data ->> 'guid'))
           e.account_id, coalesce(t.title, e.data ->> 'guid') AS guid, e.type, e.data, e.position,
           e.recorded_at
    FROM events e
    LEFT JOIN cut c ON c.account_id = e.account_id
    LEFT JOIN title_ids t ON t.account_id = e.account_id AND t.id = e.data ->> 'guid'
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.schema_version = 1
      AND e.type IN ('watched', 'unwatched', 'watch_state_kept')
      AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
      AND (e.type <> 'watch_state_kept' OR (
               jsonb_typeof(e.data -> 'watched') = 'boolean'
               AND e.data ->> 'recorded_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$'))
      AND (c.account_id IS NULL OR (e.transaction_id, e.position) > (c.transaction_id, c.position))
    ORDER BY e.account_id, coalesce(t.title, e.data ->> 'guid'), (e.data ->> 'at')::timestamptz DESC,
             e.position DESC
), folded AS (
    SELECT account_id, guid, CASE WHEN guid ~ '/s[0-9]+e[0-9]+$' THEN 'episode' ELSE split_part(guid, '/', 3) END AS kind,
           CASE type WHEN 'watch_state_kept' THEN (data ->> 'watched')::boolean
                     ELSE type = 'watched' END AS watched,
           (data ->> 'at')::timestamptz AS watched_at,
           position,
           CASE type WHEN 'watch_state_kept' THEN (data ->> 'recorded_at')::timestamptz
                     ELSE recorded_at END AS recorded
    FROM latest
)
INSERT INTO watch_state AS s
    (account_id, guid, kind, watched, watched_at, watch_position, watch_recorded_at, updated_at)
SELECT account_id, guid, kind, watched, watched_at, position, recorded, recorded
FROM folded
ON CONFLICT (account_id, guid) DO UPDATE
SET watched = excluded.watched,
    watched_at = excluded.watched_at,
    watch_position = excluded.watch_position,
    watch_recorded_at = excluded.watch_recorded_at,
    updated_at = greatest(excluded.watch_recorded_at, s.rate_recorded_at)
WHERE s.watch_position IS NULL
   OR (excluded.watched_at, excluded.watch_position) > (s.watched_at, s.watch_position);

-- rebuild_state_rate --
-- Fold the slice's ratings after the account's last state deletion in it, by title (after rebuild_title_links): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH cut AS (
    SELECT DISTINCT ON (e.account_id) e.account_id, e.transaction_id, e.position
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.type = 'state_deleted'
    ORDER BY e.account_id, e.transaction_id DESC, e.position DESC
),
latest AS (
    SELECT DISTINCT ON (e.account_id, coalesce(t.title, e.data ->> 'guid'))
           e.account_id, coalesce(t.title, e.data ->> 'guid') AS guid, e.type, e.data, e.position,
           e.recorded_at
    FROM events e
    LEFT JOIN cut c ON c.account_id = e.account_id
    LEFT JOIN title_ids t ON t.account_id = e.account_id AND t.id = e.data ->> 'guid'
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.schema_version = 1
      AND e.type IN ('rated', 'unrated')
      AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
      AND CASE WHEN e.type <> 'rated' THEN true
               WHEN e.data ->> 'rating' ~ '^-?\d{1,5}$' THEN (e.data ->> 'rating')::integer BETWEEN -32768 AND 32767
               ELSE false END
      AND (c.account_id IS NULL OR (e.transaction_id, e.position) > (c.transaction_id, c.position))
    ORDER BY e.account_id, coalesce(t.title, e.data ->> 'guid'), (e.data ->> 'at')::timestamptz DESC,
             e.position DESC
)
INSERT INTO watch_state AS s
    (account_id, guid, kind, rating, rated_at, rate_position, rate_recorded_at, updated_at)
SELECT account_id, guid, CASE WHEN guid ~ '/s[0-9]+e[0-9]+$' THEN 'episode' ELSE split_part(guid, '/', 3) END,
       CASE type WHEN 'rated' THEN (data ->> 'rating')::smallint END,
       (data ->> 'at')::timestamptz, position, recorded_at, recorded_at
FROM latest
ON CONFLICT (account_id, guid) DO UPDATE
SET rating = excluded.rating,
    rated_at = excluded.rated_at,
    rate_position = excluded.rate_position,
    rate_recorded_at = excluded.rate_recorded_at,
    updated_at = greatest(s.watch_recorded_at, excluded.rate_recorded_at)
WHERE s.rate_position IS NULL
   OR (excluded.rated_at, excluded.rate_position) > (s.rated_at, s.rate_position);

-- rebuild_state_accounts --
-- Fold the slice's account creations and sync settings (the last one in the slice wins): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH changes AS (
    SELECT e.account_id,
           bool_or(e.type = 'account_created') AS created,
           (array_agg((e.data ->> 'enabled')::boolean ORDER BY e.transaction_id DESC, e.position DESC)
                FILTER (WHERE e.type = 'sync_changed'))[1] AS enabled
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category IN ('account', 'watch') AND e.schema_version = 1
      AND (e.type = 'account_created'
           OR (e.type = 'sync_changed' AND jsonb_typeof(e.data -> 'enabled') = 'boolean'))
    GROUP BY e.account_id
)
INSERT INTO sync_accounts AS a (account_id, sync_enabled)
SELECT c.account_id, coalesce(c.enabled, false)
FROM changes c
WHERE c.created
   OR (c.enabled IS NOT NULL
       AND EXISTS (SELECT 1 FROM sync_accounts x WHERE x.account_id = c.account_id))
ON CONFLICT (account_id) DO UPDATE SET sync_enabled = excluded.sync_enabled;

-- rebuild_state_access --
-- Fold the slice's access changes: per account and server, the last one in the slice decides: $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH latest AS (
    SELECT DISTINCT ON (e.account_id, e.data ->> 'server_id')
           e.account_id, e.data ->> 'server_id' AS server_id, e.type
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category IN ('account', 'watch') AND e.schema_version = 1
      AND e.type IN ('server_registered', 'access_accepted', 'access_revoked', 'access_left')
      AND jsonb_typeof(e.data -> 'server_id') = 'string'
    ORDER BY e.account_id, e.data ->> 'server_id', e.transaction_id DESC, e.position DESC
), removed AS (
    DELETE FROM sync_access a
    USING latest l
    WHERE a.account_id = l.account_id AND a.server_id = l.server_id
      AND l.type IN ('access_revoked', 'access_left')
)
INSERT INTO sync_access (account_id, server_id)
SELECT account_id, server_id FROM latest WHERE type IN ('server_registered', 'access_accepted')
ON CONFLICT DO NOTHING;

-- rebuild_state_skipped --
-- The events of the slice the rebuild leaves out for their data (the live fold dead-letters them): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
SELECT e.account_id, e.position, e.transaction_id, e.event_id, e.stream, e.type
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category IN ('account', 'watch')
  AND e.type IN ('watched', 'unwatched', 'watch_state_kept', 'rated', 'unrated')
  AND NOT coalesce(
      e.category = 'watch' AND e.schema_version = 1 AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
      AND CASE WHEN e.type <> 'rated' THEN true
               WHEN e.data ->> 'rating' ~ '^-?\d{1,5}$' THEN (e.data ->> 'rating')::integer BETWEEN -32768 AND 32767
               ELSE false END
      AND (e.type <> 'watch_state_kept' OR jsonb_typeof(e.data -> 'watched') = 'boolean'),
      false)
ORDER BY e.transaction_id, e.position;
