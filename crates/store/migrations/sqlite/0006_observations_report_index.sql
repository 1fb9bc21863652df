-- The report reads, per URL in id order, the verdict, address and network of
-- its checks in check order (Store::states_with_addresses_after). With these
-- columns in the index, that read is a scan of the index alone; before, each
-- observation cost a lookup of its wide row, scattered over the table. The
-- index also serves every other read of a URL's observations.
DROP INDEX observations_url;
CREATE INDEX observations_url
    ON observations (url_id, started_at, job_id, verdict, ip, asn, as_org);
