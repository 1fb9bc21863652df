//! tdmon's store: notices, the monitored URLs with their schedule state, every
//! observation, and an outbox of state-change events. One interface, two
//! backends chosen at run time from a URL:
//!
//! - `sqlite://PATH` (the embedded default): one file, created if missing, in
//!   WAL mode with `synchronous=NORMAL` and a busy timeout. All writes go
//!   through one writer connection, each call one transaction; reads use a
//!   small pool of read-only connections.
//! - `postgres://...` (the distributed deployment), optionally in a schema of
//!   its own ([`StoreOptions::schema`]): created if missing and put on the
//!   `search_path` of every pooled connection.
//!
//! Migrations are embedded (`migrations/sqlite`, `migrations/postgres`) and
//! applied by [`Store::open`].
//!
//! ```text
//! Store::open(url)                     -> Store       (or open_with(url, &StoreOptions))
//! add_notices(&[Notice], now)          -> AddedNotices { added, duplicates }
//! lease_due(now, limit, lease)         -> Vec<DueUrl>
//! release(&[UrlId])                    -> ()
//! apply_observations(&[Observation], now, &Rules)
//!                                      -> Applied { new, duplicates, unknown_url, events }
//! unpublished_events(limit)            -> Vec<(i64, Event)>
//! mark_published(&[i64])               -> ()
//! states(&[UrlId]) / all_states()      -> Vec<UrlState>
//! states_after(Option<UrlId>, limit)   -> Vec<UrlState>   (one page, by id)
//! states_in(RangeInclusive<UrlId>)     -> Vec<UrlState>   (by id)
//! url_ids()                            -> Option<RangeInclusive<UrlId>>  (lowest..=highest)
//! events(UrlId)                        -> Vec<Event>
//! observations(UrlId)                  -> Vec<Observation>
//! observations_of(&[UrlId])            -> Vec<Observation>  (by URL, each in check order)
//! status(now)                          -> Status
//! ```
//! Every call returns `Result<_, StoreError>`.
//!
//! # Schema
//!
//! Five tables, the same columns on both backends (see the migrations):
//! `notices` (every notice as received), `urls` (one per notice, `url_id` =
//! the notice's row id: the [`UrlState`] snapshot as JSON plus `phase`,
//! `next_check_at`, `next_purpose`, `lease_until` and `host` for queries),
//! `observations` (append-only, every field of an [`Observation`] as a column,
//! DNS answers and the redirect chain as JSON, unique `job_id`) and `events`
//! (the outbox: the [`Event`] as JSON with `kind`, `at`, `url_id` and a
//! `published` flag), and `counters` (counts kept in the transactions that
//! change them, so that [`Store::status`] costs the same at any size).
//! SQLite stores times as integer microseconds since the
//! Unix epoch and JSON as text; PostgreSQL uses `timestamptz`, `jsonb` and
//! `uuid`.
//!
//! # Semantics both backends share
//!
//! - Times are stored to the microsecond; finer parts are truncated on the way
//!   in (notice times and observation start times too, before the state machine
//!   sees them, so that replaying the stored observations gives the same state).
//! - A notice is a duplicate when a notice with the same `notice_id`, or with
//!   the same normalised URL and notice time, is already stored or comes
//!   earlier in the same call. Duplicates are reported, never stored twice.
//!   Each stored notice gets one monitored URL whose [`UrlId`] is the notice's
//!   row id. Within one call, ids are assigned in URL order (concurrent calls
//!   then lock the unique index in one order and cannot deadlock);
//!   [`AddedNotices::added`] lists them in input order.
//! - Leasing: [`Store::lease_due`] picks URLs whose next check is due and
//!   whose lease is absent or over, oldest due first (ties by `UrlId`), and
//!   leases them in the same statement, so that two dispatchers never get the
//!   same URL (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one writer). A
//!   lease that runs out makes the URL due again: that is how a job lost
//!   anywhere is dispatched again. Applying an observation of a URL clears
//!   its lease.
//! - Observations are append-only and idempotent on `job_id`. An observation
//!   for a URL the store does not know is not stored; its job id is returned.
//!   New observations advance their URL's state in `started_at` order (ties by
//!   job id) with [`tdmon_core::state::advance`], in the same transaction that
//!   stores them and appends the resulting events to the outbox.
//! - The outbox: events stay unpublished until [`Store::mark_published`]; a
//!   publisher that dies in between publishes them again (at least once).

