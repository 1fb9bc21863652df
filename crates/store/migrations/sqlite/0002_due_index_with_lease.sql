-- The lease skips URLs whose lease has not run out. With lease_until in the
-- index, that test is made on the index entry instead of a table row per
-- leased URL: with 20,000 leases in flight, finding the next 1,000 due URLs
-- went from 50-78 ms to about 1 ms (1,000,000 URLs; docs/BENCHMARKS.md).
DROP INDEX urls_due;
CREATE INDEX urls_due ON urls (next_check_at, lease_until) WHERE next_check_at IS NOT NULL;
