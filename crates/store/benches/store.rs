//! The store benchmark: a million monitored URLs in SQLite and in PostgreSQL.
//!
//! ```text
//! cargo bench -p tdmon-store --bench store -- [--urls N] [--backend sqlite|postgres|both]
//!     [--observations N] [--leases N] [--dir PATH] [--statements] [--keep]
//! ```
//!
//! For each backend, on a fresh database (SQLite: a file in a temporary
//! directory, or in `--dir`; PostgreSQL: a schema `tdmon_bench_<random>` in
//! `TDMON_BENCH_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`;
//! either removed at the end, also on failure or Ctrl-C, unless `--keep`
//! after a run that succeeded, which prints `kept PATH` or `kept schema NAME`):
//!
//! 1. load `--urls` notices through `add_notices`, 10,000 per call, with
//!    notice times spread over 90 days so that 10% of the URLs are due at the
//!    benchmark's "now" (a fixed virtual clock);
//! 2. bytes on disk per URL;
//! 3. `lease_due(now, 1000, 10 min)` `--leases` times, each leasing another
//!    batch (checked: 1,000 new ids each time);
//! 4. observations for the leased URLs, then rounds of "lease 1,000, observe
//!    them, apply in batches of 500" with the virtual clock one minute later
//!    each round, until `--observations` are stored; every `apply_observations`
//!    call is timed;
//! 5. bytes on disk per observation, `status(now)`, and the query plans of
//!    the lease.
//!
//! `--statements` also sums the time of every SQL statement by its first
//! four words (sqlx's query log), per phase: where a call's time goes. It
//! costs a little, so leave it out of runs whose figures are reported.
//!
//! Prints one markdown table, one column per backend. Everything that is
//! timed goes through the public API of `tdmon-store`; the benchmark opens a
//! connection of its own only to measure sizes and to show query plans.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tdmon_core::message::{DnsOutcome, DnsResult, HttpResult, RedirectHop, SchemaV1};
use tdmon_core::notice::Notice;
use tdmon_core::state::Rules;
use tdmon_core::url::NormalizedUrl;
use tdmon_core::{Observation, Outcome};
use tdmon_store::{Backend, DueUrl, Store, StoreOptions};
use uuid::Uuid;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const LOAD_BATCH: usize = 10_000;
const LEASE_BATCH: usize = 1_000;
const APPLY_BATCH: usize = 500;
const LEASE: Duration = Duration::from_secs(600);
/// Share of the URLs due at the virtual "now": notice times are spread over
/// `SPREAD_DAYS`, the first `DUE_DAYS` of them before now.
const SPREAD_DAYS: i64 = 90;
const DUE_DAYS: i64 = 9;
/// Distinct hosts among the URLs.
const HOSTS: u64 = 40_000;

#[derive(Debug, Clone)]
struct Args {
    urls: usize,
    observations: usize,
    leases: usize,
    sqlite: bool,
    postgres: bool,
    dir: Option<PathBuf>,
    /// Time spent per kind of SQL statement, from sqlx's query log.
    statements: bool,
    /// Keep the SQLite file (for looking at it afterwards).
    keep: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        urls: 1_000_000,
        observations: 200_000,
        leases: 20,
        sqlite: true,
        postgres: true,
        dir: None,
        statements: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // Passed by `cargo bench` to every bench target.
            "--bench" => {}
            "--urls" => args.urls = number(&value("--urls")?)?,
            "--observations" => args.observations = number(&value("--observations")?)?,
            "--leases" => args.leases = number(&value("--leases")?)?,
            "--dir" => args.dir = Some(PathBuf::from(value("--dir")?)),
            "--statements" => args.statements = true,
            "--keep" => args.keep = true,
            "--backend" => {
                let backend = value("--backend")?;
                (args.sqlite, args.postgres) = match backend.as_str() {
                    "sqlite" => (true, false),
                    "postgres" => (false, true),
                    "both" => (true, true),
                    other => bail!("--backend {other:?}: expected sqlite, postgres or both"),
                };
            }
            other => bail!(
                "unknown argument {other:?}; usage: [--urls N] [--backend sqlite|postgres|both] \
                 [--observations N] [--leases N] [--dir PATH] [--statements] [--keep]"
            ),
        }
    }
    if args.urls < LOAD_BATCH {
        bail!("--urls must be at least {LOAD_BATCH}");
    }
    Ok(args)
}

