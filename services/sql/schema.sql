-- The full current schema of the service's own tables. Kept equal to the migrations (tests/test_migrations.py).

CREATE TABLE service_secrets (
    name        text        NOT NULL PRIMARY KEY,
    hash        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The server registry: small, global, rarely changing (architecture: may be a table of its
-- own). Written in the same transaction as the owner's server_registered event, it keeps
-- server ids unique and lets a server's token work at once; it can be rebuilt from the log.
CREATE TABLE servers (
    server_id   text        NOT NULL PRIMARY KEY,
    owner       text        NOT NULL,
    name        text        NOT NULL,
    version     text        NOT NULL,
    token_hash  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

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
