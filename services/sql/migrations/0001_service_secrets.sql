-- Secrets of the service itself (not of any account): hashes only. Global bookkeeping.
CREATE TABLE service_secrets (
    name        text        NOT NULL PRIMARY KEY,
    hash        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
