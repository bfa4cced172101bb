-- Product rule 5 across ids: an action is a duplicate of a recorded one with the same account,
-- type, `at` to the whole second and rating, that shares any id with it. Each watch action is
-- now appended with one natural key per id of its title (projections/domain/events.py's
-- natural_key; this function gives the same, and a test keeps the two equal), and the event
-- store finds a duplicate by any of them. The actions recorded before get theirs here.
CREATE FUNCTION watch_action_key(p_account_id text, p_id text, p_type text, p_at timestamptz,
                                 p_rating integer) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- The second (offset by 2^47) in the first 48 bits, then 74 bits of the digest: version 8,
    -- variant 0b10.
    SELECT encode(set_byte(set_byte(k, 6, (get_byte(k, 6) & 15) | 128),
                           8, (get_byte(k, 8) & 63) | 128), 'hex')::uuid
    FROM (SELECT substring(int8send(s.second + 140737488355328) FROM 3 FOR 6)
                 || substring(sha256(convert_to(concat_ws(chr(31), p_account_id, p_id, p_type,
                                                          s.second::text,
                                                          coalesce(p_rating::text, '')),
                                                'UTF8')) FROM 7 FOR 10) AS k
          FROM (SELECT floor(extract(epoch FROM p_at))::bigint AS second) AS s) AS key
$$;

-- One key an id of each recorded action (the first action of a key keeps it).
INSERT INTO event_keys (account_id, key, position)
SELECT DISTINCT ON (e.account_id, k.key) e.account_id, k.key, e.position
FROM events e
CROSS JOIN LATERAL (
    SELECT watch_action_key(e.account_id, i.id, e.type, (e.data ->> 'at')::timestamptz,
                            CASE WHEN e.type = 'rated' THEN (e.data ->> 'rating')::integer END)
    FROM jsonb_array_elements_text(jsonb_build_array(e.data -> 'guid')
                                   || coalesce(e.data -> 'ids', '[]')) AS i (id)
) AS k (key)
WHERE e.category = 'watch' AND e.schema_version = 1
  AND e.type IN ('watched', 'unwatched', 'rated', 'unrated')
  AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/'
  AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$'
  AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
  AND (e.type <> 'rated' OR e.data ->> 'rating' ~ '^(10|[1-9])$')
ORDER BY e.account_id, k.key, e.position
ON CONFLICT DO NOTHING;
