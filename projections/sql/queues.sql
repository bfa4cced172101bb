-- The servers' outbound queues (projections/queues.py): what the watch state projection's fold
-- queues and drops, and the servers' reads and acknowledgements. It owns sync_queue, which is
-- delivery state: what each server has yet to acknowledge. A rebuild of the watch state leaves
-- it as it is (acknowledgements are not in the log), and queues nothing itself.

-- queue_drop_account --
-- Drop every pending item of an account (sync turned off): $1 account
DELETE FROM sync_queue WHERE account_id = $1;

-- queue_drop_server --
-- Drop an account's pending items for a server it no longer has access to: $1 account, $2 server
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

-- queue_ack --
-- A server acknowledges every change up to a cursor: $1 server, $2 sequence number
DELETE FROM sync_queue WHERE server_id = $1 AND seq <= $2;

-- queue_pending --
-- A server's pending changes after a cursor, with each title's ids and current state: $1 server, $2 after sequence number, $3 limit
SELECT q.seq, q.kind, q.account_id, q.guid,
       CASE q.kind WHEN 'state' THEN title_ids_of(q.account_id, q.guid) END AS ids,
       CASE WHEN w.watch_position IS NULL THEN NULL ELSE coalesce(w.watched, false) END AS watched,
       w.watched_at, w.rating, w.rated_at
FROM sync_queue q
LEFT JOIN watch_state w ON w.account_id = q.account_id AND w.guid = q.guid
WHERE q.server_id = $1 AND q.seq > $2
ORDER BY q.seq
LIMIT $3;

-- queue_servers_after --
-- Servers with items queued after a sequence number, and the newest one: $1 sequence number
SELECT server_id, max(seq) AS seq FROM sync_queue WHERE seq > $1 GROUP BY server_id;

-- queue_head --
-- The newest queued sequence number (0 when none): no parameters
SELECT coalesce(max(seq), 0) FROM sync_queue;

-- queue_depth --
-- Changes waiting in every server's queue, all together (for the metrics): no parameters
SELECT count(*) FROM sync_queue;
