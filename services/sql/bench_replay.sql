-- Queries of `watchledger bench replay`: a large log of a realistic shape, written set-based.

-- bench_log_accounts --
-- Every account's stream: created; sync on for four in five; a server registered by one in ten: $1 accounts
INSERT INTO events (account_id, stream, version, event_id, type, schema_version, data)
SELECT 'a' || a, 'account-a' || a, v.version, gen_random_uuid(), v.type, 1, v.data
FROM generate_series(1, $1::integer) AS a
CROSS JOIN LATERAL (
    VALUES
        (1, 'account_created',
         jsonb_build_object('account_id', 'a' || a, 'kind', 'full', 'name', 'Bench',
                            'token_hash', md5(a::text))),
        (2, CASE WHEN a % 5 <> 0 THEN 'sync_changed' END, '{"enabled": true}'::jsonb),
        (3, CASE WHEN a % 10 = 0 THEN 'server_registered' END,
         jsonb_build_object('server_id', 'srv-' || a, 'name', 'Server', 'version', '1.40.0',
                            'token_hash', md5(a::text)))
) AS v (version, type, data)
WHERE v.type IS NOT NULL;

-- bench_log_watch --
-- Watch actions numbered $1 (inclusive) to $2 (exclusive), spread over $3 accounts: watched (most, one in twenty a baseline), unwatched, rated, unrated over 400 titles per account, a third of them late
INSERT INTO events (account_id, stream, version, event_id, type, schema_version, data)
SELECT 'a' || (1 + i % $3), 'watch-a' || (1 + i % $3), i / $3 + 1, gen_random_uuid(), a.type, 1,
       jsonb_strip_nulls(jsonb_build_object(
           'guid', 'plex://' || CASE WHEN t % 3 = 0 THEN 'movie' ELSE 'episode' END || '/'
                   || lpad(to_hex(t), 24, '0'),
           'at', to_char(timestamptz '2024-01-01 00:00:00+00'
                         + ((i / $3) * 60 - CASE WHEN i % 3 = 0 THEN 86400 ELSE 0 END)
                           * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'rating', CASE WHEN a.type = 'rated' THEN 1 + i % 10 END,
           'baseline', CASE WHEN i % 20 = 19 THEN true END))
FROM generate_series($1::bigint, $2::bigint - 1) AS i
CROSS JOIN LATERAL (SELECT ((i / $3) * 7919) % 400 + (1 + i % $3) * 1000 AS t) AS title
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN i % 20 < 12 OR i % 20 = 19 THEN 'watched'
        WHEN i % 20 < 15 THEN 'unwatched'
        WHEN i % 20 < 18 THEN 'rated'
        ELSE 'unrated'
    END AS type
) AS a;
