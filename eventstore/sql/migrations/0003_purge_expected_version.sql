-- A purge that a concurrent append cannot slip past. Deletions (product rules 10 and 11) choose
-- the rows to remove from what the stream held when they read it; an append committed since then
-- would escape the purge yet fall before its tombstone. With p_expected_version, a stream that
-- moved on makes the purge write nothing and answer conflict = true (the caller reads again
-- and retries); a racing append still uncommitted is caught by the unique (stream, version)
-- index, as for appends. A new name, not a changed eventstore_purge(): a process of the
-- previous release may still call that one during a rolling upgrade.
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
