//! The embedded monitor: the dispatcher, a worker and the collector in one
//! process, over the in-process bus and one store. The role code is the same
//! that the distributed deployment runs; only the bus differs.
//!
//! Shutdown, in order, so that nothing is lost and nothing is checked twice:
//! 1. the dispatcher stops leasing;
//! 2. the worker stops taking jobs and finishes the checks in flight, each
//!    publishing its observation;
//! 3. jobs still queued are taken off the bus and their leases given back, so
//!    a restart dispatches them at once;
//! 4. the collector writes every observation published, then stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tdmon_bus::{InProcessBus, InProcessCapacity};
use tdmon_collector::{Collector, Totals};
use tdmon_core::state::Phase;
use tdmon_dispatcher::Dispatcher;
use tdmon_store::Store;
use tdmon_worker::Checker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the monitor looks whether anything is left to check.
const DONE_POLL: Duration = Duration::from_secs(1);

/// Runs every role until `shutdown` is cancelled (or, with `exit_when_done`,
/// until no URL has a check left). `totals` follows what the collector wrote.
pub(crate) async fn run(
    config: &Config,
    store: Store,
    shutdown: CancellationToken,
    exit_when_done: bool,
    totals: watch::Sender<Totals>,
) -> anyhow::Result<()> {
    // The queue holds at most what the dispatcher lets wait, plus one batch.
    let capacity = InProcessCapacity {
        jobs: config.dispatcher.high_water() + config.dispatcher.batch(),
        ..InProcessCapacity::default()
    };
    let bus = Arc::new(InProcessBus::new(capacity));
    let checker = Arc::new(
        Checker::new(config.worker.clone(), config.measurement.verdicts.clone())
            .context("cannot start the worker")?,
    );
    crate::signals::reload_asn_db_on_hangup(Checker::clone(&checker));

    // A process that died leaves leases behind; in the embedded monitor no
    // other process can hold them, so they are given back at once.
    store.release_all().await.context("cannot reset leases")?;

    let intake = CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), Arc::clone(&bus), config.dispatcher.clone());
    let dispatcher = spawn_role(dispatcher.run(intake.clone()), &shutdown);
    let worker = spawn_role(
        tdmon_worker::run(Arc::clone(&checker), Arc::clone(&bus), intake.clone()),
        &shutdown,
    );
    let collector = Collector::new(
        store.clone(),
        Arc::clone(&bus),
        config.measurement.rules.clone(),
        config.measurement.verdicts.clone(),
        config.collector.clone(),
    );
    let collector_stop = CancellationToken::new();
    let collector = spawn_role(
        collector.run(collector_stop.clone(), Some(totals)),
        &shutdown,
    );

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(DONE_POLL) => {
                if exit_when_done && nothing_left(&store).await? {
                    break;
                }
            }
        }
    }

    intake.cancel();
    dispatcher.await?.context("the dispatcher failed")?;
    bus.close_jobs();
    worker.await?.context("the worker failed")?;
    let unstarted: Vec<_> = bus
        .take_waiting_jobs()
        .await
        .into_iter()
        .map(|job| job.url_id)
        .collect();
    store
        .release(&unstarted)
        .await
        .context("cannot give back the leases of unstarted jobs")?;
    bus.close_observations();
    collector_stop.cancel();
    collector.await?.context("the collector failed")?;
    store.close().await;
    Ok(())
}

/// True when every URL has expired (or there is none).
async fn nothing_left(store: &Store) -> anyhow::Result<bool> {
    let status = store.status(Utc::now()).await?;
    Ok(status
        .by_phase
        .iter()
        .all(|(phase, _)| *phase == Phase::Expired))
}

/// Spawns a role; a role that ends (normally only at shutdown, but also when
/// it fails) stops the whole monitor, so a dead role is never left unnoticed.
fn spawn_role<T: Send + 'static>(
    role: impl std::future::Future<Output = T> + Send + 'static,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<T> {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let ended = role.await;
        shutdown.cancel();
        ended
    })
}
