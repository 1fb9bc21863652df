//! The distributed deployment: each role its own process, over RabbitMQ
//! (`tdmon-bus-amqp`) and one store, PostgreSQL in practice. The role code is
//! the embedded monitor's; what this adds is how each process starts, shares
//! the work and stops (docs/ARCHITECTURE.md):
//!
//! - **dispatcher**: every dispatcher process takes notices in from the
//!   intake queue (storing a notice twice is impossible, so they may all do
//!   it), but only one dispatches: the holder of the store's dispatch lock (a
//!   PostgreSQL advisory lock on a connection of its own, the lock the
//!   embedded monitor takes). The others stand by and try again every
//!   [`STANDBY_POLL`]; the lock goes with its connection, so a killed
//!   dispatcher is replaced within that. Leases held by live workers are
//!   left alone: only the embedded monitor gives every lease back at start.
//!   A dispatcher that loses its lock (the server restarted, the connection
//!   dropped) stops dispatching at once and stands by again.
//! - **worker** and **collector**: as many as needed; the broker shares the
//!   queue between them. Two collectors never apply observations of one URL
//!   at once (the store locks its row) and never apply one twice (job ids).
//!
//! Every process stops on SIGTERM or SIGINT: it stops consuming, finishes
//! and settles what it holds, and closes the bus; what it had not taken the
//! broker delivers to another process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tdmon_bus::Bus as _;
use tdmon_bus_amqp::AmqpBus;
use tdmon_collector::Collector;
use tdmon_dispatcher::{Dispatcher, Intake};
use tdmon_http::{Api, Parts, Probe, Serving};
use tdmon_store::{MonitorLock, Store, StoreError};
use tdmon_worker::Checker;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often a standing-by dispatcher tries to take the dispatch lock, and
/// how often the active one makes sure it still holds it.
pub(crate) const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The dispatcher process: notice intake, and dispatching while it holds the
/// store's dispatch lock.
pub(crate) async fn dispatcher(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = crate::commands::run::open(&config.store.url, config).await?;
    let broker = Arc::new(OnceLock::new());
    let parts = Parts {
        probes: vec![
            ("store", tdmon_http::store_probe(store.clone())),
            ("broker", broker_probe(&broker)),
        ],
        api: Some(Api::new(
            store.clone(),
            config.notices.clone(),
            config.worker.hoster_map().clone(),
            config.measurement.norms.clone(),
        )),
        phases_from: Some(store.clone()),
    };
    let http = serve_http(config, parts, &shutdown).await?;
    let Some(bus) = connect(config, "dispatcher", &shutdown, &broker).await? else {
        return Ok(());
    };
    let intake = Intake::new(
        store.clone(),
        Arc::clone(&bus),
        config.notices.clone(),
        config.dispatcher.clone(),
    );
    let intake = tokio::spawn(intake.run(shutdown.clone()));
    let stop_intake = stop_consuming_on(&bus, &shutdown);

    while let Some(mut lock) = elect(&store, &shutdown).await? {
        tracing::info!("active: this dispatcher holds the dispatch lock");
        let active = shutdown.child_token();
        let dispatcher =
            Dispatcher::new(store.clone(), Arc::clone(&bus), config.dispatcher.clone());
        let mut dispatching = tokio::spawn(dispatcher.run(active.clone()));
        let lost = loop {
            tokio::select! {
                ended = &mut dispatching => {
                    ended?.context("the dispatcher failed")?;
                    break false;
                }
                () = tokio::time::sleep(STANDBY_POLL) => {
                    if !lock.is_held(STANDBY_POLL * 2).await {
                        break true;
                    }
                }
            }
        };
        if !lost {
            lock.release().await;
            break;
        }
        tracing::warn!(
            "lost the dispatch lock (its connection to the store dropped); \
             stopped dispatching, standing by"
        );
        active.cancel();
        dispatching.await?.context("the dispatcher failed")?;
    }
    stop_intake.await?;
    let totals = intake.await?.context("the notice intake failed")?;
    tracing::info!(
        added = totals.added,
        duplicates = totals.duplicates,
        refused = totals.refused,
        "notice intake stopped"
    );
    if let Some(http) = http {
        http.stopped().await;
    }
    bus.close().await;
    store.close().await;
    Ok(())
}