/// `1000000`, `1_000_000` or `1,000,000`.
fn number(text: &str) -> Result<usize> {
    let digits: String = text.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    digits
        .parse()
        .with_context(|| format!("{text:?} is not a number"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let args = parse_args()?;
    if args.statements {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(statements::Timings)
            .try_init()
            .context("installing the statement log")?;
    }
    let mut reports = Vec::new();
    if args.sqlite {
        reports.push(bench_sqlite(&args).await.context("SQLite")?);
    }
    if args.postgres {
        reports.push(bench_postgres(&args).await.context("PostgreSQL")?);
    }
    println!("{}", render(&args, &reports));
    Ok(())
}

// ---------------------------------------------------------------- backends

async fn bench_sqlite(args: &Args) -> Result<Report> {
    let dir = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")?;
    let path = dir.path().join("tdmon-bench.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.context("opening the store")?;
    let mut probe = SqliteConnection::connect_with(
        &SqliteConnectOptions::from_str(&url)?.busy_timeout(Duration::from_secs(30)),
    )
    .await
    .context("opening the probe connection")?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut probe)
        .await?;
    let mut sizes = SqliteSizes { path, probe };
    let report = bench_store(args, &store, format!("SQLite {version}"), &mut sizes).await;
    store.close().await;
    if args.keep {
        let kept = dir.keep();
        eprintln!("kept {}", kept.join("tdmon-bench.db").display());
    }
    report
}

async fn bench_postgres(args: &Args) -> Result<Report> {
    let url = std::env::var("TDMON_BENCH_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into());
    let schema = format!("tdmon_bench_{}", Uuid::new_v4().simple());
    let task = {
        let (args, url, schema) = (args.clone(), url.clone(), schema.clone());
        tokio::spawn(async move {
            let options = StoreOptions {
                schema: Some(schema.clone()),
            };
            let store = Store::open_with(&url, &options)
                .await
                .context("opening the store (is PostgreSQL running? see TDMON_BENCH_POSTGRES)")?;
            let mut probe = PgConnection::connect(&url).await?;
            sqlx::query(AssertSqlSafe(format!("SET search_path = {schema}")))
                .execute(&mut probe)
                .await?;
            let version: String = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&mut probe)
                .await?;
            let mut sizes = PgSizes { schema, probe };
            let report =
                bench_store(&args, &store, format!("PostgreSQL {version}"), &mut sizes).await;
            store.close().await;
            report
        })
    };
    let abort = task.abort_handle();
    let outcome = tokio::select! {
        joined = task => joined.map_err(anyhow::Error::from).and_then(|report| report),
        _ = tokio::signal::ctrl_c() => {
            abort.abort();
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    if args.keep && outcome.is_ok() {
        eprintln!("kept schema {schema}");
    } else if let Err(e) = drop_schema(&url, &schema).await {
        eprintln!("could not drop schema {schema}: {e:#}");
    }
    outcome
}

async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    // Waits for the connections of an aborted run to let go.
    sqlx::query("SET lock_timeout = '30s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// What the benchmark needs beyond the public API: sizes on disk and plans.
trait Probe {
    /// Bytes on disk per table, indexes included, and in all.
    async fn sizes(&mut self) -> Result<Sizes>;
    /// Prepares the database for the timed reads after the bulk load.
    async fn after_load(&mut self) -> Result<()>;
    /// The lease's query plan at `now`.
    async fn lease_plan(&mut self, now: DateTime<Utc>) -> Result<String>;
    /// Facts that explain the figures: row sizes, update statistics.
    async fn facts(&mut self) -> Result<Vec<String>>;
}

#[derive(Debug, Clone, Default)]
struct Sizes {
    /// `(table, bytes with its indexes)`.
    tables: Vec<(String, u64)>,
    total: u64,
}

impl Sizes {
    fn of(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, bytes)| *bytes)
    }
}

struct SqliteSizes {
    path: PathBuf,
    probe: SqliteConnection,
}

impl Probe for SqliteSizes {
    async fn sizes(&mut self) -> Result<Sizes> {
        // Move the WAL into the file, so that the file size is the size.
        for _ in 0..100 {
            let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut self.probe)
                .await?;
            let busy: i64 = row.try_get(0)?;
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let file = |suffix: &str| {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(&name).map_or(0, |m| m.len())
        };
        let total = file("") + file("-wal");
        let rows = sqlx::query(
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d \
             JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name ORDER BY m.tbl_name",
        )
        .fetch_all(&mut self.probe)
        .await
        .context("reading dbstat")?;
        let tables = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, u64::try_from(row.try_get::<i64, _>(1)?)?)))
            .collect::<Result<_>>()?;
        Ok(Sizes { tables, total })
    }

    async fn after_load(&mut self) -> Result<()> {
        // The store runs no ANALYZE; neither does the benchmark.
        Ok(())
    }

    async fn lease_plan(&mut self, now: DateTime<Utc>) -> Result<String> {
        let until = now + TimeDelta::from_std(LEASE)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            Backend::Sqlite.lease_statement()
        )))
        .bind(now.timestamp_micros())
        .bind(until.timestamp_micros())
        .bind(LEASE_BATCH as i64)
        .fetch_all(&mut self.probe)
        .await?;
        let mut plan = String::new();
        for row in rows {
            let detail: String = row.try_get("detail")?;
            writeln!(plan, "{detail}")?;
        }
        Ok(plan)
    }
    async fn facts(&mut self) -> Result<Vec<String>> {
        let row = sqlx::query(
            "SELECT AVG(LENGTH(state)), AVG(LENGTH(url)), \
             (SELECT AVG(LENGTH(dns_answers) + COALESCE(LENGTH(redirects), 0)) FROM observations) \
             FROM urls",
        )
        .fetch_one(&mut self.probe)
        .await?;
        let state: f64 = row.try_get(0)?;
        let url: f64 = row.try_get(1)?;
        let json: Option<f64> = row.try_get(2)?;
        Ok(vec![
            format!("urls.state JSON: {state:.0} bytes on average; url: {url:.0} bytes"),
            format!(
                "observations dns_answers + redirects JSON: {:.0} bytes on average",
                json.unwrap_or(f64::NAN)
            ),
        ])
    }
}

