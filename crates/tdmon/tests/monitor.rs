//! The embedded monitor end to end: the built `tdmon` binary monitors the
//! simulated network on a compressed schedule (one simulated hour per real
//! second), on SQLite and on the real PostgreSQL, and what it stored is
//! compared with the network's ground truth.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_core::state::{Phase, UrlState};
use tdmon_core::{Event, EventKind};
use tdmon_simnet::{
    Behaviour, ContentKind, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec, UrlTruth,
};
use tdmon_store::{Store, StoreOptions};

const TIME_SCALE: f64 = 3600.0;

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

/// Twenty URLs with known fates, one host name each.
fn scenario() -> Scenario {
    let mut scenario = Scenario::new(TIME_SCALE)
        .hoster(Hoster::new(
            "Alpha",
            64520,
            "Alpha Hosting B.V.",
            "127.40.0.0/24",
            2,
        ))
        .hoster(Hoster::new(
            "Beta",
            64521,
            "Beta Networks Ltd",
            "127.41.0.0/24",
            2,
        ));
    let behaviours = [
        Behaviour::Removed {
            at: hours(1.3),
            status: 404,
        },
        Behaviour::Removed {
            at: hours(3.7),
            status: 410,
        },
        Behaviour::Removed {
            at: hours(6.2),
            status: 404,
        },
        Behaviour::Removed {
            at: hours(9.5),
            status: 451,
        },
        Behaviour::Removed {
            at: hours(13.1),
            status: 404,
        },
        Behaviour::Removed {
            at: hours(17.8),
            status: 404,
        },
        Behaviour::AlreadyRemoved { status: 404 },
        Behaviour::DnsRemoval { at: hours(2.4) },
        Behaviour::DnsRemoval { at: hours(11.6) },
        Behaviour::RedirectHome {
            at: hours(5.1),
            status: 302,
        },
        Behaviour::Flapping {
            down_at: hours(2.2),
            up_at: hours(9.0),
            status: 404,
        },
        Behaviour::ServerErrors {
            from: hours(2.0),
            until: hours(2.4),
            status: 503,
        },
        Behaviour::DnsNoAnswer {
            from: hours(4.0),
            until: Some(hours(4.3)),
        },
        // Answers slowly (a byte every 20 ms): a check of it is in flight
        // for seconds, so a kill always catches one.
        Behaviour::SlowDrip {
            pause: Duration::from_millis(20),
        },
        Behaviour::Never,
    ];
    for (i, behaviour) in behaviours.into_iter().enumerate() {
        let hoster = if i % 2 == 0 { "Alpha" } else { "Beta" };
        scenario = scenario.url(
            UrlSpec::new(&format!("h{i}.e2e"), &format!("/p/{i}.html"), hoster)
                .behaviour(behaviour),
        );
    }
    for (i, at) in [(20, 1.8), (21, 7.3), (22, 15.2)] {
        scenario = scenario.url(
            UrlSpec::new(&format!("h{i}.e2e"), &format!("/img/{i}.jpg"), "Alpha")
                .kind(ContentKind::Image)
                .behaviour(Behaviour::SoftRemoval { at: hours(at) }),
        );
    }
    scenario.url(UrlSpec::new("h30.e2e", "/moving.html", "Alpha").moves_to("Beta", hours(4.0)))
}

/// A store for one test: a SQLite file, or a fresh PostgreSQL schema that is
/// dropped when the test ends.
struct TestStore {
    url: String,
    schema: Option<String>,
}

impl TestStore {
    fn sqlite(dir: &Path) -> Self {
        Self {
            url: format!("sqlite://{}", dir.join("tdmon.db").display()),
            schema: None,
        }
    }

