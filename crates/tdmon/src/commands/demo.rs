//! `tdmon demo`: a newcomer's first minute. Starts the simulated hosting
//! network with a built-in scenario (hosters that remove fast, slowly, never,
//! softly, by DNS, and one that flaps), monitors it with the embedded monitor
//! on a schedule compressed as much as the network's clock (one simulated hour
//! per second), prints the per-hoster summary, and compares every takedown
//! bracket with the network's ground truth.
//!
//! Everything stays on loopback addresses. The output directory keeps the
//! notices, the SQLite store, the CA certificate of the simulated HTTPS
//! servers and the ground truth, so the figures can be traced afterwards
//! (`tdmon status --db DIR/tdmon.db`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use tdmon_collector::Totals;
use tdmon_core::config::MeasurementConfig;
use tdmon_core::report::{self, HosterRow};
use tdmon_core::state::UrlState;
use tdmon_simnet::{
    Behaviour, ContentKind, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec, UrlTruth,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use toml::{Table, Value};

use crate::Exit;
use crate::cli::DemoArgs;
use crate::cluster::{self, Cluster};

/// Simulated seconds per real second.
const TIME_SCALE: f64 = 3600.0;
/// How much simulated time the demo watches: past the 48h norm and the
/// first daily check after it.
const WATCH: Duration = Duration::from_secs(75 * 3600);

const HOUR: u64 = 3600;

pub(crate) fn run(
    args: DemoArgs,
    file: Option<&Path>,
    overrides: &[String],
) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(args.out, args.distributed, file, overrides))
}

async fn demo(
    out: PathBuf,
    distributed: bool,
    file: Option<&Path>,
    overrides: &[String],
) -> anyhow::Result<Exit> {
    let db = out.join("tdmon.db");
    for stale in [
        db.clone(),
        out.join("tdmon.db-wal"),
        out.join("tdmon.db-shm"),
    ] {
        let _ = std::fs::remove_file(stale);
    }
    let net = SimNet::start(
        scenario(),
        SimNetOptions::default().asn_db(out.join("asn.mmdb")),
    )
    .await
    .context("cannot start the simulated network")?;
    let ca = out.join("simnet-ca.pem");
    std::fs::write(&ca, net.ca_cert_pem()).context("cannot write the CA certificate")?;

    let mut imposed = demo_layer(&net, &db, &ca)?;
    if distributed {
        let user = crate::config::load(file, std::env::vars(), overrides)?;
        tdmon_core::config::merge(&mut imposed, cluster::fresh_layer(&user)?);
    }
    let config = crate::config::load_with(file, std::env::vars(), overrides, imposed.clone())?;
    let notices = out.join("notices.csv");
    std::fs::write(&notices, notices_csv(&net)).context("cannot write the notices")?;
    eprintln!(
        "tdmon demo: {} URLs on {} simulated hosters, {}h of simulated time in {}s; output in {}",
        net.urls().len(),
        net.scenario().hosters.len(),
        WATCH.as_secs() / HOUR,
        (WATCH.as_secs_f64() / TIME_SCALE).round(),
        out.display()
    );

    let shutdown = CancellationToken::new();
    let (totals, watch_totals) = watch::channel(Totals::default());
    let stopper = {
        let shutdown = shutdown.clone();
        let real = WATCH.div_f64(TIME_SCALE);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(real) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            shutdown.cancel();
        })
    };
    let report_path;
    let states = if distributed {
        let settings = crate::config::layered(file, std::env::vars(), overrides, imposed)?;
        let mut cluster = Cluster::start(&config, &settings, &out).await?;
        eprintln!(
            "tdmon demo: started a dispatcher, two workers and a collector; their logs are in {}\n\
             tdmon demo: watch the events arrive, in another terminal: \
             tdmon --set bus.prefix={} tail --format table",
            out.display(),
            config.bus.prefix()
        );
        let monitored = async {
            cluster
                .notify(read_notices(&notices, &config, net.notice_time())?)
                .await?;
            let store = cluster.store().clone();
            progress(shutdown.clone(), || async {
                let status = store.status(chrono::Utc::now()).await?;
                Ok((status.observations, status.events))
            })
            .await?;
            anyhow::Ok(())
        }
        .await;
        let stopped = cluster.stop().await;
        let states = cluster.store().all_states().await;
        let written = write_report(cluster.store(), &config, &out).await;
        cluster.remove().await?;
        monitored?;
        stopped?;
        report_path = written?;
        states?
    } else {
        let store = super::run::open(&config.store.url, &config).await?;
        super::run::add_notices(&store, &notices, None, &config.notices, net.notice_time()).await?;
        let progress = tokio::spawn(progress(shutdown.clone(), move || {
            let done = *watch_totals.borrow();
            async move { Ok((done.observations, done.events)) }
        }));
        crate::embedded::run(&config, store, shutdown.clone(), false, totals).await?;
        let _ = progress.await;
        let store = super::run::open(&config.store.url, &config).await?;
        let states = store.all_states().await?;
        report_path = write_report(&store, &config, &out).await?;
        store.close().await;
        states
    };
    stopper.abort();
    let truth = net.truth();
    let net_notice = net.notice_time();
    // tdmon names a hoster by its network's organisation, as the ASN database does.
    let orgs: HashMap<String, String> = net
        .scenario()
        .hosters
        .iter()
        .map(|h| (h.name.clone(), h.org.clone()))
        .collect();
    net.shutdown().await;

    let rows = report::by_hoster(&states, &config.measurement.norms);
    let watched_until = net_notice + TimeDelta::from_std(WATCH.div_f64(TIME_SCALE))?;
    let summary = format!(
        "{}{}",
        table(&rows),
        accuracy(&states, &truth, &orgs, watched_until)
    );
    print!("{summary}");
    std::fs::write(out.join("summary.txt"), &summary)?;
    std::fs::write(out.join("truth.json"), truth_json(&truth)?)?;
    println!("report: {}", report_path.display());
    Ok(Exit::Success)
}

