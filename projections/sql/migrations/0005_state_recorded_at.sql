-- A state's updated_at becomes the later of the times its two deciding events (the watch record
-- and the rating that win last-writer-wins) were recorded, kept in columns of their own. Before,
-- it was the latest time any change was applied, which a set-based replay cannot reproduce
-- from the log alone; now the live fold and a replay compute it alike.
ALTER TABLE watch_state
    ADD COLUMN watch_recorded_at timestamptz,
    ADD COLUMN rate_recorded_at timestamptz;

UPDATE watch_state s SET watch_recorded_at = e.recorded_at
FROM events e
WHERE e.account_id = s.account_id AND e.position = s.watch_position;

UPDATE watch_state s SET rate_recorded_at = e.recorded_at
FROM events e
WHERE e.account_id = s.account_id AND e.position = s.rate_position;

UPDATE watch_state
SET updated_at = greatest(watch_recorded_at, rate_recorded_at)
WHERE greatest(watch_recorded_at, rate_recorded_at) IS NOT NULL;
