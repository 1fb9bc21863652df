-- tdmon store schema, SQLite.
-- Times are INTEGER microseconds since the Unix epoch (UTC); nested parts of
-- messages are JSON text. The PostgreSQL schema has the same tables and
-- columns, with native types.

-- Every notice as received.
CREATE TABLE notices (
    id             INTEGER PRIMARY KEY,
    notice_id      TEXT UNIQUE,
    url            TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    notified_at    INTEGER NOT NULL,
    category       TEXT,
    reporter       TEXT,
    claimed_hoster TEXT,
    added_at       INTEGER NOT NULL,
    UNIQUE (url, notified_at)
);

-- One monitored URL per notice (url_id = notices.id): the state machine's
-- snapshot plus the columns that queries need.
CREATE TABLE urls (
    url_id        INTEGER PRIMARY KEY REFERENCES notices (id),
    url           TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    phase         TEXT    NOT NULL,
    next_check_at INTEGER,
    next_purpose  TEXT,
    baseline     TEXT,
    lease_until   INTEGER,
    state         TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- "What is due now": a range scan in next_check_at order. url_id is the rowid,
-- which every SQLite index entry ends with, so the index also yields the
-- (next_check_at, url_id) order without a sort. Leased rows are filtered on
-- the way; there are at most as many as checks in flight.
-- EXPLAIN QUERY PLAN of the lease (SQLite 3.40, 1,000,000 URLs, 135,000 due,
-- 10,000 leased; 500 URLs leased in about 65 ms):
--   SEARCH urls USING INTEGER PRIMARY KEY (rowid=?)
--   LIST SUBQUERY 1
--     SEARCH urls USING INDEX urls_due (next_check_at<?)
CREATE INDEX urls_due ON urls (next_check_at) WHERE next_check_at IS NOT NULL;
-- Counting leased URLs (status).
CREATE INDEX urls_leased ON urls (lease_until) WHERE lease_until IS NOT NULL;
-- Counting URLs per phase (status) from the index alone.
CREATE INDEX urls_phase ON urls (phase);

-- Every observation, append-only, idempotent on job_id.
CREATE TABLE observations (
    observation_id INTEGER PRIMARY KEY,
    job_id         BLOB    NOT NULL UNIQUE,
    url_id         INTEGER NOT NULL REFERENCES urls (url_id),
    url            TEXT    NOT NULL,
    worker         TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    dns_outcome    TEXT    NOT NULL,
    dns_answers    TEXT    NOT NULL,
    ip             TEXT,
    asn            INTEGER,
    as_org         TEXT,
    hoster         TEXT,
    cdn            INTEGER NOT NULL,
    http_status    INTEGER,
    content_type   TEXT,
    content_length INTEGER,
    etag           TEXT,
    last_modified  TEXT,
    location       TEXT,
    redirects      TEXT,
    tls_error      TEXT,
    fingerprint    TEXT,
    outcome        TEXT    NOT NULL,
    verdict        TEXT    NOT NULL,
    stored_at      INTEGER NOT NULL
);
CREATE INDEX observations_url ON observations (url_id, started_at);

-- The outbox of state-change events.
CREATE TABLE events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    url_id     INTEGER NOT NULL REFERENCES urls (url_id),
    kind       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    payload    TEXT    NOT NULL,
    published  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_unpublished ON events (event_id) WHERE NOT published;
CREATE INDEX events_url ON events (url_id);