/// Writes `report.html` into `out` from the demo's store.
async fn write_report(
    store: &tdmon_store::Store,
    config: &crate::config::Config,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let inputs = tdmon_report::Inputs {
        hosters: config.worker.hoster_map(),
        norms: &config.measurement.norms,
        period: tdmon_report::Period::default(),
        by: tdmon_report::GroupBy::Hoster,
        rank_by: tdmon_report::RankKey::default(),
        urls_per_group: 200,
        methodology: super::report::methodology(config, store),
    };
    let report = tdmon_report::figures(store, &inputs).await?;
    let files = super::report::write(&report, crate::cli::ReportOutput::Html, out)?;
    Ok(files.into_iter().next().expect("one file written"))
}

/// The built-in scenario: 120 URLs on six hosters, each with its own host name
/// so that DNS removals and moves affect one URL.
fn scenario() -> Scenario {
    let hosters = [
        ("QuickHost", 64510, "QuickHost B.V.", "127.20.0.0/24"),
        ("SteadyHost", 64511, "Steady Hosting GmbH", "127.21.0.0/24"),
        ("NeverHost", 64512, "Never Down Ltd", "127.22.0.0/24"),
        ("SoftMedia", 64513, "Soft Media S.A.", "127.23.0.0/24"),
        ("ParkedDNS", 64514, "Parked DNS Inc.", "127.24.0.0/24"),
        ("FlapHost", 64515, "Flappy Servers Oy", "127.25.0.0/24"),
    ];
    let mut scenario = Scenario::new(TIME_SCALE);
    for (name, asn, org, prefix) in hosters {
        scenario = scenario.hoster(Hoster::new(name, asn, org, prefix, 4));
    }
    let hours = |h: f64| Duration::from_secs_f64(h * HOUR as f64);
    // A spread of times without randomness: the k-th of n between `from` and `to`.
    let spread =
        |k: usize, n: usize, from: f64, to: f64| hours(from + (to - from) * k as f64 / n as f64);
    let mut i = 0;
    let mut next = |hoster: &str, kind: ContentKind| {
        i += 1;
        let path = match kind {
            ContentKind::Image => format!("/media/{i}.jpg"),
            _ => format!("/page/{i}.html"),
        };
        UrlSpec::new(&format!("u{i}.{}", hoster.to_lowercase()), &path, hoster).kind(kind)
    };
    for k in 0..22 {
        let spec = next("QuickHost", ContentKind::Html).behaviour(Behaviour::Removed {
            at: spread(k, 22, 0.5, 20.0),
            status: 404,
        });
        scenario = scenario.url(spec);
    }
    for k in 0..20 {
        let spec = next("SteadyHost", ContentKind::Html).behaviour(Behaviour::Removed {
            at: spread(k, 20, 6.0, 60.0),
            status: 410,
        });
        scenario = scenario.url(spec);
    }
    for k in 0..16 {
        let behaviour = match k {
            // A burst of 503s shorter than the confirmation window: no takedown.
            0 | 1 => Behaviour::ServerErrors {
                from: hours(3.0),
                until: hours(3.4),
                status: 503,
            },
            // DNS that stops answering for a while: timeouts, no takedown.
            4 | 5 => Behaviour::DnsNoAnswer {
                from: hours(3.0),
                until: Some(hours(3.4)),
            },
            _ => Behaviour::Never,
        };
        let mut spec = next("NeverHost", ContentKind::Html).behaviour(behaviour);
        if k == 2 || k == 3 {
            // Moves to another network: a change of hoster, still online.
            spec = spec.moves_to("SteadyHost", hours(10.0));
        }
        scenario = scenario.url(spec);
    }
    for k in 0..20 {
        let at = spread(k, 20, 2.0, 40.0);
        let behaviour = if k % 4 == 3 {
            Behaviour::RedirectHome { at, status: 302 }
        } else {
            Behaviour::SoftRemoval { at }
        };
        let spec = next("SoftMedia", ContentKind::Image).behaviour(behaviour);
        scenario = scenario.url(spec);
    }
    for k in 0..20 {
        let spec = next("ParkedDNS", ContentKind::Html).behaviour(Behaviour::DnsRemoval {
            at: spread(k, 20, 1.0, 30.0),
        });
        scenario = scenario.url(spec);
    }
    for k in 0..16 {
        let behaviour = if k < 12 {
            let down = spread(k, 12, 3.0, 14.0);
            Behaviour::Flapping {
                down_at: down,
                up_at: down + hours(12.0),
                status: 404,
            }
        } else {
            Behaviour::Removed {
                at: spread(k - 12, 4, 20.0, 30.0),
                status: 404,
            }
        };
        let spec = next("FlapHost", ContentKind::Html).behaviour(behaviour);
        scenario = scenario.url(spec);
    }
    // Already gone when the notice is sent.
    for hoster in [
        "QuickHost",
        "SteadyHost",
        "SoftMedia",
        "ParkedDNS",
        "FlapHost",
        "NeverHost",
    ] {
        let spec =
            next(hoster, ContentKind::Html).behaviour(Behaviour::AlreadyRemoved { status: 404 });
        scenario = scenario.url(spec);
    }
    scenario
}

