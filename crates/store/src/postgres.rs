//! The distributed backend: PostgreSQL, optionally in a schema of its own.
//! Dispatchers lease with `FOR UPDATE SKIP LOCKED`; collectors lock the rows
//! of the URLs whose observations they apply.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, QueryBuilder, Row};
use tdmon_core::notice::Notice;
use tdmon_core::state::{Phase, Rules, Subject, UrlState, advance};
use tdmon_core::url::mask_url;
use tdmon_core::{Event, Observation, Outcome, UrlId};
use uuid::Uuid;

use crate::backend::{
    Candidate, Counts, EVENTS, OBSERVATIONS, STATUS_CAP, StoredKeys, UNATTRIBUTED, count,
    lease_end, phase_counter, phase_rank,
};
use crate::codec::{ObservationColumns, chunks_for, micros, name_of, parse_name, to_i64};
use crate::error::OpenError;
use crate::{AddedNotices, Applied, Capped, DueUrl, DuplicateReason, Status, StoreError};

type Db = sqlx::Postgres;
type DbRow = PgRow;
type DbTime = DateTime<Utc>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process: a role runs a handful of queries at a time.
const MAX_CONNECTIONS: u32 = 8;

/// `= ANY(ARRAY(...))` rather than `IN (...)`: the subquery becomes an init
/// plan and the update a primary-key lookup, also in the generic plan that
/// PostgreSQL may switch a prepared statement to; with `IN` the generic plan
/// is a hash semi-join over a sequential scan of `urls`.
pub(crate) const LEASE_SQL: &str = "UPDATE urls SET lease_until = $2 WHERE url_id = ANY(ARRAY(\
     SELECT url_id FROM urls \
     WHERE next_check_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
     ORDER BY next_check_at, url_id LIMIT $3 \
     FOR UPDATE SKIP LOCKED)) \
     RETURNING url_id, url, host, next_purpose, next_check_at, baseline";

const BEGIN_WRITE: &str = "BEGIN";

/// Two collectors applying observations of the same URL wait for each other
/// instead of overwriting each other's state; locking in url_id order keeps
/// them from deadlocking.
const LOCK_ROWS: &str = " FOR UPDATE";

/// One statement for the whole batch, its columns as arrays: a statement per
/// URL cost a round trip each, which bounded a collector to about 2,000
/// observations/s (docs/BENCHMARKS.md, "Distributed deployment end to end").
/// The rows are already locked, in url_id order, by the batch's `FOR UPDATE`.
async fn write_states(
    tx: &mut sqlx::Transaction<'static, Db>,
    states: &[(UrlId, UrlState)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let ids: Vec<UrlId> = states.iter().map(|(url_id, _)| *url_id).collect();
    let json: Vec<Json<&UrlState>> = states.iter().map(|(_, state)| Json(state)).collect();
    let phases: Vec<&str> = states.iter().map(|(_, s)| s.phase.as_str()).collect();
    let next_at: Vec<Option<DbTime>> = states
        .iter()
        .map(|(_, s)| s.next_check.map(|n| db_time(n.at)))
        .collect();
    let purposes: Vec<Option<String>> = states
        .iter()
        .map(|(_, s)| s.next_check.map(|n| name_of(&n.purpose)))
        .collect();
    let baselines: Vec<Option<&str>> = states
        .iter()
        .map(|(_, s)| s.baseline_fingerprint.as_deref())
        .collect();
    sqlx::query(
        "UPDATE urls AS u SET state = v.state, phase = v.phase, \
         next_check_at = v.next_check_at, next_purpose = v.next_purpose, \
         lease_until = NULL, updated_at = $7, baseline = v.baseline \
         FROM UNNEST($1::bigint[], $2::jsonb[], $3::text[], $4::timestamptz[], \
         $5::text[], $6::text[]) AS v(url_id, state, phase, next_check_at, next_purpose, baseline) \
         WHERE u.url_id = v.url_id",
    )
    .bind(ids)
    .bind(json)
    .bind(phases)
    .bind(next_at)
    .bind(purposes)
    .bind(baselines)
    .bind(db_time(now))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("updating URL states"))?;
    Ok(())
}

