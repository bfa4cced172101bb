-- Friendships and activity feeds (product rule 9): two projections. friend_requests (the
-- friendships projection) holds each request that stands; both rows of a pair make friends.
-- activity and activity_profiles (the activity projection) hold each account's watched and
-- rated actions and its visibility, which feeds apply when they are read. Both projections
-- start from the beginning of the log (no checkpoint yet), so they fold what is there already.
CREATE TABLE friend_requests (
    account_id      text        NOT NULL,
    friend_id       text        NOT NULL,
    position        bigint      NOT NULL,
    CONSTRAINT friend_requests_pkey PRIMARY KEY (account_id, friend_id)
);

CREATE INDEX friend_requests_friend_idx ON friend_requests (friend_id, account_id);

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
