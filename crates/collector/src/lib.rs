//! The collector role: consumes observations in batches and, for each batch,
//! re-derives every verdict from the observation's outcome with the monitor
//! owner's mapping (a worker's verdict is informational: a worker configured
//! otherwise must not change a figure), then, in one store transaction:
//! stores every observation (idempotent on job id),
//! advances each URL's state machine, writes takedown times and the next check
//! time, and queues the resulting events in the store's outbox. Only then are
//! the deliveries acknowledged; the outbox is then published to the bus.
//!
//! A crash anywhere loses nothing: unacknowledged observations are delivered
//! again (and recognised by job id), and unpublished events stay in the outbox
//! until a publish succeeds.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tdmon_bus::{Bus, BusError, Delivery, Reject};
use tdmon_core::state::Rules;
use tdmon_core::{Observation, VerdictMap};
use tdmon_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The `[collector]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Observations written per transaction at most.
    pub batch: usize,
    /// How long to wait for a batch to fill once its first observation is in.
    #[serde(with = "tdmon_core::duration")]
    pub linger: Duration,
    /// Pause after a failed write before the batch is tried again.
    #[serde(with = "tdmon_core::duration")]
    pub retry_delay: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            linger: Duration::from_millis(50),
            retry_delay: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collector.{0} must be greater than zero")]
pub struct ConfigError(&'static str);

impl CollectorConfig {
    pub fn validate(self) -> Result<CollectorConfig, ConfigError> {
        if self.batch == 0 {
            return Err(ConfigError("batch"));
        }
        if self.retry_delay.is_zero() {
            return Err(ConfigError("retry_delay"));
        }
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("the bus failed")]
    Bus(#[from] BusError),
}

/// Running totals, for progress displays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub observations: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub events: u64,
}

/// The collector.
#[derive(Debug)]
pub struct Collector<B> {
    store: Store,
    bus: Arc<B>,
    rules: Rules,
    verdicts: VerdictMap,
    config: CollectorConfig,
}

/// Outbox events published per round at most.
const OUTBOX_BATCH: usize = 1000;

impl<B: Bus> Collector<B> {
    pub fn new(
        store: Store,
        bus: Arc<B>,
        rules: Rules,
        verdicts: VerdictMap,
        config: CollectorConfig,
    ) -> Self {
        Self {
            store,
            bus,
            rules,
            verdicts,
            config,
        }
    }

    /// Writes one batch of deliveries and settles them: acknowledged once
    /// written, dead-lettered when they name a URL the store does not know.
    /// A failed write is retried here, every `retry_delay`, holding on to the
    /// batch: sending it back through the bus could wait forever for room
    /// that only this collector makes, and would lose the per-URL order.
    /// Once `shutdown` is cancelled a failure ends the retries: the batch is
    /// given back (requeued where the bus still takes it), and the leases of
    /// its URLs bring them back otherwise.
    pub async fn collect(
        &self,
        batch: Vec<Delivery<Observation>>,
        shutdown: &CancellationToken,
    ) -> Result<Totals, CollectError> {
        let observations: Vec<Observation> = batch
            .iter()
            .map(|delivery| Observation {
                verdict: self.verdicts.verdict(delivery.message.outcome),
                ..delivery.message.clone()
            })
            .collect();
        let metrics = tdmon_metrics::metrics();
        let applied = loop {
            let writing = std::time::Instant::now();
            match self
                .store
                .apply_observations(&observations, Utc::now(), &self.rules)
                .await
            {
                Ok(applied) => {
                    metrics
                        .store_write_duration
                        .observe(writing.elapsed().as_secs_f64());
                    break applied;
                }
                Err(e) if shutdown.is_cancelled() => {
                    for delivery in batch {
                        if let Err(requeue) = delivery.reject(Reject::Requeue).await {
                            tracing::warn!(error = %requeue, "cannot requeue an observation; its lease will bring the URL back");
                        }
                    }
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::error!(error = %tdmon_core::error_chain(&e), "writing observations failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.config.retry_delay) => {}
                    }
                }
            }
        };
        for delivery in batch {
            if applied.unknown_url.contains(&delivery.message.job_id) {
                tracing::error!(
                    job_id = %delivery.message.job_id,
                    url_id = delivery.message.url_id,
                    "observation for a URL the store does not know; dead-lettered"
                );
                tdmon_bus::settled(delivery.reject(Reject::DeadLetter).await)?;
            } else {
                tdmon_bus::settled(delivery.ack().await)?;
            }
        }
        metrics.store_batch_size.observe(observations.len() as f64);
        for (result, count) in [
            ("new", applied.new),
            ("duplicate", applied.duplicates),
            ("unknown_url", applied.unknown_url.len()),
        ] {
            metrics
                .observations
                .get_or_create(&tdmon_metrics::ResultLabel { result })
                .inc_by(count as u64);
        }
        for event in &applied.events {
            metrics
                .events
                .get_or_create(&tdmon_metrics::KindLabel {
                    kind: event.kind.as_str(),
                })
                .inc();
        }
        Ok(Totals {
            observations: applied.new as u64,
            duplicates: applied.duplicates as u64,
            unknown: applied.unknown_url.len() as u64,
            events: applied.events.len() as u64,
        })
    }

    /// Publishes what waits in the outbox, then marks it published. An event
    /// may be published twice if the process dies in between: downstream
    /// consumers are idempotent (docs/MESSAGES.md).
    pub async fn publish_outbox(&self) -> Result<usize, CollectError> {
        let mut published = 0;
        loop {
            let pending = self.store.unpublished_events(OUTBOX_BATCH).await?;
            if pending.is_empty() {
                return Ok(published);
            }
            let (ids, events): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
            self.bus.publish_events(events).await?;
            self.store.mark_published(&ids).await?;
            published += ids.len();
        }
    }

    /// Collects until `shutdown`, then drains: keeps collecting until the bus
    /// has no more observations (the caller stops the producers first and
    /// closes the observation flow).
    pub async fn run(
        self,
        shutdown: CancellationToken,
        totals: Option<tokio::sync::watch::Sender<Totals>>,
    ) -> Result<(), CollectError> {
        let mut sum = Totals::default();
        loop {
            let batch = self
                .bus
                .next_observations(self.config.batch, self.config.linger)
                .await;
            if batch.is_empty() {
                // The flow is closed and drained.
                self.publish_outbox().await?;
                return Ok(());
            }
            let done = self.collect(batch, &shutdown).await?;
            sum.observations += done.observations;
            sum.duplicates += done.duplicates;
            sum.unknown += done.unknown;
            sum.events += done.events;
            if let Some(totals) = &totals {
                totals.send_replace(sum);
            }
            if let Err(e) = self.publish_outbox().await {
                tracing::error!(error = %tdmon_core::error_chain(&e), "publishing events failed; they stay in the outbox");
            }
        }
    }
}
