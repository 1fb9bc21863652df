-- tdmon store schema, PostgreSQL. Same tables and columns as the SQLite
-- schema, with native types: timestamptz (microseconds), uuid, jsonb.

-- Every notice as received.
CREATE TABLE notices (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id      TEXT UNIQUE,
    url            TEXT        NOT NULL,
    host           TEXT        NOT NULL,
    notified_at    TIMESTAMPTZ NOT NULL,
    category       TEXT,
    reporter       TEXT,
    claimed_hoster TEXT,
    added_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (url, notified_at)
);

-- One monitored URL per notice (url_id = notices.id): the state machine's
-- snapshot plus the columns that queries need.
CREATE TABLE urls (
    url_id        BIGINT PRIMARY KEY REFERENCES notices (id),
    url           TEXT        NOT NULL,
    host          TEXT        NOT NULL,
    phase         TEXT        NOT NULL,
    next_check_at TIMESTAMPTZ,
    next_purpose  TEXT,
    baseline     TEXT,
    lease_until   TIMESTAMPTZ,
    state         JSONB       NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- "What is due now": a range scan in (next_check_at, url_id) order, stopped
-- by the LIMIT; expired URLs (no next check) are not in the index. Leased
-- rows are filtered on the way; there are at most as many as checks in
-- flight.
-- EXPLAIN of the lease (PostgreSQL 15, 1,000,000 URLs, 135,000 due, 10,000
-- leased; generic and custom plan alike; 500 URLs leased in about 30 ms):
--   Update on urls
--     InitPlan 1 (returns $2)
--       ->  Limit
--             ->  LockRows
--                   ->  Index Scan using urls_due on urls urls_1
--                         Index Cond: (next_check_at <= $1)
--                         Filter: ((lease_until IS NULL) OR (lease_until < $1))
--     ->  Index Scan using urls_pkey on urls
--           Index Cond: (url_id = ANY ($2))
CREATE INDEX urls_due ON urls (next_check_at, url_id) WHERE next_check_at IS NOT NULL;
-- Counting leased URLs (status).
CREATE INDEX urls_leased ON urls (lease_until) WHERE lease_until IS NOT NULL;
-- Counting URLs per phase (status).
CREATE INDEX urls_phase ON urls (phase);

-- Every observation, append-only, idempotent on job_id.
CREATE TABLE observations (
    observation_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         UUID        NOT NULL UNIQUE,
    url_id         BIGINT      NOT NULL REFERENCES urls (url_id),
    url            TEXT        NOT NULL,
    worker         TEXT        NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    duration_ms    BIGINT      NOT NULL,
    dns_outcome    TEXT        NOT NULL,
    dns_answers    JSONB       NOT NULL,
    ip             TEXT,
    asn            BIGINT,
    as_org         TEXT,
    hoster         TEXT,
    cdn            BOOLEAN     NOT NULL,
    http_status    INTEGER,
    content_type   TEXT,
    content_length BIGINT,
    etag           TEXT,
    last_modified  TEXT,
    location       TEXT,
    redirects      JSONB,
    tls_error      TEXT,
    fingerprint    TEXT,
    outcome        TEXT        NOT NULL,
    verdict        TEXT        NOT NULL,
    stored_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX observations_url ON observations (url_id, started_at);

-- The outbox of state-change events.
CREATE TABLE events (
    event_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url_id     BIGINT      NOT NULL REFERENCES urls (url_id),
    kind       TEXT        NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    payload    JSONB       NOT NULL,
    published  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_unpublished ON events (event_id) WHERE NOT published;
CREATE INDEX events_url ON events (url_id);