#[macro_use]
mod backend;
mod codec;
mod error;
mod postgres;
mod sqlite;

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tdmon_core::notice::{DuplicateKey, Notice};
use tdmon_core::state::{Phase, Rules, UrlState};
use tdmon_core::{Event, Observation, Purpose, UrlId};
use uuid::Uuid;

pub use error::{DriverError, OpenError, StoreError};

/// Options of [`Store::open_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// PostgreSQL only: keep every table in this schema, created if missing.
    /// A lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes). Ignored
    /// for SQLite.
    pub schema: Option<String>,
}

/// Why a notice was not added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateReason {
    /// An earlier notice of the same call has the same key.
    InInput { first: usize, key: DuplicateKey },
    /// A notice with the same key is already stored.
    Stored { key: DuplicateKey },
}

impl fmt::Display for DuplicateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DuplicateReason::InInput { first, key } => {
                write!(f, "same {key} as notice #{first} of this batch")
            }
            DuplicateReason::Stored { key } => write!(f, "{key} is already stored"),
        }
    }
}

/// What [`Store::add_notices`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedNotices {
    /// The new URLs, in the order of their notices in the input.
    pub added: Vec<UrlId>,
    /// `(index in the input, reason)` of every notice not added.
    pub duplicates: Vec<(usize, DuplicateReason)>,
}

/// A URL leased for checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueUrl {
    pub url_id: UrlId,
    pub url: String,
    pub host: String,
    pub purpose: Purpose,
    /// When the check was due.
    pub due_at: DateTime<Utc>,
    /// The fingerprint of the URL's first online check, if it had one.
    pub baseline: Option<String>,
}

/// What [`Store::apply_observations`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Observations stored by this call.
    pub new: usize,
    /// Observations whose job id was already stored (or came twice in the call).
    pub duplicates: usize,
    /// Job ids of observations for URLs the store does not know: not stored.
    pub unknown_url: Vec<Uuid>,
    /// The events the new observations caused, also stored in the outbox.
    pub events: Vec<Event>,
}

/// Counts for operators. Every count is kept as it changes, so reading them
/// costs the same at any size; the two that depend on the time are counted
/// up to a cap instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// URLs per phase, phases without URLs left out, in [`Phase`] order.
    pub by_phase: Vec<(Phase, u64)>,
    /// URLs due now and not leased.
    pub due_now: Capped,
    /// URLs whose lease has not run out.
    pub leased: Capped,
    /// The earliest next check among URLs not leased.
    pub next_due: Option<DateTime<Utc>>,
    pub observations: u64,
    /// Observations with an address that no database or override attributed:
    /// checks missing from every hoster's figures.
    pub unattributed: u64,
    pub events: u64,
}

/// A count made up to a cap: `10000+` when there are more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capped {
    pub count: u64,
    /// There are more than `count`.
    pub more: bool,
}

impl Capped {
    /// `n` rows counted with a limit of one more than the cap.
    pub(crate) fn of(n: u64) -> Self {
        Self {
            count: n.min(backend::STATUS_CAP),
            more: n > backend::STATUS_CAP,
        }
    }
}

impl fmt::Display for Capped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, if self.more { "+" } else { "" })
    }
}

/// A held monitor lock ([`Store::lock_monitor`]).
#[derive(Debug)]
pub struct MonitorLock(Option<HeldLock>);

#[derive(Debug)]
enum HeldLock {
    /// Locked while open.
    File {
        _open: std::fs::File,
    },
    Postgres(sqlx::PgConnection),
}

