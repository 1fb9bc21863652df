-- Each URL's state now carries the verdict, address and network of its
-- checks (UrlState::addresses, written by the collector as it applies each
-- check), so that the report reads states alone. This fills them in for the
-- states written before: every stored check that reached an address or
-- named a network, in check order, each left out when it equals the one
-- before it, as the collector does. So the figures stay those the previous
-- release gave. One UPDATE, so that each row is rewritten once.
UPDATE urls u
SET state = jsonb_set(u.state, '{addresses}', coalesce(kept.addresses, '[]'::jsonb))
FROM urls every
LEFT JOIN (
    SELECT url_id,
           jsonb_agg(jsonb_build_array(verdict, ip, asn, as_org) ORDER BY started_at, job_id)
               AS addresses
    FROM (
        SELECT url_id, started_at, job_id, verdict, ip, asn, as_org,
               -- The first check's lag is NULL, and its verdict never is.
               (verdict, ip, asn, as_org) IS DISTINCT FROM
                   (lag(verdict) OVER w, lag(ip) OVER w, lag(asn) OVER w, lag(as_org) OVER w)
                   AS changed
        FROM observations
        WHERE ip IS NOT NULL OR asn IS NOT NULL
        WINDOW w AS (PARTITION BY url_id ORDER BY started_at, job_id)
    ) checks
    WHERE changed
    GROUP BY url_id
) kept ON kept.url_id = every.url_id
WHERE every.url_id = u.url_id;

-- The index of observations by URL carried those columns for the report's
-- read of them; it no longer needs to.
DROP INDEX observations_url;
CREATE INDEX observations_url ON observations (url_id, started_at, job_id);
