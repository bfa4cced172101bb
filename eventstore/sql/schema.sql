-- The full current schema of the event log. Kept equal to the migrations (tests/test_migrations.py).

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    position        bigint      NOT NULL DEFAULT nextval('events_position_seq'),
    account_id      text        NOT NULL,
    stream          text        NOT NULL,
    category        text        NOT NULL GENERATED ALWAYS AS (split_part(stream, '-', 1)) STORED,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction: readers only trust rows below the oldest running transaction,
    -- so a row whose transaction commits late is never passed over (see eventstore/tailing.py).
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (account_id, position),
    CONSTRAINT events_stream_version_key UNIQUE (account_id, stream, version),
    CONSTRAINT events_event_id_key UNIQUE (account_id, event_id),
    CONSTRAINT events_version_positive CHECK (version > 0),
    CONSTRAINT events_schema_version_positive CHECK (schema_version > 0),
    CONSTRAINT events_stream_names_account CHECK (stream = split_part(stream, '-', 1) || '-' || account_id)
);

ALTER SEQUENCE events_position_seq OWNED BY events.position;

CREATE INDEX events_position_idx ON events (position);
CREATE INDEX events_tail_idx ON events (transaction_id, position);
CREATE INDEX events_category_idx ON events (category, position);

-- An event's idempotency keys, any number (see eventstore_append_v2); unique per partition, like
-- event ids, and purged with their event.
CREATE TABLE event_keys (
    account_id  text    NOT NULL,
    key         uuid    NOT NULL,
    position    bigint  NOT NULL,
    CONSTRAINT event_keys_pkey PRIMARY KEY (account_id, key)
);

-- An event's keys: for its export, and its purge.
CREATE INDEX event_keys_position_idx ON event_keys (account_id, position);