impl MonitorLock {
    /// Whether the lock is still held. A PostgreSQL advisory lock lives as
    /// long as its connection: when the server restarts or the connection
    /// drops, the lock is gone, and another process may take it. Asked on
    /// the lock's own connection, bounded by `timeout`.
    pub async fn is_held(&mut self, timeout: Duration) -> bool {
        match &mut self.0 {
            Some(HeldLock::Postgres(connection)) => {
                let ping = sqlx::Connection::ping(connection);
                matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(())))
            }
            Some(HeldLock::File { .. }) | None => true,
        }
    }

    /// Gives the lock back (dropping it does too, less politely on PostgreSQL).
    pub async fn release(self) {
        match self.0 {
            Some(HeldLock::Postgres(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
            }
            Some(HeldLock::File { .. }) | None => {}
        }
    }
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The statement [`Store::lease_due`] runs on this backend (binds: now,
    /// lease end, limit), for operators and benchmarks to EXPLAIN.
    pub fn lease_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => sqlite::LEASE_SQL,
            Backend::Postgres => postgres::LEASE_SQL,
        }
    }
}

/// The store: SQLite or PostgreSQL, picked from the URL at run time. Cheap to
/// clone (the pools are shared).
#[derive(Clone)]
pub struct Store(Inner);

