//! What really happened: the scripted fate of every URL (the ground truth a
//! monitor's figures are compared with) and what the servers saw (counters).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::scenario::{Behaviour, Scheme};

/// The scripted fate of one URL.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlTruth {
    /// The URL as a client requests it (with the network's port).
    pub url: String,
    pub host: String,
    pub path: String,
    /// The hoster at notice time.
    pub hoster: String,
    pub behaviour: Behaviour,
    /// When the content stopped being served (offline in docs/MEASUREMENT.md's sense);
    /// `None` when it never does. Inconclusive disturbances (5xx, 429,
    /// SERVFAIL, DNS timeouts, black holes) are not takedowns.
    pub went_down: Option<DateTime<Utc>>,
    /// The same in simulated time since the notice.
    pub went_down_sim: Option<Duration>,
    /// When it came back after going down (flapping).
    pub came_back: Option<DateTime<Utc>>,
    pub came_back_sim: Option<Duration>,
    /// Offline already at notice time.
    pub already_removed: bool,
    pub moved: Option<MoveTruth>,
}

/// A change of hoster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTruth {
    pub at: DateTime<Utc>,
    pub at_sim: Duration,
    pub from: String,
    pub to: String,
    pub from_addr: IpAddr,
    pub to_addr: IpAddr,
}

/// One HTTP request a server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Wall-clock time the request head was read.
    pub at: DateTime<Utc>,
    /// Monotonic time of the same moment, for rates.
    pub instant: Instant,
    /// Simulated time since the notice.
    pub sim_elapsed: Duration,
    /// The server address (and port) the request came in on.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub scheme: Scheme,
    pub method: String,
    /// The Host header, without port.
    pub host: String,
    pub path: String,
    /// The scenario URL this request addressed, if any.
    pub url: Option<String>,
    /// The status sent; `None` while unanswered (black hole) or when the
    /// client left before the status line was sent.
    pub status: Option<u16>,
    /// Bytes written to the socket for this response (TLS records included).
    pub bytes_sent: u64,
    /// Whether the whole response was written.
    pub completed: bool,
}

/// One DNS query the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub at: DateTime<Utc>,
    pub sim_elapsed: Duration,
    pub name: String,
    pub query_type: String,
    /// "answer", "nodata", "nxdomain", "servfail", "dropped", "refused".
    pub result: &'static str,
}

/// How many request and DNS records are kept; older ones are dropped (the
/// totals keep counting), so a long-running network stays bounded.
pub const MAX_RECORDS: usize = 1_000_000;

/// What every server saw, shared with the running servers. Records are kept
/// up to [`MAX_RECORDS`] each (the oldest dropped first); the per-address,
/// per-URL and per-listener totals cover every request.
#[derive(Debug, Clone)]
pub struct Counters {
    inner: Arc<Mutex<CountersInner>>,
}

#[derive(Debug)]
struct CountersInner {
    limit: usize,
    requests: VecDeque<RequestRecord>,
    /// Requests ever recorded; the sequence number of the next one.
    request_seq: u64,
    dns: VecDeque<DnsRecord>,
    connections: BTreeMap<SocketAddr, u64>,
    per_address: BTreeMap<IpAddr, u64>,
    bytes_per_url: BTreeMap<String, u64>,
    requests_per_url: BTreeMap<String, u64>,
    /// Bytes of every finished response, scenario URL or not.
    bytes_total: u64,
    dns_total: u64,
}

/// A summary of what the servers saw, for benchmarks (`tdmon simnet serve
/// --stats FILE` writes it as JSON). Bytes are counted per response once it
/// is finished (written, or abandoned by the client); a response still being
/// written is not in them yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Requests received (every one, answered or not).
    pub requests: u64,
    /// TCP connections accepted.
    pub connections: u64,
    pub dns_queries: u64,
    /// Bytes written to sockets for finished responses (TLS records included).
    pub bytes_sent: u64,
    /// Per scenario URL (its DNS-name form) that received requests.
    pub urls: BTreeMap<String, UrlStats>,
}

/// What one scenario URL received and sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UrlStats {
    pub requests: u64,
    pub bytes_sent: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self::with_limit(MAX_RECORDS)
    }
}

