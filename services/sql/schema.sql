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
