//! Operating tdmon end to end, with the built binary on the simulated
//! network: scrape `/metrics`, post notices over the API and see them
//! monitored, and stop each role with SIGTERM in the middle of its work
//! without losing anything.

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tdmon_simnet::{Behaviour, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
use tdmon_store::{Store, StoreOptions};

const TIME_SCALE: f64 = 3600.0;
const TOKEN: &str = "test-token-0123456789";

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

/// A few URLs, one of which answers so slowly that a check of it is in
/// flight for its whole timeout: a stop always finds one to drain.
fn scenario() -> Scenario {
    Scenario::new(TIME_SCALE)
        .hoster(Hoster::new(
            "Alpha",
            64520,
            "Alpha Hosting B.V.",
            "127.42.0.0/24",
            2,
        ))
        .url(
            UrlSpec::new("a.ops", "/1.html", "Alpha").behaviour(Behaviour::Removed {
                at: hours(1.3),
                status: 404,
            }),
        )
        .url(UrlSpec::new("b.ops", "/2.html", "Alpha").behaviour(Behaviour::Never))
        .url(
            UrlSpec::new("c.ops", "/3.html", "Alpha")
                .behaviour(Behaviour::AlreadyRemoved { status: 410 }),
        )
        .url(
            UrlSpec::new("slow.ops", "/4.html", "Alpha").behaviour(Behaviour::SlowDrip {
                pause: Duration::from_millis(50),
            }),
        )
}

/// Settings that point tdmon at the network on a compressed schedule, with
/// the HTTP server on a free loopback port.
fn write_config(net: &SimNet, dir: &Path, store: &str, extra: &str) -> std::path::PathBuf {
    let scale = |secs: f64| format!("\"{}ms\"", (secs * 1000.0 / TIME_SCALE).round() as u64);
    let offsets: Vec<String> = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
        .iter()
        .map(|h| scale(h * 3600.0))
        .collect();
    let config = format!(
        r#"
norms = [{day}]
[schedule]
offsets = [{offsets}]
then_every = {day}
horizon = {horizon}
after_takedown = [{two_hours}]
after_takedown_every = {day}
[confirmation]
min_span = {half_hour}
recheck_delay = {quarter}
inconclusive_limit = {day}
[store]
{store}
[http]
listen = "127.0.0.1:0"
token = "{TOKEN}"
[dispatcher]
tick = "20ms"
lease = "10m"
job_ttl = "10s"
per_host_interval = "1ms"
per_host_burst = 100
[collector]
linger = "10ms"
{worker}{extra}
"#,
        day = scale(86_400.0),
        horizon = scale(30.0 * 86_400.0),
        quarter = scale(900.0),
        two_hours = scale(7200.0),
        half_hour = scale(1800.0),
        offsets = offsets.join(", "),
        worker = support::simnet_worker_toml(net, dir, "3s"),
    );
    let path = dir.join("tdmon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A `tdmon` process whose JSON logs are collected as they come.
struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn start(config: &Path, args: &[&str]) -> Self {
        let mut child = support::tdmon()
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tdmon starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let collected = Arc::clone(&logs);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            logs,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The address the process serves HTTP on, from its log.
    async fn http_address(&mut self) -> SocketAddr {
        for _ in 0..600 {
            let found = self.logs.lock().unwrap().iter().find_map(|line| {
                let record: Value = serde_json::from_str(line).ok()?;
                (record["message"] == "serving HTTP")
                    .then(|| record["address"].as_str()?.parse().ok())?
            });
            if let Some(address) = found {
                return address;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "tdmon exited ({status}) before serving HTTP:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tdmon did not serve HTTP within 30 s:\n{}", self.log());
    }

    /// Sends SIGTERM; returns the moment it was sent.
    fn terminate(&self) -> DateTime<Utc> {
        let sent = Utc::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        sent
    }

    /// Waits for the exit (at most 60 s) and returns its status code.
    async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    reader.join().unwrap();
                }
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("tdmon did not stop within 60 s:\n{}", self.log());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every sample of `family` in a scrape, with `labels` among its
/// labels (e.g. `source="http"`).
fn sample_sum(scrape: &str, family: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(http: &reqwest::Client, address: SocketAddr) -> String {
    let answer = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap()
}

/// Waits (at most 30 s) until `ready` holds for a fresh scrape.
async fn scrape_until(
    http: &reqwest::Client,
    address: SocketAddr,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    for _ in 0..300 {
        let text = scrape(http, address).await;
        if ready(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not seen in /metrics within 30 s");
}

/// An HTTP client (reqwest wants a TLS provider even for plain HTTP).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn json(answer: reqwest::Response) -> Value {
    let text = answer.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn notices_csv(net: &SimNet) -> String {
    let at = net
        .notice_time()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut csv = String::from("url,notified_at,notice_id\n");
    for (i, url) in net.urls().iter().enumerate() {
        csv.push_str(&format!("{url},{at},OPS-{i}\n"));
    }
    csv
}

/// The observations of `url_id` as the API shows them.
async fn url_observations(http: &reqwest::Client, address: SocketAddr, url_id: i64) -> Vec<Value> {
    let answer = http
        .get(format!("http://{address}/urls/{url_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = json(answer).await;
    assert_eq!(body["url_id"], url_id);
    assert!(body["state"]["phase"].is_string(), "{body}");
    body["observations"].as_array().unwrap().clone()
}

/// True when some observation of `store` was in flight at `moment`: started
/// before it, answered after it.
async fn in_flight_at(store: &Store, url_ids: &[i64], moment: DateTime<Utc>) -> bool {
    for &id in url_ids {
        for observation in store.observations(id).await.unwrap() {
            if observation.started_at < moment && observation.answered_at > moment {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_monitor_is_scraped_fed_over_http_and_stopped_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let net = SimNet::start(
        scenario(),
        SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    let db = dir.path().join("tdmon.db");
    let store_url = format!("sqlite://{}", db.display());
    let config = write_config(&net, dir.path(), &format!("url = {store_url:?}"), "");
    let mut monitor = Process::start(&config, &["run"]);
    let address = monitor.http_address().await;
    let http = client();

    let health = http
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "store: ok\n");
    let before = scrape(&http, address).await;
    assert_eq!(
        sample_sum(&before, "tdmon_checks_total", &[]),
        0.0,
        "{before}"
    );

    // Writes need the token.
    let csv = notices_csv(&net) + "not a url,2026-01-01T00:00:00Z,OPS-bad\n";
    let refused = http
        .post(format!("http://{address}/notices"))
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let post = || {
        http.post(format!("http://{address}/notices"))
            .bearer_auth(TOKEN)
            .header("content-type", "text/csv")
            .body(csv.clone())
            .send()
    };
    let answer = json(post().await.unwrap()).await;
    let added = answer["added"].as_array().unwrap();
    assert_eq!(added.len(), 4, "{answer}");
    assert_eq!(answer["rejected"][0]["line"], 6, "{answer}");
    let url_ids: Vec<i64> = added
        .iter()
        .map(|a| a["url_id"].as_i64().unwrap())
        .collect();
    let again = json(post().await.unwrap()).await;
    assert_eq!(again["added"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(
        again["already_stored"].as_array().unwrap().len(),
        4,
        "{again}"
    );

    // The notices are monitored: every URL gets checked, as the API shows.
    for &id in &url_ids {
        for attempt in 0.. {
            if !url_observations(&http, address, id).await.is_empty() {
                break;
            }
            assert!(attempt < 300, "URL {id} not checked within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let moved = scrape_until(&http, address, "a check in flight", |text| {
        sample_sum(text, "tdmon_checks_in_flight", &[]) >= 1.0
    })
    .await;
    assert!(
        sample_sum(&moved, "tdmon_checks_total", &[]) >= 3.0,
        "{moved}"
    );
    assert_eq!(
        sample_sum(
            &moved,
            "tdmon_notices_total",
            &["source=\"http\"", "result=\"added\""]
        ),
        4.0
    );
    assert_eq!(
        sample_sum(&moved, "tdmon_notices_total", &["result=\"duplicate\""]),
        4.0
    );
    assert_eq!(sample_sum(&moved, "tdmon_urls", &[]), 4.0, "{moved}");
    assert!(
        sample_sum(&moved, "tdmon_events_total", &[]) >= 1.0,
        "{moved}"
    );
    assert!(sample_sum(&moved, "tdmon_store_write_duration_seconds_count", &[]) >= 1.0);
    assert!(sample_sum(&moved, "tdmon_dns_lookups_total", &["kind=\"ok\""]) >= 1.0);
    assert!(
        !moved.contains(".ops"),
        "no URL or host in a label:\n{moved}"
    );

    // A stop in the middle of a check: it is finished and stored.
    let stopped_at = monitor.terminate();
    assert_eq!(monitor.exit_code().await, Some(0), "{}", monitor.log());
    let store = Store::open_with(&store_url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(
        in_flight_at(&store, &url_ids, stopped_at).await,
        "the check in flight at SIGTERM was drained and stored"
    );
    let status = store.status(Utc::now()).await.unwrap();
    assert_eq!(status.leased.count, 0, "every lease was given back");
    for state in store.states(&url_ids).await.unwrap() {
        let observations = store.observations(state.subject.url_id).await.unwrap();
        assert_eq!(
            observations.len() as u32,
            state.checks,
            "each check applied once"
        );
    }
    store.close().await;
    net.shutdown().await;
}

/// Every URL was applied once per stored check, and none is overdue at
/// `watched_until`: a lost job or observation would leave its URL leased
/// with its old due time.
async fn assert_nothing_lost(store: &Store, url_ids: &[i64], watched_until: DateTime<Utc>) {
    let states = store.states(url_ids).await.unwrap();
    assert_eq!(states.len(), url_ids.len());
    for state in states {
        let observations = store.observations(state.subject.url_id).await.unwrap();
        assert_eq!(
            observations.len() as u32,
            state.checks,
            "{}: each check applied once",
            state.subject.url
        );
        let overdue = state.next_check.filter(|next| next.at < watched_until);
        assert!(
            overdue.is_none(),
            "{}: overdue since {overdue:?}",
            state.subject.url
        );
    }
}

/// Waits (at most 20 s) until some observation in flight at `moment` is
/// stored.
async fn wait_in_flight_stored(store: &Store, url_ids: &[i64], moment: DateTime<Utc>) {
    for _ in 0..200 {
        if in_flight_at(store, url_ids, moment).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the check in flight at {moment} was not stored within 20 s");
}

/// Removes the test's queues and exchanges.
async fn delete_topology(prefix: &str) {
    let settings = tdmon_bus_amqp::BusConfig {
        prefix: prefix.to_owned(),
        ..tdmon_bus_amqp::BusConfig::default()
    }
    .validate()
    .unwrap();
    let bus = tdmon_bus_amqp::AmqpBus::try_connect(settings, "ops-test")
        .await
        .unwrap();
    bus.delete_topology().await.unwrap();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_distributed_role_stops_on_sigterm_mid_work_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let net = SimNet::start(
        scenario(),
        SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    let schema = support::PgSchema::new("tdmon_ops");
    let prefix = format!(
        "tdmon-ops-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store_settings = format!("url = {:?}\nschema = {:?}", schema.url, schema.name);
    let config = write_config(
        &net,
        dir.path(),
        &store_settings,
        &format!("[bus]\nprefix = {prefix:?}\nreconnect_max = \"1s\""),
    );
    let http = client();

    // The dispatcher first: it serves HTTP once it has created the schema,
    // which two processes creating it at once would race for.
    let mut dispatcher = Process::start(&config, &["dispatcher"]);
    let api = dispatcher.http_address().await;
    let mut worker = Process::start(&config, &["worker"]);
    let mut collector = Process::start(&config, &["collector"]);
    let worker_http = worker.http_address().await;
    let collector_http = collector.http_address().await;
    for address in [api, worker_http, collector_http] {
        for attempt in 0.. {
            let ready = http
                .get(format!("http://{address}/readyz"))
                .send()
                .await
                .unwrap();
            if ready.status() == 200 {
                break;
            }
            assert!(
                attempt < 100,
                "{address} not ready: {}",
                ready.text().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Notices over the dispatcher's API.
    let answer = json(
        http.post(format!("http://{api}/notices"))
            .bearer_auth(TOKEN)
            .header("content-type", "text/csv")
            .body(notices_csv(&net))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let url_ids: Vec<i64> = answer["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["url_id"].as_i64().unwrap())
        .collect();
    assert_eq!(url_ids.len(), 4, "{answer}");
    let store = Store::open_with(
        &schema.url,
        &StoreOptions {
            schema: Some(schema.name.clone()),
        },
    )
    .await
    .unwrap();

    // The worker, stopped with a check in flight: it finishes and publishes it.
    scrape_until(&http, worker_http, "a check in flight", |text| {
        sample_sum(text, "tdmon_checks_in_flight", &[]) >= 1.0
    })
    .await;
    let stopped_at = worker.terminate();
    assert_eq!(worker.exit_code().await, Some(0), "{}", worker.log());
    wait_in_flight_stored(&store, &url_ids, stopped_at).await;
    let mut worker = Process::start(&config, &["worker"]);

    // The collector, stopped while observations flow.
    let written = scrape_until(&http, collector_http, "a batch written", |text| {
        sample_sum(text, "tdmon_store_batch_size_count", &[]) >= 2.0
    })
    .await;
    assert!(sample_sum(&written, "tdmon_observations_total", &["result=\"new\""]) >= 2.0);
    collector.terminate();
    assert_eq!(collector.exit_code().await, Some(0), "{}", collector.log());
    let mut collector = Process::start(&config, &["collector"]);

    // The dispatcher, stopped while it dispatches; a new one takes over.
    let dispatched = scrape_until(&http, api, "jobs dispatched and confirmed", |text| {
        sample_sum(
            text,
            "tdmon_bus_publish_confirms_total",
            &["result=\"ack\""],
        ) >= 4.0
    })
    .await;
    assert!(sample_sum(&dispatched, "tdmon_jobs_dispatched_total", &[]) >= 4.0);
    assert!(dispatched.contains("# TYPE tdmon_queue_jobs_waiting gauge"));
    dispatcher.terminate();
    assert_eq!(
        dispatcher.exit_code().await,
        Some(0),
        "{}",
        dispatcher.log()
    );
    let mut dispatcher = Process::start(&config, &["dispatcher"]);
    let api = dispatcher.http_address().await;

    // Every URL keeps being checked: none waits past its due time.
    let restarted = Utc::now();
    for attempt in 0.. {
        let body = json(
            http.get(format!("http://{api}/urls/{}", url_ids[1]))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let checked_since = body["observations"].as_array().unwrap().iter().any(|o| {
            let started = DateTime::parse_from_rfc3339(o["started_at"].as_str().unwrap());
            started.unwrap() > restarted
        });
        if checked_since {
            break;
        }
        assert!(attempt < 200, "not checked after the restarts: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for process in [&worker, &collector, &dispatcher] {
        process.terminate();
    }
    let watched_until = Utc::now() - chrono::TimeDelta::seconds(5);
    for process in [&mut worker, &mut collector, &mut dispatcher] {
        assert_eq!(process.exit_code().await, Some(0), "{}", process.log());
    }
    assert_nothing_lost(&store, &url_ids, watched_until).await;
    store.close().await;
    delete_topology(&prefix).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_bound_exits_3_a_second_signal_130_and_a_restart_redoes_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let net = SimNet::start(
        scenario(),
        SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    let db = dir.path().join("tdmon.db");
    let store_url = format!("sqlite://{}", db.display());
    // The slow URL's check takes its whole 3 s timeout; the drain may take 200 ms.
    let config = write_config(
        &net,
        dir.path(),
        &format!("url = {store_url:?}"),
        "[shutdown]\ndrain_timeout = \"200ms\"",
    );
    let notices = dir.path().join("notices.csv");
    std::fs::write(&notices, notices_csv(&net)).unwrap();
    let http = client();
    let notices = notices.to_str().unwrap();

    let mut monitor = Process::start(&config, &["run", "--notices", notices]);
    let address = monitor.http_address().await;
    scrape_until(&http, address, "a check in flight", |text| {
        sample_sum(text, "tdmon_checks_in_flight", &[]) >= 1.0
    })
    .await;
    monitor.terminate();
    assert_eq!(monitor.exit_code().await, Some(3), "{}", monitor.log());
    assert!(
        monitor.log().contains("shutdown.drain_timeout"),
        "{}",
        monitor.log()
    );

    let mut monitor = Process::start(&config, &["run", "--notices", notices]);
    let address = monitor.http_address().await;
    scrape_until(&http, address, "a check in flight", |text| {
        sample_sum(text, "tdmon_checks_in_flight", &[]) >= 1.0
    })
    .await;
    monitor.terminate();
    monitor.terminate();
    assert_eq!(monitor.exit_code().await, Some(130), "{}", monitor.log());

    // A run that may drain: it gives back what the interrupted ones left
    // leased, checks on, and stops cleanly.
    let config = write_config(&net, dir.path(), &format!("url = {store_url:?}"), "");
    let mut monitor = Process::start(&config, &["run"]);
    let address = monitor.http_address().await;
    let restarted = Utc::now();
    let store = Store::open_with(&store_url, &StoreOptions::default())
        .await
        .unwrap();
    let url_ids: Vec<i64> = store
        .all_states()
        .await
        .unwrap()
        .iter()
        .map(|s| s.subject.url_id)
        .collect();
    assert_eq!(url_ids.len(), 4, "the notices were stored once");
    scrape_until(&http, address, "checks after the restart", |text| {
        sample_sum(text, "tdmon_checks_total", &[]) >= 4.0
    })
    .await;
    monitor.terminate();
    assert_eq!(monitor.exit_code().await, Some(0), "{}", monitor.log());
    let status = store.status(Utc::now()).await.unwrap();
    assert_eq!(status.leased.count, 0, "every lease was given back");
    assert_nothing_lost(&store, &url_ids, restarted).await;
    store.close().await;
    net.shutdown().await;
}
