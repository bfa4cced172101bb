-- Queries of `watchledger bench`.

-- bench_copy_table --
-- The scratch table the COPY ceiling loads into (same columns as the log, nothing else): no parameters
CREATE TABLE bench_copy (
    account_id text, stream text, version bigint, event_id uuid, type text,
    schema_version integer, data jsonb
);
