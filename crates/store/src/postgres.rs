//! The distributed backend: PostgreSQL, optionally in a schema of its own.
//! Dispatchers lease with `FOR UPDATE SKIP LOCKED`; collectors lock the rows
//! of the URLs whose observations they apply.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use tdmon_core::notice::Notice;
use tdmon_core::state::{Phase, Rules, Subject, UrlState, advance};
use tdmon_core::{Event, Observation, Outcome, UrlId};
use uuid::Uuid;

use crate::backend::{
    Candidate, Counts, EVENTS, OBSERVATIONS, STATUS_CAP, StoredKeys, UNATTRIBUTED, count,
    lease_end, phase_counter, phase_rank,
};
use crate::codec::{
    ObservationColumns, chunks_for, from_json, micros, name_of, parse_name, to_i64,
};
use crate::{AddedNotices, Applied, Capped, DueUrl, DuplicateReason, Status, StoreError, mask_url};

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

fn db_time(time: DateTime<Utc>) -> DbTime {
    micros(time)
}

fn from_db_time(_what: &str, time: DbTime) -> Result<DateTime<Utc>, StoreError> {
    Ok(time)
}

fn json_value(row: &DbRow, column: &str, _what: &str) -> Result<Value, StoreError> {
    let Json(value) = row
        .try_get::<Json<Value>, _>(column)
        .map_err(StoreError::query("reading a JSON column"))?;
    Ok(value)
}

fn json_opt(row: &DbRow, column: &str, _what: &str) -> Result<Option<Value>, StoreError> {
    let value = row
        .try_get::<Option<Json<Value>>, _>(column)
        .map_err(StoreError::query("reading a JSON column"))?;
    Ok(value.map(|Json(v)| v))
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
    pub(crate) url: String,
}

impl PgStore {
    pub(crate) async fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let masked = mask_url(url);
        let open_error = |source| StoreError::Open {
            url: masked.clone(),
            source,
        };
        let mut options = PgConnectOptions::from_str(url).map_err(open_error)?;
        if let Some(schema) = schema {
            if !valid_schema(schema) {
                return Err(StoreError::InvalidSchema(schema.to_owned()));
            }
            // Set at connection start-up, so every pooled connection has it.
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        if let Some(schema) = schema {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&pool)
            .await
            .map_err(open_error)?;
        }
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
            url: masked,
        })
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