/// The demo's settings, on top of the user's: the simulated network's DNS
/// server, address range, ASN database and CA; the schedule compressed like
/// the network's clock; limits that let 120 URLs be checked densely.
fn demo_layer(net: &SimNet, db: &Path, ca: &Path) -> anyhow::Result<Table> {
    let compress = |d: Duration| Value::String(tdmon_core::duration::format(d.div_f64(TIME_SCALE)));
    let compress_all =
        |list: &[Duration]| Value::Array(list.iter().map(|d| compress(*d)).collect());
    let defaults = MeasurementConfig::default();
    let schedule = &defaults.schedule;
    let confirmation = &defaults.confirmation;
    let text = format!(
        r#"
        [store]
        url = "sqlite://{db}"
        [dispatcher]
        tick = "20ms"
        lease = "20s"
        job_ttl = "10s"
        per_host_interval = "1ms"
        per_host_burst = 100
        [collector]
        linger = "10ms"
        [worker]
        name = "demo"
        connect_timeout = "2s"
        total_timeout = "4s"
        extra_root_certs = [{ca:?}]
        [worker.resolver]
        nameservers = ["{dns}"]
        timeout = "1s"
        max_ttl = "1ms"
        [worker.policy]
        allow = [{allow}]
        [worker.limits]
        checks_per_second = 5000
        per_ip_interval = "1ms"
        per_ip_burst = 1000
        per_ip_concurrency = 64
        max_in_flight = 128
        [worker.attribution]
        asn_db = {asn_db:?}
        "#,
        db = db.display(),
        ca = ca.display().to_string(),
        dns = net.dns_addr(),
        allow = net
            .allowed_cidrs()
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        asn_db = net.asn_db_path().display().to_string(),
    );
    let mut layer: Table = text.parse().context("the demo's settings")?;
    let mut schedule_table = Table::new();
    schedule_table.insert("offsets".into(), compress_all(&schedule.offsets));
    schedule_table.insert("then_every".into(), compress(schedule.then_every));
    schedule_table.insert("horizon".into(), compress(schedule.horizon));
    schedule_table.insert(
        "after_takedown".into(),
        compress_all(&schedule.after_takedown),
    );
    schedule_table.insert(
        "after_takedown_every".into(),
        compress(schedule.after_takedown_every),
    );
    layer.insert("schedule".into(), Value::Table(schedule_table));
    let mut confirmation_table = Table::new();
    confirmation_table.insert("min_span".into(), compress(confirmation.min_span));
    confirmation_table.insert("recheck_delay".into(), compress(confirmation.recheck_delay));
    confirmation_table.insert(
        "inconclusive_limit".into(),
        compress(confirmation.inconclusive_limit),
    );
    layer.insert("confirmation".into(), Value::Table(confirmation_table));
    layer.insert("norms".into(), compress_all(&defaults.norms));
    Ok(layer)
}