struct PgSizes {
    schema: String,
    probe: PgConnection,
}

impl Probe for PgSizes {
    async fn sizes(&mut self) -> Result<Sizes> {
        let rows = sqlx::query(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname",
        )
        .bind(&self.schema)
        .fetch_all(&mut self.probe)
        .await?;
        let tables: Vec<(String, u64)> = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, u64::try_from(row.try_get::<i64, _>(1)?)?)))
            .collect::<Result<_>>()?;
        let total = tables.iter().map(|(_, bytes)| bytes).sum();
        Ok(Sizes { tables, total })
    }

    async fn after_load(&mut self) -> Result<()> {
        // What autovacuum does sooner or later; done now so that every run
        // plans with statistics.
        sqlx::query("ANALYZE").execute(&mut self.probe).await?;
        Ok(())
    }

    async fn lease_plan(&mut self, now: DateTime<Utc>) -> Result<String> {
        let until = now + TimeDelta::from_std(LEASE)?;
        let mut plan = String::new();
        sqlx::query(AssertSqlSafe(format!(
            "PREPARE bench_lease(timestamptz, timestamptz, bigint) AS {}",
            Backend::Postgres.lease_statement()
        )))
        .execute(&mut self.probe)
        .await?;
        let modes = [
            ("custom plan", "force_custom_plan"),
            ("generic plan", "force_generic_plan"),
        ];
        for (label, mode) in modes {
            // EXPLAIN ANALYZE leases for real: rolled back.
            let mut tx = self.probe.begin().await?;
            sqlx::query(AssertSqlSafe(format!("SET LOCAL plan_cache_mode = {mode}")))
                .execute(&mut *tx)
                .await?;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_lease('{}', '{}', {LEASE_BATCH})",
                now.to_rfc3339(),
                until.to_rfc3339()
            )))
            .fetch_all(&mut *tx)
            .await?;
            tx.rollback().await?;
            writeln!(plan, "-- {label}")?;
            for row in rows {
                let line: String = row.try_get(0)?;
                writeln!(plan, "{line}")?;
            }
        }
        // PREPARE is not transactional.
        sqlx::query("DEALLOCATE bench_lease")
            .execute(&mut self.probe)
            .await?;
        Ok(plan)
    }
    async fn facts(&mut self) -> Result<Vec<String>> {
        let mut facts = Vec::new();
        let row = sqlx::query(
            "SELECT AVG(pg_column_size(state))::float8, AVG(pg_column_size(url))::float8 FROM urls",
        )
        .fetch_one(&mut self.probe)
        .await?;
        let (state, url): (f64, f64) = (row.try_get(0)?, row.try_get(1)?);
        facts.push(format!(
            "urls.state jsonb: {state:.0} bytes on average; url: {url:.0} bytes"
        ));
        let rows = sqlx::query(
            "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, \
             COALESCE(last_autovacuum::text, 'never') FROM pg_stat_user_tables \
             WHERE schemaname = $1 ORDER BY relname",
        )
        .bind(&self.schema)
        .fetch_all(&mut self.probe)
        .await?;
        for row in rows {
            let (table, ins, upd, hot, dead, vacuum): (String, i64, i64, i64, i64, String) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            );
            facts.push(format!(
                "{table}: {ins} inserted, {upd} updated of which {hot} HOT, \
                 {dead} dead tuples, last autovacuum {vacuum}"
            ));
        }
        Ok(facts)
    }
}

