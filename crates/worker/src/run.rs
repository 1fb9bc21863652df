//! The worker role: consumes check jobs from the bus, checks each with the
//! [`Checker`], publishes one observation, and only then acknowledges the job
//! (docs/ARCHITECTURE.md, "Roles and flow"). Checks run concurrently up to the worker's
//! `max_in_flight`; a job taken from the bus always has a free slot, so the
//! bus's prefetch is what waits, not this process's memory.

use std::sync::Arc;

use chrono::Utc;
use tdmon_bus::{Bus, BusError, Reject};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Checker;

/// How much longer than one check's total timeout a stop waits for the checks
/// in flight.
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs until `shutdown`, then finishes (and publishes) the checks in flight.
/// Jobs past their expiry are acknowledged without a check: the dispatcher
/// queues their URLs again when the lease runs out.
pub async fn run<B: Bus>(
    checker: Arc<Checker>,
    bus: Arc<B>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let slots = Arc::new(Semaphore::new(checker.settings().max_in_flight()));
    tdmon_metrics::metrics()
        .check_slots
        .set(i64::try_from(checker.settings().max_in_flight()).unwrap_or(i64::MAX));
    let checks = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            delivery = bus.next_job() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        if delivery.message.expires_at < Utc::now() {
            tracing::warn!(
                job_id = %delivery.message.job_id,
                url_id = delivery.message.url_id,
                expired_at = %delivery.message.expires_at,
                "job expired before it could start; dropped"
            );
            tdmon_bus::settled(delivery.ack().await)?;
            continue;
        }
        let checker = Arc::clone(&checker);
        let bus = Arc::clone(&bus);
        let in_flight = &tdmon_metrics::metrics().checks_in_flight;
        in_flight.inc();
        checks.spawn(async move {
            let job = &delivery.message;
            let observation = checker
                .check_against(job, job.baseline.as_deref())
                .await;
            let settled = match bus.publish_observation(observation).await {
                Ok(()) => delivery.ack().await,
                Err(e) => {
                    tracing::error!(error = %tdmon_core::error_chain(&e), job_id = %delivery.message.job_id, "cannot publish the observation; job requeued");
                    delivery.reject(Reject::Requeue).await
                }
            };
            if let Err(e) = settled {
                tracing::error!(error = %e, "cannot settle a job; its lease will bring it back");
            }
            drop(slot);
            in_flight.dec();
        });
    }
    checks.close();
    // A check is bounded by its total timeout, but one still waiting for a
    // limit could wait until its job expires; a stop does not wait for that:
    // such a check's URL stays leased, and its lease brings it back.
    let bound = checker.settings().total_timeout() + DRAIN_MARGIN;
    if tokio::time::timeout(bound, checks.wait()).await.is_err() {
        tracing::warn!(
            in_flight = checks.len(),
            "checks still waiting for a limit are abandoned at shutdown"
        );
    }
    Ok(())
}
