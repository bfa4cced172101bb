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
