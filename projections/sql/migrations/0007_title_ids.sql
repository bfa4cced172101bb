-- One title, many ids, per account (product rule 1b). title_ids (the watch state projection's)
-- links each id of an account's multi-id titles to its title: the title's shown guid, the first
-- of its ids in shown order (title_id_rank, then text). A title's own guid has no row, and a
-- title named by one id only has none: an id without a row is its own title. watch_state and
-- sync_queue are keyed by the title; the history and activity keep the id each action used and
-- are read through title_ids.
--
-- watch_history now keeps every record, baseline records flagged: whether a baseline record
-- counts (only as the first record of its title, rule 7) is decided when the history is read,
-- over the title as it is linked then, so a merge treats the records as if the titles had
-- always been one.
CREATE TABLE title_ids (
    account_id      text        NOT NULL,
    id              text        NOT NULL,
    title           text        NOT NULL,
    CONSTRAINT title_ids_pkey PRIMARY KEY (account_id, id)
);

CREATE INDEX title_ids_title_idx ON title_ids (account_id, title);

ALTER TABLE watch_history ADD COLUMN baseline boolean NOT NULL DEFAULT false;

-- Where an id goes among its title's ids: plex, imdb, tmdb, tvdb, then episode-by-numbers ids
-- (projections/domain/titles.py's id_rank; a test keeps the two equal); then by text ("C").
CREATE FUNCTION title_id_rank(p_id text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_id ~ '^.+/s(0|[1-9][0-9]{0,17})e(0|[1-9][0-9]{0,17})$' THEN 4
        WHEN starts_with(p_id, 'plex://') THEN 0
        WHEN starts_with(p_id, 'imdb://') THEN 1
        WHEN starts_with(p_id, 'tmdb://') THEN 2
        WHEN starts_with(p_id, 'tvdb://') THEN 3
        ELSE 5
    END
$$;

-- Queue a title's state for every server of the account, while sync is on (rule 8).
CREATE FUNCTION state_queue(p_account text, p_title text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
    SELECT p_account, a.server_id, 'state', p_title, nextval('sync_queue_seq')
    FROM sync_accounts sa
    JOIN sync_access a ON a.account_id = sa.account_id
    WHERE sa.account_id = p_account AND sa.sync_enabled
    ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE SET seq = excluded.seq;
END;
$$;

-- Fold a watch record into a title's state if it is the latest by (at, position) (rule 4),
-- queueing the new state when p_queue.
CREATE FUNCTION state_put_watch(
    p_account text, p_title text, p_kind text, p_watched boolean, p_at timestamptz,
    p_position bigint, p_recorded timestamptz, p_queue boolean
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO watch_state AS s
        (account_id, guid, kind, watched, watched_at, watch_position, watch_recorded_at, updated_at)
    VALUES (p_account, p_title, p_kind, p_watched, p_at, p_position, p_recorded, p_recorded)
    ON CONFLICT (account_id, guid) DO UPDATE
    SET watched = excluded.watched,
        watched_at = excluded.watched_at,
        watch_position = excluded.watch_position,
        watch_recorded_at = excluded.watch_recorded_at,
        updated_at = greatest(excluded.watch_recorded_at, s.rate_recorded_at)
    WHERE s.watch_position IS NULL
       OR (excluded.watched_at, excluded.watch_position) > (s.watched_at, s.watch_position);
    IF FOUND AND p_queue THEN
        PERFORM state_queue(p_account, p_title);
    END IF;
END;
$$;

-- Fold a rating (null: unrated) into a title's state like state_put_watch.
CREATE FUNCTION state_put_rate(
    p_account text, p_title text, p_kind text, p_rating smallint, p_at timestamptz,
    p_position bigint, p_recorded timestamptz, p_queue boolean
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO watch_state AS s
        (account_id, guid, kind, rating, rated_at, rate_position, rate_recorded_at, updated_at)
    VALUES (p_account, p_title, p_kind, p_rating, p_at, p_position, p_recorded, p_recorded)
    ON CONFLICT (account_id, guid) DO UPDATE
    SET rating = excluded.rating,
        rated_at = excluded.rated_at,
        rate_position = excluded.rate_position,
        rate_recorded_at = excluded.rate_recorded_at,
        updated_at = greatest(s.watch_recorded_at, excluded.rate_recorded_at)
    WHERE s.rate_position IS NULL
       OR (excluded.rated_at, excluded.rate_position) > (s.rated_at, s.rate_position);
    IF FOUND AND p_queue THEN
        PERFORM state_queue(p_account, p_title);
    END IF;
END;
$$;

-- The title the ids of one action name for an account, linking them (rule 1b): ids that come
-- together name one title, and titles sharing an id are one. When the ids join titles the
-- account had apart (an id it never used is a title of its own), they become one title under
-- the first of their guids in shown order: the others' ids move to it, and their states fold
-- into its state by last-writer-wins, part by part, exactly as their events would have. With
-- p_queue (the live fold; a rebuild passes false and leaves the queues alone), their pending
-- changes move to it, and when two of them had a state, the merged state is queued once.
-- Its statements look up a few rows of one account by key: they are planned so (no sequential
-- scan), however few rows the statistics last saw (a plan cached while the table was small
-- would otherwise scan the account's rows on every call as they grow).
CREATE FUNCTION title_link(p_account text, p_ids text[], p_queue boolean) RETURNS text
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_titles text[];
    v_title text;
    v_stated integer;
    v_gone record;
BEGIN
    -- One primary-key lookup per id, whatever the statistics say of the account's rows.
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
    UPDATE title_ids SET title = v_title
    WHERE account_id = p_account AND title = ANY (v_titles) AND title <> v_title;
    INSERT INTO title_ids (account_id, id, title)
    SELECT p_account, x, v_title FROM unnest(v_titles) AS x WHERE x <> v_title;
    SELECT count(*) INTO v_stated FROM watch_state
    WHERE account_id = p_account AND guid = ANY (v_titles);
    FOR v_gone IN
        DELETE FROM watch_state
        WHERE account_id = p_account AND guid = ANY (v_titles) AND guid <> v_title
        RETURNING kind, watched, watched_at, watch_position, watch_recorded_at,
                  rating, rated_at, rate_position, rate_recorded_at
    LOOP
        IF v_gone.watch_position IS NOT NULL THEN
            PERFORM state_put_watch(p_account, v_title, v_gone.kind, v_gone.watched,
                                    v_gone.watched_at, v_gone.watch_position,
                                    v_gone.watch_recorded_at, false);
        END IF;
        IF v_gone.rate_position IS NOT NULL THEN
            PERFORM state_put_rate(p_account, v_title, v_gone.kind, v_gone.rating,
                                   v_gone.rated_at, v_gone.rate_position,
                                   v_gone.rate_recorded_at, false);
        END IF;
    END LOOP;
    IF p_queue THEN
        WITH gone AS (
            DELETE FROM sync_queue q
            USING sync_access a, unnest(v_titles) AS o (title)
            WHERE a.account_id = p_account AND o.title <> v_title
              AND q.account_id = p_account AND q.server_id = a.server_id
              AND q.kind = 'state' AND q.guid = o.title
            RETURNING q.server_id, q.seq
        )
        INSERT INTO sync_queue AS q (account_id, server_id, kind, guid, seq)
        SELECT p_account, server_id, 'state', v_title, max(seq) FROM gone GROUP BY server_id
        ON CONFLICT (account_id, server_id, kind, guid) DO UPDATE
        SET seq = greatest(q.seq, excluded.seq);
        IF v_stated >= 2 THEN
            PERFORM state_queue(p_account, v_title);
        END IF;
    END IF;
    RETURN v_title;
END;
$$;

-- Every id of an account's title (its guid first), in shown order.
CREATE FUNCTION title_ids_of(p_account text, p_title text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(x ORDER BY title_id_rank(x), x COLLATE "C")
    FROM (
        SELECT p_title AS x
        UNION
        SELECT t.id FROM title_ids t WHERE t.account_id = p_account AND t.title = p_title
    ) ids
$$;

-- The title an id names for an account (itself, if it is linked to none).
CREATE FUNCTION title_of(p_account text, p_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT t.title FROM title_ids t WHERE t.account_id = p_account AND t.id = p_id), p_id)
$$;

-- What is there already. Baseline records get their flag, and the baseline records the history
-- used to leave out are recorded (the reads decide which count, as a replay would give them).
UPDATE watch_history h SET baseline = true
FROM events e
WHERE e.account_id = h.account_id AND e.position = h.position
  AND jsonb_typeof(e.data -> 'baseline') = 'boolean' AND (e.data ->> 'baseline')::boolean;

INSERT INTO watch_history (account_id, position, event_id, guid, kind, type, at, baseline)
SELECT e.account_id, e.position, e.event_id, e.data ->> 'guid',
       CASE WHEN e.data ->> 'guid' ~ '/s[0-9]+e[0-9]+$' THEN 'episode'
            ELSE split_part(e.data ->> 'guid', '/', 3) END,
       e.type, (e.data ->> 'at')::timestamptz, true
FROM events e
JOIN projection_checkpoints c ON c.name = 'watch_history'
WHERE (e.transaction_id, e.position) <= (c.transaction_id, c.position)
  AND e.category = 'watch' AND e.schema_version = 1 AND e.type IN ('watched', 'unwatched')
  AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/'
  AND e.data ->> 'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$'
  AND jsonb_typeof(e.data -> 'baseline') = 'boolean' AND (e.data ->> 'baseline')::boolean
  AND (NOT e.data ? 'ids' OR (jsonb_typeof(e.data -> 'ids') = 'array' AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')))
  AND NOT EXISTS (SELECT 1 FROM projection_dead_letters d
                  WHERE d.account_id = e.account_id AND d.projection = 'watch_history'
                    AND d.position = e.position)
ON CONFLICT DO NOTHING;

-- The ids actions carried before they were linked (the live fold links from here on). The
-- merged states are not queued: nothing changed for the servers that had them.
SELECT count(title_link(l.account_id, l.ids, false))
FROM (
    SELECT DISTINCT e.account_id,
           ARRAY[e.data ->> 'guid'] || ARRAY(SELECT jsonb_array_elements_text(e.data -> 'ids')) AS ids
    FROM events e
    JOIN projection_checkpoints c ON c.name = 'watch_state'
    WHERE (e.transaction_id, e.position) <= (c.transaction_id, c.position)
      AND e.category = 'watch' AND e.schema_version = 1
      AND e.type IN ('watched', 'unwatched', 'watch_state_kept', 'rated', 'unrated')
      AND e.data ->> 'guid' ~ '^[a-z]+://[a-z]+/'
      AND jsonb_typeof(e.data -> 'ids') = 'array' AND jsonb_array_length(e.data -> 'ids') > 0
      AND NOT jsonb_path_exists(e.data -> 'ids', '$[*] ? (@.type() != "string")')
      AND NOT EXISTS (SELECT 1 FROM projection_dead_letters d
                      WHERE d.account_id = e.account_id AND d.projection = 'watch_state'
                        AND d.position = e.position)
) l;