/// One notice per URL of the network, all notified when it started.
pub(crate) fn notices_csv(net: &SimNet) -> String {
    let notified_at = net
        .notice_time()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut csv = String::from("notice_id,url,notified_at,reporter\n");
    for (i, url) in net.urls().iter().enumerate() {
        let _ = writeln!(csv, "DEMO-{:03},{url},{notified_at},demo hotline", i + 1);
    }
    csv
}

/// Every five seconds until `shutdown`, how far the demo is: `counts` gives
/// the observations and events stored so far.
async fn progress<F, Fut>(shutdown: CancellationToken, counts: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, u64)>>,
{
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let (observations, events) = counts().await?;
        let sim_hours = start.elapsed().as_secs_f64() * TIME_SCALE / HOUR as f64;
        eprintln!("  {sim_hours:>4.0}h simulated: {observations} checks stored, {events} events");
    }
}

/// The notices of the demo's file, for the distributed demo to publish.
fn read_notices(
    file: &Path,
    config: &crate::config::Config,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<tdmon_core::notice::Notice>> {
    let mut notices = Vec::new();
    for entry in super::notices::NoticeFile::open(file, None, &config.notices, now)? {
        if let tdmon_core::notice::Entry::Notice { notice, .. } = entry? {
            notices.push(notice);
        }
    }
    Ok(notices)
}

/// Formats a time to takedown in simulated hours (the demo's time is compressed).
fn sim_hours(real_seconds: f64) -> String {
    format!("{:.1}h", real_seconds * TIME_SCALE / HOUR as f64)
}

fn table(rows: &[HosterRow]) -> String {
    let mut out = String::new();
    // The norms are compressed like the clock; name the first in simulated time.
    let norm = MeasurementConfig::default()
        .norms
        .first()
        .map(|n| tdmon_core::duration::format(*n))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{:<22} {:>7} {:>6} {:>8} {:>14} {:>12} {:>7} {:>8} {:>11}",
        "hoster",
        "notices",
        "share",
        "removed",
        format!("in {norm} (undet.)"),
        "median TTD*",
        "online",
        "already",
        "reappeared"
    );
    for row in rows {
        let counts = row.norms.first().map(|(_, c)| *c).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>5.0}% {:>8} {:>14} {:>12} {:>7} {:>8} {:>11}",
            row.hoster,
            row.notices,
            row.share * 100.0,
            row.removed,
            format!("{} ({})", counts.met, counts.undetermined),
            row.median_time_to_takedown_s.map_or("-".into(), sim_hours),
            row.still_online,
            row.already_offline,
            row.reappeared
        );
    }
    let _ = writeln!(
        out,
        "* Kaplan-Meier median, URLs still online counted as censored; in simulated hours."
    );
    out
}

