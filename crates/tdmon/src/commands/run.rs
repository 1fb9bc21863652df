//! `tdmon run`: the embedded monitor on a SQLite file (see `crate::embedded`),
//! with a live progress line on a terminal. SIGINT or SIGTERM stops intake,
//! drains what is in flight and exits cleanly; a second one exits at once.
//! Running it again on the same file resumes where it stopped.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use tdmon_collector::Totals;
use tdmon_store::{Status, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::cli::{NotifyArgs, RunArgs, StoreArgs};
use crate::commands::notices;
use crate::config::Config;

pub(crate) fn run(args: RunArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let url = store_url(&args.store, config);
        let _lock = lock_sqlite(&url)?;
        let store = open(&url, config).await?;
        let mut exit = Exit::Success;
        if let Some(file) = &args.notices {
            exit = add_notices(&store, file, args.input_format).await?;
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let (totals, watch_totals) = watch::channel(Totals::default());
        let progress = std::io::stderr()
            .is_terminal()
            .then(|| tokio::spawn(show_progress(store.clone(), watch_totals, shutdown.clone())));
        let result = crate::embedded::run(
            config,
            store.clone(),
            shutdown.clone(),
            args.exit_when_done,
            totals,
        )
        .await;
        shutdown.cancel();
        if let Some(progress) = progress {
            let _ = progress.await;
        }
        result?;
        let reopened = open(&url, config).await?;
        eprintln!("{}", status_line(&reopened.status(Utc::now()).await?));
        reopened.close().await;
        Ok(exit)
    })
}

pub(crate) fn notify(args: NotifyArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = open(&store_url(&args.store, config), config).await?;
        let exit = add_notices(&store, &args.file, args.input_format).await?;
        store.close().await;
        Ok(exit)
    })
}

pub(crate) fn status(args: StoreArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = open(&store_url(&args, config), config).await?;
        let status = store.status(Utc::now()).await?;
        store.close().await;
        println!("store: {}", store.url());
        for (phase, count) in &status.by_phase {
            println!("{:>10}  {}", count, phase.as_str());
        }
        println!("{:>10}  due now", status.due_now);
        println!("{:>10}  leased (being checked)", status.leased);
        println!("{:>10}  observations", status.observations);
        println!(
            "{:>10}  unattributed observations (an address no ASN database or override named)",
            status.unattributed
        );
        println!("{:>10}  events", status.events);
        match status.next_due {
            Some(at) => println!("next check due at {}", at.to_rfc3339()),
            None => println!("no check is due: every URL has expired"),
        }
        Ok(Exit::Success)
    })
}

/// `--db PATH` wins over `store.url`.
fn store_url(args: &StoreArgs, config: &Config) -> String {
    match &args.db {
        Some(path) => format!("sqlite://{}", path.display()),
        None => config.store.url.clone(),
    }
}

pub(crate) async fn open(url: &str, config: &Config) -> anyhow::Result<Store> {
    let options = tdmon_store::StoreOptions {
        schema: config.store.schema.clone(),
    };
    Store::open_with(url, &options)
        .await
        .with_context(|| format!("cannot open the store {}", tdmon_store::mask_url(url)))
}

/// One embedded monitor per SQLite file: a second `tdmon run` on the same file
/// would hand out the same leases twice. The lock is released with the process.
fn lock_sqlite(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    // sqlite://PATH and sqlite:PATH, with or without ?options.
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    let lock_path = format!("{path}.lock");
    let file = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot create the lock file {lock_path}"))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!("another tdmon run is already monitoring {path} (it holds {lock_path})")
    })?;
    Ok(Some(file))
}

async fn add_notices(
    store: &Store,
    file: &std::path::Path,
    format: Option<crate::cli::InputFormat>,
) -> anyhow::Result<Exit> {
    let load = notices::load_reporting(file, format)?;
    let notices: Vec<_> = load
        .accepted
        .iter()
        .map(|(_, notice)| notice.clone())
        .collect();
    let added = store
        .add_notices(&notices, Utc::now())
        .await
        .context("cannot store the notices")?;
    eprintln!(
        "{}: {} notices added, {} already stored, {} lines rejected",
        file.display(),
        added.added.len(),
        added.duplicates.len(),
        load.rejected.len()
    );
    Ok(if load.is_clean() {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    wait_for_signal().await;
    eprintln!("\ntdmon: stopping: finishing the checks in flight (again to exit at once)");
    shutdown.cancel();
    wait_for_signal().await;
    eprintln!("tdmon: exiting at once; unfinished checks will be redone");
    std::process::exit(130);
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn status_line(status: &Status) -> String {
    let phases: Vec<String> = status
        .by_phase
        .iter()
        .map(|(phase, count)| format!("{count} {}", phase.as_str()))
        .collect();
    format!(
        "URLs: {} | observations: {} ({} unattributed) | events: {}",
        if phases.is_empty() {
            "none".to_owned()
        } else {
            phases.join(", ")
        },
        status.observations,
        status.unattributed,
        status.events
    )
}

/// A status line, redrawn every second: URLs by state, checks/s, events.
async fn show_progress(store: Store, totals: watch::Receiver<Totals>, shutdown: CancellationToken) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let Ok(status) = store.status(Utc::now()).await else {
            continue;
        };
        let done = *totals.borrow();
        let rate = done.observations as f64 / start.elapsed().as_secs_f64().max(1.0);
        eprint!("\r\x1b[2K{} | {rate:.1} checks/s", status_line(&status));
    }
    eprintln!();
}
