//! The distributed deployment end to end, with faults: `tdmon dispatcher`,
//! `worker` and `collector` processes over this machine's RabbitMQ and
//! PostgreSQL (a fresh bus prefix and schema per test, removed afterwards)
//! monitor the simulated network on a compressed schedule, and what they
//! stored is compared with the network's ground truth.
//!
//! Every run ends when every URL's monitoring has ended (its horizon check
//! applied). Leases last longer than any test, so a check lost anywhere
//! leaves its URL leased and unchecked, and the run never ends: finishing is
//! the proof that no due check was lost, whatever the timing.
//!
//! The tests that restart a shared service (`service_restart_*`) run alone:
//! see `.config/nextest.toml`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_bus::Bus as _;
use tdmon_bus_amqp::{AmqpBus, BusConfig, BusSettings};
use tdmon_core::notice::Notice;
use tdmon_core::outcome::Outcome;
use tdmon_core::state::{Phase, UrlState};
use tdmon_core::{Event, EventKind, Observation};
use tdmon_simnet::{
    Behaviour, ContentKind, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec, UrlTruth,
};
use tdmon_store::{Store, StoreOptions};

use support::PgSchema;

/// Simulated seconds per real second: one simulated hour a second.
const TIME_SCALE: f64 = 3600.0;
/// Monitoring of every notice ends this many simulated hours after it.
const HORIZON_HOURS: f64 = 12.0;
/// How long a run may take, from the notices to the last URL's end, on a
/// loaded machine with a fault in it: the horizon is 12 s.
const PATIENCE: Duration = Duration::from_secs(90);
/// How long a member may take to get ready.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// The closest two checks of one URL are ever planned (the recheck delay,
/// and the closest offsets): a check repeated for one due time would sit
/// right beside the one it repeats.
const CLOSEST_PLANNED: TimeDelta = TimeDelta::milliseconds(240);

/// Deliveries of a job that end without an ack before it is parked.
const DELIVERY_LIMIT: u32 = 2;

/// The confirmation's minimum span (half a simulated hour).
const MIN_SPAN: TimeDelta = TimeDelta::milliseconds(500);

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

/// Twelve URLs with known fates, one host name each. Every change comes
/// after the fourth simulated hour, when the members have long started,
/// the flapping one (which must be seen online first) after the sixth.
fn scenario() -> Scenario {
    let mut scenario = Scenario::new(TIME_SCALE)
        .hoster(Hoster::new(
            "Gamma",
            64530,
            "Gamma Hosting B.V.",
            "127.42.0.0/24",
            2,
        ))
        .hoster(Hoster::new(
            "Delta",
            64531,
            "Delta Networks Ltd",
            "127.43.0.0/24",
            2,
        ));
    let behaviours = [
        Behaviour::Removed {
            at: hours(4.5),
            status: 404,
        },
        Behaviour::Removed {
            at: hours(6.2),
            status: 410,
        },
        Behaviour::Removed {
            at: hours(7.7),
            status: 451,
        },
        Behaviour::AlreadyRemoved { status: 404 },
        Behaviour::DnsRemoval { at: hours(5.4) },
        Behaviour::RedirectHome {
            at: hours(6.8),
            status: 302,
        },
        Behaviour::Flapping {
            down_at: hours(6.0),
            up_at: hours(9.5),
            status: 404,
        },
        Behaviour::ServerErrors {
            from: hours(5.0),
            until: hours(5.4),
            status: 503,
        },
        // Answers slowly (a byte every 200 ms, the head alone takes half a
        // minute): its checks are in flight until they time out, so a
        // worker always holds one.
        Behaviour::SlowDrip {
            pause: Duration::from_millis(200),
        },
        Behaviour::Never,
    ];
    for (i, behaviour) in behaviours.into_iter().enumerate() {
        let hoster = if i % 2 == 0 { "Gamma" } else { "Delta" };
        scenario = scenario.url(
            UrlSpec::new(&format!("h{i}.dist"), &format!("/p/{i}.html"), hoster)
                .behaviour(behaviour),
        );
    }
    scenario
        .url(
            UrlSpec::new("h20.dist", "/img/20.jpg", "Gamma")
                .kind(ContentKind::Image)
                .behaviour(Behaviour::SoftRemoval { at: hours(5.8) }),
        )
        .url(UrlSpec::new("h30.dist", "/moving.html", "Gamma").moves_to("Delta", hours(6.0)))
}