impl Counters {
    /// Counters that keep at most `limit` records of each kind.
    pub fn with_limit(limit: usize) -> Self {
        Counters {
            inner: Arc::new(Mutex::new(CountersInner {
                limit: limit.max(1),
                requests: VecDeque::new(),
                request_seq: 0,
                dns: VecDeque::new(),
                connections: BTreeMap::new(),
                per_address: BTreeMap::new(),
                bytes_per_url: BTreeMap::new(),
                requests_per_url: BTreeMap::new(),
                bytes_total: 0,
                dns_total: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CountersInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn connection(&self, local: SocketAddr) {
        *self.lock().connections.entry(local).or_default() += 1;
    }

    /// Records a request; returns its sequence number for [`Counters::finish`].
    pub(crate) fn request(&self, record: RequestRecord) -> u64 {
        let mut inner = self.lock();
        *inner.per_address.entry(record.local.ip()).or_default() += 1;
        if let Some(url) = &record.url {
            *inner.requests_per_url.entry(url.clone()).or_default() += 1;
        }
        if inner.requests.len() >= inner.limit {
            inner.requests.pop_front();
        }
        inner.requests.push_back(record);
        inner.request_seq += 1;
        inner.request_seq - 1
    }

    pub(crate) fn finish(
        &self,
        seq: u64,
        url: Option<&str>,
        status: Option<u16>,
        bytes: u64,
        completed: bool,
    ) {
        let mut inner = self.lock();
        inner.bytes_total += bytes;
        if let Some(url) = url {
            *inner.bytes_per_url.entry(url.to_owned()).or_default() += bytes;
        }
        let first_kept = inner.request_seq - inner.requests.len() as u64;
        let Some(position) = seq.checked_sub(first_kept) else {
            return;
        };
        let Some(record) = inner.requests.get_mut(position as usize) else {
            return;
        };
        record.status = status.or(record.status);
        record.bytes_sent = bytes;
        record.completed = completed;
    }

    pub(crate) fn dns(&self, record: DnsRecord) {
        let mut inner = self.lock();
        inner.dns_total += 1;
        if inner.dns.len() >= inner.limit {
            inner.dns.pop_front();
        }
        inner.dns.push_back(record);
    }

    /// The kept requests, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.iter().cloned().collect()
    }

    /// Requests ever received.
    pub fn total_requests(&self) -> u64 {
        self.lock().request_seq
    }

    /// The kept DNS queries, in arrival order.
    pub fn dns_queries(&self) -> Vec<DnsRecord> {
        self.lock().dns.iter().cloned().collect()
    }

    /// DNS queries ever received.
    pub fn total_dns_queries(&self) -> u64 {
        self.lock().dns_total
    }

    /// Accepted TCP connections per listening address.
    pub fn connections(&self) -> BTreeMap<SocketAddr, u64> {
        self.lock().connections.clone()
    }

    /// Requests per server address (every request, kept or not).
    pub fn requests_per_address(&self) -> BTreeMap<IpAddr, u64> {
        self.lock().per_address.clone()
    }

    /// The most requests one address received within any one-second window
    /// (real time), over the kept records.
    pub fn max_requests_per_second(&self, addr: IpAddr) -> usize {
        let times: Vec<Instant> = self
            .lock()
            .requests
            .iter()
            .filter(|r| r.local.ip() == addr)
            .map(|r| r.instant)
            .collect();
        max_in_window(&times, Duration::from_secs(1))
    }

    /// Bytes sent per scenario URL, over all its finished responses.
    pub fn bytes_per_url(&self) -> BTreeMap<String, u64> {
        self.lock().bytes_per_url.clone()
    }

    /// Totals and per-URL requests and bytes, over every request.
    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        let mut urls: BTreeMap<String, UrlStats> = inner
            .requests_per_url
            .iter()
            .map(|(url, &requests)| {
                let stats = UrlStats {
                    requests,
                    bytes_sent: 0,
                };
                (url.clone(), stats)
            })
            .collect();
        for (url, &bytes) in &inner.bytes_per_url {
            urls.entry(url.clone()).or_default().bytes_sent = bytes;
        }
        Stats {
            requests: inner.request_seq,
            connections: inner.connections.values().sum(),
            dns_queries: inner.dns_total,
            bytes_sent: inner.bytes_total,
            urls,
        }
    }

    /// The kept requests that addressed one scenario URL.
    pub fn requests_for(&self, url: &str) -> Vec<RequestRecord> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.url.as_deref() == Some(url))
            .cloned()
            .collect()
    }
}

/// The largest number of instants (sorted or not) inside any window of `width`.
fn max_in_window(times: &[Instant], width: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_the_densest_second() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
        let times = [
            ms(0),
            ms(100),
            ms(900),
            ms(1000),
            ms(1050),
            ms(1800),
            ms(5000),
        ];
        // 900, 1000, 1050, 1800 lie within one second.
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 4);
    }

    fn record(n: u16) -> RequestRecord {
        RequestRecord {
            at: Utc::now(),
            instant: Instant::now(),
            sim_elapsed: Duration::ZERO,
            local: "127.10.0.1:80".parse().unwrap(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            scheme: Scheme::Http,
            method: "GET".into(),
            host: "a.sim.test".into(),
            path: format!("/{n}"),
            url: Some("http://a.sim.test:80/".into()),
            status: None,
            bytes_sent: 0,
            completed: false,
        }
    }

    #[test]
    fn records_are_bounded_but_totals_are_not() {
        let counters = Counters::with_limit(2);
        let seqs: Vec<u64> = (0..3).map(|n| counters.request(record(n))).collect();
        assert_eq!(seqs, [0, 1, 2]);
        let url = Some("http://a.sim.test:80/");
        counters.finish(0, url, Some(200), 10, true); // its record is dropped already
        counters.finish(2, url, Some(404), 7, true);
        let kept = counters.requests();
        assert_eq!(
            kept.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/1", "/2"]
        );
        assert_eq!(kept[1].status, Some(404));
        assert_eq!(counters.total_requests(), 3);
        let addr: IpAddr = "127.10.0.1".parse().unwrap();
        assert_eq!(counters.requests_per_address()[&addr], 3);
        assert_eq!(counters.bytes_per_url()["http://a.sim.test:80/"], 17);
    }

    #[test]
    fn stats_sum_requests_and_bytes_per_url() {
        let counters = Counters::with_limit(10);
        counters.connection("127.10.0.1:80".parse().unwrap());
        let first = counters.request(record(1));
        let second = counters.request(record(2));
        let stray = counters.request(RequestRecord {
            url: None,
            ..record(3)
        });
        let url = Some("http://a.sim.test:80/");
        counters.finish(first, url, Some(200), 100, true);
        counters.finish(second, url, Some(200), 23, false);
        counters.finish(stray, None, Some(404), 5, true);
        let stats = counters.stats();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.bytes_sent, 128);
        assert_eq!(
            stats.urls["http://a.sim.test:80/"],
            UrlStats {
                requests: 2,
                bytes_sent: 123
            }
        );
        assert_eq!(stats.urls.len(), 1);
    }
}
