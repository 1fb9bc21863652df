//! The embedded backend: one SQLite file in WAL mode, one writer connection
//! (every write call is one transaction on it) and a few read-only readers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
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

type Db = sqlx::Sqlite;
type DbRow = SqliteRow;
/// Microseconds since the Unix epoch.
type DbTime = i64;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// WAL pages written between automatic checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// Read-only connections beside the writer; WAL lets them read while it writes.
const READERS: u32 = 4;

pub(crate) const LEASE_SQL: &str = "UPDATE urls SET lease_until = $2 WHERE url_id IN (\
     SELECT url_id FROM urls \
     WHERE next_check_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
     ORDER BY next_check_at, url_id LIMIT $3) \
     RETURNING url_id, url, host, next_purpose, next_check_at, baseline";

/// Takes the file's write lock at the start, so that a transaction that
/// reads before it writes waits (busy timeout) for another process's writer
/// instead of failing when it tries to write.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// SQLite has one writer at a time: the rows a write transaction reads cannot
/// change under it.
const LOCK_ROWS: &str = "";

/// One statement per URL: SQLite runs in the process, so a statement costs
/// no round trip.
async fn write_states(
    tx: &mut sqlx::Transaction<'static, Db>,
    states: &[(UrlId, UrlState)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (url_id, state) in states {
        sqlx::query(
            "UPDATE urls SET state = $1, phase = $2, next_check_at = $3, \
             next_purpose = $4, lease_until = NULL, updated_at = $5, baseline = $6 \
             WHERE url_id = $7",
        )
        .bind(Json(state))
        .bind(state.phase.as_str())
        .bind(state.next_check.map(|n| db_time(n.at)))
        .bind(state.next_check.map(|n| name_of(&n.purpose)))
        .bind(db_time(now))
        .bind(state.baseline_fingerprint.as_deref())
        .bind(url_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("updating URL states"))?;
    }
    Ok(())
}

fn db_time(time: DateTime<Utc>) -> DbTime {
    time.timestamp_micros()
}

fn from_db_time(what: &str, micros: DbTime) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::corrupt(what, format!("time {micros} out of range")))
}

/// Parsed straight from the column's text into `T`, without a
/// `serde_json::Value` in between.
fn json_opt<T: DeserializeOwned>(
    row: &DbRow,
    column: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<&str> = row
        .try_get(column)
        .map_err(StoreError::query("reading a JSON column"))?;
    text.map(|t| serde_json::from_str(t).map_err(|e| StoreError::corrupt(what, e)))
        .transpose()
}

/// The writer's pool, migrated. Processes that open one new file at once
/// (`tdmon run` and a `tdmon status` beside it) race twice: switching the
/// file to WAL needs it to itself, and SQLite answers "database is locked"
/// at once rather than waiting; and sqlx holds no lock while it migrates
/// SQLite, so the loser fails on the winner's work (a table or a migration
/// row already there). The loser tries again, and then finds the file set up
/// and the migrations applied. A genuine error fails every attempt.
async fn open_writer(
    options: SqliteConnectOptions,
    open_error: impl Fn(OpenError) -> StoreError,
) -> Result<SqlitePool, StoreError> {
    const ATTEMPTS: u32 = 8;
    let mut attempt = 1;
    loop {
        let last = attempt == ATTEMPTS;
        let pause = Duration::from_millis(50) * attempt;
        attempt += 1;
        let writer = match SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
        {
            Ok(writer) => writer,
            Err(e) if !last && is_busy(&e) => {
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => return Err(open_error(e.into())),
        };
        match MIGRATOR.run(&writer).await {
            Ok(()) => return Ok(writer),
            Err(_) if !last => {
                writer.close().await;
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(StoreError::migrate(e)),
        }
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, in any of their extended forms.
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

#[derive(Clone)]
pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The database file; `None` in memory.
    file: Option<PathBuf>,
    pub(crate) url: String,
}

impl SqliteStore {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let masked = mask_url(url).into_owned();
        let open_error = |source| StoreError::Open {
            url: masked.clone(),
            source,
        };
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_error(OpenError::Url(e.into())))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // One batch of observations rewrites more pages than the default
            // checkpoint threshold (1,000), so nearly every commit paid for a
            // checkpoint; let the WAL grow to about 40 MB between them.
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let writer = open_writer(writer_options, &open_error).await?;

        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let reader = if in_memory {
            // Every connection to an in-memory database is a database of its own.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .connect_with(base.clone().read_only(true))
                .await
                .map_err(|e| open_error(e.into()))?
        };
        Ok(Self {
            writer,
            reader,
            file: (!in_memory).then(|| base.get_filename().to_path_buf()),
            url: masked,
        })
    }

    /// Locks `FILE.lock` beside the database file, named after the file's
    /// canonical path, so that every path to one database (a symlink, `..`,
    /// another working directory) takes the same lock. The lock is on its own
    /// file: closing a descriptor of the database file itself would drop
    /// SQLite's own locks in this process. In memory there is nothing to share.
    pub(crate) fn lock_monitor(&self) -> Result<Option<std::fs::File>, StoreError> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let lock_error = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::LockFile { path, source }
        };
        let canonical = std::fs::canonicalize(file).map_err(lock_error(file))?;
        let mut lock_path = canonical.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = std::fs::File::create(&lock_path).map_err(lock_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(lock)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                store: canonical.display().to_string(),
                holder: format!("it holds the lock on {}", lock_path.display()),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(lock_error(&lock_path)(e)),
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.url)
            .finish()
    }
}

/// One writer at a time: one counter row each.
fn counter_shard() -> i32 {
    0
}

impl_store!(SqliteStore);
