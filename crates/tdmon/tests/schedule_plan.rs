//! `tdmon schedule plan` counts the checks a URL gets over its life by
//! running the state machine over a synthetic history. This runs the real
//! embedded monitor, with the same (compressed) schedule, on the simulated
//! network until every URL has expired, and compares: each URL got exactly
//! the checks the plan says, for each of the plan's fates.

mod support;

use std::time::Duration;

use chrono::TimeDelta;
use tdmon_core::plan::{self, Fate};
use tdmon_core::schedule::{Confirmation, ConfirmationConfig, Schedule, ScheduleConfig};
use tdmon_core::state::Rules;
use tdmon_simnet::{Behaviour, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
use tdmon_store::Store;

/// Simulated seconds per real second. The schedule's smallest step (the
/// recheck delay, 30 simulated minutes) is one real second: a check that runs
/// up to a second late still lands where the plan puts it.
const TIME_SCALE: f64 = 1800.0;

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

/// The schedule under test, in simulated time.
fn schedule() -> (ScheduleConfig, ConfirmationConfig) {
    (
        ScheduleConfig {
            offsets: [0.0, 1.0, 2.0, 4.0, 8.0].map(hours).to_vec(),
            then_every: hours(4.0),
            horizon: hours(20.0),
            after_takedown: vec![hours(3.0)],
            after_takedown_every: hours(6.0),
        },
        ConfirmationConfig {
            checks: 3,
            min_span: hours(1.0),
            recheck_delay: hours(0.5),
            // Not a whole number of hours: a watched run then never reaches
            // the limit exactly at a regular check, where a check a few
            // milliseconds late would fall a hair short of it.
            inconclusive_limit: hours(4.25),
            max_gap_factor: 4,
        },
    )
}

/// A duration as the compressed configuration writes it.
fn compressed(d: Duration) -> String {
    format!(
        "\"{}ms\"",
        (d.as_secs_f64() * 1000.0 / TIME_SCALE).round() as u64
    )
}

fn list(ds: &[Duration]) -> String {
    ds.iter()
        .map(|d| compressed(*d))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_makes_exactly_the_checks_the_plan_counts() {
    let removed_at = hours(5.0);
    let net = SimNet::start(
        Scenario::new(TIME_SCALE)
            .hoster(Hoster::new(
                "Plan",
                64530,
                "Plan Hosting",
                "127.42.0.0/24",
                1,
            ))
            .url(UrlSpec::new("served.plan", "/a.html", "Plan"))
            .url(
                UrlSpec::new("removed.plan", "/b.html", "Plan").behaviour(Behaviour::Removed {
                    at: removed_at,
                    status: 404,
                }),
            )
            .url(
                UrlSpec::new("gone.plan", "/c.html", "Plan").behaviour(Behaviour::ServerErrors {
                    from: removed_at,
                    until: hours(1000.0),
                    status: 503,
                }),
            ),
        SimNetOptions::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (schedule, confirmation) = schedule();
    let config = format!(
        r#"
norms = [{day}]
[schedule]
offsets = [{offsets}]
then_every = {then_every}
horizon = {horizon}
after_takedown = [{after}]
after_takedown_every = {after_every}
[confirmation]
checks = {checks}
min_span = {min_span}
recheck_delay = {recheck}
inconclusive_limit = {limit}
max_gap_factor = {gap}
[dispatcher]
tick = "20ms"
job_ttl = "5s"
per_host_interval = "1ms"
per_host_burst = 100
[collector]
linger = "10ms"
[worker]
connect_timeout = "2s"
total_timeout = "4s"
[worker.resolver]
nameservers = ["{dns}"]
timeout = "500ms"
max_ttl = "1ms"
[worker.policy]
allow = [{allow}]
[worker.limits]
per_ip_interval = "1ms"
per_ip_burst = 100
"#,
        day = compressed(hours(24.0)),
        offsets = list(&schedule.offsets),
        then_every = compressed(schedule.then_every),
        horizon = compressed(schedule.horizon),
        after = list(&schedule.after_takedown),
        after_every = compressed(schedule.after_takedown_every),
        checks = confirmation.checks,
        min_span = compressed(confirmation.min_span),
        recheck = compressed(confirmation.recheck_delay),
        limit = compressed(confirmation.inconclusive_limit),
        gap = confirmation.max_gap_factor,
        dns = net.dns_addr(),
        allow = net
            .allowed_cidrs()
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let config_path = support::write(dir.path(), "tdmon.toml", &config);
    let at = net
        .notice_time()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut notices = String::from("url,notified_at\n");
    for url in net.urls() {
        notices.push_str(&format!("{url},{at}\n"));
    }
    let notices = support::write(dir.path(), "notices.csv", &notices);
    let db = dir.path().join("plan.db");
    let db_arg = db.display().to_string();
    let run = tokio::task::spawn_blocking(move || {
        support::run(&[
            "--config",
            &config_path,
            "run",
            "--notices",
            &notices,
            "--db",
            &db_arg,
            "--exit-when-done",
        ])
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", support::stderr(&run));

    let rules = Rules {
        schedule: Schedule::try_from(schedule).unwrap(),
        confirmation: Confirmation::try_from(confirmation).unwrap(),
    };
    let removed = TimeDelta::from_std(removed_at).unwrap();
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for state in store.all_states().await.unwrap() {
        let fate = match state.subject.url.as_str() {
            u if u.contains("served.plan") => Fate::Online,
            u if u.contains("removed.plan") => Fate::Removed(removed),
            _ => Fate::HostGone(removed),
        };
        let planned = plan::checks(&rules, fate);
        let made = store.observations(state.subject.url_id).await.unwrap();
        let since: Vec<f64> = made
            .iter()
            .map(|o| {
                (o.started_at - state.subject.notified_at).num_milliseconds() as f64 * TIME_SCALE
                    / 3_600_000.0
            })
            .collect();
        assert_eq!(
            made.len(),
            planned.len(),
            "{:?}: planned at {:?} h, made at {since:.2?} h",
            fate,
            planned
                .iter()
                .map(|t| t.num_minutes() as f64 / 60.0)
                .collect::<Vec<_>>()
        );
    }
    store.close().await;
    net.shutdown().await;
}
