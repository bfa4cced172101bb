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
