-- Shares need the account's consent (product rule 3): a share recorded before this release
-- (access_granted) is now an offer the account has not accepted, so the queues forget the
-- access it gave and what was queued through it. Owners keep their own servers. Replaying the
-- log gives the same rows.
DELETE FROM sync_access a
WHERE NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.account_id = a.account_id
      AND e.stream = 'account-' || a.account_id
      AND e.type = 'server_registered'
      AND e.data ->> 'server_id' = a.server_id
);

DELETE FROM sync_queue q
WHERE NOT EXISTS (
    SELECT 1 FROM sync_access a WHERE a.account_id = q.account_id AND a.server_id = q.server_id
);
