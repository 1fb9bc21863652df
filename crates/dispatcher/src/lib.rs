//! The dispatcher role: every tick it leases the URLs whose next check is due
//! and publishes one check job for each (docs/ARCHITECTURE.md, "Roles and flow").
//!
//! - Leases make delivery safe: a job lost anywhere (a crashed worker, a
//!   dropped message) leaves its URL leased until the lease runs out, and then
//!   the URL is due again and dispatched again.
//! - A URL is first leased for a moment only ([`RESERVATION`]), and for the
//!   whole lease once its job is published: a dispatcher that dies (or cannot
//!   publish) between the two leaves URLs that are due again within
//!   seconds, not after a whole lease with no job anywhere.
//! - Politeness is per host and enforced here, so it holds however many
//!   workers run: the URLs of a host over its rate stay leased until the host
//!   has room again, so they neither flood it nor crowd out other hosts.
//! - Jobs carry an expiry; a worker drops a job that arrives later than that,
//!   because a stale check would date a takedown wrongly.
//! - Dispatching pauses while the checks queue is above its high-water mark.
//! - In the distributed deployment the active dispatcher also takes notices
//!   in from the bus ([`Intake`]).

mod config;
mod intake;
mod politeness;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_bus::{Bus, BusError};
use tdmon_core::CheckJob;
use tdmon_core::message::SchemaV1;
use tdmon_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use config::{ConfigError, DispatcherConfig, DispatcherSettings};
pub use intake::{Intake, IntakeTotals};
use politeness::Politeness;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("the bus failed")]
    Bus(#[from] BusError),
}

/// How long a URL is leased until its job is published: longer than a
/// publish takes when all is well.
pub const RESERVATION: Duration = Duration::from_secs(5);
/// How long the extension of published leases is retried while the store
/// fails (a database restart): until then a URL whose job is out cannot be
/// leased again, not even after its reservation ran out, because only this
/// dispatcher leases and it is busy here.
const EXTENSION_PATIENCE: Duration = Duration::from_secs(60);

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Jobs published.
    pub dispatched: usize,
    /// Due URLs held back for per-host politeness: they stay leased until
    /// their host has room.
    pub held_back: usize,
    /// The checks queue was above its high-water mark: nothing was leased.
    pub paused: bool,
}

/// The dispatcher: state that lives across ticks (the per-host limiter).
#[derive(Debug)]
pub struct Dispatcher<B> {
    store: Store,
    bus: Arc<B>,
    settings: DispatcherSettings,
    politeness: Politeness,
}

impl<B: Bus> Dispatcher<B> {
    pub fn new(store: Store, bus: Arc<B>, settings: DispatcherSettings) -> Self {
        let politeness = Politeness::new(settings.per_host_interval, settings.per_host_burst);
        Self {
            store,
            bus,
            settings,
            politeness,
        }
    }

    /// One round: lease what is due (as much as the queue has room for),
    /// publish jobs for the hosts under their rate, give the rest back.
    pub async fn tick(&self) -> Result<Tick, DispatchError> {
        let waiting = self.bus.jobs_waiting().await?;
        let metrics = tdmon_metrics::metrics();
        metrics
            .jobs_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let room = self.settings.high_water.saturating_sub(waiting);
        if room == 0 {
            return Ok(Tick {
                paused: true,
                ..Tick::default()
            });
        }
        let now = Utc::now();
        let reserved = self.settings.lease.min(RESERVATION);
        let due = self
            .store
            .lease_due(now, room.min(self.settings.batch), reserved)
            .await?;
        let expires_at = now + TimeDelta::from_std(self.settings.job_ttl).unwrap_or(TimeDelta::MAX);
        let (jobs, held_back) = self.politeness.sort(due, |url| &url.host);
        if !held_back.is_empty() {
            // Keep them leased until their host has room again, so the next
            // ticks lease other hosts' URLs instead.
            let holds: Vec<_> = held_back
                .iter()
                .map(|(url, wait)| {
                    (
                        url.url_id,
                        now + TimeDelta::from_std(*wait).unwrap_or(TimeDelta::MAX),
                    )
                })
                .collect();
            self.store.hold(&holds).await?;
        }
        let jobs: Vec<CheckJob> = jobs
            .into_iter()
            .map(|url| CheckJob {
                schema: SchemaV1,
                job_id: Uuid::now_v7(),
                url_id: url.url_id,
                url: url.url,
                purpose: url.purpose,
                due_at: url.due_at,
                expires_at,
                baseline: url.baseline,
            })
            .collect();
        let dispatched = jobs.len();
        if dispatched > 0 {
            let url_ids: Vec<_> = jobs.iter().map(|job| job.url_id).collect();
            self.bus.publish_jobs(jobs).await?;
            self.extend(&url_ids, now, reserved).await?;
        }
        metrics.jobs_dispatched.inc_by(dispatched as u64);
        metrics.jobs_held_back.inc_by(held_back.len() as u64);
        Ok(Tick {
            dispatched,
            held_back: held_back.len(),
            paused: false,
        })
    }

    /// Extends the reservations taken at `leased_at` of URLs whose jobs are
    /// published to the whole lease, retrying while the store fails: given
    /// up, a reservation would run out with its job still out, and the URL
    /// could be checked twice at once.
    async fn extend(
        &self,
        url_ids: &[i64],
        leased_at: DateTime<Utc>,
        reserved: Duration,
    ) -> Result<(), DispatchError> {
        let started = tokio::time::Instant::now();
        let mut told = false;
        loop {
            let extended = self
                .store
                .extend_leases(url_ids, leased_at, reserved, self.settings.lease)
                .await;
            match extended {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() < EXTENSION_PATIENCE && !e.is_configuration() => {
                    if !told {
                        tracing::warn!(
                            error = %tdmon_core::error_chain(&e),
                            "cannot extend the leases of published jobs; retrying"
                        );
                        told = true;
                    }
                    tokio::time::sleep(self.settings.tick.max(Duration::from_millis(100))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Ticks until `shutdown`; a full batch is followed at once by another.
    /// A failing store or bus is logged and retried on the next tick: the
    /// leases make a half-done tick harmless.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DispatchError> {
        let mut evict = tokio::time::interval(self.settings.evict_interval);
        evict.tick().await;
        loop {
            let pause = match self.tick().await {
                Ok(tick) if tick.dispatched >= self.settings.batch => {
                    tokio::task::yield_now().await;
                    None
                }
                Ok(_) => Some(self.settings.tick),
                Err(e) => {
                    tracing::error!(error = %tdmon_core::error_chain(&e), "dispatch failed; retrying");
                    Some(self.settings.tick)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                    _ = evict.tick() => self.politeness.evict(),
                }
            } else if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }
}
