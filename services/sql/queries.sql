-- Named queries of the HTTP service, loaded once by services.queries.

-- secret_get --
-- A stored secret's hash: $1 name
SELECT hash FROM service_secrets WHERE name = $1;

-- secret_add --
-- Store a secret's hash unless one exists (the first process to start wins): $1 name, $2 hash
INSERT INTO service_secrets (name, hash) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING hash;

-- account_snapshots_get --
-- Accounts' snapshots (null when none) and their streams' versions (null: no such account); a probe of the stream's key index, so a snapshot behind its stream is noticed: $1 account ids
SELECT i.account_id, s.version, s.fold, s.state,
       (SELECT max(e.version) FROM events e
        WHERE e.account_id = i.account_id AND e.stream = 'account-' || i.account_id) AS stream_version
FROM unnest($1::text[]) AS i(account_id)
LEFT JOIN account_snapshots s ON s.account_id = i.account_id;

-- account_snapshot_get --
-- One account's snapshot, as account_snapshots_get (a plainer plan for the one-account case: every authenticated request): $1 account id
SELECT i.account_id, s.version, s.fold, s.state,
       (SELECT max(e.version) FROM events e
        WHERE e.account_id = $1 AND e.stream = 'account-' || $1) AS stream_version
FROM (SELECT $1::text AS account_id) AS i
LEFT JOIN account_snapshots s ON s.account_id = $1;

-- account_snapshot_put --
-- Store an account's snapshot unless a newer one of the same fold is stored: $1 account id, $2 version, $3 fold version, $4 state
INSERT INTO account_snapshots AS s (account_id, version, fold, state) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id) DO UPDATE
SET version = excluded.version, fold = excluded.fold, state = excluded.state, updated_at = now()
WHERE s.fold <> excluded.fold OR s.version < excluded.version;

-- server_add --
-- Register a server; nothing if the id is taken: $1 id, $2 owner, $3 name, $4 version, $5 token hash
INSERT INTO servers (server_id, owner, name, version, token_hash) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (server_id) DO NOTHING
RETURNING server_id;

-- server_token_set --
-- A server's new token, in the transaction of its owner's event: $1 id, $2 owner, $3 token hash
UPDATE servers SET token_hash = $3 WHERE server_id = $1 AND owner = $2;

-- server_get --
-- One server of the registry: $1 id
SELECT server_id, owner, name, version, token_hash FROM servers WHERE server_id = $1;

-- servers_get --
-- Several servers of the registry, by id: $1 ids
SELECT server_id, owner, name, version FROM servers WHERE server_id = ANY($1) ORDER BY server_id;

-- account_snapshot_hold --
-- An account's snapshot version, share-locked until the transaction ends (every change of the account writes the row, so none can land meanwhile): $1 account id
SELECT version FROM account_snapshots WHERE account_id = $1 FOR SHARE;