// --------------------------------------------------------------- the bench

#[derive(Debug, Default)]
struct Report {
    backend: String,
    urls: usize,
    load_wall: Duration,
    /// URLs per second of each `add_notices` call.
    load_rates: Vec<f64>,
    after_load: Sizes,
    due_at_start: tdmon_store::Capped,
    /// The leases at the start (ms), in order.
    leases: Vec<f64>,
    /// The leases of the write rounds (ms).
    round_leases: Vec<f64>,
    /// Each `apply_observations` call: (observations, ms).
    applies: Vec<(usize, f64)>,
    apply_wall: Duration,
    observations: u64,
    /// Rounds that found fewer than 1,000 URLs due.
    clock_jumps: u64,
    end_clock: DateTime<Utc>,
    events: u64,
    after_observations: Sizes,
    status_ms: Vec<f64>,
    plan_start: String,
    plan_end: String,
    facts: Vec<String>,
    /// `--statements`: per phase, (statement, calls, seconds), most time first.
    statements: Vec<(&'static str, statements::Totals)>,
}

async fn bench_store(
    args: &Args,
    store: &Store,
    backend: String,
    probe: &mut impl Probe,
) -> Result<Report> {
    let start_of_notices = t0() - TimeDelta::days(DUE_DAYS) - TimeDelta::hours(1);
    let mut report = Report {
        backend,
        urls: args.urls,
        ..Report::default()
    };
    eprintln!("[{}] loading {} URLs", report.backend, args.urls);

    // 1. Load.
    let mut rng = Rng(0x7d30_11aa);
    let load_started = Instant::now();
    let mut loaded = 0;
    while loaded < args.urls {
        let n = LOAD_BATCH.min(args.urls - loaded);
        let notices: Vec<Notice> = (loaded..loaded + n)
            .map(|i| notice(&mut rng, i as u64))
            .collect();
        let started = Instant::now();
        let added = store.add_notices(&notices, start_of_notices).await?;
        let took = started.elapsed();
        if added.added.len() != n {
            bail!("add_notices added {} of {n}", added.added.len());
        }
        report.load_rates.push(n as f64 / took.as_secs_f64());
        loaded += n;
        if (loaded / LOAD_BATCH).is_multiple_of(10) {
            eprintln!(
                "[{}] {loaded} loaded, {:.0} s, last batch {:.0} URLs/s",
                report.backend,
                load_started.elapsed().as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
        }
    }
    report.load_wall = load_started.elapsed();
    report.statements.push(("load", statements::take()));
    probe.after_load().await?;
    report.after_load = probe.sizes().await?;
    let status = store.status(t0()).await?;
    eprintln!(
        "[{}] loaded in {:.0} s; due now {}, next due {:?}, phases {:?}",
        report.backend,
        report.load_wall.as_secs_f64(),
        status.due_now,
        status.next_due,
        status.by_phase
    );
    report.due_at_start = status.due_now;
    report.plan_start = probe.lease_plan(t0()).await?;

    // 2. Lease at "now", each call another batch.
    eprintln!("[{}] leasing", report.backend);
    statements::take(); // The probe's queries since the load.
    let mut leased_ids = HashSet::new();
    let mut pending: Vec<DueUrl> = Vec::new();
    for _ in 0..args.leases {
        let started = Instant::now();
        let due = store.lease_due(t0(), LEASE_BATCH, LEASE).await?;
        report.leases.push(ms(started.elapsed()));
        check_new(&mut leased_ids, &due)?;
        pending.extend(due);
    }

    report.statements.push(("lease", statements::take()));

    // 3. Observations: first for the URLs leased above, then lease-observe-apply rounds.
    eprintln!("[{}] applying observations", report.backend);
    let rules = Rules::default();
    let mut now = t0() + TimeDelta::seconds(5);
    let mut stored = 0;
    let mut step = TimeDelta::minutes(1);
    let mut dry = 0;
    let apply_started = Instant::now();
    while stored < args.observations {
        if pending.is_empty() {
            // One dispatcher round a minute; when the backlog runs dry, on
            // to when the next rechecks are due.
            now += step;
            let started = Instant::now();
            let due = store.lease_due(now, LEASE_BATCH, LEASE).await?;
            report.round_leases.push(ms(started.elapsed()));
            step = if due.len() < LEASE_BATCH {
                report.clock_jumps += 1;
                TimeDelta::minutes(30)
            } else {
                TimeDelta::minutes(1)
            };
            if due.is_empty() {
                dry += 1;
                if dry > 1_000 {
                    bail!("nothing due at {now} after {stored} observations");
                }
                continue;
            }
            dry = 0;
            pending = due;
        }
        let take = pending.len().min(args.observations - stored);
        let round: Vec<DueUrl> = pending.drain(..take).collect();
        for chunk in round.chunks(APPLY_BATCH) {
            let observations: Vec<Observation> = chunk
                .iter()
                .map(|due| observe(&mut rng, due, now))
                .collect();
            let started = Instant::now();
            let applied = store
                .apply_observations(&observations, now + TimeDelta::seconds(3), &rules)
                .await?;
            report.applies.push((chunk.len(), ms(started.elapsed())));
            if applied.new != chunk.len() {
                bail!(
                    "apply_observations stored {} of {}",
                    applied.new,
                    chunk.len()
                );
            }
            report.events += applied.events.len() as u64;
            stored += chunk.len();
        }
        if pending.is_empty() && (stored / LEASE_BATCH).is_multiple_of(20) {
            eprintln!("[{}] {stored} observations", report.backend);
        }
    }
    report.apply_wall = apply_started.elapsed();
    report.observations = stored as u64;
    report.end_clock = now;
    report.statements.push(("observations", statements::take()));
    report.facts = probe.facts().await?;
    report.after_observations = probe.sizes().await?;
    report.plan_end = probe.lease_plan(now + TimeDelta::minutes(1)).await?;
    statements::take(); // The probe's queries.
    for _ in 0..3 {
        let started = Instant::now();
        let status = store.status(now).await?;
        report.status_ms.push(ms(started.elapsed()));
        if status.observations != report.observations {
            bail!("status counts {} observations", status.observations);
        }
    }
    report.statements.push(("status", statements::take()));
    Ok(report)
}

fn check_new(seen: &mut HashSet<i64>, due: &[DueUrl]) -> Result<()> {
    if due.len() != LEASE_BATCH {
        bail!("leased {} URLs, expected {LEASE_BATCH}", due.len());
    }
    for d in due {
        if !seen.insert(d.url_id) {
            bail!("URL {} leased twice", d.url_id);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the data

/// The virtual "now" of the benchmark.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).expect("a valid time")
}

/// splitmix64: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const TLDS: &[&str] = &[
    "com", "net", "org", "ru", "nl", "de", "io", "xyz", "info", "top",
];
const CATEGORIES: &[&str] = &["csam", "phishing", "malware", "terrorism", "copyright"];
const EXTENSIONS: &[&str] = &["jpg", "png", "html", "php", "gif", "mp4", "zip"];

fn host_of(n: u64) -> String {
    let tld = TLDS[(n % TLDS.len() as u64) as usize];
    match n % 4 {
        0 => format!("img{}.host-{n}.{tld}", n % 7),
        1 => format!("www.site{n}.{tld}"),
        2 => format!("cdn-{n}.files.{tld}"),
        _ => format!("u{n}.freehost.{tld}"),
    }
}

/// Notice `i`: a unique URL on one of [`HOSTS`] hosts (a few hosts have many
/// URLs), its notice time spread over [`SPREAD_DAYS`] around [`t0`].
fn notice(rng: &mut Rng, i: u64) -> Notice {
    // Skewed: half the URLs on 1% of the hosts.
    let host = if rng.below(2) == 0 {
        rng.below(HOSTS / 100)
    } else {
        rng.below(HOSTS)
    };
    let ext = rng.pick(EXTENSIONS);
    let url = format!(
        "https://{}/{}/{:012x}/{:08x}{i}.{ext}",
        host_of(host),
        rng.pick(&["uploads", "images", "p", "files/2026", "gallery/view"]),
        rng.next() >> 16,
        rng.next() as u32,
    );
    let spread = SPREAD_DAYS * 86_400;
    let offset = TimeDelta::seconds(rng.below(spread as u64) as i64)
        + TimeDelta::microseconds(rng.below(1_000_000) as i64);
    Notice {
        url: NormalizedUrl::parse(&url).expect("the benchmark's URLs are valid"),
        notified_at: t0() - TimeDelta::days(DUE_DAYS) + offset,
        notice_id: (rng.below(5) != 0).then(|| format!("NTC-2026-{i:09}")),
        category: Some(rng.pick(CATEGORIES).to_owned()),
        reporter: (rng.below(2) == 0).then(|| format!("hotline-{:02}", rng.below(40))),
        claimed_hoster: (rng.below(2) == 0).then(|| format!("Hoster {} B.V.", host % 500)),
    }
}

/// What a worker could have seen checking `due`: mostly served, some gone,
/// some redirected, some DNS or connection failures.
fn observe(rng: &mut Rng, due: &DueUrl, now: DateTime<Utc>) -> Observation {
    let ip = IpAddr::V4(Ipv4Addr::from(
        0x5000_0000 | (rng.next() as u32 & 0x0fff_ffff),
    ));
    let roll = rng.below(100);
    let outcome = match roll {
        0..=69 => Outcome::Served,
        70..=81 => Outcome::HttpNotFound,
        82..=86 => Outcome::RedirectElsewhere,
        87..=91 => Outcome::DnsNxdomain,
        92..=95 => Outcome::ConnectTimeout,
        96..=97 => Outcome::HttpForbidden,
        _ => Outcome::TlsFailure,
    };
    let dns_ok = outcome != Outcome::DnsNxdomain;
    let started_at = now - TimeDelta::milliseconds(rng.below(4_000) as i64);
    let duration_ms = 40 + rng.below(3_000);
    let connected = dns_ok && outcome != Outcome::ConnectTimeout;
    let answers: Vec<IpAddr> = if dns_ok {
        let extra = rng.below(3) as u32;
        (0..=extra)
            .map(|k| match ip {
                IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(k))),
                v6 => v6,
            })
            .collect()
    } else {
        Vec::new()
    };
    let image = due.url.ends_with(".jpg") || due.url.ends_with(".png") || due.url.ends_with(".gif");
    let http = match outcome {
        Outcome::Served => Some(HttpResult {
            status: 200,
            content_type: Some(
                if image {
                    "image/jpeg"
                } else {
                    "text/html; charset=utf-8"
                }
                .into(),
            ),
            content_length: Some(1_000 + rng.below(2_000_000)),
            etag: (rng.below(2) == 0).then(|| format!("\"{:016x}\"", rng.next())),
            last_modified: (rng.below(2) == 0).then(|| "Tue, 12 May 2026 08:13:55 GMT".into()),
            location: None,
            // Sometimes via http -> https, or a share link.
            redirects: if rng.below(7) == 0 {
                vec![RedirectHop {
                    url: due.url.replacen("https://", "http://", 1),
                    status: 301,
                }]
            } else {
                Vec::new()
            },
            connection_reused: rng.below(2) == 0,
        }),
        Outcome::HttpNotFound | Outcome::HttpForbidden => Some(HttpResult {
            status: if outcome == Outcome::HttpNotFound {
                404
            } else {
                403
            },
            content_type: Some("text/html".into()),
            content_length: Some(150 + rng.below(5_000)),
            ..HttpResult::default()
        }),
        Outcome::RedirectElsewhere => Some(HttpResult {
            status: 200,
            content_type: Some("text/html; charset=utf-8".into()),
            content_length: Some(20_000 + rng.below(50_000)),
            redirects: vec![
                RedirectHop {
                    url: due.url.clone(),
                    status: 302,
                },
                RedirectHop {
                    url: format!("https://{}/removed?reason=abuse", due.host),
                    status: 301,
                },
            ],
            ..HttpResult::default()
        }),
        _ => None,
    };
    Observation {
        schema: SchemaV1,
        job_id: Uuid::now_v7(),
        url_id: due.url_id,
        url: due.url.clone(),
        worker: format!("worker-{:02}", rng.below(8)),
        started_at,
        answered_at: started_at + TimeDelta::milliseconds(duration_ms as i64),
        duration_ms,
        dns: DnsResult {
            outcome: if dns_ok {
                DnsOutcome::Ok
            } else {
                DnsOutcome::Nxdomain
            },
            answers,
        },
        ip: connected.then_some(ip),
        asn: dns_ok.then(|| 13_000 + rng.below(50_000) as u32),
        as_org: dns_ok.then(|| format!("AS-ORG-{} Hosting Ltd", rng.below(500))),
        hoster: dns_ok.then(|| format!("Hoster {}", rng.below(500))),
        cdn: dns_ok && rng.below(10) == 0,
        tls_error: (outcome == Outcome::TlsFailure)
            .then(|| "invalid peer certificate: Expired".into()),
        fingerprint: (outcome == Outcome::Served).then(|| {
            let kind = if image { "image/jpeg" } else { "text/html" };
            format!("{kind};sha256={:016x}{:016x}", rng.next(), rng.next())
        }),
        http,
        outcome,
        verdict: outcome.default_verdict(),
    }
}

// ------------------------------------------------------------------ output

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render(args: &Args, reports: &[Report]) -> String {
    let mut out = String::new();
    let line = |out: &mut String, metric: &str, cell: &dyn Fn(&Report) -> String| {
        let cells: Vec<String> = reports.iter().map(cell).collect();
        let _ = writeln!(out, "| {metric} | {} |", cells.join(" | "));
    };
    line(&mut out, "", &|r| r.backend.clone());
    line(&mut out, "---", &|_| "---:".into());
    line(
        &mut out,
        "URLs loaded (add_notices, 10,000 per call)",
        &|r| thousands(r.urls as f64),
    );
    line(&mut out, "load: wall time", &|r| {
        format!("{:.0} s", r.load_wall.as_secs_f64())
    });
    line(&mut out, "load: URLs/s overall", &|r| {
        thousands(r.urls as f64 / r.load_wall.as_secs_f64())
    });
    line(
        &mut out,
        "load: URLs/s per call, median (first 10% / last 10% of calls)",
        &|r| {
            let tenth = (r.load_rates.len() / 10).max(1);
            format!(
                "{} ({} / {})",
                thousands(median(&r.load_rates)),
                thousands(median(&r.load_rates[..tenth])),
                thousands(median(&r.load_rates[r.load_rates.len() - tenth..]))
            )
        },
    );
    line(&mut out, "on disk after load: total", &|r| {
        mib(r.after_load.total)
    });
    line(
        &mut out,
        "bytes per URL (notices + urls, with indexes)",
        &|r| {
            let both = r.after_load.of("notices") + r.after_load.of("urls");
            thousands(both as f64 / r.urls as f64)
        },
    );
    line(&mut out, "bytes per URL (whole database)", &|r| {
        thousands(r.after_load.total as f64 / r.urls as f64)
    });
    line(&mut out, "due at now (status.due_now, capped)", &|r| {
        format!(
            "{}{}",
            thousands(r.due_at_start.count as f64),
            if r.due_at_start.more { "+" } else { "" }
        )
    });
    line(
        &mut out,
        &format!(
            "lease_due(now, 1000): median / p90 ms ({} calls)",
            args.leases
        ),
        &|r| format!("{:.1} / {:.1}", median(&r.leases), quantile(&r.leases, 0.9)),
    );
    line(&mut out, "lease_due: first / last call ms", &|r| {
        format!(
            "{:.1} / {:.1}",
            r.leases.first().copied().unwrap_or(f64::NAN),
            r.leases.last().copied().unwrap_or(f64::NAN)
        )
    });
    line(
        &mut out,
        "lease_due in the write rounds: median / p90 ms (calls)",
        &|r| {
            format!(
                "{:.1} / {:.1} ({})",
                median(&r.round_leases),
                quantile(&r.round_leases, 0.9),
                r.round_leases.len()
            )
        },
    );
    line(&mut out, "observations applied (batches of 500)", &|r| {
        format!(
            "{} ({} calls)",
            thousands(r.observations as f64),
            r.applies.len()
        )
    });
    line(
        &mut out,
        "apply_observations: obs/s per call, median (p10 / p90)",
        &|r| {
            let rates: Vec<f64> = r
                .applies
                .iter()
                .map(|(n, ms)| *n as f64 / ms * 1e3)
                .collect();
            format!(
                "{} ({} / {})",
                thousands(median(&rates)),
                thousands(quantile(&rates, 0.1)),
                thousands(quantile(&rates, 0.9))
            )
        },
    );
    line(
        &mut out,
        "apply_observations: ms per 500, median / p90",
        &|r| {
            let times: Vec<f64> = r.applies.iter().map(|(_, ms)| *ms).collect();
            format!("{:.0} / {:.0}", median(&times), quantile(&times, 0.9))
        },
    );
    line(&mut out, "observations/s overall, leasing included", &|r| {
        thousands(r.observations as f64 / r.apply_wall.as_secs_f64())
    });
    line(&mut out, "events written", &|r| thousands(r.events as f64));
    line(
        &mut out,
        "virtual clock at the end (rounds with < 1,000 due)",
        &|r| {
            format!(
                "now + {:.1} h ({})",
                (r.end_clock - t0()).num_minutes() as f64 / 60.0,
                r.clock_jumps
            )
        },
    );
    line(
        &mut out,
        "bytes per observation (observations table, with indexes)",
        &|r| {
            let grown = r.after_observations.of("observations") - r.after_load.of("observations");
            thousands(grown as f64 / r.observations as f64)
        },
    );
    line(
        &mut out,
        "bytes per observation (whole database growth)",
        &|r| {
            let grown = r
                .after_observations
                .total
                .saturating_sub(r.after_load.total);
            thousands(grown as f64 / r.observations as f64)
        },
    );
    line(&mut out, "on disk at the end: total", &|r| {
        mib(r.after_observations.total)
    });
    line(&mut out, "status(now): median ms (3 calls)", &|r| {
        format!("{:.0}", median(&r.status_ms))
    });

    for r in reports {
        let _ = writeln!(out, "\n{}: bytes per table (with indexes)\n", r.backend);
        let _ = writeln!(out, "| table | after load | at the end |");
        let _ = writeln!(out, "| --- | ---: | ---: |");
        for (table, end) in &r.after_observations.tables {
            let _ = writeln!(
                out,
                "| {table} | {} | {} |",
                thousands(r.after_load.of(table) as f64),
                thousands(*end as f64)
            );
        }
        for fact in &r.facts {
            let _ = writeln!(out, "- {fact}");
        }
        for (phase, list) in &r.statements {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{}: SQL time during {phase}\n", r.backend);
            let _ = writeln!(out, "| statement | calls | total s | mean ms |");
            let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
            for (summary, calls, secs) in list.iter().take(12) {
                let _ = writeln!(
                    out,
                    "| `{summary}` | {calls} | {secs:.2} | {:.3} |",
                    secs * 1e3 / *calls as f64
                );
            }
        }
        let _ = writeln!(out, "\n{}: lease_due ms in call order: {}", r.backend, {
            let all: Vec<String> = r.leases.iter().map(|ms| format!("{ms:.1}")).collect();
            all.join(", ")
        });
        let _ = writeln!(
            out,
            "\n{}: lease plan after the load\n\n```text\n{}```",
            r.backend, r.plan_start
        );
        let _ = writeln!(
            out,
            "\n{}: lease plan at the end\n\n```text\n{}```",
            r.backend, r.plan_end
        );
    }
    out
}

/// `--statements`: sums sqlx's query log by statement.
mod statements {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer};

