//! tdmon's Prometheus metrics: every family a role updates, in one
//! process-wide registry ([`metrics`]), encoded for `/metrics` by [`encode`].
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client):
//! families are typed and registered explicitly, and every label is a field
//! of a label struct whose values are `&'static str` names of closed sets
//! (verdicts, outcomes, event kinds, phases). A URL or a host name cannot
//! become a label by mistake: no label takes a `String`.
//!
//! A role updates what it does (the worker its checks, the collector its
//! writes). Families whose labels come from a small closed set (results,
//! kinds, limits) are exposed at zero from the start, so `rate()` sees their
//! first increment; `tdmon_checks_total` appears with a process's first check.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set: a check's verdict and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CheckLabels {
    pub verdict: &'static str,
    pub outcome: &'static str,
}

/// Label set: one named member of a closed set (`kind`, `phase`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Label set: the verdict alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: &'static str,
}

/// Label set: which of tdmon's own limits a check waited for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

/// Label set: a phase of a monitored URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

/// Label set: what became of something (`added`, `duplicate`, `ack`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Label set: notices by where they came from and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NoticeLabels {
    pub source: &'static str,
    pub result: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric family of tdmon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Checks finished, by verdict and outcome.
    pub checks: Family<CheckLabels, Counter>,
    /// How long a check took on the network, by verdict.
    pub check_duration: Histograms<VerdictLabel>,
    /// Checks taken from the bus and not yet settled.
    pub checks_in_flight: Gauge,
    /// Checks a worker runs at once at most (`max_in_flight`): saturation is
    /// `checks_in_flight / check_slots`.
    pub check_slots: Gauge,
    /// Time spent waiting for tdmon's own limits, by limit.
    pub limiter_wait: Histograms<LimitLabel>,
    /// Checks that answered from an address nothing attributed.
    pub unattributed: Counter,
    /// DNS lookups, by outcome (`ok`, `nxdomain`, ...).
    pub dns_lookups: Family<KindLabel, Counter>,
    /// DNS lookup time: answers from the resolver's cache fall in the first bucket.
    pub dns_lookup_duration: Histogram,
    /// Publisher confirms of the RabbitMQ bus, by result.
    pub publish_confirms: Family<ResultLabel, Counter>,
    /// Jobs waiting on the checks queue, as the dispatcher last asked.
    pub jobs_waiting: Gauge,
    /// Jobs dispatched.
    pub jobs_dispatched: Counter,
    /// Leased URLs held back for their host's politeness.
    pub jobs_held_back: Counter,
    /// Notices taken in, by source and result.
    pub notices: Family<NoticeLabels, Counter>,
    /// Duration of one collector batch's store transaction.
    pub store_write_duration: Histogram,
    /// Observations per collector batch.
    pub store_batch_size: Histogram,
    /// Observations the collector handled, by result (`new`, `duplicate`, `unknown_url`).
    pub observations: Family<ResultLabel, Counter>,
    /// Events derived, by kind.
    pub events: Family<KindLabel, Counter>,
    /// Monitored URLs per phase, read from the store at scrape time.
    pub urls: Family<PhaseLabel, Gauge>,
}

