-- Appends to many streams (in watchledger: one server batch spanning many accounts) in one
-- statement: one round trip, one transaction, one commit, where a loop of single-stream appends
-- would commit once a stream. Each stream's slice of the flattened arrays goes through
-- eventstore_append_v2, so ids, keys and versions behave exactly as there (no expected
-- version: these are streams whose events need none). p_counts[s] events and p_key_counts[s]
-- keys belong to stream s, in order; p_key_events index a key's event within its stream
-- (1-based). The caller orders the streams (by name), so that two batches touching the same
-- streams take their locks in the same order and cannot deadlock. Each row names its stream's
-- index and the 1-based index of the input event within that stream.
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
LANGUAGE plpgsql AS $$
DECLARE
    v_first integer := 1;
    v_key integer := 1;
    v_last integer;
    v_key_last integer;
BEGIN
    FOR s IN 1 .. coalesce(cardinality(p_streams), 0) LOOP
        v_last := v_first + p_counts[s] - 1;
        v_key_last := v_key + p_key_counts[s] - 1;
        RETURN QUERY
            SELECT s, a.input_index, a.event_id, a.event_position, a.stream_version,
                   a.recorded_at, a.transaction_id, a.duplicate
            FROM eventstore_append_v2(
                p_account_ids[s], p_streams[s], NULL,
                p_event_ids[v_first:v_last], p_types[v_first:v_last],
                p_schema_versions[v_first:v_last], p_data[v_first:v_last],
                coalesce(p_keys[v_key:v_key_last], '{}'),
                coalesce(p_key_events[v_key:v_key_last], '{}')
            ) a;
        v_first := v_last + 1;
        v_key := v_key_last + 1;
    END LOOP;
END;
$$;
