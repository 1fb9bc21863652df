-- Counts kept as they change, in the transactions that change them, so that
-- status costs the same at any size (counting a million rows took about a
-- second on PostgreSQL). Names: `urls:<phase>`, `observations`, `events`,
-- `unattributed`. A count is the sum over its shards; SQLite uses shard 0 only
-- (one writer), PostgreSQL spreads concurrent writers over a few shards so
-- that they do not queue on one row.
CREATE TABLE counters (
    name  TEXT    NOT NULL,
    shard INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
);
INSERT INTO counters (name, shard, value)
    SELECT 'urls:' || phase, 0, COUNT(*) FROM urls GROUP BY phase;
INSERT INTO counters (name, shard, value)
    SELECT 'observations', 0, COUNT(*) FROM observations;
INSERT INTO counters (name, shard, value)
    SELECT 'events', 0, COUNT(*) FROM events;
INSERT INTO counters (name, shard, value)
    SELECT 'unattributed', 0, COUNT(*) FROM observations
    WHERE outcome <> 'not_checked' AND asn IS NULL AND hoster IS NULL
      AND (ip IS NOT NULL OR dns_answers <> '[]');