    /// `(statement, calls, seconds)`, most time first.
    pub type Totals = Vec<(String, u64, f64)>;

    /// statement summary -> (calls, seconds)
    static TOTALS: Mutex<Option<HashMap<String, (u64, f64)>>> = Mutex::new(None);

    /// A layer that adds up the `elapsed_secs` of sqlx's `sqlx::query` events.
    #[derive(Debug)]
    pub struct Timings;

    impl<S: tracing::Subscriber> Layer<S> for Timings {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let (Some(summary), Some(secs)) = (fields.summary, fields.secs) {
                let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
                let entry = totals
                    .get_or_insert_with(HashMap::new)
                    .entry(summary)
                    .or_default();
                entry.0 += 1;
                entry.1 += secs;
            }
        }
    }

    #[derive(Default)]
    struct Fields {
        summary: Option<String>,
        secs: Option<f64>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "summary" {
                self.summary = Some(value.to_owned());
            }
        }

        fn record_f64(&mut self, field: &Field, value: f64) {
            if field.name() == "elapsed_secs" {
                self.secs = Some(value);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "summary" && self.summary.is_none() {
                self.summary = Some(format!("{value:?}").trim_matches('"').to_owned());
            }
        }
    }

    /// The totals since the last call, most time first; empty without `--statements`.
    pub fn take() -> Totals {
        let totals = TOTALS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let mut list: Vec<_> = totals
            .into_iter()
            .map(|(summary, (calls, secs))| (summary, calls, secs))
            .collect();
        list.sort_by(|a, b| b.2.total_cmp(&a.2));
        list
    }
}
