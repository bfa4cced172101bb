-- The watch history projection's statements (projections/history.py): its live fold, and
-- its set-based rebuild of a slice of the log ($1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound); see state.sql).
-- It owns watch_history.

-- history_record --
-- Record a watched/unwatched action in the history (a baseline record flagged: the reads count it only as its title's first record): $1 account, $2 position, $3 event id, $4 guid, $5 kind, $6 type, $7 at, $8 baseline
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at, baseline)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING;

-- history_record_many --
-- history_record for a run of actions at once (the live fold's set-based form): each parameter is an array of history_record's, one element an action
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at, baseline)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::boolean[])
ON CONFLICT DO NOTHING;

-- rebuild_history_cut --
-- Forget the history of every account whose history was deleted within the slice (rule 10): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
DELETE FROM watch_history h
USING (
    SELECT DISTINCT e.account_id
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.type = 'history_deleted'
) d
WHERE h.account_id = d.account_id;

-- rebuild_history --
-- Record the slice's watch records after the account's last history deletion in it, baseline records flagged: $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH cut AS (
    SELECT DISTINCT ON (e.account_id) e.account_id, e.transaction_id, e.position
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.type = 'history_deleted'
    ORDER BY e.account_id, e.transaction_id DESC, e.position DESC
),
records AS (
    SELECT e.account_id, e.position, e.event_id, e.data ->> 'guid' AS guid, e.type, e.data,
           coalesce((e.data ->> 'baseline')::boolean, false) AS baseline
    FROM events e
    LEFT JOIN cut c ON c.account_id = e.account_id
    WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'watch' AND e.schema_version = 1
      AND e.type IN ('watched', 'unwatched')
      AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
      AND (c.account_id IS NULL OR (e.transaction_id, e.position) > (c.transaction_id, c.position))
)
INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at, baseline)
SELECT r.account_id, r.position, r.event_id, r.guid, CASE WHEN r.guid ~ '/s[0-9]+e[0-9]+$' THEN 'episode' ELSE split_part(r.guid, '/', 3) END, r.type,
       (r.data ->> 'at')::timestamptz, r.baseline
FROM records r
ON CONFLICT DO NOTHING;

-- rebuild_history_skipped --
-- The events of the slice the rebuild leaves out for their data (the live fold dead-letters them): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
SELECT e.account_id, e.position, e.transaction_id, e.event_id, e.stream, e.type
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category IN ('account', 'watch')
  AND e.type IN ('watched', 'unwatched')
  AND NOT coalesce(
      e.category = 'watch' AND e.schema_version = 1 AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")'))),
      false)
ORDER BY e.transaction_id, e.position;
