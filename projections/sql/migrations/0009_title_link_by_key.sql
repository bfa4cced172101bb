-- title_link() looks up each of a merge's titles by its key. Its `= ANY (titles)` statements
-- were planned, generically, as scans of all of the account's links or states with the titles
-- as a filter: each first link of a new title then cost more as the account's library grew
-- (2.7 ms a call at 3,000 titles; 0.2 ms now, flat). A new title's links are written in the
-- statement that finds what its titles bring, and the rest runs only for what they bring.
--
-- title_link_new() links a batch's new titles at once, before its folds (the watch state
-- projection's prepare): their folds then find them linked, the cheapest kind of call.
CREATE OR REPLACE FUNCTION title_link(p_account text, p_ids text[], p_queue boolean) RETURNS text
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_titles text[];
    v_title text;
    v_other text;
    v_server text;
    v_stated integer;
    v_linked integer;
    v_gone record;
BEGIN
    -- The titles the ids name now: one primary-key lookup per id, whatever the statistics say
    -- of the account's rows.
    SELECT array_agg(DISTINCT coalesce(
               (SELECT t.title FROM title_ids t WHERE t.account_id = p_account AND t.id = i.id),
               i.id))
    INTO v_titles
    FROM unnest(p_ids) AS i (id);
    IF cardinality(v_titles) = 1 THEN
        RETURN v_titles[1];
    END IF;
    SELECT x INTO v_title FROM unnest(v_titles) AS x
    ORDER BY title_id_rank(x), x COLLATE "C"
    LIMIT 1;
    -- What the titles bring (links to the others, states: one probe a key), as the others'
    -- ids link to the title.
    WITH brought AS (
        SELECT count(*) FILTER (WHERE x.stated) AS stated,
               count(*) FILTER (WHERE x.linked) AS linked
        FROM (
            SELECT (SELECT true FROM watch_state s
                    WHERE s.account_id = p_account AND s.guid = o.title) AS stated,
                   o.title <> v_title AND (SELECT true FROM title_ids t
                                           WHERE t.account_id = p_account AND t.title = o.title
                                           LIMIT 1) AS linked
            FROM unnest(v_titles) AS o (title)
        ) x
    ), linking AS (
        INSERT INTO title_ids (account_id, id, title)
        SELECT p_account, o, v_title FROM unnest(v_titles) AS o WHERE o <> v_title
    )
    SELECT b.stated, b.linked INTO v_stated, v_linked FROM brought b;
    FOREACH v_other IN ARRAY v_titles LOOP
        CONTINUE WHEN v_other = v_title;
        IF v_linked > 0 THEN
            UPDATE title_ids SET title = v_title
            WHERE account_id = p_account AND title = v_other;
        END IF;
        IF v_stated > 0 THEN
            DELETE FROM watch_state WHERE account_id = p_account AND guid = v_other
            RETURNING kind, watched, watched_at, watch_position, watch_recorded_at,
                      rating, rated_at, rate_position, rate_recorded_at
            INTO v_gone;
            IF FOUND AND v_gone.watch_position IS NOT NULL THEN
                PERFORM state_put_watch(p_account, v_title, v_gone.kind, v_gone.watched,
                                        v_gone.watched_at, v_gone.watch_position,
                                        v_gone.watch_recorded_at, false);
            END IF;
            IF FOUND AND v_gone.rate_position IS NOT NULL THEN
                PERFORM state_put_rate(p_account, v_title, v_gone.kind, v_gone.rating,
                                       v_gone.rated_at, v_gone.rate_position,
                                       v_gone.rate_recorded_at, false);
            END IF;
        END IF;
    END LOOP;
    IF p_queue THEN
        -- The others' pending changes move to the title, for each server of the account
        -- (all of the key but the title given: a probe of the queue's primary key).
        FOR v_server IN
            SELECT a.server_id FROM sync_access a WHERE a.account_id = p_account
        LOOP
            WITH gone AS (
                DELETE FROM sync_queue q
                WHERE q.account_id = p_account AND q.server_id = v_server
                  AND q.kind = 'state' AND q.guid = ANY (v_titles) AND q.guid <> v_title
                RETURNING q.seq
            )
            INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
            SELECT p_account, v_server, 'state', v_title, max(seq) FROM gone HAVING count(*) > 0
            ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE
            SET seq = greatest(q.seq, excluded.seq);
        END LOOP;
    END IF;
    IF p_queue AND v_stated >= 2 THEN
        PERFORM state_queue(p_account, v_title);
    END IF;
    RETURN v_title;
END;
$$;

-- The first links of new titles, many at once (projections/state.py's prepare, before a batch's
-- folds): each set of ids (one account's, numbered) whose ids the account has never linked,
-- that name no title, state or pending change of its, is linked to its first id in shown order,
-- as title_link would link it. Other sets are left alone (title_link merges them in their
-- folds); the caller gives sets no two of which share an id. One probe a key for each id.
CREATE FUNCTION title_link_new(p_accounts text[], p_sets integer[], p_ids text[]) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_linked bigint;
BEGIN
    WITH given AS MATERIALIZED (
        SELECT g.account_id, g.set_no, g.id, title_id_rank(g.id) AS rank,
               coalesce((SELECT true FROM title_ids t
                         WHERE t.account_id = g.account_id AND t.id = g.id), false)
               OR coalesce((SELECT true FROM title_ids t
                            WHERE t.account_id = g.account_id AND t.title = g.id LIMIT 1), false)
               OR coalesce((SELECT true FROM watch_state s
                            WHERE s.account_id = g.account_id AND s.guid = g.id), false)
               OR coalesce((SELECT true FROM sync_access a
                            JOIN sync_queue q ON q.account_id = a.account_id
                                             AND q.server_id = a.server_id
                                             AND q.kind = 'state' AND q.guid = g.id
                            WHERE a.account_id = g.account_id LIMIT 1), false) AS known
        FROM unnest(p_accounts, p_sets, p_ids) AS g (account_id, set_no, id)
    ), fresh AS (
        SELECT g.account_id, g.set_no,
               (array_agg(g.id ORDER BY g.rank, g.id COLLATE "C"))[1] AS title
        FROM given g
        GROUP BY g.account_id, g.set_no
        HAVING count(*) > 1 AND NOT bool_or(g.known)
    )
    INSERT INTO title_ids (account_id, id, title)
    SELECT g.account_id, g.id, f.title
    FROM given g
    JOIN fresh f ON f.account_id = g.account_id AND f.set_no = g.set_no
    WHERE g.id <> f.title;
    GET DIAGNOSTICS v_linked = ROW_COUNT;
    RETURN v_linked;
END;
$$;
