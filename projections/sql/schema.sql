-- The full current schema of the projections. Kept equal to the migrations (tests/test_migrations.py).

-- How far each projection has applied the log, in tailing order (transaction id, position).
-- Global bookkeeping, not account data.
CREATE TABLE projection_checkpoints (
    name            text        NOT NULL PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    position        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Current watch state and rating per account and title, decided by last-writer-wins on the
-- action's time (ties: the later recorded, i.e. higher position). Rows stay for titles whose
-- rating was removed, so a late, older event still loses to the removal.
CREATE TABLE watch_state (
    account_id      text        NOT NULL,
    guid            text        NOT NULL,
    kind            text        NOT NULL,
    watched         boolean,
    watched_at      timestamptz,
    watch_position  bigint,
    rating          smallint,
    rated_at        timestamptz,
    rate_position   bigint,
    updated_at      timestamptz NOT NULL,
    -- When the deciding watch record and rating were recorded: updated_at is the later one.
    watch_recorded_at timestamptz,
    rate_recorded_at timestamptz,
    CONSTRAINT watch_state_pkey PRIMARY KEY (account_id, guid)
);

CREATE INDEX watch_state_updated_idx ON watch_state (account_id, updated_at);

-- Watch history: every watched and unwatched record, late ones included.
CREATE TABLE watch_history (
    account_id      text        NOT NULL,
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    guid            text        NOT NULL,
    kind            text        NOT NULL,
    type            text        NOT NULL,
    at              timestamptz NOT NULL,
    -- A baseline record (rule 7): it counts only as the first record of its title.
    baseline        boolean     NOT NULL DEFAULT false,
    CONSTRAINT watch_history_pkey PRIMARY KEY (account_id, position),
    CONSTRAINT watch_history_type_check CHECK (type IN ('watched', 'unwatched'))
);

CREATE INDEX watch_history_at_idx ON watch_history (account_id, at DESC, position DESC);
CREATE INDEX watch_history_guid_idx ON watch_history (account_id, guid, at DESC, position DESC);

-- One title, many ids, per account (rule 1b): each id of an account's multi-id titles linked to
-- its title (the title's shown guid, the first of its ids in shown order). A title's own guid
-- has no row, nor has a title named by one id only: an id without a row is its own title.
CREATE TABLE title_ids (
    account_id      text        NOT NULL,
    id              text        NOT NULL,
    title           text        NOT NULL,
    CONSTRAINT title_ids_pkey PRIMARY KEY (account_id, id)
);

CREATE INDEX title_ids_title_idx ON title_ids (account_id, title);

-- Which accounts have sync on, and which servers each account has access to (owned or shared),
-- as the projection has seen them so far.
CREATE TABLE sync_accounts (
    account_id      text        NOT NULL,
    sync_enabled    boolean     NOT NULL DEFAULT false,
    CONSTRAINT sync_accounts_pkey PRIMARY KEY (account_id)
);

CREATE TABLE sync_access (
    account_id      text        NOT NULL,
    server_id       text        NOT NULL,
    CONSTRAINT sync_access_pkey PRIMARY KEY (account_id, server_id)
);

-- Pending items, coalesced: at most one per (account, server, kind, title). A change bumps the
-- item's seq, so a server that acknowledges up to a cursor never drops a newer change, and
-- gets an unacknowledged one again. kind 'state' carries a GUID; 'baseline_request' has ''.
CREATE SEQUENCE sync_queue_seq AS bigint;

CREATE TABLE sync_queue (
    account_id      text        NOT NULL,
    server_id       text        NOT NULL,
    kind            text        NOT NULL,
    guid            text        NOT NULL,
    seq             bigint      NOT NULL,
    CONSTRAINT sync_queue_pkey PRIMARY KEY (account_id, server_id, kind, guid),
    CONSTRAINT sync_queue_kind_check CHECK (kind IN ('state', 'baseline_request'))
);

CREATE INDEX sync_queue_server_idx ON sync_queue (server_id, seq);
CREATE INDEX sync_queue_seq_idx ON sync_queue (seq);

-- Events a projection could not apply (poison events): kept with the error, so the projection
-- moves on instead of retrying one event forever and stalling every write that waits for it.
CREATE TABLE projection_dead_letters (
    account_id      text        NOT NULL,
    projection      text        NOT NULL,
    position        bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    stream          text        NOT NULL,
    type            text        NOT NULL,
    error           text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_dead_letters_pkey PRIMARY KEY (account_id, projection, position)
);

CREATE INDEX projection_dead_letters_projection_idx ON projection_dead_letters (projection);

-- Friendships (product rule 9): a row (account, friend) says the account asked the friend and
-- neither ended it since; both rows of a pair make friends.
CREATE TABLE friend_requests (
    account_id      text        NOT NULL,
    friend_id       text        NOT NULL,
    position        bigint      NOT NULL,
    CONSTRAINT friend_requests_pkey PRIMARY KEY (account_id, friend_id)
);

CREATE INDEX friend_requests_friend_idx ON friend_requests (friend_id, account_id);

-- Each account's watched and rated actions (never unwatched, unrated or baseline records), and
-- its visibility, which feeds apply when they are read.
CREATE TABLE activity (
    account_id      text        NOT NULL,
    position        bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    guid            text        NOT NULL,
    rating          smallint,
    at              timestamptz NOT NULL,
    CONSTRAINT activity_pkey PRIMARY KEY (account_id, position),
    CONSTRAINT activity_type_check CHECK (type IN ('watched', 'rated'))
);

-- Pages of one account's activity, newest first, and the per-friend legs of a feed: every
-- column a page shows is in the index, so a leg is an index-only scan of its first rows.
CREATE INDEX activity_at_idx ON activity (account_id, at DESC, position DESC)
    INCLUDE (transaction_id, event_id, type, guid, rating);
-- Streams follow new activity in the order it was applied (the log's tailing order).
CREATE INDEX activity_log_idx ON activity (transaction_id, position);

CREATE TABLE activity_profiles (
    account_id      text        NOT NULL,
    visibility      text        NOT NULL,
    CONSTRAINT activity_profiles_pkey PRIMARY KEY (account_id),
    CONSTRAINT activity_profiles_visibility_check CHECK (visibility IN ('private', 'friends', 'public'))
);

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
-- Its statements look up a few rows of one account by key, one key at a time: they are planned
-- so (no sequential scan, no `= ANY (array)` filter), however few rows the statistics last saw
-- (a plan cached while the table was small would otherwise scan the account's rows on every
-- call as they grow).
CREATE FUNCTION title_link(p_account text, p_ids text[], p_queue boolean) RETURNS text
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

-- Product rule 5 across ids: an action is a duplicate of a recorded one with the same account,
-- type, `at` to the whole second and rating, that shares any id with it. Each watch action is
-- appended with one natural key per id of its title (projections/domain/events.py's
-- natural_key; this function gives the same, and a test keeps the two equal), and the event
-- store finds a duplicate by any of them. Migration 0008 keyed the actions recorded before.
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

-- title_link_fresh() and title_link_titled(): a batch's first links and the fold's look-up when the
-- caller gives each set's title (the first of its ids in shown order; see migration 0010).
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