#[derive(Clone)]
enum Inner {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl fmt::Debug for Store {
    /// Shows the backend and the masked URL, never a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.url())
            .finish()
    }
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.0 {
            Inner::Sqlite(s) => s.$method($($arg),*).await,
            Inner::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens `sqlite://PATH` (created if missing) or `postgres://...`, and
    /// applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with options.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store(Inner::Sqlite(sqlite::SqliteStore::open(url).await?)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = postgres::PgStore::open(url, options.schema.as_deref()).await?;
            Ok(Store(Inner::Postgres(store)))
        } else {
            Err(StoreError::UnsupportedUrl(
                tdmon_core::url::mask_url(url).into_owned(),
            ))
        }
    }

    /// The URL the store was opened with, password masked.
    pub fn url(&self) -> &str {
        match &self.0 {
            Inner::Sqlite(s) => &s.url,
            Inner::Postgres(s) => &s.url,
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.0 {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Takes the store's monitor lock: one embedded monitor per store, since
    /// a monitor gives back every lease when it starts. On SQLite a lock on
    /// `FILE.lock` beside the database's canonical path; on PostgreSQL an
    /// advisory lock per schema, held on a connection of its own. Held until
    /// the [`MonitorLock`] is released or dropped; [`StoreError::Locked`]
    /// when another process holds it.
    pub async fn lock_monitor(&self) -> Result<MonitorLock, StoreError> {
        let held = match &self.0 {
            Inner::Sqlite(s) => s.lock_monitor()?.map(|file| HeldLock::File { _open: file }),
            Inner::Postgres(s) => Some(HeldLock::Postgres(s.lock_monitor().await?)),
        };
        Ok(MonitorLock(held))
    }

    /// Removes the PostgreSQL schema of its own this store was opened in
    /// ([`StoreOptions::schema`]), with every table, and closes the store: for
    /// demos and tests that made a fresh one. `false` (and nothing removed)
    /// for a store without one, SQLite included.
    pub async fn drop_schema(&self) -> Result<bool, StoreError> {
        match &self.0 {
            Inner::Sqlite(_) => Ok(false),
            Inner::Postgres(s) => s.drop_schema().await,
        }
    }

    /// Closes the pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// Stores notices and one monitored URL for each, in one transaction.
    pub async fn add_notices(
        &self,
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> Result<AddedNotices, StoreError> {
        dispatch!(self.add_notices(notices, now))
    }

    /// Leases up to `limit` due URLs until `now + lease`, oldest due first.
    pub async fn lease_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueUrl>, StoreError> {
        dispatch!(self.lease_due(now, limit, lease))
    }

    /// Turns the leases that [`Store::lease_due`] took at `leased_at` for
    /// `reserved` into leases for `lease` (from `leased_at` too): the
    /// dispatcher reserves briefly and extends once the jobs are published,
    /// so that URLs leased by a dispatcher that died before publishing are
    /// due again soon. A lease that is no longer that reservation (its
    /// check was applied, or it was released) is left alone. Returns how
    /// many were extended.
    pub async fn extend_leases(
        &self,
        url_ids: &[UrlId],
        leased_at: DateTime<Utc>,
        reserved: Duration,
        lease: Duration,
    ) -> Result<u64, StoreError> {
        dispatch!(self.extend_leases(url_ids, leased_at, reserved, lease))
    }

    /// Ends the leases of these URLs now (unknown ids are ignored).
    pub async fn release(&self, url_ids: &[UrlId]) -> Result<(), StoreError> {
        dispatch!(self.release(url_ids))
    }

    /// Keeps URLs leased until the given times: the dispatcher holds back
    /// URLs whose host is over its rate, so that later rounds lease others.
    pub async fn hold(&self, holds: &[(UrlId, DateTime<Utc>)]) -> Result<(), StoreError> {
        dispatch!(self.hold(holds))
    }

    /// Ends every lease: for a process that is the only dispatcher of this
    /// store (the embedded monitor) at start-up, after a crash. Returns how
    /// many were held.
    pub async fn release_all(&self) -> Result<u64, StoreError> {
        dispatch!(self.release_all())
    }

    /// Stores observations and advances their URLs' states, in one transaction.
    pub async fn apply_observations(
        &self,
        observations: &[Observation],
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<Applied, StoreError> {
        dispatch!(self.apply_observations(observations, now, rules))
    }

    /// Up to `limit` unpublished events, oldest first, with their outbox ids.
    pub async fn unpublished_events(&self, limit: usize) -> Result<Vec<(i64, Event)>, StoreError> {
        dispatch!(self.unpublished_events(limit))
    }

    /// Marks outbox events as published (unknown ids are ignored).
    pub async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
        dispatch!(self.mark_published(ids))
    }

    /// The states of these URLs, ordered by id; unknown ids are left out.
    pub async fn states(&self, url_ids: &[UrlId]) -> Result<Vec<UrlState>, StoreError> {
        dispatch!(self.states(url_ids))
    }

    /// Up to `limit` states of the URLs after `after` (from the first when
    /// `None`), ordered by id: pass the last id of a page to get the next.
    pub async fn states_after(
        &self,
        after: Option<UrlId>,
        limit: usize,
    ) -> Result<Vec<UrlState>, StoreError> {
        dispatch!(self.states_after(after, limit))
    }

    /// The states of the URLs whose id is in `ids`, ordered by id. Unlike
    /// [`Store::states_after`], ranges need no page before them: several can
    /// be read at once.
    pub async fn states_in(&self, ids: RangeInclusive<UrlId>) -> Result<Vec<UrlState>, StoreError> {
        dispatch!(self.states_in(ids))
    }

    /// The lowest and the highest URL id; `None` for a store without URLs.
    pub async fn url_ids(&self) -> Result<Option<RangeInclusive<UrlId>>, StoreError> {
        dispatch!(self.url_ids())
    }

    /// Every URL's state, ordered by id (read page by page; at a million URLs
    /// prefer [`Store::states_after`], which bounds the memory held).
    pub async fn all_states(&self) -> Result<Vec<UrlState>, StoreError> {
        dispatch!(self.all_states())
    }

    /// Every event of a URL, in the order they were made.
    pub async fn events(&self, url_id: UrlId) -> Result<Vec<Event>, StoreError> {
        dispatch!(self.events(url_id))
    }

    /// Every stored observation of a URL, in `started_at` order.
    pub async fn observations(&self, url_id: UrlId) -> Result<Vec<Observation>, StoreError> {
        dispatch!(self.observations(url_id))
    }

    /// Every stored observation of these URLs, by URL id and then in
    /// `started_at` order: [`Store::observations`] for many URLs at once.
    pub async fn observations_of(&self, url_ids: &[UrlId]) -> Result<Vec<Observation>, StoreError> {
        dispatch!(self.observations_of(url_ids))
    }

    /// Counts for operators.
    pub async fn status(&self, now: DateTime<Utc>) -> Result<Status, StoreError> {
        dispatch!(self.status(now))
    }
}
