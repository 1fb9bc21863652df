-- When each check had its answer: the late end of every bracket
-- (docs/MEASUREMENT.md). Rows stored before the column existed get their
-- start plus their duration, which is what the answer time was taken as then.
ALTER TABLE observations ADD COLUMN answered_at TIMESTAMPTZ;
UPDATE observations SET answered_at = started_at + duration_ms * INTERVAL '1 millisecond';
ALTER TABLE observations ALTER COLUMN answered_at SET NOT NULL;