/// Compares the monitor's findings with the network's truth: every first
/// takedown bracket (last online, first offline] must hold the true moment;
/// no takedown where the content never went; every true takedown, return,
/// already-removed URL and move found.
fn accuracy(
    states: &[UrlState],
    truth: &[UrlTruth],
    orgs: &HashMap<String, String>,
    watched_until: DateTime<Utc>,
) -> String {
    let (mut held, mut brackets) = (0, 0);
    let mut problems = Vec::new();
    let mut false_takedowns = 0;
    let mut missed = 0;
    let (mut already, mut already_true) = (0, 0);
    let (mut returns, mut returns_true) = (0, 0);
    let (mut moves, mut moves_true) = (0, 0);
    for state in states {
        let Some(t) = truth.iter().find(|t| t.url == state.subject.url) else {
            continue;
        };
        if t.already_removed {
            already_true += 1;
            already += usize::from(state.already_offline);
            continue;
        }
        if let Some(moved) = &t.moved {
            moves_true += 1;
            let now = state
                .current_hoster
                .as_ref()
                .and_then(|h| h.hoster.as_deref());
            if now.is_some() && now == orgs.get(&moved.to).map(String::as_str) {
                moves += 1;
            } else {
                problems.push(format!("{}: move to {} not seen", t.url, moved.to));
            }
        }
        // A return is only visible to a check made after it.
        if let Some(back) = t
            .came_back
            .filter(|back| state.last_check_at.is_some_and(|last| last > *back))
        {
            returns_true += 1;
            if state.reappearances() > 0 {
                returns += 1;
            } else {
                problems.push(format!("{}: return at {} not seen", t.url, stamp(back)));
            }
        }
        match (state.first_takedown(), t.went_down) {
            (Some(takedown), Some(down)) => {
                brackets += 1;
                let bracket = takedown.bracket;
                if bracket.holds(down, state.subject.notified_at) {
                    held += 1;
                } else {
                    problems.push(format!(
                        "{}: true takedown {} outside the bracket ({}, {}]",
                        t.url,
                        stamp(down),
                        bracket.from.map_or("notice".into(), stamp),
                        stamp(bracket.to)
                    ));
                }
            }
            (Some(_), None) => {
                false_takedowns += 1;
                problems.push(format!("{}: takedown, but the content never went", t.url));
            }
            (None, Some(down)) if down < watched_until => {
                missed += 1;
                problems.push(format!(
                    "{}: went down at {}, not found",
                    t.url,
                    stamp(down)
                ));
            }
            (None, _) => {}
        }
    }
    let mut out = String::new();
    for line in &problems {
        let _ = writeln!(out, "  ! {line}");
    }
    let _ = writeln!(
        out,
        "accuracy: takedown brackets hold the true time for {held}/{brackets} URLs; {false_takedowns} false takedowns; {missed} missed; already offline {already}/{already_true}; reappearances {returns}/{returns_true}; hoster changes {moves}/{moves_true}"
    );
    out
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

fn truth_json(truth: &[UrlTruth]) -> anyhow::Result<String> {
    let rows: Vec<serde_json::Value> = truth
        .iter()
        .map(|t| {
            serde_json::json!({
                "url": t.url,
                "hoster": t.hoster,
                "went_down": t.went_down,
                "came_back": t.came_back,
                "already_removed": t.already_removed,
                "moved_to": t.moved.as_ref().map(|m| &m.to),
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&rows)?)
}
