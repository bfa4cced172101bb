-- Outbound sync queues, folded in the same transaction as watch_state (the `watch_state`
-- projection), so a queued change is never delivered ahead of the state it points to.

-- Which accounts have sync on, and which servers each account has access to (owned or shared),
-- as the projection has seen them so far.
CREATE TABLE sync_accounts (
    account_id      text        NOT NULL,
    sync_enabled    boolean     NOT NULL DEFAULT false,
    CONSTRAINT sync_accounts_pkey PRIMARY KEY (account_id)
);

CREATE TABLE sync_access (
    account_id      text        NOT NULL,
    server_id       text        NOT NULL,
    CONSTRAINT sync_access_pkey PRIMARY KEY (account_id, server_id)
);

-- Pending items, coalesced: at most one per (account, server, kind, title). A change bumps the
-- item's seq, so a server that acknowledges up to a cursor never drops a newer change, and
-- gets an unacknowledged one again. kind 'state' carries a GUID; 'baseline_request' has ''.
CREATE SEQUENCE sync_queue_seq AS bigint;

CREATE TABLE sync_queue (
    account_id      text        NOT NULL,
    server_id       text        NOT NULL,
    kind            text        NOT NULL,
    guid            text        NOT NULL,
    seq             bigint      NOT NULL,
    CONSTRAINT sync_queue_pkey PRIMARY KEY (account_id, server_id, kind, guid),
    CONSTRAINT sync_queue_kind_check CHECK (kind IN ('state', 'baseline_request'))
);

CREATE INDEX sync_queue_server_idx ON sync_queue (server_id, seq);
CREATE INDEX sync_queue_seq_idx ON sync_queue (seq);
