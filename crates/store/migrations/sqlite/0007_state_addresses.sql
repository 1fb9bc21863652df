-- Each URL's state now carries the verdict, address and network of its
-- checks (UrlState::addresses, written by the collector as it applies each
-- check), so that the report reads states alone. This fills them in for the
-- states written before: every stored check that reached an address or
-- named a network, in check order, each left out when it equals the one
-- before it, as the collector does. So the figures stay those the previous
-- release gave.
UPDATE urls SET state = json_set(state, '$.addresses', json('[]'));

WITH checks AS (
    SELECT url_id, started_at, job_id, verdict, ip, asn, as_org,
           -- The first check's lag is NULL, and its verdict never is.
           verdict IS NOT lag(verdict) OVER w
               OR ip IS NOT lag(ip) OVER w
               OR asn IS NOT lag(asn) OVER w
               OR as_org IS NOT lag(as_org) OVER w AS changed
    FROM observations
    WHERE ip IS NOT NULL OR asn IS NOT NULL
    WINDOW w AS (PARTITION BY url_id ORDER BY started_at, job_id)
),
kept AS (
    SELECT url_id,
           json_group_array(json_array(verdict, ip, asn, as_org) ORDER BY started_at, job_id)
               AS addresses
    FROM checks
    WHERE changed
    GROUP BY url_id
)
UPDATE urls SET state = json_set(state, '$.addresses', json(kept.addresses))
FROM kept
WHERE kept.url_id = urls.url_id;

-- The index of observations by URL carried those columns for the report's
-- read of them; it no longer needs to.
DROP INDEX observations_url;
CREATE INDEX observations_url ON observations (url_id, started_at, job_id);
