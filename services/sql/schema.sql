-- The full current schema of the service's own tables. Kept equal to the migrations (tests/test_migrations.py).

CREATE TABLE service_secrets (
    name        text        NOT NULL PRIMARY KEY,
    hash        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
