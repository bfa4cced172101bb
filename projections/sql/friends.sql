-- The friendships projection's statements (projections/friends.py): its live fold, its
-- set-based rebuild of a slice of the log ($1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound); see state.sql),
-- and the reads of friendships.
-- It owns friend_requests: a row (account, friend) says the account has asked the friend, and
-- neither has ended it since; both rows of a pair make a friendship.

-- friend_request --
-- The account asked the friend (or accepted its request): $1 account, $2 friend, $3 position
INSERT INTO friend_requests (account_id, friend_id, position) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- friend_remove --
-- Either side ended the pair: neither has asked any more: $1 account, $2 friend
DELETE FROM friend_requests
WHERE (account_id = $1 AND friend_id = $2) OR (account_id = $2 AND friend_id = $1);

-- rebuild_friends_removed --
-- Clear every pair ended within the slice (a request later in the slice is put back next): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
DELETE FROM friend_requests f
USING (
    SELECT DISTINCT e.account_id AS a, e.data ->> 'account' AS b
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1 OR e.data ->> 'account' = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'account' AND e.schema_version = 1
      AND e.type = 'friend_removed' AND jsonb_typeof(e.data -> 'account') = 'string'
) r
WHERE ($1::text IS NULL OR f.account_id = $1)
  AND ((f.account_id = r.a AND f.friend_id = r.b) OR (f.account_id = r.b AND f.friend_id = r.a));

-- rebuild_friends_requested --
-- Record the slice's requests made after their pair's last ending in the slice (the first such request of each, as the live fold keeps it): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
WITH pairs AS (
    SELECT least(e.account_id, e.data ->> 'account') AS lo,
           greatest(e.account_id, e.data ->> 'account') AS hi,
           e.account_id, e.data ->> 'account' AS friend, e.type, e.transaction_id, e.position
    FROM events e
    WHERE ($1::text IS NULL OR e.account_id = $1 OR e.data ->> 'account' = $1)
      AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
      AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
      AND ($6::bigint IS NULL OR e.position <= $6)
      AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
      AND e.category = 'account' AND e.schema_version = 1
      AND e.type IN ('friend_requested', 'friend_removed')
      AND jsonb_typeof(e.data -> 'account') = 'string'
), ended AS (
    SELECT DISTINCT ON (lo, hi) lo, hi, transaction_id, position
    FROM pairs WHERE type = 'friend_removed'
    ORDER BY lo, hi, transaction_id DESC, position DESC
)
INSERT INTO friend_requests (account_id, friend_id, position)
SELECT DISTINCT ON (p.account_id, p.friend) p.account_id, p.friend, p.position
FROM pairs p
LEFT JOIN ended x ON x.lo = p.lo AND x.hi = p.hi
WHERE p.type = 'friend_requested'
  AND ($1::text IS NULL OR p.account_id = $1)
  AND (x.lo IS NULL OR (p.transaction_id, p.position) > (x.transaction_id, x.position))
ORDER BY p.account_id, p.friend, p.transaction_id, p.position
ON CONFLICT DO NOTHING;

-- rebuild_friends_skipped --
-- The events of the slice the rebuild leaves out for their data (the live fold dead-letters them): $1 account (null: all), $2 after transaction id, $3 after position, $4 through transaction id, $5 through position, $6 until position (null: no bound), $7 until recorded time (null: no bound)
SELECT e.account_id, e.position, e.transaction_id, e.event_id, e.stream, e.type
FROM events e
WHERE ($1::text IS NULL OR e.account_id = $1)
  AND (e.transaction_id, e.position) > ($2::xid8, $3::bigint)
  AND (e.transaction_id, e.position) <= ($4::xid8, $5::bigint)
  AND ($6::bigint IS NULL OR e.position <= $6)
  AND ($7::timestamptz IS NULL OR e.recorded_at <= $7)
  AND e.category IN ('account', 'watch')
  AND e.type IN ('friend_requested', 'friend_removed')
  AND NOT coalesce(
      e.category = 'account' AND e.schema_version = 1 AND jsonb_typeof(e.data -> 'account') = 'string',
      false)
ORDER BY e.transaction_id, e.position;

-- friendship --
-- Who of a pair has asked: $1 account, $2 other
SELECT
    EXISTS (SELECT 1 FROM friend_requests WHERE account_id = $1 AND friend_id = $2) AS asked,
    EXISTS (SELECT 1 FROM friend_requests WHERE account_id = $2 AND friend_id = $1) AS asked_by_them;

-- friends_of --
-- An account's friends, the requests to it it has not answered, and its own unanswered requests, each sorted: $1 account
SELECT coalesce(array_agg(o.friend_id ORDER BY o.friend_id) FILTER (WHERE i.account_id IS NOT NULL), '{}') AS friends,
       coalesce(array_agg(o.friend_id ORDER BY o.friend_id) FILTER (WHERE i.account_id IS NULL), '{}') AS outgoing,
       (SELECT coalesce(array_agg(x.account_id ORDER BY x.account_id), '{}')
        FROM friend_requests x
        WHERE x.friend_id = $1
          AND NOT EXISTS (SELECT 1 FROM friend_requests y
                          WHERE y.account_id = $1 AND y.friend_id = x.account_id)) AS incoming
FROM friend_requests o
LEFT JOIN friend_requests i ON i.account_id = o.friend_id AND i.friend_id = o.account_id
WHERE o.account_id = $1;
