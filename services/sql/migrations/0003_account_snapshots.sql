-- Each account's decided state (the fold of its `account-<id>` stream), written in the same
-- transaction as the events that change it, so authentication and decisions read one row
-- however long the stream grows. A cache of the log: rebuilt from the stream when missing,
-- behind the stream, or of another fold version.
CREATE TABLE account_snapshots (
    account_id  text        NOT NULL,
    version     bigint      NOT NULL,
    fold        integer     NOT NULL,
    state       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_snapshots_pkey PRIMARY KEY (account_id)
);
