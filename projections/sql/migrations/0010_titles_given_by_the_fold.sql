-- Identity's cost on the write path (issue 10's benchmark), with the title of each set of ids
-- given by the caller (projections/state.py: the first of its ids in shown order, as
-- title_id_rank orders them; projections/domain/titles.py's id_rank, kept equal for any text by
-- a test).
--
-- title_link_fresh() makes a batch's first links as title_link_new() did, link by link: each
-- other id of a set goes to the set's title unless the title is itself linked to another, or
-- the id is linked already, is a title with links, has a state or a pending change (then
-- title_link() merges them in the fold). Linking some ids of a set first is what title_link()
-- would do for them (nothing of theirs to move), and the fold links the rest. No set numbers,
-- no grouping, no join back; the caller gives sets no two of which share an id.
--
-- title_link_titled() is the fold's title_link() for an action whose title the caller names:
-- when every other id of the action is already linked to that title (one look at that title's
-- links: after the batch's first links, or any later action on a known title), that is its
-- title and nothing moves (a title's own id has no link, so it names no other); anything else
-- is title_link()'s. It costs about half of title_link()'s look-up of each id, whose DISTINCT
-- aggregate dominates.
--
-- Both keep statistics out of it (seqscan off: a plan cached while the tables were small would
-- scan an account's rows) and JIT off (a disabled scan's cost would otherwise make a statement
-- of microseconds compile). title_link_new() stays, for a previous release's processes.
CREATE FUNCTION title_link_fresh(p_accounts text[], p_titles text[], p_ids text[]) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v_linked bigint;
BEGIN
    -- Scalar subqueries, each a probe of one key (an EXISTS could be planned as a hash of a
    -- whole table). A plain insert with a probe of the id's key costs less than ON CONFLICT's
    -- speculative insertion.
    INSERT INTO title_ids (account_id, id, title)
    SELECT g.account_id, g.id, g.title
    FROM unnest(p_accounts, p_titles, p_ids) AS g (account_id, title, id)
    WHERE NOT coalesce((SELECT true FROM title_ids t
                        WHERE t.account_id = g.account_id AND t.id = g.title), false)
      AND NOT coalesce((SELECT true FROM title_ids t
                        WHERE t.account_id = g.account_id AND t.id = g.id), false)
      AND NOT coalesce((SELECT true FROM title_ids t
                        WHERE t.account_id = g.account_id AND t.title = g.id LIMIT 1), false)
      AND NOT coalesce((SELECT true FROM watch_state s
                        WHERE s.account_id = g.account_id AND s.guid = g.id), false)
      AND NOT coalesce((SELECT true FROM sync_access a
                        JOIN sync_queue q ON q.account_id = a.account_id
                                         AND q.server_id = a.server_id
                                         AND q.kind = 'state' AND q.guid = g.id
                        WHERE a.account_id = g.account_id LIMIT 1), false);
    GET DIAGNOSTICS v_linked = ROW_COUNT;
    RETURN v_linked;
END;
$$;

CREATE FUNCTION title_link_titled(
    p_account text, p_title text, p_others text[], p_queue boolean
) RETURNS text
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
BEGIN
    -- Each other id linked to the title (a row an id; an id given twice makes the count fall
    -- short) makes it a title with links, and a title's own id has none: they all name it.
    IF cardinality(p_others) > 0
       AND (SELECT count(*) FROM title_ids t
            WHERE t.account_id = p_account AND t.title = p_title AND t.id = ANY (p_others))
           = cardinality(p_others) THEN
        RETURN p_title;
    END IF;
    RETURN title_link(p_account, p_title || p_others, p_queue);
END;
$$;