/// Waits until this process holds the store's dispatch lock; `None` at
/// shutdown. A store that cannot be reached is retried: a dispatcher outlives
/// a database restart.
async fn elect(store: &Store, shutdown: &CancellationToken) -> anyhow::Result<Option<MonitorLock>> {
    let mut told = None;
    loop {
        match store.lock_monitor().await {
            Ok(lock) => return Ok(Some(lock)),
            Err(e) if e.is_configuration() => return Err(e.into()),
            Err(e) => {
                let standby = matches!(e, StoreError::Locked { .. });
                if told != Some(standby) {
                    let error = tdmon_core::error_chain(&e);
                    if standby {
                        tracing::info!(%error, "standing by");
                    } else {
                        tracing::warn!(%error, "cannot take the dispatch lock; retrying");
                    }
                    told = Some(standby);
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(STANDBY_POLL) => {}
        }
    }
}

/// A worker process.
pub(crate) async fn worker(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let checker = Arc::new(
        Checker::new(config.worker.clone(), config.measurement.verdicts.clone())
            .context("cannot start the worker")?,
    );
    crate::signals::reload_asn_db_on_hangup(Checker::clone(&checker));
    let broker = Arc::new(OnceLock::new());
    let parts = Parts {
        probes: vec![("broker", broker_probe(&broker))],
        api: None,
        phases_from: None,
    };
    let http = serve_http(config, parts, &shutdown).await?;
    let Some(bus) = connect(config, "worker", &shutdown, &broker).await? else {
        return Ok(());
    };
    let stop = stop_consuming_on(&bus, &shutdown);
    let ran = tdmon_worker::run(checker, Arc::clone(&bus), shutdown).await;
    stop.await?;
    if let Some(http) = http {
        http.stopped().await;
    }
    bus.close().await;
    ran.context("the worker failed")
}

/// A collector process.
pub(crate) async fn collector(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = crate::commands::run::open(&config.store.url, config).await?;
    let broker = Arc::new(OnceLock::new());
    let parts = Parts {
        probes: vec![
            ("store", tdmon_http::store_probe(store.clone())),
            ("broker", broker_probe(&broker)),
        ],
        api: None,
        phases_from: None,
    };
    let http = serve_http(config, parts, &shutdown).await?;
    let Some(bus) = connect(config, "collector", &shutdown, &broker).await? else {
        return Ok(());
    };
    let stop = stop_consuming_on(&bus, &shutdown);
    let collector = Collector::new(
        store.clone(),
        Arc::clone(&bus),
        config.measurement.rules.clone(),
        config.measurement.verdicts.clone(),
        config.collector.clone(),
    );
    let ran = collector.run(shutdown, None).await;
    stop.await?;
    if let Some(http) = http {
        http.stopped().await;
    }
    bus.close().await;
    store.close().await;
    ran.context("the collector failed")
}

/// Connects to the broker, retrying (and saying so) while it cannot be
/// reached; `None` when shut down first.
async fn connect(
    config: &Config,
    role: &str,
    shutdown: &CancellationToken,
    connected: &OnceLock<Arc<AmqpBus>>,
) -> anyhow::Result<Option<Arc<AmqpBus>>> {
    tokio::select! {
        () = shutdown.cancelled() => Ok(None),
        bus = AmqpBus::connect(config.bus.clone(), role) => {
            let bus = Arc::new(bus.context("cannot set up the RabbitMQ topology")?);
            tracing::info!(connection = bus.connection_name(), "connected to the broker");
            let _ = connected.set(Arc::clone(&bus));
            Ok(Some(bus))
        }
    }
}

/// Serves HTTP for this process when `http.listen` is set, until `stop`.
pub(crate) async fn serve_http(
    config: &Config,
    parts: Parts,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Serving>> {
    Ok(tdmon_http::serve(&config.http, parts, stop.clone()).await?)
}

/// Readiness of the broker: not before the first connection, then one
/// passive declaration of the checks queue (a round trip to the broker).
fn broker_probe(connected: &Arc<OnceLock<Arc<AmqpBus>>>) -> Probe {
    let connected = Arc::clone(connected);
    Arc::new(move || {
        let bus = connected.get().cloned();
        Box::pin(async move {
            match bus {
                None => Err("connecting".to_owned()),
                Some(bus) => bus
                    .jobs_waiting()
                    .await
                    .map(|_| ())
                    .map_err(|e| tdmon_core::error_chain(&e)),
            }
        })
    })
}

/// Stops the bus's consumption at shutdown: every `next_*` then returns, so
/// each role finishes what it holds and ends.
fn stop_consuming_on(
    bus: &Arc<AmqpBus>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let bus = Arc::clone(bus);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        bus.stop_consuming();
    })
}