/// The members' one configuration file: the network, the schema, the bus
/// prefix, and the schedule compressed like the network's clock.
fn write_config(net: &SimNet, dir: &Path, schema: &PgSchema, prefix: &str) -> PathBuf {
    let scale = |h: f64| {
        format!(
            "\"{}ms\"",
            (h * 3600.0 * 1000.0 / TIME_SCALE).round() as u64
        )
    };
    let offsets: Vec<String> = [0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        .iter()
        .map(|h| scale(*h))
        .collect();
    let config = format!(
        r#"
norms = [{day}]
[schedule]
offsets = [{offsets}]
then_every = {hour}
horizon = {horizon}
after_takedown = [{hour}]
after_takedown_every = {hour}
[confirmation]
min_span = {half_hour}
recheck_delay = {quarter}
inconclusive_limit = {day}
[store]
url = "{url}"
schema = "{schema}"
[bus]
prefix = "{prefix}"
reconnect_min = "50ms"
reconnect_max = "1s"
delivery_limit = {delivery_limit}
[dispatcher]
tick = "20ms"
lease = "10m"
job_ttl = "30s"
per_host_interval = "1ms"
per_host_burst = 100
[collector]
linger = "10ms"
{worker}"#,
        delivery_limit = DELIVERY_LIMIT,
        day = scale(24.0),
        hour = scale(1.0),
        horizon = scale(HORIZON_HOURS),
        quarter = scale(0.25),
        half_hour = scale(0.5),
        offsets = offsets.join(", "),
        url = schema.url,
        schema = schema.name,
        worker = support::simnet_worker_toml(net, dir, "4s"),
    );
    let path = dir.join("tdmon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The bus settings of a test's own prefix.
fn bus_settings(prefix: &str) -> BusSettings {
    BusConfig {
        prefix: prefix.to_owned(),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_secs(1),
        delivery_limit: DELIVERY_LIMIT,
        ..BusConfig::default()
    }
    .validate()
    .unwrap()
}

/// One member process and its log.
struct Member {
    name: String,
    child: Child,
    log: PathBuf,
    /// Killed by the test: not expected to stop cleanly.
    killed: bool,
}

impl Member {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// A distributed deployment of its own over the simulated network.
struct Cluster {
    net: SimNet,
    schema: PgSchema,
    prefix: String,
    config: PathBuf,
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the network and `roles` (role, count), waits until each member
    /// is ready, then hands the notices to the intake queue.
    async fn start(roles: &[(&str, usize)]) -> Cluster {
        let mut cluster = Cluster::new().await;
        for (role, count) in roles {
            for _ in 0..*count {
                let member = cluster.spawn(role);
                // Dispatchers one at a time: the first is the active one.
                if *role == "dispatcher" {
                    cluster.wait_for_log(member, ready_lines(role), START_PATIENCE);
                }
            }
        }
        for member in 0..cluster.members.len() {
            let role = cluster.members[member].name.clone();
            cluster.wait_for_log(member, ready_lines(&role), START_PATIENCE);
        }
        cluster.notify().await;
        cluster
    }

    /// The network, a schema and a bus prefix, with no member yet.
    async fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let net = SimNet::start(
            scenario(),
            SimNetOptions::default().asn_db(dir.path().join("asn.mmdb")),
        )
        .await
        .unwrap();
        let schema = PgSchema::new("tdmon_dist");
        let prefix = format!(
            "tdmon-dist-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let config = write_config(&net, dir.path(), &schema, &prefix);
        Cluster {
            net,
            schema,
            prefix,
            config,
            members: Vec::new(),
            dir,
        }
    }

    /// Starts one more member; its index.
    fn spawn(&mut self, role: &str) -> usize {
        self.spawn_with(role, &[])
    }

    /// Starts one more member with `settings` (`--set` arguments) on top of
    /// the configuration file; its index.
    fn spawn_with(&mut self, role: &str, settings: &[&str]) -> usize {
        let n = self
            .members
            .iter()
            .filter(|m| m.name.starts_with(role))
            .count()
            + 1;
        let name = format!("{role}-{n}");
        let log = self.dir.path().join(format!("{name}.log"));
        let child = support::tdmon()
            .arg("--config")
            .arg(&self.config)
            .args(settings.iter().flat_map(|s| ["--set", s]))
            .arg(role)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        self.members.push(Member {
            name,
            child,
            log,
            killed: false,
        });
        self.members.len() - 1
    }

    fn member(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Waits until member `index` has logged one of `lines`.
    fn wait_for_log(&mut self, index: usize, lines: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let log = self.members[index].log();
            if lines.iter().any(|line| log.contains(line)) {
                return;
            }
            let member = &mut self.members[index];
            assert!(
                member.running(),
                "{} ended before logging {lines:?}:\n{}",
                member.name,
                member.log()
            );
            assert!(
                Instant::now() < deadline,
                "{} did not log {lines:?} within {within:?}:\n{}",
                member.name,
                member.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills member `index` with SIGKILL.
    fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        member.child.kill().unwrap();
        member.child.wait().unwrap();
        member.killed = true;
    }

    /// Publishes one message per notice on the intake queue, as other
    /// systems do.
    async fn notify(&self) {
        let at = self.net.notice_time();
        let notices: Vec<Notice> = self
            .net
            .urls()
            .iter()
            .enumerate()
            .map(|(i, url)| notice(&format!("DIST-{i}"), url, at))
            .collect();
        let bus = AmqpBus::try_connect(bus_settings(&self.prefix), "test")
            .await
            .unwrap();
        bus.publish_notices(notices).await.unwrap();
        bus.close().await;
    }

    /// One value `sql` selects; `None` while the database does not answer.
    fn query(&self, sql: &str) -> Option<String> {
        let output = Command::new("psql")
            .args([self.schema.url.as_str(), "-tAq", "-c"])
            .arg(format!("SET search_path TO {}; {sql}", self.schema.name))
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Waits until every notice was stored and every URL's monitoring has
    /// ended, and every event was published; fails at once when a member
    /// the test did not kill dies.
    fn wait_until_done(&mut self) {
        let urls = self.net.urls().len();
        let deadline = Instant::now() + PATIENCE;
        let done = format!("{urls}|0|0");
        let mut seen = None;
        loop {
            for member in &mut self.members {
                if !member.killed {
                    assert!(member.running(), "{} died:\n{}", member.name, member.log());
                }
            }
            seen = self
                .query(
                    "SELECT count(*), count(*) FILTER (WHERE phase <> 'expired'), \
                     (SELECT count(*) FROM events WHERE NOT published) FROM urls",
                )
                .or(seen);
            if seen.as_deref() == Some(done.as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not done within {PATIENCE:?} (URLs, not expired, unpublished \
                 events: {seen:?}); leased: {:?}\n{}",
                self.query("SELECT string_agg(url, ' ') FROM urls WHERE lease_until IS NOT NULL"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Asserts that every live member whose name starts with `role` logged
    /// `line` at least `times` times: the fault did reach it.
    fn assert_logged(&self, role: &str, line: &str, times: usize) {
        for member in self.members.iter().filter(|m| m.name.starts_with(role)) {
            let log = member.log();
            assert!(
                log.matches(line).count() >= times,
                "{}: {line:?} not {times} times:\n{log}",
                member.name
            );
        }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {}\n{}", m.name, m.log()))
            .collect()
    }

    /// Stops every live member with SIGTERM: each must stop cleanly.
    fn stop(&mut self) {
        for member in self.members.iter().filter(|m| !m.killed) {
            signal(&member.child, "TERM");
        }
        for member in self.members.iter_mut().filter(|m| !m.killed) {
            let status = member.child.wait().unwrap();
            assert!(
                status.success(),
                "{} did not stop cleanly ({status}):\n{}",
                member.name,
                member.log()
            );
        }
        for member in &mut self.members {
            member.killed = true;
        }
    }

    /// Compares what the members stored with the truth: every notice stored
    /// once, every bracket holds its true moment, every event right, every
    /// check applied once and none repeated, nothing left leased. Returns
    /// how many true changes no check could see (an outage hid them).
    async fn verify(&self) -> usize {
        let mut unobserved = 0;
        let truth = self.net.truth();
        let store = Store::open_with(
            &self.schema.url,
            &StoreOptions {
                schema: Some(self.schema.name.clone()),
            },
        )
        .await
        .unwrap();
        let states = store.all_states().await.unwrap();
        assert_eq!(states.len(), truth.len(), "every notice stored once");
        let status = store.status(Utc::now()).await.unwrap();
        assert_eq!(status.leased.count, 0, "no lease left behind");
        for t in &truth {
            let state = states
                .iter()
                .find(|s| s.subject.url == t.url)
                .unwrap_or_else(|| panic!("{} is monitored", t.url));
            assert_eq!(state.phase, Phase::Expired, "{}", t.url);
            let observations = store.observations(state.subject.url_id).await.unwrap();
            let horizon = state.subject.notified_at
                + TimeDelta::from_std(hours(HORIZON_HOURS).div_f64(TIME_SCALE)).unwrap();
            // What the monitor could see: the checks answered before the
            // horizon (an outage may hide a change entirely).
            let seen: Vec<&Observation> = observations
                .iter()
                .filter(|o| o.outcome != Outcome::NotChecked && o.answered_at < horizon)
                .collect();
            unobserved += assert_bracket_holds(state, t, &seen);
            if let (Some(_), Some(back)) = (state.first_takedown(), t.came_back) {
                if seen.iter().any(|o| o.started_at > back) {
                    assert_eq!(
                        state.reappearances(),
                        1,
                        "{}: came back at {back}, not seen: {:?}",
                        t.url,
                        state.episodes
                    );
                } else {
                    unobserved += 1;
                }
            }
            if let Some(moved) = &t.moved {
                if seen
                    .iter()
                    .any(|o| o.started_at > moved.at && o.outcome == Outcome::Served)
                {
                    let org = self
                        .net
                        .scenario()
                        .hosters
                        .iter()
                        .find(|h| h.name == moved.to);
                    assert_eq!(
                        state
                            .current_hoster
                            .as_ref()
                            .and_then(|h| h.hoster.as_deref()),
                        org.map(|h| h.org.as_str()),
                        "{}: the move to another network is seen",
                        t.url
                    );
                } else {
                    unobserved += 1;
                }
            }
            let events = store.events(state.subject.url_id).await.unwrap();
            assert_events_right(state, &events, t);
            let applied = observations
                .iter()
                .filter(|o| o.outcome != Outcome::NotChecked)
                .count();
            assert_eq!(
                applied, state.checks as usize,
                "{}: every stored check was applied once",
                t.url
            );
            // In the order of their start: the last applied is the latest.
            assert_eq!(
                state.last_check_at,
                observations.iter().map(|o| o.started_at).max(),
                "{}: applied in order",
                t.url
            );
            for pair in observations.windows(2) {
                // The lease keeps a URL from being checked twice at once.
                assert!(
                    pair[0].answered_at <= pair[1].started_at,
                    "{}: two checks in flight at once, from {} and from {}",
                    t.url,
                    pair[0].started_at,
                    pair[1].started_at
                );
                // The horizon's check may follow any other at once.
                let gap = pair[1].started_at - pair[0].started_at;
                assert!(
                    gap >= CLOSEST_PLANNED || pair[1].started_at >= horizon,
                    "{}: two checks {gap} apart at {}: one was repeated",
                    t.url,
                    pair[1].started_at
                );
            }
        }
        store.close().await;
        unobserved
    }

    /// [`Cluster::verify`], where every true change was seen.
    async fn verify_all_seen(&self) {
        assert_eq!(self.verify().await, 0, "every change was seen");
    }
}

impl Drop for Cluster {
    /// Kills what still runs and removes the bus topology (on a thread of
    /// its own, so that this works while a failed test unwinds too); the
    /// schema goes with `PgSchema`.
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
        let settings = bus_settings(&self.prefix);
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let bus = AmqpBus::try_connect(settings, "cleanup").await?;
                bus.delete_topology().await?;
                bus.close().await;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(removed, Ok(Ok(()))) {
            eprintln!("could not remove the bus topology {}", self.prefix);
        }
    }
}

/// What a member logs once it is ready: a dispatcher once it is active or
/// stands by, the others once they are connected.
fn ready_lines(role: &str) -> &'static [&'static str] {
    if role.starts_with("dispatcher") {
        &["active:", "standing by"]
    } else {
        &["connected to the broker"]
    }
}

fn notice(id: &str, url: &str, at: DateTime<Utc>) -> Notice {
    let json = serde_json::json!({
        "notice_id": id,
        "url": url,
        "notified_at": at,
    });
    serde_json::from_value(json).unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// The first takedown of a URL with a true one holds the true moment; no
/// takedown where the content never went; every true one found that the
/// `seen` checks could confirm (three, over more than the minimum span).
/// Returns 1 for a takedown no such checks saw.
fn assert_bracket_holds(state: &UrlState, t: &UrlTruth, seen: &[&Observation]) -> usize {
    match (state.first_takedown(), t.went_down) {
        _ if t.already_removed => assert!(state.already_offline, "{}: already offline", t.url),
        (Some(takedown), Some(down)) => assert!(
            takedown.bracket.holds(down, state.subject.notified_at),
            "{}: true takedown {down} outside {:?}",
            t.url,
            takedown.bracket
        ),
        (Some(takedown), None) => panic!("{}: false takedown {takedown:?}", t.url),
        (None, Some(down)) => {
            let gone = t.came_back.unwrap_or(DateTime::<Utc>::MAX_UTC);
            let while_gone: Vec<_> = seen
                .iter()
                .filter(|o| o.started_at > down && o.answered_at < gone)
                .collect();
            let confirmable = while_gone.len() >= 3
                && while_gone[while_gone.len() - 1].started_at - while_gone[0].started_at
                    > MIN_SPAN;
            assert!(
                !confirmable,
                "{}: went down at {down}, {} checks saw it gone, not found",
                t.url,
                while_gone.len()
            );
            return 1;
        }
        (None, None) => {}
    }
    0
}

/// Every event happened, once, and is bracketed around its true moment.
fn assert_events_right(state: &UrlState, events: &[Event], t: &UrlTruth) {
    let mut counts: HashMap<EventKind, usize> = HashMap::new();
    for event in events {
        *counts.entry(event.kind).or_default() += 1;
        let truth = match event.kind {
            EventKind::Takedown | EventKind::AlreadyOffline => t.went_down,
            EventKind::Reappeared => t.came_back,
            EventKind::HosterChanged => t.moved.as_ref().map(|m| m.at),
            EventKind::FirstOnline | EventKind::Expired => continue,
        };
        let bracket = event.bracket.expect("bracketed");
        assert_eq!(event.at, bracket.to, "{}: dated at the late end", t.url);
        if event.kind == EventKind::AlreadyOffline {
            continue;
        }
        let moment = truth.unwrap_or_else(|| panic!("{}: {:?} never happened", t.url, event.kind));
        assert!(
            bracket.holds(moment, event.notified_at),
            "{}: {:?} at {moment} outside {bracket:?}",
            t.url,
            event.kind
        );
    }
    let count = |kind| counts.get(&kind).copied().unwrap_or_default();
    assert_eq!(count(EventKind::Expired), 1, "{}: {events:?}", t.url);
    assert_eq!(
        count(EventKind::Takedown) + count(EventKind::AlreadyOffline),
        state.episodes.len(),
        "{}: one event per confirmed episode: {events:?}",
        t.url
    );
    assert_eq!(
        count(EventKind::Reappeared),
        state.reappearances(),
        "{}: {events:?}",
        t.url
    );
    assert_eq!(
        count(EventKind::HosterChanged),
        usize::from(t.moved.is_some()),
        "{}: {events:?}",
        t.url
    );
    assert!(count(EventKind::FirstOnline) <= 1, "{}: {events:?}", t.url);
}

/// The unacknowledged deliveries on each connection of `prefix`'s members,
/// by the member's process id (connections are named
/// `tdmon-<role>-<host>-<pid>`).
fn unacknowledged_by_pid() -> HashMap<u32, u64> {
    let rabbitmqctl = |args: &[&str]| {
        let output = Command::new("rabbitmqctl")
            .args(["-q", "--no-table-headers"])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(output.status.success(), "rabbitmqctl {args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The name the client gave is among the client properties:
    // `{"connection_name","tdmon-worker-host-1234"}`.
    let connections: HashMap<String, u32> =
        rabbitmqctl(&["list_connections", "pid", "client_properties"])
            .lines()
            .filter_map(|line| {
                let (pid, properties) = line.split_once('\t')?;
                let (_, name) = properties.split_once("{\"connection_name\",\"")?;
                let (name, _) = name.split_once('"')?;
                let os_pid = name.rsplit('-').next()?.parse().ok()?;
                Some((pid.trim().to_owned(), os_pid))
            })
            .collect();
    let mut unacknowledged = HashMap::new();
    for line in rabbitmqctl(&["list_channels", "connection", "messages_unacknowledged"]).lines() {
        let Some((connection, count)) = line.split_once('\t') else {
            continue;
        };
        if let (Some(pid), Ok(count)) = (
            connections.get(connection.trim()),
            count.trim().parse::<u64>(),
        ) {
            *unacknowledged.entry(*pid).or_default() += count;
        }
    }
    unacknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_measure_the_network_and_every_bracket_holds() {
    let mut cluster = Cluster::start(&[("dispatcher", 1), ("worker", 3), ("collector", 1)]).await;
    cluster.wait_until_done();
    cluster.stop();
    cluster.verify_all_seen().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let mut cluster = Cluster::start(&[("dispatcher", 1), ("worker", 3), ("collector", 1)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = Instant::now() + START_PATIENCE;
    let victim = loop {
        let held = unacknowledged_by_pid();
        let holding = cluster.members.iter().position(|m| {
            m.name.starts_with("worker") && held.get(&m.child.id()).is_some_and(|n| *n > 0)
        });
        if let Some(index) = holding {
            break index;
        }
        assert!(Instant::now() < deadline, "no worker holds a job");
    };
    cluster.kill(victim);
    cluster.wait_until_done();
    cluster.stop();
    cluster.verify_all_seen().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_killed_and_started_again_loses_nothing() {
    let mut cluster = Cluster::start(&[("dispatcher", 1), ("worker", 3), ("collector", 1)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let collector = cluster.member("collector-1");
    cluster.kill(collector);
    // Checks go on meanwhile: their observations wait in the queue.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = cluster.spawn("collector");
    cluster.wait_for_log(again, ready_lines("collector"), START_PATIENCE);
    cluster.wait_until_done();
    cluster.stop();
    cluster.verify_all_seen().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_dispatcher_takes_over_without_resetting_leases() {
    let mut cluster = Cluster::start(&[("dispatcher", 2), ("worker", 3), ("collector", 1)]).await;
    let standby = cluster.member("dispatcher-2");
    assert!(
        cluster.members[standby].log().contains("standing by"),
        "{}",
        cluster.members[standby].log()
    );
    // Kill just after a check of the slow URL started: it stays in flight,
    // its URL leased, for seconds after the standby takes over; a new lease
    // of it would put two of its checks in flight at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = Instant::now() + START_PATIENCE;
    let slow_check_started = "SELECT count(*) FROM urls WHERE url LIKE '%/p/8.html' \
                              AND lease_until > now() + interval '10 minutes' - interval '500 ms'";
    while cluster.query(slow_check_started).as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "the slow URL is never checked");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The leases live workers hold now (URL, lease end, applied checks).
    let leases_sql = "SELECT string_agg(url_id || ' ' || lease_until || ' ' || (state->>'checks'), \
                      ',') FROM urls WHERE lease_until IS NOT NULL";
    let held = cluster.query(leases_sql).unwrap();
    let active = cluster.member("dispatcher-1");
    cluster.kill(active);
    let killed_at = Instant::now();
    cluster.wait_for_log(standby, &["active:"], Duration::from_secs(10));
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(5), "took over after {took:?}");
    // A lease that ended since must have ended by its check being applied.
    let now: HashMap<String, (String, String)> = cluster
        .query(
            "SELECT string_agg(url_id || ' ' || coalesce(lease_until::text, '-') || ' ' || \
             (state->>'checks'), ',') FROM urls",
        )
        .unwrap()
        .split(',')
        .map(|row| {
            let mut parts = row.rsplitn(2, ' ');
            let checks = parts.next().unwrap().to_owned();
            let (id, lease) = parts.next().unwrap().split_once(' ').unwrap();
            (id.to_owned(), (lease.to_owned(), checks))
        })
        .collect();
    assert!(!held.is_empty(), "workers held leases at the kill");
    for row in held.split(',') {
        let mut parts = row.rsplitn(2, ' ');
        let checks = parts.next().unwrap();
        let (id, lease) = parts.next().unwrap().split_once(' ').unwrap();
        let (lease_now, checks_now) = &now[id];
        assert!(
            lease_now == lease || checks_now != checks,
            "URL {id}: its lease until {lease} was reset by the new dispatcher \
             (now {lease_now}, checks still {checks})"
        );
    }
    cluster.wait_until_done();
    cluster.stop();
    cluster.verify_all_seen().await;
}

/// Runs `command` until it succeeds, for at most `within`.
fn wait_for_service(what: &str, within: Duration, command: &[&str]) {
    let deadline = Instant::now() + within;
    loop {
        let answered = Command::new(command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if answered {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `command`, which must succeed.
fn run_admin(command: &[&str]) {
    let output = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Brings the broker back however the test ends: other tests need it.
struct BrokerStopped;

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        wait_for_service(
            "RabbitMQ",
            Duration::from_secs(60),
            &["rabbitmq-diagnostics", "-q", "check_port_connectivity"],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_restart_of_the_broker_loses_nothing() {
    let mut cluster = Cluster::start(&[("dispatcher", 1), ("worker", 3), ("collector", 1)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = BrokerStopped;
    run_admin(&["rabbitmqctl", "stop_app"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    run_admin(&["rabbitmqctl", "start_app"]);
    drop(stopped);
    cluster.wait_until_done();
    cluster.assert_logged("", "connected to the broker again", 1);
    cluster.stop();
    // The broker or the database was away for a while: what no check could
    // see is not counted against the monitor.
    cluster.verify().await;
}

/// The PostgreSQL cluster's version directory (`/etc/postgresql/<version>`).
fn postgres_version() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("a PostgreSQL cluster of this machine's")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_restart_of_the_database_loses_nothing() {
    let mut cluster = Cluster::start(&[("dispatcher", 1), ("worker", 3), ("collector", 1)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let version = postgres_version();
    run_admin(&[
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        &version,
        "main",
        "restart",
    ]);
    wait_for_service(
        "PostgreSQL",
        Duration::from_secs(60),
        &["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"],
    );
    cluster.wait_until_done();
    cluster.assert_logged("dispatcher", "lost the dispatch lock", 1);
    cluster.assert_logged("dispatcher", "active:", 2);
    cluster.stop();
    // The broker or the database was away for a while: what no check could
    // see is not counted against the monitor.
    cluster.verify().await;
}

/// Messages ready in each queue of `prefix`.
fn queue_lengths(prefix: &str) -> HashMap<String, u64> {
    let output = Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_queues",
            "name",
            "messages",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl list_queues");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, count) = line.split_once('\t')?;
            let name = name.trim().strip_prefix(prefix)?.strip_prefix('.')?;
            Some((name.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_its_worker_process_is_parked() {
    let mut cluster = Cluster::new().await;
    let slow = cluster
        .net
        .urls()
        .into_iter()
        .find(|url| url.ends_with("/p/8.html"))
        .unwrap();
    let now = Utc::now();
    let poison = tdmon_core::CheckJob {
        schema: tdmon_core::message::SchemaV1,
        job_id: uuid::Uuid::now_v7(),
        url_id: 1,
        url: slow,
        purpose: tdmon_core::Purpose::Scheduled,
        due_at: now,
        expires_at: now + TimeDelta::minutes(5),
        baseline: None,
    };
    let bus = AmqpBus::try_connect(bus_settings(&cluster.prefix), "test")
        .await
        .unwrap();
    bus.publish_jobs(vec![poison]).await.unwrap();
    bus.close().await;
    // Each worker takes the job and dies with it: the broker hands it to
    // the next, until the delivery limit parks it.
    for _ in 0..=DELIVERY_LIMIT {
        // The check of the slow URL lasts until the worker is killed.
        let worker = cluster.spawn_with("worker", &["worker.total_timeout=5m"]);
        let pid = cluster.members[worker].child.id();
        let deadline = Instant::now() + START_PATIENCE;
        while unacknowledged_by_pid()
            .get(&pid)
            .copied()
            .unwrap_or_default()
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "{} never took the job (queues {:?}, held {:?}):\n{}",
                cluster.members[worker].name,
                queue_lengths(&cluster.prefix),
                unacknowledged_by_pid(),
                cluster.members[worker].log()
            );
        }
        cluster.kill(worker);
    }
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        let lengths = queue_lengths(&cluster.prefix);
        if lengths.get("checks.dead") == Some(&1) {
            assert_eq!(lengths.get("checks"), Some(&0), "{lengths:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not parked: {lengths:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_notice_is_dead_lettered_with_its_reason_and_the_rest_flow_on() {
    let mut cluster = Cluster::new().await;
    let dispatcher = cluster.spawn("dispatcher");
    cluster.wait_for_log(dispatcher, ready_lines("dispatcher"), START_PATIENCE);
    let topology = tdmon_bus_amqp::Topology::new(&cluster.prefix);
    let admin = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = admin.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            topology.notices().into(),
            lapin::options::BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"{\"url\": ",
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(confirm, lapin::Confirmation::Ack(None));
    cluster.notify().await;

    let urls = cluster.net.urls().len().to_string();
    let deadline = Instant::now() + START_PATIENCE;
    while cluster.query("SELECT count(*) FROM notices").as_deref() != Some(urls.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the valid notices are not stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + START_PATIENCE;
    let dead = loop {
        let got = channel
            .basic_get(
                topology.notices_dead().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(message) = got {
            break message;
        }
        assert!(Instant::now() < deadline, "nothing dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.delivery.data, b"{\"url\": ");
    let reason = dead
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(tdmon_bus_amqp::ERROR_HEADER).cloned());
    let reason = match reason {
        Some(lapin::types::AMQPValue::LongString(text)) => text.to_string(),
        other => panic!("the reason header is missing: {other:?}"),
    };
    assert!(reason.starts_with("not a valid notice"), "{reason}");
    admin.close(200, "done".into()).await.unwrap();
    cluster.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_its_broker_says_so_and_keeps_trying() {
    let mut cluster = Cluster::new().await;
    // A port nothing listens on, until the test forwards it to the broker.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("bus.url=amqp://guest:guest@127.0.0.1:{port}/%2f");
    let worker = cluster.spawn_with("worker", &[&url]);
    let retrying = "cannot reach the broker; retrying";
    cluster.wait_for_log(worker, &[retrying], START_PATIENCE);
    let deadline = Instant::now() + START_PATIENCE;
    while cluster.members[worker].log().matches(retrying).count() < 3 {
        assert!(cluster.members[worker].running(), "the worker gave up");
        assert!(Instant::now() < deadline, "the worker stopped trying");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = cluster.members[worker].log();
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
    assert!(
        !log.contains("guest:guest"),
        "the password is printed: {log}"
    );

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forward = tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut broker = tokio::net::TcpStream::connect("127.0.0.1:5672").await?;
                tokio::io::copy_bidirectional(&mut client, &mut broker).await
            });
        }
    });
    cluster.wait_for_log(worker, &["connected to the broker"], START_PATIENCE);
    forward.abort();
    cluster.stop();
}

/// A check of `url_id` that found the content served.
fn served(url_id: i64, url: &str) -> tdmon_core::Observation {
    use tdmon_core::message::{DnsOutcome, DnsResult, SchemaV1};
    let now = Utc::now();
    tdmon_core::Observation {
        schema: SchemaV1,
        job_id: uuid::Uuid::now_v7(),
        url_id,
        url: url.to_owned(),
        worker: "test".into(),
        started_at: now,
        answered_at: now,
        duration_ms: 0,
        dns: DnsResult {
            outcome: DnsOutcome::Ok,
            answers: vec![],
        },
        ip: None,
        asn: None,
        as_org: None,
        hoster: None,
        cdn: false,
        http: None,
        tls_error: None,
        fingerprint: None,
        outcome: Outcome::Served,
        verdict: tdmon_core::Verdict::Online,
    }
}

/// Two collectors share the observations queue. Round after round, one
/// check per URL (as the lease allows) is published twice, as a worker that
/// died before its ack would: each is stored and applied exactly once, and
/// each URL's checks are applied in order, whichever collector takes which
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_apply_each_observation_once_and_in_order() {
    const ROUNDS: usize = 8;
    let mut cluster = Cluster::new().await;
    let notices = cluster.dir.path().join("notices.csv");
    let notified_at = (Utc::now() - TimeDelta::hours(1)).to_rfc3339();
    let mut csv = String::from("url,notified_at,notice_id\n");
    for (i, url) in cluster.net.urls().iter().enumerate() {
        csv.push_str(&format!("{url},{notified_at},TWO-{i}\n"));
    }
    std::fs::write(&notices, csv).unwrap();
    let added = support::tdmon()
        .arg("--config")
        .arg(&cluster.config)
        .arg("notify")
        .arg(&notices)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", support::stderr(&added));
    // Monitoring of these notices goes on past the test.
    for _ in 0..2 {
        let collector = cluster.spawn_with("collector", &["schedule.horizon=90d"]);
        cluster.wait_for_log(collector, ready_lines("collector"), START_PATIENCE);
    }
    let urls: Vec<(i64, String)> = cluster
        .query("SELECT string_agg(url_id || ' ' || url, ',') FROM urls")
        .unwrap()
        .split(',')
        .map(|row| {
            let (id, url) = row.split_once(' ').unwrap();
            (id.parse().unwrap(), url.to_owned())
        })
        .collect();
    assert_eq!(urls.len(), cluster.net.urls().len());

    let bus = AmqpBus::try_connect(bus_settings(&cluster.prefix), "test")
        .await
        .unwrap();
    let mut published = Vec::new();
    for round in 1..=ROUNDS {
        let checks: Vec<_> = urls.iter().map(|(id, url)| served(*id, url)).collect();
        for copy in checks.iter().chain(&checks) {
            bus.publish_observation(copy.clone()).await.unwrap();
        }
        published.extend(checks);
        let deadline = Instant::now() + START_PATIENCE;
        let applied = format!(
            "SELECT count(*) FROM urls WHERE (state->>'checks')::int = {round} \
             AND lease_until IS NULL"
        );
        while cluster.query(&applied) != Some(urls.len().to_string()) {
            assert!(Instant::now() < deadline, "round {round} is not applied");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bus.close().await;
    let consumers = Command::new("rabbitmqctl")
        .args(["-q", "--no-table-headers", "list_consumers", "queue_name"])
        .output()
        .unwrap();
    let collector_queue = format!("{}.collector", cluster.prefix);
    assert_eq!(
        String::from_utf8_lossy(&consumers.stdout)
            .lines()
            .filter(|line| line.trim() == collector_queue)
            .count(),
        2,
        "both collectors consume"
    );

    let store = Store::open_with(
        &cluster.schema.url,
        &StoreOptions {
            schema: Some(cluster.schema.name.clone()),
        },
    )
    .await
    .unwrap();
    for (id, url) in &urls {
        let state = &store.states(&[*id]).await.unwrap()[0];
        let stored: Vec<_> = store
            .observations(*id)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.job_id)
            .collect();
        let sent: Vec<_> = published
            .iter()
            .filter(|o| o.url_id == *id)
            .map(|o| o.job_id)
            .collect();
        assert_eq!(stored, sent, "{url}: every check stored once, in order");
        assert_eq!(state.checks as usize, ROUNDS, "{url}: applied once each");
        let last = published.iter().rfind(|o| o.url_id == *id).unwrap();
        assert_eq!(
            state.last_check_at.map(|at| at.timestamp_micros()),
            Some(last.started_at.timestamp_micros()),
            "{url}: the last applied is the latest"
        );
    }
    let status = store.status(Utc::now()).await.unwrap();
    assert_eq!(status.observations as usize, ROUNDS * urls.len());
    store.close().await;
    cluster.stop();
}
