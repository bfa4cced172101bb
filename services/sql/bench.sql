-- Queries of `watchledger bench`: the ceilings appends are measured against.

-- bench_tables --
-- Scratch tables with the log's columns: one with its keys (for plain INSERTs), one bare (for COPY): no parameters
CREATE TABLE bench_insert (
    position bigserial, account_id text, stream text, version bigint, event_id uuid, type text,
    schema_version integer, data jsonb, transaction_id xid8 DEFAULT pg_current_xact_id(),
    PRIMARY KEY (account_id, position), UNIQUE (account_id, stream, version),
    UNIQUE (account_id, event_id)
);
CREATE TABLE bench_copy (
    account_id text, stream text, version bigint, event_id uuid, type text,
    schema_version integer, data jsonb
);

-- bench_insert --
-- One plain INSERT of one event row: $1 account_id, $2 stream, $3 version, $4 event id, $5 type, $6 schema version, $7 data
INSERT INTO bench_insert (account_id, stream, version, event_id, type, schema_version, data)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- bench_backlog --
-- An offline server's queue holding many items (pending changes of one account): $1 items
INSERT INTO sync_queue (account_id, server_id, kind, guid, seq)
SELECT 'backlog', 'backlog-server', 'state', 'tmdb://movie/' || n, nextval('sync_queue_seq')
FROM generate_series(1, $1::integer) AS n;
