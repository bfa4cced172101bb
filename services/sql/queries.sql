-- Named queries of the HTTP service, loaded once by services.queries.

-- secret_get --
-- A stored secret's hash: $1 name
SELECT hash FROM service_secrets WHERE name = $1;

-- secret_add --
-- Store a secret's hash unless one exists (the first process to start wins): $1 name, $2 hash
INSERT INTO service_secrets (name, hash) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING hash;