    fn postgres() -> Self {
        let url = std::env::var("TDMON_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("tdmon_e2e_{}", uuid::Uuid::new_v4().simple());
        Self {
            url,
            schema: Some(schema),
        }
    }

    async fn open(&self) -> Store {
        let options = StoreOptions {
            schema: self.schema.clone(),
        };
        Store::open_with(&self.url, &options)
            .await
            .expect("the store opens")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some(schema) = &self.schema else { return };
        let status = Command::new("psql")
            .args([self.url.as_str(), "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not drop the test schema {schema}");
        }
    }
}

/// The configuration that points tdmon at the network, with the default
/// schedule compressed like the network's clock.
fn write_config(net: &SimNet, dir: &Path, store: &TestStore) -> PathBuf {
    let scale = |secs: f64| format!("\"{}ms\"", (secs * 1000.0 / TIME_SCALE).round() as u64);
    let offsets: Vec<String> = [
        0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0, 22.0, 23.0, 24.0, 25.0, 36.0, 48.0,
    ]
    .iter()
    .map(|h| scale(h * 3600.0))
    .collect();
    let schema = store
        .schema
        .as_ref()
        .map(|s| format!("schema = \"{s}\""))
        .unwrap_or_default();
    let config = format!(
        r#"
norms = [{day}]
[schedule]
offsets = [{offsets}]
then_every = {day}
horizon = {horizon}
after_takedown = [{two_hours}, {eight_hours}]
after_takedown_every = {day}
[confirmation]
min_span = {half_hour}
recheck_delay = {quarter}
inconclusive_limit = {day}
[store]
url = "{url}"
{schema}
[dispatcher]
tick = "20ms"
lease = "10m"
job_ttl = "10s"
per_host_interval = "1ms"
per_host_burst = 100
[collector]
linger = "10ms"
{worker}"#,
        day = scale(86_400.0),
        horizon = scale(90.0 * 86_400.0),
        quarter = scale(900.0),
        two_hours = scale(7200.0),
        eight_hours = scale(28_800.0),
        half_hour = scale(1800.0),
        offsets = offsets.join(", "),
        url = store.url,
        worker = support::simnet_worker_toml(net, dir, "4s"),
    );
    let path = dir.join("tdmon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn write_notices(net: &SimNet, dir: &Path) -> PathBuf {
    let at = net
        .notice_time()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut csv = String::from("url,notified_at,notice_id\n");
    for (i, url) in net.urls().iter().enumerate() {
        csv.push_str(&format!("{url},{at},E2E-{i}\n"));
    }
    let path = dir.join("notices.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn tdmon(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TDMON_") {
            command.env_remove(key);
        }
    }
    command.arg("--config").arg(config);
    command
}

fn spawn_run(config: &Path, notices: &Path) -> Child {
    tdmon(config)
        .args(["run", "--notices"])
        .arg(notices)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tdmon run starts")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The first takedown of every URL with a true one holds the true moment;
/// no takedown where the content never went.
fn assert_brackets_hold(states: &[UrlState], truth: &[UrlTruth], watched_until: DateTime<Utc>) {
    for t in truth {
        let state = states
            .iter()
            .find(|s| s.subject.url == t.url)
            .unwrap_or_else(|| panic!("{} is monitored", t.url));
        match (state.first_takedown(), t.went_down) {
            _ if t.already_removed => {
                assert!(state.already_offline, "{}: already offline", t.url);
            }
            (Some(takedown), Some(down)) => assert!(
                takedown.bracket.holds(down, state.subject.notified_at),
                "{}: true takedown {down} outside {:?}",
                t.url,
                takedown.bracket
            ),
            (Some(takedown), None) => panic!("{}: false takedown {takedown:?}", t.url),
            (None, Some(down)) => assert!(
                down > watched_until,
                "{}: went down at {down}, not found (state {:?})",
                t.url,
                state.phase
            ),
            (None, None) => {}
        }
    }
}

/// Every reappearance and change of hoster is bracketed around its true
/// moment (the first takedown is checked by `assert_brackets_hold`).
fn assert_event_brackets_hold(events: &[Event], t: &UrlTruth) {
    for event in events {
        let truth = match event.kind {
            EventKind::Reappeared => t.came_back,
            EventKind::HosterChanged => t.moved.as_ref().map(|m| m.at),
            _ => continue,
        };
        let bracket = event.bracket.expect("bracketed");
        assert_eq!(event.at, bracket.to, "{}: dated at the late end", t.url);
        let moment = truth.unwrap_or_else(|| panic!("{}: {:?} never happened", t.url, event.kind));
        assert!(
            bracket.holds(moment, event.notified_at),
            "{}: {:?} at {moment} outside {bracket:?}",
            t.url,
            event.kind
        );
    }
}

/// The checked-in JSON Schemas of docs/schemas/, to validate what tdmon
/// really produced.
struct MessageSchemas {
    observation: Schema,
    event: Schema,
}

struct Schema(jsonschema::Validator);

impl Schema {
    fn load(name: &str) -> Schema {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/schemas")
            .join(format!("{name}.schema.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        Schema(jsonschema::validator_for(&schema).unwrap())
    }

    fn check(&self, message: &impl serde::Serialize) {
        let json = serde_json::to_value(message).unwrap();
        let errors: Vec<String> = self.0.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{json} breaks its schema: {errors:?}");
    }
}

impl MessageSchemas {
    fn load() -> Self {
        Self {
            observation: Schema::load("observation"),
            event: Schema::load("event"),
        }
    }
}

/// Monitors the scenario, is killed mid-run, is started again and stopped
/// with SIGTERM; then checks what was stored against the truth.
async fn kill_and_resume(store: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let net = SimNet::start(
        scenario(),
        SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    let config = write_config(&net, dir.path(), &store);
    let notices = write_notices(&net, dir.path());

    let first = spawn_run(&config, &notices);
    // Five simulated hours in: the slow URL's 4h check is in flight.
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&first, "KILL");
    let killed = first.wait_with_output().unwrap();
    assert!(!killed.status.success(), "killed mid-run");

    let second = spawn_run(&config, &notices);
    tokio::time::sleep(Duration::from_secs(19)).await;
    signal(&second, "TERM");
    let stopped = second.wait_with_output().unwrap();
    let watched_until = Utc::now() - TimeDelta::seconds(2);
    let log = stderr(&stopped);
    assert!(stopped.status.success(), "a clean stop on SIGTERM:\n{log}");
    assert!(
        log.contains("0 notices added"),
        "the second run adds nothing twice:\n{log}"
    );

    let truth = net.truth();
    let db = store.open().await;
    let states = db.all_states().await.unwrap();
    let status = db.status(Utc::now()).await.unwrap();
    assert_eq!(states.len(), truth.len(), "every notice stored once");
    assert_eq!(
        status.leased.count, 0,
        "the clean stop gave every lease back"
    );
    assert_brackets_hold(&states, &truth, watched_until);

    let schemas = MessageSchemas::load();
    for state in &states {
        let observations = db.observations(state.subject.url_id).await.unwrap();
        let events = db.events(state.subject.url_id).await.unwrap();
        for observation in &observations {
            schemas.observation.check(observation);
        }
        for event in &events {
            schemas.event.check(event);
        }
        let t = truth.iter().find(|t| t.url == state.subject.url).unwrap();
        assert_event_brackets_hold(&events, t);
        assert_eq!(
            observations.len() as u32,
            state.checks,
            "{}: every stored check was applied once",
            state.subject.url
        );
        // A repeated check would sit right beside the one it repeats: the
        // compressed schedule never plans two within 250 ms.
        for pair in observations.windows(2) {
            let gap = pair[1].started_at - pair[0].started_at;
            assert!(
                gap >= TimeDelta::milliseconds(240),
                "{}: checks {gap} apart at {}",
                state.subject.url,
                pair[1].started_at
            );
        }
        // Nothing lost: no URL is left overdue (a lost job would leave its URL
        // leased and unchecked).
        let overdue = state.next_check.filter(|next| next.at < watched_until);
        assert!(
            overdue.is_none(),
            "{}: overdue since {overdue:?}",
            state.subject.url
        );
    }
    let by_url = |path: &str| {
        states
            .iter()
            .find(|s| s.subject.url.contains(path))
            .unwrap_or_else(|| panic!("{path} is monitored"))
    };
    assert_eq!(
        by_url("/p/10.html").reappearances(),
        1,
        "the flapping URL came back"
    );
    assert!(
        by_url("/img/21.jpg").first_takedown().is_some(),
        "soft removal found"
    );
    assert!(
        by_url("/p/7.html").first_takedown().is_some(),
        "DNS takedown found"
    );
    let moved = by_url("/moving.html");
    assert_eq!(moved.phase, Phase::Online);
    assert_eq!(
        moved
            .current_hoster
            .as_ref()
            .and_then(|h| h.hoster.as_deref()),
        Some("Beta Networks Ltd"),
        "the move to another network is seen"
    );
    assert_eq!(
        moved
            .hoster_of_record
            .as_ref()
            .and_then(|h| h.hoster.as_deref()),
        Some("Alpha Hosting B.V."),
        "the hoster of record stays"
    );
    db.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_it_resumes_without_loss_or_repeats_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_and_resume(TestStore::sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_it_resumes_without_loss_or_repeats_on_postgres() {
    kill_and_resume(TestStore::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_notice_file_is_reported_and_the_valid_lines_are_monitored() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::new(TIME_SCALE)
        .hoster(Hoster::new(
            "Alpha",
            64520,
            "Alpha Hosting B.V.",
            "127.42.0.0/24",
            1,
        ))
        .url(UrlSpec::new("ok1.bad", "/a.html", "Alpha"))
        .url(
            UrlSpec::new("ok2.bad", "/b.html", "Alpha").behaviour(Behaviour::Removed {
                at: hours(0.5),
                status: 404,
            }),
        );
    let net = SimNet::start(
        scenario,
        SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    let store = TestStore::sqlite(dir.path());
    let config = write_config(&net, dir.path(), &store);
    let at = net.notice_time().to_rfc3339();
    let urls = net.urls();
    let notices = dir.path().join("notices.csv");
    std::fs::write(
        &notices,
        format!(
            "url,notified_at\n{},{at}\nftp://files.example/x,{at}\n{},yesterday\n{},{at}\n",
            urls[0], urls[1], urls[1]
        ),
    )
    .unwrap();

    let output = tdmon(&config)
        .args([
            "--set",
            "schedule.offsets=[\"0s\", \"500ms\", \"1s\"]",
            "--set",
            "schedule.horizon=3s",
            "run",
            "--exit-when-done",
            "--notices",
        ])
        .arg(&notices)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "rejected lines make the exit status 1:\n{log}"
    );
    assert!(
        log.contains("line 3: url:"),
        "the bad URL is reported by line:\n{log}"
    );
    assert!(
        log.contains("line 4: notified_at:"),
        "the bad time is reported by line:\n{log}"
    );
    assert!(log.contains("2 notices added"), "{log}");

    let db = store.open().await;
    let states = db.all_states().await.unwrap();
    assert_eq!(states.len(), 2);
    assert!(
        states.iter().all(|s| s.phase == Phase::Expired),
        "monitored to the end"
    );
    let removed = states.iter().find(|s| s.subject.url == urls[1]).unwrap();
    assert!(
        removed.first_takedown().is_some(),
        "the valid lines are monitored"
    );
    db.close().await;
    net.shutdown().await;
}

/// `tdmon demo`, the README's main command: a real measurement of the
/// simulated network whose accuracy line shows every bracket holds the truth.
#[test]
fn the_demo_measures_the_simulated_network_and_holds_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    let accuracy = stdout
        .lines()
        .find(|line| line.starts_with("accuracy:"))
        .unwrap_or_else(|| panic!("no accuracy line in:\n{stdout}"));
    let held = accuracy
        .split("for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ratio| ratio.split_once('/'))
        .map(|(a, b)| (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()))
        .unwrap();
    assert_eq!(held.0, held.1, "{accuracy}");
    assert!(held.1 >= 90, "most takedowns are found: {accuracy}");
    for clause in [
        "0 false takedowns",
        "0 missed",
        "already offline 6/6",
        "hoster changes 2/2",
    ] {
        assert!(accuracy.contains(clause), "{clause:?} in {accuracy}");
    }
    assert!(accuracy.contains("reappearances 12/12"), "{accuracy}");
    assert!(
        stdout.contains("Never Down Ltd"),
        "the per-hoster table:\n{stdout}"
    );
    assert!(dir.path().join("tdmon.db").exists());
    let html = dir.path().join("report.html");
    assert!(
        stdout.contains(&format!("report: {}", html.display())),
        "{stdout}"
    );
    report_matches_the_truth(dir.path());
    explain_traces_a_figure(dir.path());
    html_renders_in_chromium(&html);
}

/// `tdmon explain` on a notice id: the timeline and each derivation; and
/// the CSV export with its documented header.
fn explain_traces_a_figure(dir: &Path) {
    let db = dir.join("tdmon.db");
    // DEMO-001 is QuickHost's first URL, removed within the first hour.
    let output = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["--set", r#"norms=["24s"]"#, "explain", "DEMO-001", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "notice DEMO-001",
        "hoster of record (mapping in force): QuickHost B.V.",
        " served ",
        " http_not_found ",
        "takedown ",
        "bracket (",
        "norm 24s: met",
        "an event in the Kaplan-Meier estimate",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["explain", "NO-SUCH-NOTICE", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));

    let out = dir.join("csv");
    let output = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["report", "--format", "csv", "--by", "asn", "--out"])
        .arg(&out)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(
        csv.starts_with("key,rank,notices,share,already_offline,removed,"),
        "{csv}"
    );
    assert_eq!(
        csv.lines().count(),
        1 + 6 + 1,
        "header, six ASNs, totals:\n{csv}"
    );
    assert!(csv.contains("\nAS64510 QuickHost B.V.,"), "{csv}");
    let monthly = std::fs::read_to_string(out.join("monthly.csv")).unwrap();
    assert!(monthly.starts_with("month,notices,share_within_first_norm,median_s\n"));
}

/// The demo's hosters, by the organisation the report names them by.
const DEMO_ORGS: [(&str, &str); 6] = [
    ("QuickHost", "QuickHost B.V."),
    ("SteadyHost", "Steady Hosting GmbH"),
    ("NeverHost", "Never Down Ltd"),
    ("SoftMedia", "Soft Media S.A."),
    ("ParkedDNS", "Parked DNS Inc."),
    ("FlapHost", "Flappy Servers Oy"),
];

/// `tdmon report --format json` on the demo's store against the network's
/// truth, hoster by hoster: the counts exactly, and the 24h norm (compressed
/// to 24s like the demo's clock) never crediting or blaming against the truth.
fn report_matches_the_truth(dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args([
            "--set",
            r#"norms=["24s", "48s"]"#,
            "report",
            "--format",
            "json",
            "--db",
        ])
        .arg(dir.join("tdmon.db"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let truth: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let notices = std::fs::read_to_string(dir.join("notices.csv")).unwrap();
    let notified: DateTime<Utc> = notices
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let deadline = notified + TimeDelta::seconds(24);
    let time = |v: &serde_json::Value| v.as_str().map(|t| t.parse::<DateTime<Utc>>().unwrap());
    for (name, org) in DEMO_ORGS {
        let row = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == org)
            .unwrap_or_else(|| panic!("no row {org}"));
        let urls: Vec<&serde_json::Value> = truth.iter().filter(|t| t["hoster"] == name).collect();
        let already = urls.iter().filter(|t| t["already_removed"] == true).count();
        let monitored: Vec<_> = urls
            .iter()
            .filter(|t| t["already_removed"] != true)
            .collect();
        let removed = monitored
            .iter()
            .filter(|t| !t["went_down"].is_null())
            .count();
        let back = monitored
            .iter()
            .filter(|t| !t["came_back"].is_null())
            .count();
        let served_at_end = monitored
            .iter()
            .filter(|t| t["went_down"].is_null() || !t["came_back"].is_null())
            .count();
        let count = |key: &str| row[key].as_u64().unwrap() as usize;
        assert_eq!(count("notices"), urls.len(), "{org}");
        assert_eq!(count("already_offline"), already, "{org}");
        assert_eq!(count("removed"), removed, "{org}");
        assert_eq!(count("reappeared"), back, "{org}");
        assert_eq!(count("still_online"), served_at_end, "{org}");
        let gone_at_deadline = monitored
            .iter()
            .filter(|t| {
                time(&t["went_down"]).is_some_and(|down| down <= deadline)
                    && time(&t["came_back"]).is_none_or(|up| up > deadline)
            })
            .count();
        let norm = &row["norms"][0];
        let (met, missed, undetermined) = (
            norm["met"].as_u64().unwrap() as usize,
            norm["missed"].as_u64().unwrap() as usize,
            norm["undetermined"].as_u64().unwrap() as usize,
        );
        assert_eq!(met + missed + undetermined, monitored.len(), "{org}");
        assert!(
            met <= gone_at_deadline,
            "{org}: {met} met, truth {gone_at_deadline}"
        );
        assert!(
            missed <= monitored.len() - gone_at_deadline,
            "{org}: {missed} missed"
        );
        if name == "NeverHost" {
            assert_eq!((met, row["median"]["seconds"].is_null()), (0, true));
        }
    }
    assert_eq!(report["totals"]["notices"], truth.len());
}

/// The report opened in headless Chromium: a screenshot kept beside the
/// test's output, every chart drawn (non-empty SVG paths), and not one
/// console message, which is how Chromium reports what the page's
/// Content-Security-Policy (`default-src 'none'`) blocked: any request for
/// anything outside the file. A control page with one external image shows
/// that such a request is seen.
fn html_renders_in_chromium(html: &Path) {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "headless Chromium is needed: apt-get install -y chromium"
    );
    let browse = |page: &Path, mode: &str| {
        let output = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
                // Nothing leaves the machine, whatever a page asks for.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1200,3000",
                mode,
            ])
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };
    let console = |output: &Output| -> Vec<String> {
        stderr(output)
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect()
    };
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-report");
    std::fs::create_dir_all(&kept).unwrap();
    let screenshot = kept.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = browse(html, &format!("--screenshot={}", screenshot.display()));
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a screenshot"
    );
    std::fs::copy(html, kept.join("report.html")).unwrap();

    let dumped = browse(html, "--dump-dom");
    let dom = String::from_utf8_lossy(&dumped.stdout);
    assert_eq!(console(&shot), Vec::<String>::new());
    assert_eq!(console(&dumped), Vec::<String>::new());
    let charts: Vec<&str> = dom.split("<svg").skip(1).collect();
    assert_eq!(charts.len(), 3, "survival, compliance and trend charts");
    for chart in &charts {
        let drawn = chart
            .split("<path d=\"")
            .skip(1)
            .filter(|p| p.split('"').next().is_some_and(|d| d.len() > 8))
            .count();
        assert!(
            drawn >= 3,
            "a chart with paths drawn: {}",
            &chart[..chart.len().min(300)]
        );
    }
    assert!(
        dom.matches("class=\"curve\"").count() >= 7,
        "overall and six hosters"
    );
    assert!(dom.contains("class=\"censored\""), "censoring marks");
    for section in [
        "summary",
        "ranking",
        "survival",
        "compliance",
        "trend",
        "groups",
        "methodology",
    ] {
        assert!(
            dom.contains(&format!("id=\"{section}\"")),
            "section {section}"
        );
    }

    let control = kept.join("control.html");
    let page = std::fs::read_to_string(html)
        .unwrap()
        .replace("<body>", "<body><img src=\"http://127.0.0.1:9/x.png\">");
    std::fs::write(&control, page).unwrap();
    assert!(
        !console(&browse(&control, "--dump-dom")).is_empty(),
        "the detector sees a request"
    );
}

/// Whether some process holds an flock on `path` (from /proc/locks), looked
/// at without taking the lock, so the monitor is never disturbed.
fn flock_held(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(inode) = std::fs::metadata(path).map(|m| m.ino()) else {
        return false;
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks.lines().any(|line| {
        line.contains("FLOCK")
            && line
                .split_whitespace()
                .any(|field| field.rsplit(':').next() == Some(&inode.to_string()))
    })
}

/// Waits (at most 30 s) until `ready` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second `tdmon run` on the store that `first` monitors: it must refuse
/// to start, saying why, while the first keeps running and stops cleanly.
fn second_run_is_refused(mut first: Child, second: &mut Command) {
    let started = std::time::Instant::now();
    let mut second = second
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while second.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = second.kill();
            signal(&first, "TERM");
            let _ = first.wait();
            panic!("a second monitor started on the same store");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = second.wait_with_output().unwrap();
    let log = stderr(&refused);
    assert_eq!(refused.status.code(), Some(3), "{log}");
    assert!(
        log.contains("another tdmon run is already monitoring"),
        "{log}"
    );
    assert!(first.try_wait().unwrap().is_none(), "the first still runs");
    signal(&first, "TERM");
    let stopped = first.wait_with_output().unwrap();
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}

#[test]
fn a_symlink_to_a_monitored_sqlite_file_cannot_start_a_second_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tdmon.db");
    let link_dir = dir.path().join("elsewhere");
    std::fs::create_dir(&link_dir).unwrap();
    let link = link_dir.join("link.db");
    std::os::unix::fs::symlink(&db, &link).unwrap();

    let first = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["run", "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.path().join("tdmon.db.lock");
    wait_until("the first monitor holds its lock", || flock_held(&lock));
    second_run_is_refused(
        first,
        Command::new(env!("CARGO_BIN_EXE_tdmon"))
            .args(["run", "--db"])
            .arg(&link),
    );
}

#[test]
fn two_monitors_cannot_run_on_one_postgres_schema() {
    let store = TestStore::postgres();
    let schema = store.schema.clone().unwrap();
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
        command.args([
            "--set",
            &format!("store.url={}", store.url),
            "--set",
            &format!("store.schema={schema}"),
            "run",
        ]);
        command
    };
    let first = run()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) \
         = hashtextextended('tdmon monitor {schema}', 0)"
    );
    wait_until("the first monitor holds its lock", || {
        let output = Command::new("psql")
            .args([store.url.as_str(), "-tAq", "-c", &held])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim() == "1"
    });
    second_run_is_refused(first, &mut run());
}
