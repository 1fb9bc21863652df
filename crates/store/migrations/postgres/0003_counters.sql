-- Counts kept as they change, in the transactions that change them, so that
-- status costs the same at any size (counting a million rows took about a
-- second). Names: `urls:<phase>`, `observations`, `events`, `unattributed`.
-- A count is the sum over its shards: concurrent writers (several
-- collectors) pick a shard at random and so rarely queue on one row.
CREATE TABLE counters (
    name  TEXT   NOT NULL,
    shard INT    NOT NULL,
    value BIGINT NOT NULL,
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
      AND (ip IS NOT NULL OR dns_answers <> '[]'::jsonb);