fn seconds_buckets() -> Histogram {
    // 0.5 ms (a cached lookup) to 60 s (a slow check at its timeout).
    Histogram::new([
        0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn batch_buckets() -> Histogram {
    Histogram::new([1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0])
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tdmon");
        let checks = Family::default();
        registry.register(
            "checks",
            "Checks finished, by verdict and outcome",
            checks.clone(),
        );
        let check_duration: Histograms<VerdictLabel> =
            Family::new_with_constructor(seconds_buckets);
        registry.register(
            "check_duration_seconds",
            "Time of a check on the network (lookups and requests), by verdict",
            check_duration.clone(),
        );
        let checks_in_flight = Gauge::default();
        registry.register(
            "checks_in_flight",
            "Checks taken from the bus and not yet settled",
            checks_in_flight.clone(),
        );
        let check_slots = Gauge::default();
        registry.register(
            "check_slots",
            "Checks a worker runs at once at most (worker.limits.max_in_flight)",
            check_slots.clone(),
        );
        let limiter_wait: Histograms<LimitLabel> = Family::new_with_constructor(seconds_buckets);
        registry.register(
            "limiter_wait_seconds",
            "Time checks waited for tdmon's own limits: check (slot and rate) or address",
            limiter_wait.clone(),
        );
        let unattributed = Counter::default();
        registry.register(
            "unattributed_observations",
            "Checks of an address that no ASN database or override attributed",
            unattributed.clone(),
        );
        let dns_lookups = Family::default();
        registry.register(
            "dns_lookups",
            "DNS lookups, by outcome",
            dns_lookups.clone(),
        );
        let dns_lookup_duration = seconds_buckets();
        registry.register(
            "dns_lookup_duration_seconds",
            "DNS lookup time; answers from the resolver's cache fall under 0.5 ms",
            dns_lookup_duration.clone(),
        );
        let publish_confirms = Family::default();
        registry.register(
            "bus_publish_confirms",
            "Publisher confirms from RabbitMQ, by result (ack, nack, returned, failed)",
            publish_confirms.clone(),
        );
        let jobs_waiting = Gauge::default();
        registry.register(
            "queue_jobs_waiting",
            "Jobs ready on the checks queue, as the dispatcher last asked",
            jobs_waiting.clone(),
        );
        let jobs_dispatched = Counter::default();
        registry.register(
            "jobs_dispatched",
            "Check jobs dispatched",
            jobs_dispatched.clone(),
        );
        let jobs_held_back = Counter::default();
        registry.register(
            "jobs_held_back",
            "Leased URLs held back until their host has room again",
            jobs_held_back.clone(),
        );
        let notices = Family::default();
        registry.register(
            "notices",
            "Notices taken in, by source (file, http, queue) and result (added, duplicate, rejected)",
            notices.clone(),
        );
        let store_write_duration = seconds_buckets();
        registry.register(
            "store_write_duration_seconds",
            "Duration of the store transaction that applies one batch of observations",
            store_write_duration.clone(),
        );
        let store_batch_size = batch_buckets();
        registry.register(
            "store_batch_size",
            "Observations per batch written by the collector",
            store_batch_size.clone(),
        );
        let observations = Family::default();
        registry.register(
            "observations",
            "Observations handled by the collector, by result (new, duplicate, unknown_url)",
            observations.clone(),
        );
        let events = Family::default();
        registry.register("events", "Events derived, by kind", events.clone());
        let urls = Family::default();
        registry.register("urls", "Monitored URLs, by phase", urls.clone());
        zero_series(
            &publish_confirms,
            &["ack", "nack", "returned", "failed"],
            |result| ResultLabel { result },
        );
        zero_series(
            &observations,
            &["new", "duplicate", "unknown_url"],
            |result| ResultLabel { result },
        );
        zero_series(&events, &EVENT_KINDS, |kind| KindLabel { kind });
        zero_series(&dns_lookups, &DNS_OUTCOMES, |kind| KindLabel { kind });
        for source in ["http", "queue"] {
            zero_series(&notices, &["added", "duplicate", "rejected"], |result| {
                NoticeLabels { source, result }
            });
        }
        for limit in ["check", "address"] {
            drop(limiter_wait.get_or_create(&LimitLabel { limit }));
        }
        for verdict in ["online", "offline", "inconclusive"] {
            drop(check_duration.get_or_create(&VerdictLabel { verdict }));
        }
        Self {
            registry,
            checks,
            check_duration,
            checks_in_flight,
            check_slots,
            limiter_wait,
            unattributed,
            dns_lookups,
            dns_lookup_duration,
            publish_confirms,
            jobs_waiting,
            jobs_dispatched,
            jobs_held_back,
            notices,
            store_write_duration,
            store_batch_size,
            observations,
            events,
            urls,
        }
    }
}

/// The event kinds (`tdmon_core::EventKind`), exposed at zero from the start.
const EVENT_KINDS: [&str; 6] = [
    "first_online",
    "already_offline",
    "takedown",
    "reappeared",
    "hoster_changed",
    "expired",
];

/// DNS outcomes a lookup can end with.
const DNS_OUTCOMES: [&str; 5] = ["ok", "nxdomain", "servfail", "timeout", "no_records"];

/// Creates the series of a closed label set at zero, so that `rate()` sees
/// the first increment of each and dashboards find every series from the
/// start.
fn zero_series<L, M, C>(
    family: &Family<L, M, C>,
    values: &[&'static str],
    label: impl Fn(&'static str) -> L,
) where
    L: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    for value in values {
        drop(family.get_or_create(&label(value)));
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The registry in the OpenMetrics text format.
pub fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String cannot fail");
    text
}

/// Counts `count` notices from `source` with `result`.
pub fn count_notices(source: &'static str, result: &'static str, count: u64) {
    METRICS
        .notices
        .get_or_create(&NoticeLabels { source, result })
        .inc_by(count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_prometheus_naming_and_count() {
        metrics()
            .checks
            .get_or_create(&CheckLabels {
                verdict: "offline",
                outcome: "http_404",
            })
            .inc();
        metrics()
            .check_duration
            .get_or_create(&VerdictLabel { verdict: "offline" })
            .observe(0.2);
        count_notices("http", "added", 3);
        let text = encode();
        assert!(
            text.contains("tdmon_checks_total{verdict=\"offline\",outcome=\"http_404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tdmon_check_duration_seconds_bucket{le=\"0.25\",verdict=\"offline\"} 1"),
            "{text}"
        );
        assert!(text.contains("tdmon_notices_total{source=\"http\",result=\"added\"} 3"));
        // Untouched families are exposed too, so dashboards find them.
        assert!(
            text.contains("# TYPE tdmon_queue_jobs_waiting gauge"),
            "{text}"
        );
        assert!(
            text.contains("tdmon_unattributed_observations_total 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    /// The metric names in `text` (`tdmon_...`), as families: without the
    /// `_total`, `_bucket`, `_sum` and `_count` of their samples. A crate
    /// name in a log filter (`tdmon_worker=debug`) is not one.
    fn families_named_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for (start, _) in text.match_indices("tdmon_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if text[start + name.len()..].starts_with(['=', ':']) {
                continue;
            }
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            names.insert(family.to_owned());
        }
        names
    }

    /// The dashboard and the operations guide name only families that exist.
    #[test]
    fn the_dashboard_and_the_guide_name_real_families() {
        metrics()
            .checks
            .get_or_create(&CheckLabels {
                verdict: "online",
                outcome: "served",
            })
            .inc();
        metrics()
            .urls
            .get_or_create(&PhaseLabel { phase: "online" })
            .set(1);
        let exposed = encode();
        for doc in ["grafana-dashboard.json", "OPERATIONS.md"] {
            let path = format!("{}/../../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            if doc.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(&text).expect("the dashboard is JSON");
            }
            let named = families_named_in(&text);
            assert!(named.len() >= 5, "{doc} names {named:?}");
            for family in named {
                assert!(
                    exposed.contains(&format!("# TYPE {family} ")),
                    "{doc} names {family}, which tdmon does not expose"
                );
            }
        }
    }
}