fn db_time(time: DateTime<Utc>) -> DbTime {
    micros(time)
}

fn from_db_time(_what: &str, time: DbTime) -> Result<DateTime<Utc>, StoreError> {
    Ok(time)
}

/// Parsed straight from the column's bytes into `T`, without a
/// `serde_json::Value` in between.
fn json_opt<T: DeserializeOwned>(
    row: &DbRow,
    column: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match row.try_get::<Option<Json<T>>, _>(column) {
        Ok(value) => Ok(value.map(|Json(v)| v)),
        Err(sqlx::Error::ColumnDecode { source, .. }) => Err(StoreError::corrupt(what, source)),
        Err(e) => Err(StoreError::query("reading a JSON column")(e)),
    }
}

/// A plain lowercase identifier, so that it needs no quoting anywhere.
fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Clone)]
pub(crate) struct PgStore {
    writer: PgPool,
    reader: PgPool,
    /// For connections outside the pools (the monitor lock).
    options: std::sync::Arc<PgConnectOptions>,
    pub(crate) url: String,
    /// The schema of its own the store was opened in, if any.
    pub(crate) schema: Option<String>,
}

impl PgStore {
    pub(crate) async fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let masked = mask_url(url).into_owned();
        let open_error = |source| StoreError::Open {
            url: masked.clone(),
            source,
        };
        let mut options = connect_options(url).map_err(open_error)?;
        if let Some(schema) = schema {
            if !valid_schema(schema) {
                return Err(StoreError::InvalidSchema(schema.to_owned()));
            }
            // Set at connection start-up, so every pooled connection has it.
            options = options.options([("search_path", schema)]);
        }
        // One connection first, so that a server that is not there is
        // reported at once; the pool would retry until its acquire timeout.
        first_connection(&options)
            .await
            .map_err(open_error)?
            .close()
            .await
            .map_err(|e| open_error(e.into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(e.into()))?;
        if let Some(schema) = schema {
            let created = sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&pool)
            .await;
            // Two roles creating one new schema at once: `IF NOT EXISTS` does
            // not hold between them, and the loser's insert into the catalog
            // fails as a duplicate. The schema is there either way.
            match created {
                Err(e) if !created_by_another(&e) => return Err(open_error(e.into())),
                _ => {}
            }
        }
        MIGRATOR.run(&pool).await.map_err(StoreError::migrate)?;
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
            options: std::sync::Arc::new(options),
            url: masked,
            schema: schema.map(str::to_owned),
        })
    }

    /// Drops the schema of its own, with every table, and closes the pool.
    pub(crate) async fn drop_schema(&self) -> Result<bool, StoreError> {
        let Some(schema) = &self.schema else {
            return Ok(false);
        };
        // The name was checked to be a plain identifier when opened.
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&self.writer)
        .await
        .map_err(StoreError::query("dropping the store's schema"))?;
        self.writer.close().await;
        Ok(true)
    }

    /// Takes the advisory lock of the store's schema on a connection of its
    /// own, held until the lock is dropped or released.
    pub(crate) async fn lock_monitor(&self) -> Result<PgConnection, StoreError> {
        let options = (*self.options).clone().application_name(LOCK_APPLICATION);
        let mut connection =
            first_connection(&options)
                .await
                .map_err(|source| StoreError::Open {
                    url: self.url.clone(),
                    source,
                })?;
        let (schema, locked): (String, bool) = sqlx::query_as(TRY_LOCK_SQL)
            .fetch_one(&mut connection)
            .await
            .map_err(StoreError::query("taking the monitor lock"))?;
        if locked {
            return Ok(connection);
        }
        let holder: Option<i32> = sqlx::query_scalar(LOCK_HOLDER_SQL)
            .fetch_optional(&mut connection)
            .await
            .map_err(StoreError::query("looking up the monitor lock's holder"))?;
        let _ = connection.close().await;
        Err(StoreError::Locked {
            store: format!("schema {schema} of {}", self.url),
            holder: holder.map_or_else(
                || "it holds the schema's advisory lock".to_owned(),
                |pid| format!("PostgreSQL backend {pid} holds the schema's advisory lock"),
            ),
        })
    }
}

