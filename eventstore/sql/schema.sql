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
    -- A second idempotency key (see eventstore_append).
    idempotency_key uuid,
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
CREATE UNIQUE INDEX events_idempotency_key_key ON events (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

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

-- The one sanctioned way to remove events: deletes exactly the named rows of one account and
-- appends a tombstone to p_stream, in the caller's transaction. The tombstone takes the next
-- version, so a stream's versions are never reused; its id makes a retried purge a no-op.
CREATE FUNCTION eventstore_purge(
    p_account_id text,
    p_stream text,
    p_positions bigint[],
    p_tombstone_id uuid,
    p_tombstone_type text,
    p_tombstone_schema_version integer,
    p_tombstone_data jsonb
) RETURNS TABLE (deleted bigint, tombstone_position bigint, tombstone_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_deleted bigint;
    v_position bigint;
BEGIN
    -- A retried purge (same tombstone id) has nothing left to do.
    SELECT e.position, e.version INTO v_position, v_current
    FROM events e
    WHERE e.account_id = p_account_id AND e.event_id = p_tombstone_id;
    IF FOUND THEN
        RETURN QUERY SELECT 0::bigint, v_position, v_current;
        RETURN;
    END IF;

    SELECT coalesce(max(e.version), 0) INTO v_current
    FROM events e
    WHERE e.account_id = p_account_id AND e.stream = p_stream;

    PERFORM set_config('watchledger.purge_in_progress', 'on', true);
    DELETE FROM events e WHERE e.account_id = p_account_id AND e.position = ANY (p_positions);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('watchledger.purge_in_progress', 'off', true);

    INSERT INTO events (account_id, stream, version, event_id, type, schema_version, data)
    VALUES (p_account_id, p_stream, v_current + 1, p_tombstone_id, p_tombstone_type,
            p_tombstone_schema_version, p_tombstone_data)
    RETURNING position INTO v_position;

    RETURN QUERY SELECT v_deleted, v_position, v_current + 1;
END;
$$;

-- The purge with an expected stream version (a concurrent append cannot slip past it); see
-- migration 0003.
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

    INSERT INTO events (account_id, stream, version, event_id, type, schema_version, data)
    VALUES (p_account_id, p_stream, v_current + 1, p_tombstone_id, p_tombstone_type,
            p_tombstone_schema_version, p_tombstone_data)
    RETURNING position, transaction_id INTO v_position, v_transaction;

    RETURN QUERY SELECT v_deleted, v_position, v_current + 1, v_transaction, false;
END;
$$;
