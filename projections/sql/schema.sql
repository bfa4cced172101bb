-- The full current schema of the projections. Kept equal to the migrations (tests/test_migrations.py).

-- How far each projection has applied the log, in tailing order (transaction id, position).
-- Global bookkeeping, not account data.
CREATE TABLE projection_checkpoints (
    name            text        NOT NULL PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    position        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Current watch state and rating per account and title, decided by last-writer-wins on the
-- action's time (ties: the later recorded, i.e. higher position). Rows stay for titles whose
-- rating was removed, so a late, older event still loses to the removal.
CREATE TABLE watch_state (
    account_id      text        NOT NULL,
    guid            text        NOT NULL,
    kind            text        NOT NULL,
    watched         boolean,
    watched_at      timestamptz,
    watch_position  bigint,
    rating          smallint,
    rated_at        timestamptz,
    rate_position   bigint,
    updated_at      timestamptz NOT NULL,
    -- When the deciding watch record and rating were recorded: updated_at is the later one.
    watch_recorded_at timestamptz,
    rate_recorded_at timestamptz,
    CONSTRAINT watch_state_pkey PRIMARY KEY (account_id, guid)
);

CREATE INDEX watch_state_updated_idx ON watch_state (account_id, updated_at);

-- Watch history: every watched and unwatched record, late ones included.
CREATE TABLE watch_history (
    account_id      text        NOT NULL,
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    guid            text        NOT NULL,
    kind            text        NOT NULL,
    type            text        NOT NULL,
    at              timestamptz NOT NULL,
    CONSTRAINT watch_history_pkey PRIMARY KEY (account_id, position),
    CONSTRAINT watch_history_type_check CHECK (type IN ('watched', 'unwatched'))
);

CREATE INDEX watch_history_at_idx ON watch_history (account_id, at DESC, position DESC);
CREATE INDEX watch_history_guid_idx ON watch_history (account_id, guid, at DESC, position DESC);

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

-- Events a projection could not apply (poison events): kept with the error, so the projection
-- moves on instead of retrying one event forever and stalling every write that waits for it.
CREATE TABLE projection_dead_letters (
    account_id      text        NOT NULL,
    projection      text        NOT NULL,
    position        bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    stream          text        NOT NULL,
    type            text        NOT NULL,
    error           text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_dead_letters_pkey PRIMARY KEY (account_id, projection, position)
);

CREATE INDEX projection_dead_letters_projection_idx ON projection_dead_letters (projection);

-- Friendships (product rule 9): a row (account, friend) says the account asked the friend and
-- neither ended it since; both rows of a pair make friends.
CREATE TABLE friend_requests (
    account_id      text        NOT NULL,
    friend_id       text        NOT NULL,
    position        bigint      NOT NULL,
    CONSTRAINT friend_requests_pkey PRIMARY KEY (account_id, friend_id)
);

CREATE INDEX friend_requests_friend_idx ON friend_requests (friend_id, account_id);

-- Each account's watched and rated actions (never unwatched, unrated or baseline records), and
-- its visibility, which feeds apply when they are read.
CREATE TABLE activity (
    account_id      text        NOT NULL,
    position        bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    guid            text        NOT NULL,
    rating          smallint,
    at              timestamptz NOT NULL,
    CONSTRAINT activity_pkey PRIMARY KEY (account_id, position),
    CONSTRAINT activity_type_check CHECK (type IN ('watched', 'rated'))
);

-- Pages of one account's activity, newest first, and the per-friend legs of a feed: every
-- column a page shows is in the index, so a leg is an index-only scan of its first rows.
CREATE INDEX activity_at_idx ON activity (account_id, at DESC, position DESC)
    INCLUDE (transaction_id, event_id, type, guid, rating);
-- Streams follow new activity in the order it was applied (the log's tailing order).
CREATE INDEX activity_log_idx ON activity (transaction_id, position);

CREATE TABLE activity_profiles (
    account_id      text        NOT NULL,
    visibility      text        NOT NULL,
    CONSTRAINT activity_profiles_pkey PRIMARY KEY (account_id),
    CONSTRAINT activity_profiles_visibility_check CHECK (visibility IN ('private', 'friends', 'public'))
);