-- Append-only: ordinary code can never change or remove a row. The one sanctioned exception is
-- eventstore_purge(), which sets a transaction-local flag for its own DELETE.
CREATE FUNCTION events_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('watchledger.purge_in_progress', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'prohibited_sql_statement_attempted',
              HINT = 'Deletions go through eventstore_purge(), which leaves a tombstone.';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_forbid_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_forbid_change();

-- Appends events to one stream in one statement (so one round trip, atomically).
-- An event whose id matches a stored event's id, or one of whose keys matches a stored event's
-- key, comes back as a duplicate of it (with its position); nothing else happens for it. The
-- keys come flattened: p_keys[k] belongs to the event at 1-based index p_key_events[k]. If any
-- event is new and p_expected_version is given but is not the stream's version, one row with
-- conflict = true and the stream's version comes back and nothing is written. Two appenders
-- racing for the same version (or id, or key) make the later one fail on a unique index: the
-- caller retries in a new transaction (a retry inside this one would keep an older transaction
-- id than the winner's). Each row names the 1-based index of the input event it answers.
CREATE FUNCTION eventstore_append_v2(
    p_account_id text,
    p_stream text,
    p_expected_version bigint,
    p_event_ids uuid[],
    p_types text[],
    p_schema_versions integer[],
    p_data jsonb[],
    p_keys uuid[],
    p_key_events integer[]
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
    -- One unique-index probe per id and per key (scalar subqueries, never turned into joins):
    -- an `= ANY (array)` lookup can be planned, generically, as a scan of the account's rows
    -- with the array as a filter, and then costs more as the account's log grows.
    SELECT coalesce(array_agg(DISTINCT m.ord), '{}') INTO v_found
    FROM (
        SELECT i.ord::integer AS ord
        FROM unnest(p_event_ids) WITH ORDINALITY AS i (id, ord)
        WHERE (SELECT true FROM events e
               WHERE e.account_id = p_account_id AND e.event_id = i.id)
        UNION ALL
        SELECT k.ord
        FROM unnest(p_keys, p_key_events) AS k (key, ord)
        WHERE (SELECT true FROM event_keys s
               WHERE s.account_id = p_account_id AND s.key = k.key)
    ) m;
    IF cardinality(v_found) > 0 THEN
        -- The stored event each duplicate names: by its id, else the first by its keys.
        RETURN QUERY
            SELECT i.ord::integer, d.event_id, d.position, d.version, d.recorded_at,
                   d.transaction_id, true, false
            FROM unnest(p_event_ids) WITH ORDINALITY AS i (id, ord)
            CROSS JOIN LATERAL (
                SELECT coalesce(
                    (SELECT e.position FROM events e
                     WHERE e.account_id = p_account_id AND e.event_id = i.id),
                    (SELECT min((SELECT s.position FROM event_keys s
                                 WHERE s.account_id = p_account_id AND s.key = k.key))
                     FROM unnest(p_keys, p_key_events) AS k (key, ord)
                     WHERE k.ord = i.ord)) AS position
            ) m
            JOIN events d ON d.account_id = p_account_id AND d.position = m.position
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
                (account_id, stream, version, event_id, type, schema_version, data)
            SELECT p_account_id, p_stream, v_current + row_number() OVER (ORDER BY i.ord),
                   i.id, i.type, i.schema_version, i.data
            FROM unnest(p_event_ids, p_types, p_schema_versions, p_data)
                     WITH ORDINALITY AS i (id, type, schema_version, data, ord)
            -- Not a fresh look: an id or key committed since the lookup above must fail on its
            -- unique index (and be retried, then reported as a duplicate), not vanish.
            WHERE NOT (i.ord::integer = ANY (v_found))
            ORDER BY i.ord
            RETURNING e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
        ), answered AS (
            SELECT i.ord::integer AS ord, n.event_id, n.position, n.version, n.recorded_at,
                   n.transaction_id
            FROM inserted n
            JOIN unnest(p_event_ids) WITH ORDINALITY AS i (id, ord) ON i.id = n.event_id
        ), keyed AS (
            INSERT INTO event_keys (account_id, key, position)
            SELECT p_account_id, k.key, a.position
            FROM unnest(p_keys, p_key_events) AS k (key, ord)
            JOIN answered a ON a.ord = k.ord
        )
        SELECT a.ord, a.event_id, a.position, a.version, a.recorded_at, a.transaction_id,
               false, false
        FROM answered a;
END;
$$;

-- Appends to many streams (in watchledger: one server batch spanning many accounts) in one
-- statement: one round trip, one transaction, one commit, set-based over all its streams. Ids
-- and keys behave as in eventstore_append_v2 (a duplicate comes back as the stored event it
-- names); no expected version. p_counts[s] events and p_key_counts[s] keys belong to stream s,
-- in order; p_key_events index a key's event within its stream (1-based). The caller orders
-- the streams (by name), so that two batches touching the same streams take their locks in the
-- same order and cannot deadlock, and passes no id or key twice for one account. Each row
-- names its stream's index and the 1-based index of the input event within that stream.
CREATE FUNCTION eventstore_append_many(
    p_account_ids text[],
    p_streams text[],
    p_counts integer[],
    p_key_counts integer[],
    p_event_ids uuid[],
    p_types text[],
    p_schema_versions integer[],
    p_data jsonb[],
    p_keys uuid[],
    p_key_events integer[]
) RETURNS TABLE (
    stream_index integer,
    input_index integer,
    event_id uuid,
    event_position bigint,
    stream_version bigint,
    recorded_at timestamptz,
    transaction_id xid8,
    duplicate boolean
)
LANGUAGE sql AS $$
    WITH streams AS (
        -- Each stream with the offsets of its events and keys in the flattened arrays.
        SELECT s::integer AS s, p_account_ids[s] AS account_id, p_streams[s] AS stream,
               p_counts[s] AS events, p_key_counts[s] AS keys,
               (sum(p_counts[s]) OVER w - p_counts[s])::integer AS first_event,
               (sum(coalesce(p_key_counts[s], 0)) OVER w - coalesce(p_key_counts[s], 0))::integer
                   AS first_key
        FROM generate_subscripts(p_streams, 1) AS s
        WINDOW w AS (ORDER BY s)
    ), input AS (
        SELECT st.s, (g - st.first_event)::integer AS ord, st.account_id, st.stream,
               p_event_ids[g] AS id, p_types[g] AS type, p_schema_versions[g] AS schema_version,
               p_data[g] AS data
        FROM streams st
        CROSS JOIN LATERAL generate_series(st.first_event + 1, st.first_event + st.events) AS g
    ), keys AS (
        SELECT st.s, p_key_events[k] AS ord, st.account_id, p_keys[k] AS key
        FROM streams st
        CROSS JOIN LATERAL generate_series(st.first_key + 1, st.first_key + st.keys) AS k
    ), stored_by_key AS (
        SELECT f.s, f.ord, min(f.position) AS position
        FROM (
            SELECT k.s, k.ord,
                   (SELECT x.position FROM event_keys x
                    WHERE x.account_id = k.account_id AND x.key = k.key) AS position
            FROM keys k
        ) f
        WHERE f.position IS NOT NULL
        GROUP BY f.s, f.ord
    ), checked AS (
        SELECT i.*,
               coalesce((SELECT e.position FROM events e
                         WHERE e.account_id = i.account_id AND e.event_id = i.id),
                        b.position) AS stored
        FROM input i
        LEFT JOIN stored_by_key b ON b.s = i.s AND b.ord = i.ord
    ), versions AS (
        SELECT st.s,
               coalesce((SELECT max(e.version) FROM events e
                         WHERE e.account_id = st.account_id AND e.stream = st.stream), 0)
                   AS version
        FROM streams st
    ), inserted AS (
        INSERT INTO events AS e (account_id, stream, version, event_id, type, schema_version, data)
        SELECT c.account_id, c.stream, v.version + row_number() OVER (PARTITION BY c.s ORDER BY c.ord),
               c.id, c.type, c.schema_version, c.data
        FROM checked c
        JOIN versions v ON v.s = c.s
        -- Not a fresh look: an id or key committed since the lookups must fail on its unique
        -- index (and the call be retried, then answered as a duplicate), not vanish.
        WHERE c.stored IS NULL
        ORDER BY c.s, c.ord
        RETURNING e.account_id, e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
    ), answered AS (
        SELECT c.s, c.ord, n.event_id, n.position, n.version, n.recorded_at, n.transaction_id
        FROM inserted n
        JOIN checked c ON c.account_id = n.account_id AND c.id = n.event_id
    ), keyed AS (
        INSERT INTO event_keys (account_id, key, position)
        SELECT k.account_id, k.key, a.position
        FROM keys k
        JOIN answered a ON a.s = k.s AND a.ord = k.ord
    )
    SELECT a.s, a.ord, a.event_id, a.position, a.version, a.recorded_at, a.transaction_id, false
    FROM answered a
    UNION ALL
    SELECT c.s, c.ord, d.event_id, d.position, d.version, d.recorded_at, d.transaction_id, true
    FROM checked c
    CROSS JOIN LATERAL (
        SELECT e.event_id, e.position, e.version, e.recorded_at, e.transaction_id
        FROM events e
        WHERE e.account_id = c.account_id AND e.position = c.stored
    ) d
    WHERE c.stored IS NOT NULL
$$;

-- The previous release's append (one key an event, null for none), for its processes still
-- running during a rolling upgrade: now the same append, keys and all.
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
LANGUAGE sql AS $$
    SELECT * FROM eventstore_append_v2(
        p_account_id, p_stream, p_expected_version, p_event_ids, p_types, p_schema_versions,
        p_data,
        ARRAY(SELECT k.key FROM unnest(p_keys) WITH ORDINALITY AS k (key, ord)
              WHERE k.key IS NOT NULL ORDER BY k.ord),
        ARRAY(SELECT k.ord::integer FROM unnest(p_keys) WITH ORDINALITY AS k (key, ord)
              WHERE k.key IS NOT NULL ORDER BY k.ord))
$$;

-- The purges remove their events' keys with them. The first purge is now the second's, with
-- no expected version.
CREATE FUNCTION eventstore_purge_v2(
    p_account_id text,
    p_stream text,
    p_positions bigint[],
    p_tombstone_id uuid,
    p_tombstone_type text,
    p_tombstone_schema_version integer,
    p_tombstone_data jsonb,
    p_expected_version bigint
) RETURNS TABLE (deleted bigint, tombstone_position bigint, tombstone_version bigint,
                 tombstone_transaction_id xid8, conflict boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_deleted bigint;
    v_position bigint;
    v_transaction xid8;
BEGIN
    -- A retried purge (same tombstone id) has nothing left to do.
    SELECT e.position, e.version, e.transaction_id INTO v_position, v_current, v_transaction
    FROM events e
    WHERE e.account_id = p_account_id AND e.event_id = p_tombstone_id;
    IF FOUND THEN
        RETURN QUERY SELECT 0::bigint, v_position, v_current, v_transaction, false;
        RETURN;
    END IF;

    SELECT coalesce(max(e.version), 0) INTO v_current
    FROM events e
    WHERE e.account_id = p_account_id AND e.stream = p_stream;

    IF p_expected_version IS NOT NULL AND p_expected_version <> v_current THEN
        RETURN QUERY SELECT 0::bigint, NULL::bigint, v_current, NULL::xid8, true;
        RETURN;
    END IF;

    PERFORM set_config('watchledger.purge_in_progress', 'on', true);
    DELETE FROM events e WHERE e.account_id = p_account_id AND e.position = ANY (p_positions);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('watchledger.purge_in_progress', 'off', true);
    DELETE FROM event_keys k WHERE k.account_id = p_account_id AND k.position = ANY (p_positions);

    INSERT INTO events (account_id, stream, version, event_id, type, schema_version, data)
    VALUES (p_account_id, p_stream, v_current + 1, p_tombstone_id, p_tombstone_type,
            p_tombstone_schema_version, p_tombstone_data)
    RETURNING position, transaction_id INTO v_position, v_transaction;

    RETURN QUERY SELECT v_deleted, v_position, v_current + 1, v_transaction, false;
END;
$$;

CREATE FUNCTION eventstore_purge(
    p_account_id text,
    p_stream text,
    p_positions bigint[],
    p_tombstone_id uuid,
    p_tombstone_type text,
    p_tombstone_schema_version integer,
    p_tombstone_data jsonb
) RETURNS TABLE (deleted bigint, tombstone_position bigint, tombstone_version bigint)
LANGUAGE sql AS $$
    SELECT p.deleted, p.tombstone_position, p.tombstone_version
    FROM eventstore_purge_v2(p_account_id, p_stream, p_positions, p_tombstone_id,
                             p_tombstone_type, p_tombstone_schema_version, p_tombstone_data,
                             NULL) p
$$;