/// The application name of the connection that holds the monitor lock, as
/// `pg_stat_activity` shows it.
const LOCK_APPLICATION: &str = "tdmon monitor lock";

/// The advisory lock key of the schema the tables are in (advisory locks
/// are per database, so the key needs only the schema).
macro_rules! lock_key {
    () => {
        "hashtextextended('tdmon monitor ' || coalesce(current_schema(), ''), 0)"
    };
}

const TRY_LOCK_SQL: &str = concat!(
    "SELECT coalesce(current_schema(), ''), pg_try_advisory_lock(",
    lock_key!(),
    ")"
);

/// A bigint advisory key shows in `pg_locks` as its high and low halves.
const LOCK_HOLDER_SQL: &str = concat!(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
     AND ((classid::bigint << 32) | objid::bigint) = ",
    lock_key!(),
    " LIMIT 1"
);

/// How long the first connection may take before the server counts as not
/// answering (the operating system would wait minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server that is starting up is waited for, and how often it is
/// tried again meanwhile.
const STARTUP_WAIT: Duration = Duration::from_secs(30);
const STARTUP_RETRY: Duration = Duration::from_millis(500);

/// The connection parameters the driver understands (sqlx 0.9). Any other
/// is refused here: the driver would ignore it and log its value, which may
/// be a password.
const KNOWN_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

fn connect_options(url: &str) -> Result<PgConnectOptions, OpenError> {
    if let Ok(parsed) = url::Url::parse(url) {
        for (key, _) in parsed.query_pairs() {
            // `options[NAME]=VALUE` sets one server option.
            let known = KNOWN_PARAMETERS.contains(&key.as_ref())
                || (key.starts_with("options[") && key.ends_with(']'));
            if !known {
                return Err(OpenError::UnknownParameter(key.into_owned()));
            }
        }
    }
    PgConnectOptions::from_str(url).map_err(|e| OpenError::Url(e.into()))
}

/// `HOST:PORT`, or the socket path, for messages.
fn address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// One connection: an error at once when nothing listens, after
/// [`CONNECT_TIMEOUT`] when nothing answers; a server that says it is
/// starting up is tried again for [`STARTUP_WAIT`].
async fn first_connection(options: &PgConnectOptions) -> Result<PgConnection, OpenError> {
    let started = tokio::time::Instant::now();
    loop {
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => error,
            Err(_) => {
                return Err(OpenError::NoAnswer {
                    addr: address(options),
                    after: CONNECT_TIMEOUT,
                });
            }
        };
        if let sqlx::Error::Io(io) = &error
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            )
        {
            return Err(OpenError::Refused {
                addr: address(options),
            });
        }
        // 57P03 cannot_connect_now: the server is starting up (or shutting down).
        let starting = error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "57P03");
        if !starting {
            return Err(error.into());
        }
        if started.elapsed() >= STARTUP_WAIT {
            return Err(OpenError::NotReady {
                addr: address(options),
                after: STARTUP_WAIT,
                source: error.into(),
            });
        }
        tokio::time::sleep(STARTUP_RETRY).await;
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

/// Concurrent writers (collectors) add to one of a few rows per counter, so
/// that they seldom wait for each other's row lock.
fn counter_shard() -> i32 {
    const SHARDS: u8 = 8;
    i32::from(Uuid::new_v4().as_bytes()[0] % SHARDS)
}

impl_store!(PgStore);

/// The error of a `CREATE SCHEMA IF NOT EXISTS` that another session's
/// concurrent one beat: a unique violation in the catalog, or the schema
/// already there.
fn created_by_another(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "23505" || code == "42P06")
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("tdmon_test_3f9a"));
        assert!(valid_schema("_x1"));
        for bad in [
            "",
            "1abc",
            "Tdmon",
            "a-b",
            "a;drop",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad:?}");
        }
    }
}
