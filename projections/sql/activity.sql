-- The activity projection's statements (projections/activity.py): its live fold, its set-based
-- rebuild of a slice of the log ($1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound); see state.sql),
-- and the feeds read from it.
-- It owns activity (each account's watched and rated actions: never unwatched, unrated or
-- baseline records) and activity_profiles (each account's visibility, applied when read).
-- A row keeps the id its action named the title by; the feeds show the title's guid as the
-- actor's ids link it when read (title_of, rule 1b).

-- activity_add --
-- A watched or rated action: $1 account, $2 position, $3 transaction id, $4 event id, $5 type, $6 guid, $7 rating (null: watched), $8 at
INSERT INTO activity (account_id, position, transaction_id, event_id, type, guid, rating, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING;

-- activity_add_many --
-- activity_add for a run of actions at once (the live fold's set-based form): each parameter is an array of activity_add's, one element an action
INSERT INTO activity (account_id, position, transaction_id, event_id, type, guid, rating, at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::xid8[], $4::uuid[], $5::text[], $6::text[],
                     $7::smallint[], $8::timestamptz[])
ON CONFLICT DO NOTHING;

-- activity_profile_add --
-- A new account: visible to its friends: $1 account
INSERT INTO activity_profiles (account_id, visibility) VALUES ($1, 'friends')
ON CONFLICT DO NOTHING;

-- activity_profile_visibility --
-- The account changed who sees its activity: $1 account, $2 visibility
INSERT INTO activity_profiles (account_id, visibility) VALUES ($1, $2)
ON CONFLICT (account_id) DO UPDATE SET visibility = excluded.visibility;

-- rebuild_activity --
-- Record the slice's watched and rated actions (not baseline records). Deletions need no cut: the records they remove are gone from the log: $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
INSERT INTO activity (account_id, position, transaction_id, event_id, type, guid, rating, at)
SELECT e.account_id, e.position, e.transaction_id, e.event_id, e.type, e.data ->> 'guid',
       CASE e.type WHEN 'rated' THEN (e.data ->> 'rating')::smallint END,
       (e.data ->> 'at')::timestamptz
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
  AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
  AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
  AND ($6::bigint IS NULL OR e.position <= $6)
  AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category = 'watch' AND e.schema_version = 1
  AND e.type IN ('watched', 'rated')
  AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
  AND CASE WHEN e.type <> 'rated' THEN true
           WHEN e.data ->> 'rating' ~ '^-?\d{1,5}$' THEN (e.data ->> 'rating')::integer BETWEEN -32768 AND 32767
           ELSE false END
  AND NOT coalesce((e.data ->> 'baseline')::boolean, false)
ON CONFLICT DO NOTHING;

-- rebuild_activity_profiles --
-- Fold the slice's account creations and visibility changes (the last one in the slice wins): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
INSERT INTO activity_profiles AS p (account_id, visibility)
SELECT DISTINCT ON (e.account_id) e.account_id,
       CASE e.type WHEN 'account_created' THEN 'friends' ELSE e.data ->> 'visibility' END
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
  AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
  AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
  AND ($6::bigint IS NULL OR e.position <= $6)
  AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category = 'account' AND e.schema_version = 1
  AND (e.type = 'account_created'
       OR (e.type = 'visibility_changed' AND e.data ->> 'visibility' IN ('private', 'friends', 'public')))
ORDER BY e.account_id, e.transaction_id DESC, e.position DESC
ON CONFLICT (account_id) DO UPDATE SET visibility = excluded.visibility;

-- rebuild_activity_skipped --
-- The events of the slice the rebuild leaves out for their data (the live fold dead-letters them): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
SELECT e.account_id, e.position, e.transaction_id, e.event_id, e.stream, e.type
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
  AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
  AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
  AND ($6::bigint IS NULL OR e.position <= $6)
  AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category IN ('account', 'watch')
  AND e.type IN ('watched', 'rated', 'visibility_changed')
  AND NOT coalesce(
      CASE e.type
      WHEN 'visibility_changed' THEN
          e.category = 'account' AND e.schema_version = 1
          AND e.data ->> 'visibility' IN ('private', 'friends', 'public')
      ELSE
          e.category = 'watch' AND e.schema_version = 1
          AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/' AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$' AND (NOT e.data ? 'baseline' OR jsonb_typeof(e.data -> 'baseline') = 'boolean')
      AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
          AND CASE WHEN e.type <> 'rated' THEN true
                   WHEN e.data ->> 'rating' ~ '^-?\d{1,5}$' THEN (e.data ->> 'rating')::integer BETWEEN -32768 AND 32767
                   ELSE false END
      END,
      false)
ORDER BY e.transaction_id, e.position;

-- activity_visible --
-- Whether the viewer may see the account's activity (self: always; a friend: unless private; anyone: if public); null when there is no such account: $1 account, $2 viewer
SELECT p.account_id = $2
    OR p.visibility = 'public'
    OR (p.visibility = 'friends'
        AND EXISTS (SELECT 1 FROM friend_requests a WHERE a.account_id = $1 AND a.friend_id = $2)
        AND EXISTS (SELECT 1 FROM friend_requests b WHERE b.account_id = $2 AND b.friend_id = $1))
FROM activity_profiles p
WHERE p.account_id = $1;

-- activity_page --
-- One account's activity, newest first, before a key: $1 account, $2 before at, $3 before position, $4 limit
SELECT account_id, position, transaction_id, event_id, type, title_of(account_id, guid) AS guid,
       rating, at
FROM activity
WHERE account_id = $1 AND (at, position) < ($2, $3)
ORDER BY at DESC, position DESC
LIMIT $4;

-- feed_legs --
-- The first pass of a feed page (see projections/activity.py feed_page): the newest rows of each friend who lets friends see them, before a key, at most k each, where k is twice a fair share of the page (at least 2) — or, given $5, only those friends, at most $4 each: $1 viewer, $2 before at, $3 before position, $4 page size, $5 only these friends (null: every visible friend)
WITH legs AS (
    SELECT mine.friend_id
    FROM friend_requests mine
    JOIN friend_requests theirs
      ON theirs.account_id = mine.friend_id AND theirs.friend_id = mine.account_id
    JOIN activity_profiles p ON p.account_id = mine.friend_id AND p.visibility <> 'private'
    WHERE mine.account_id = $1 AND ($5::text[] IS NULL OR mine.friend_id = ANY($5::text[]))
), share AS (
    SELECT CASE WHEN $5::text[] IS NULL
                THEN greatest(2, ceil(2.0 * $4 / greatest(count(*), 1)))::integer
                ELSE $4::integer END AS k
    FROM legs
)
SELECT a.account_id, a.position, a.transaction_id, a.event_id, a.type,
       title_of(a.account_id, a.guid) AS guid, a.rating, a.at, share.k
FROM legs
CROSS JOIN share
CROSS JOIN LATERAL (
    SELECT x.account_id, x.position, x.transaction_id, x.event_id, x.type, x.guid, x.rating, x.at
    FROM activity x
    WHERE x.account_id = legs.friend_id AND (x.at, x.position) < ($2, $3)
    ORDER BY x.at DESC, x.position DESC
    LIMIT share.k
) a;

-- feed_after_many --
-- New activity for streams, one statement for many (the streams one action woke), each row tagged with its stream's ordinal: for each, in the order the projection applied it (the log's tailing order), after a log cursor and up to another, of the viewer's friends who let friends see it, now: $1 viewers, $2 after transaction ids, $3 after positions, $4 through transaction ids (null: no bound), $5 through positions, $6 limit each
SELECT r.i, x.account_id, x.position, x.transaction_id, x.event_id, x.type,
       title_of(x.account_id, x.guid) AS guid, x.rating, x.at
FROM unnest($1::text[], $2::xid8[], $3::bigint[], $4::xid8[], $5::bigint[])
     WITH ORDINALITY AS r(viewer, after_xid, after_pos, through_xid, through_pos, i)
CROSS JOIN LATERAL (
    SELECT y.account_id, y.position, y.transaction_id, y.event_id, y.type, y.guid, y.rating, y.at
    FROM activity y
    WHERE (y.transaction_id, y.position) > (r.after_xid, r.after_pos)
      AND (r.through_xid IS NULL OR (y.transaction_id, y.position) <= (r.through_xid, r.through_pos))
      AND y.account_id IN (
          SELECT mine.friend_id
          FROM friend_requests mine
          JOIN friend_requests theirs
            ON theirs.account_id = mine.friend_id AND theirs.friend_id = mine.account_id
          JOIN activity_profiles p ON p.account_id = mine.friend_id AND p.visibility <> 'private'
          WHERE mine.account_id = r.viewer)
    ORDER BY y.transaction_id, y.position
    LIMIT $6
) x
ORDER BY r.i, x.transaction_id, x.position;

-- activity_after --
-- Who has activity after a log cursor, in tailing order (for waking streams): $1 after transaction id, $2 after position, $3 limit
SELECT account_id, transaction_id, position
FROM activity
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
ORDER BY transaction_id, position
LIMIT $3;

-- feed_readers_of --
-- Of the given readers, those who are friends of one of the given actors who lets friends see its activity: $1 actors, $2 readers
SELECT DISTINCT mine.account_id
FROM friend_requests mine
JOIN friend_requests theirs ON theirs.account_id = mine.friend_id AND theirs.friend_id = mine.account_id
JOIN activity_profiles p ON p.account_id = mine.friend_id AND p.visibility <> 'private'
WHERE mine.friend_id = ANY($1::text[]) AND mine.account_id = ANY($2::text[]);

-- activity_head --
-- The newest activity's log cursor (none: no row): no parameters
SELECT transaction_id, position FROM activity ORDER BY transaction_id DESC, position DESC LIMIT 1;
