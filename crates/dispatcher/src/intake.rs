//! Notice intake over the bus (the distributed deployment): other systems
//! publish one notice per message to the intake queue (docs/MESSAGES.md);
//! the active dispatcher takes them in batches and, per batch:
//!
//! - refuses a notice time outside the accepted window (`[notices]`): the
//!   message is dead-lettered with the reason, like a message that is not a
//!   valid notice at all (the bus dead-letters those before they get here);
//! - stores the rest in one transaction, and only then acknowledges them;
//! - acknowledges a duplicate of a stored notice (or of an earlier one in the
//!   batch) and counts it, without storing it twice.
//!
//! A failed write is retried, holding on to the batch, every `retry_delay`;
//! at shutdown the batch is given back to the queue instead.

use std::sync::Arc;

use chrono::Utc;
use tdmon_bus::{Bus, Delivery, Reject};
use tdmon_core::notice::{Notice, NoticeRules};
use tdmon_store::Store;
use tokio_util::sync::CancellationToken;

use crate::{DispatchError, DispatcherSettings};

/// What the intake did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeTotals {
    pub added: u64,
    /// Notices already stored (or repeated within a batch): acknowledged.
    pub duplicates: u64,
    /// Notices refused (dead-lettered with the reason).
    pub refused: u64,
}

impl std::ops::AddAssign for IntakeTotals {
    fn add_assign(&mut self, other: Self) {
        self.added += other.added;
        self.duplicates += other.duplicates;
        self.refused += other.refused;
    }
}

/// The intake role.
#[derive(Debug)]
pub struct Intake<B> {
    store: Store,
    bus: Arc<B>,
    rules: NoticeRules,
    settings: DispatcherSettings,
}

impl<B: Bus> Intake<B> {
    pub fn new(
        store: Store,
        bus: Arc<B>,
        rules: NoticeRules,
        settings: DispatcherSettings,
    ) -> Self {
        Self {
            store,
            bus,
            rules,
            settings,
        }
    }

    /// Takes in one batch; `None` once the bus has no more to give (it was
    /// closed, or stopped consuming).
    pub async fn take(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<IntakeTotals>, DispatchError> {
        let batch = self
            .bus
            .next_notices(self.settings.intake_batch, self.settings.intake_linger)
            .await;
        if batch.is_empty() {
            return Ok(None);
        }
        let now = Utc::now();
        let window = self.rules.window(now);
        let mut totals = IntakeTotals::default();
        let mut accepted: Vec<Delivery<Notice>> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match window.check(delivery.message.notified_at) {
                Ok(()) => accepted.push(delivery),
                Err(reason) => {
                    totals.refused += 1;
                    let reason = format!("not a valid notice: notified_at: {reason}");
                    tracing::warn!(notice_id = ?delivery.message.notice_id, reason, "notice refused");
                    tdmon_bus::settled(delivery.dead_letter(reason).await)?;
                }
            }
        }
        let notices: Vec<Notice> = accepted.iter().map(|d| d.message.clone()).collect();
        let added = loop {
            match self.store.add_notices(&notices, now).await {
                Ok(added) => break added,
                Err(e) if shutdown.is_cancelled() => {
                    for delivery in accepted {
                        if let Err(requeue) = delivery.reject(Reject::Requeue).await {
                            tracing::warn!(error = %requeue, "cannot give a notice back; the broker delivers it again");
                        }
                    }
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::error!(error = %tdmon_core::error_chain(&e), "storing notices failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.settings.retry_delay) => {}
                    }
                }
            }
        };
        totals.added += added.added.len() as u64;
        totals.duplicates += added.duplicates.len() as u64;
        tdmon_metrics::count_notices("queue", "added", added.added.len() as u64);
        tdmon_metrics::count_notices("queue", "duplicate", added.duplicates.len() as u64);
        tdmon_metrics::count_notices("queue", "rejected", totals.refused);
        for (index, reason) in &added.duplicates {
            tracing::info!(notice_id = ?notices[*index].notice_id, %reason, "duplicate notice acknowledged");
        }
        for delivery in accepted {
            tdmon_bus::settled(delivery.ack().await)?;
        }
        Ok(Some(totals))
    }

    /// Takes notices in until the bus has no more to give (the caller stops
    /// its consumption at shutdown). A bus failure is logged and the loop
    /// goes on: an unacknowledged notice is delivered again.
    pub async fn run(self, shutdown: CancellationToken) -> Result<IntakeTotals, DispatchError> {
        let mut totals = IntakeTotals::default();
        loop {
            match self.take(&shutdown).await {
                Ok(Some(batch)) => totals += batch,
                Ok(None) => return Ok(totals),
                Err(DispatchError::Bus(e)) => {
                    tracing::warn!(error = %tdmon_core::error_chain(&e), "settling notices failed; the broker delivers them again");
                }
                Err(e) => return Err(e),
            }
        }
    }
}
