//! `tdmon run`: the embedded monitor on a SQLite file (see `crate::embedded`),
//! with a live progress line on a terminal. SIGINT or SIGTERM stops intake,
//! drains what is in flight and exits cleanly; a second one exits at once.
//! Running it again on the same file resumes where it stopped.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tdmon_collector::Totals;
use tdmon_core::notice::{Duplicate, Entry, Notice, NoticeRules};
use tdmon_store::{DuplicateReason, Status, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::cli::{InputFormat, NotifyArgs, RunArgs, StoreArgs};
use crate::commands::notices::{self, NoticeFile};
use crate::config::Config;

pub(crate) fn run(args: RunArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let url = store_url(&args.store, config);
        let store = open(&url, config).await?;
        let lock = store.lock_monitor().await?;
        let mut exit = Exit::Success;
        if let Some(file) = &args.notices {
            exit =
                add_notices(&store, file, args.input_format, &config.notices, Utc::now()).await?;
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::signals::stop_on_signal(
            shutdown.clone(),
            "finishing the checks in flight",
            config.shutdown.drain_timeout,
        ));
        let parts = tdmon_http::Parts {
            probes: vec![("store", tdmon_http::store_probe(store.clone()))],
            api: Some(tdmon_http::Api::new(
                store.clone(),
                config.notices.clone(),
                config.worker.hoster_map().clone(),
                config.measurement.norms.clone(),
            )),
            phases_from: Some(store.clone()),
        };
        let http = crate::distributed::serve_http(config, parts, &shutdown).await?;
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
        if let Some(http) = http {
            http.stopped().await;
        }
        result?;
        let reopened = open(&url, config).await?;
        eprintln!("{}", status_line(&reopened.status(Utc::now()).await?));
        reopened.close().await;
        lock.release().await;
        Ok(exit)
    })
}

pub(crate) fn notify(args: NotifyArgs, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = open(&store_url(&args.store, config), config).await?;
        let exit = add_notices(
            &store,
            &args.file,
            args.input_format,
            &config.notices,
            Utc::now(),
        )
        .await?;
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
    // The store's error names the store; no context to add.
    Ok(Store::open_with(url, &options).await?)
}

/// Notices stored per transaction while a file is read.
const NOTICE_BATCH: usize = 1_000;

/// Reads a notice file and stores its notices, [`NOTICE_BATCH`] per
/// transaction, so that memory stays flat whatever the file's size. Every
/// problem goes to stderr as it is found, as `tdmon notices validate` prints
/// it, and a summary at the end. `now` is the time of intake: the notice
/// time window's reference, and when the URLs' schedules start.
///
/// Duplicates within the file are found by the parser (a compact index of
/// key hashes, see `tdmon_core::notice`), with the line they repeat; notices
/// stored before, by an earlier file or an earlier run, are reported by the
/// store as already stored. The file is read synchronously: this runs before
/// the monitor starts, or alone in `tdmon notify`.
pub(crate) async fn add_notices(
    store: &Store,
    file: &Path,
    format: Option<InputFormat>,
    rules: &NoticeRules,
    now: DateTime<Utc>,
) -> anyhow::Result<Exit> {
    let mut batch = Batch::default();
    let mut tally = Tally::default();
    for entry in NoticeFile::open(file, format, rules, now)? {
        let entry = entry?;
        if let Some(problem) = notices::problem_line(&entry) {
            eprintln!("{problem}");
        }
        match entry {
            Entry::Notice { line, notice } => {
                batch.lines.push(line);
                batch.notices.push(notice);
                if batch.notices.len() >= NOTICE_BATCH {
                    batch.store(store, now, &mut tally).await?;
                }
            }
            Entry::Rejected(_) => tally.rejected += 1,
            Entry::Duplicate(_) => tally.duplicates += 1,
            Entry::Warning(_) => {}
        }
    }
    batch.store(store, now, &mut tally).await?;
    eprintln!(
        "{}: {} added, {} already stored, {} rejected, {} in the file",
        file.display(),
        notices::plural(tally.added, "notice"),
        tally.already_stored,
        notices::plural(tally.rejected, "line"),
        notices::plural(tally.duplicates, "duplicate"),
    );
    Ok(if tally.rejected == 0 && tally.duplicates == 0 {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

/// Valid notices waiting to be stored, with their lines.
#[derive(Debug, Default)]
struct Batch {
    lines: Vec<u64>,
    notices: Vec<Notice>,
}

#[derive(Debug, Default)]
struct Tally {
    added: u64,
    already_stored: u64,
    rejected: u64,
    duplicates: u64,
}

impl Batch {
    async fn store(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let (Some(&first), Some(&last)) = (self.lines.first(), self.lines.last()) else {
            return Ok(());
        };
        let added = store
            .add_notices(&self.notices, now)
            .await
            .with_context(|| {
                format!(
                    "cannot store the notices of lines {first} to {last}; those before are \
                     stored, and adding the file again reports them as already stored"
                )
            })?;
        tally.added += added.added.len() as u64;
        for (index, reason) in &added.duplicates {
            let line = self.lines[*index];
            match reason {
                // Two notices of the file whose times differ below the
                // microsecond are one to the store, which keeps microseconds.
                DuplicateReason::InInput { first, key } => {
                    tally.duplicates += 1;
                    let duplicate = Duplicate {
                        line,
                        duplicate_of: self.lines[*first],
                        key: key.clone(),
                    };
                    eprintln!("{duplicate}");
                }
                DuplicateReason::Stored { .. } => {
                    tally.already_stored += 1;
                    eprintln!("line {line}: {reason}");
                }
            }
        }
        self.lines.clear();
        self.notices.clear();
        Ok(())
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
