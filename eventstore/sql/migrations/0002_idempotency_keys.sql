-- A second idempotency key per event. An event may be known by two names (in watchledger: a
-- client's id, and the natural key of the action it records); an append whose event id equals
-- a stored id, or whose key equals a stored key, is a duplicate. Keys are unique per partition,
-- like event ids.

ALTER TABLE events ADD COLUMN idempotency_key uuid;

CREATE UNIQUE INDEX events_idempotency_key_key ON events (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

DROP FUNCTION eventstore_append(text, text, bigint, uuid[], text[], integer[], jsonb[]);

-- Appends events to one stream in one statement (so one round trip, atomically).
-- An event whose id matches a stored event's id, or whose idempotency key matches a stored
-- event's key, comes back as a duplicate of it (with its position); nothing else happens for it. If any event is new and
-- p_expected_version is given but is not the stream's version, one row with conflict = true
-- and the stream's version comes back and nothing is written. Two appenders racing for the
-- same version (or id, or key) make the later one fail on a unique index: the caller retries in
-- a new transaction (a retry inside this one would keep an older transaction id than the
-- winner's). Each row names the 1-based index of the input event it answers.
CREATE FUNCTION eventstore_append(
    p_account_id text,
    p_stream text,
    p_expected_version bigint,
    p_event_ids uuid[],
    p_types text[],
    p_schema_versions integer[],
    p_data jsonb[],
    p_keys uuid[]
) RETURNS TABLE (
    input_index integer,
    event_id uuid,
    event_position bigint,
    stream_version bigint,
    recorded_at timestamptz,
    transaction_id xid8,
    duplicate boolean,
    conflict boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_found integer[];
BEGIN
    -- Two uncorrelated index scans (= ANY of the batch's ids, of its keys), whatever the
    -- statistics say: an OR across the two columns inside one correlated lookup can be planned
    -- as a join filter over all of the account's events.
    SELECT coalesce(array_agg(i.ord::integer), '{}') INTO v_found
    FROM unnest(p_event_ids, p_keys) WITH ORDINALITY AS i (id, key, ord)
    WHERE i.id IN (
              SELECT e.event_id FROM events e
              WHERE e.account_id = p_account_id AND e.event_id = ANY (p_event_ids))
       OR i.key IN (
              SELECT e.idempotency_key FROM events e
              WHERE e.account_id = p_account_id AND e.idempotency_key = ANY (p_keys));
    IF cardinality(v_found) > 0 THEN
        RETURN QUERY
            SELECT i.ord::integer, d.event_id, d.position, d.version, d.recorded_at,
                   d.transaction_id, true, false
            FROM unnest(p_event_ids, p_keys) WITH ORDINALITY AS i (id, key, ord)
            CROSS JOIN LATERAL (
                SELECT e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
                FROM events e WHERE e.account_id = p_account_id AND e.event_id = i.id
                UNION ALL
                SELECT e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
                FROM events e WHERE e.account_id = p_account_id AND e.idempotency_key = i.key
                LIMIT 1
            ) d
            WHERE i.ord = ANY (v_found);
        IF cardinality(v_found) = cardinality(p_event_ids) THEN
            RETURN;
        END IF;
    END IF;

    SELECT coalesce(max(e.version), 0) INTO v_current
    FROM events e
    WHERE e.account_id = p_account_id AND e.stream = p_stream;

    IF p_expected_version IS NOT NULL AND p_expected_version <> v_current THEN
        RETURN QUERY SELECT NULL::integer, NULL::uuid, NULL::bigint, v_current, NULL::timestamptz,
                            NULL::xid8, false, true;
        RETURN;
    END IF;

    RETURN QUERY
        WITH inserted AS (
            INSERT INTO events AS e
                (account_id, stream, version, event_id, type, schema_version, data, idempotency_key)
            SELECT p_account_id, p_stream, v_current + row_number() OVER (ORDER BY i.ord),
                   i.id, i.type, i.schema_version, i.data, i.key
            FROM unnest(p_event_ids, p_types, p_schema_versions, p_data, p_keys)
                     WITH ORDINALITY AS i (id, type, schema_version, data, key, ord)
            -- Not a fresh look: an id or key committed since the lookup above must fail on its
            -- unique index (and be retried, then reported as a duplicate), not vanish.
            WHERE NOT (i.ord::integer = ANY (v_found))
            ORDER BY i.ord
            RETURNING e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
        )
        SELECT i.ord::integer, n.event_id, n.position, n.version, n.recorded_at, n.transaction_id,
               false, false
        FROM inserted n
        JOIN unnest(p_event_ids) WITH ORDINALITY AS i (id, ord) ON i.id = n.event_id;
END;
$$;
