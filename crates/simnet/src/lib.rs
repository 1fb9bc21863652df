//! The simulated hosting network (docs/ARCHITECTURE.md, "Why these choices"): an
//! authoritative DNS server for a test zone, HTTP and HTTPS servers on many
//! loopback addresses, a MaxMind-format ASN database for those addresses, and
//! URLs whose scripted behaviour changes over compressed time. Everything
//! binds to 127.0.0.0/8 only.
//!
//! A test builds a scenario (or reads one from TOML), starts the network and
//! points its client at [`SimNet::dns_addr`]; the target policy must allow
//! [`SimNet::allowed_cidrs`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use tdmon_simnet::{Behaviour, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
//!
//! # async fn demo() -> Result<(), tdmon_simnet::SimNetError> {
//! let scenario = Scenario::new(3600.0) // one simulated hour per real second
//!     .hoster(Hoster::new("FastHost", 64500, "FastHost B.V.", "127.10.0.0/24", 2))
//!     .url(UrlSpec::new("a.fast", "/page.html", "FastHost").behaviour(Behaviour::Removed {
//!         at: Duration::from_secs(3 * 3600),
//!         status: 404,
//!     }));
//! let dir = std::env::temp_dir().join("simnet-doc");
//! let net = SimNet::start(scenario, SimNetOptions::default().asn_db(dir.join("asn.mmdb"))).await?;
//! let dns = net.dns_addr(); // resolve a.fast.sim.test here
//! let urls = net.urls(); // ["http://a.fast.sim.test:PORT/page.html"]
//! // ... run the worker against `urls`, then compare with the truth:
//! let truth = net.truth();
//! assert!(truth[0].went_down.is_some());
//! let per_address = net.counters().requests_per_address();
//! # let _ = (dns, urls, per_address);
//! net.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! With [`SimNetOptions::manual_clock`] simulated time stands still until
//! [`SimNet::advance`] moves it, which keeps time-dependent tests exact.
//!
//! Ports: the network uses one HTTP port and one HTTPS port for all its
//! server addresses. Each is chosen by binding port 0 on the first server
//! address and reused on the others; if that port is taken on another
//! address, the whole set is bound again on a new port (up to 20 times).
//! The DNS server listens on 127.0.0.1 (UDP and TCP, one port), chosen the
//! same way unless [`SimNetOptions::dns_port`] fixes it.

mod asn;
mod clock;
mod dns;
mod http;
mod scenario;
mod timeline;
mod tls;
mod truth;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::asn::{
    AsnDbError, AsnDbLayout, AsnEntry, build as build_asn_db,
    build_entries as build_asn_db_entries, write as write_asn_db,
};
pub use crate::clock::SimClock;
pub use crate::dns::TTL as DNS_TTL;
pub use crate::scenario::{
    Behaviour, ContentKind, DEFAULT_ZONE, Hoster, Move, Scenario, ScenarioError, Scheme, UrlSpec,
};
pub use crate::tls::TlsError;
pub use crate::truth::{Counters, DnsRecord, MoveTruth, RequestRecord, Stats, UrlStats, UrlTruth};

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimNetError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot bind the simulated network's {what}")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    AsnDb(#[from] AsnDbError),
    #[error("cannot create a directory for the ASN database")]
    TempDir(#[source] std::io::Error),
}

/// How to start a network.
#[derive(Debug, Clone, Default)]
pub struct SimNetOptions {
    /// Where to write the ASN database; by default a fresh directory under
    /// the system temp dir, removed at shutdown.
    pub asn_db_path: Option<PathBuf>,
    /// Simulated time stands still until [`SimNet::advance`].
    pub manual_clock: bool,
    /// The notice time (simulated time zero); by default now minus
    /// `start_offset` (at the scenario's time scale).
    pub notice_time: Option<DateTime<Utc>>,
    /// Start this far into the scenario (simulated time).
    pub start_offset: Duration,
    /// The DNS server's port on 127.0.0.1; 0 (the default) lets the system
    /// choose. A fixed port is for clients configured before the network
    /// starts (the compose demo's workers).
    pub dns_port: u16,
}

impl SimNetOptions {
    /// Default options with a manual clock.
    pub fn manual_clock() -> Self {
        SimNetOptions {
            manual_clock: true,
            ..Self::default()
        }
    }

    /// Writes the ASN database to `path`.
    pub fn asn_db(mut self, path: impl Into<PathBuf>) -> Self {
        self.asn_db_path = Some(path.into());
        self
    }
}

/// What the servers share: the scenario, its lookup tables, the clock and the counters.
#[derive(Debug)]
pub(crate) struct Shared {
    scenario: Scenario,
    /// The zone, lowercased, without trailing dot.
    zone: String,
    clock: SimClock,
    counters: Counters,
    /// Full host name -> indices of its URLs; for a redirect target host
    /// without URLs, the URL redirecting there.
    hosts: BTreeMap<String, Vec<usize>>,
    /// (host, path) -> URL index.
    routes: HashMap<(String, String), usize>,
    /// path -> indices of the URLs with that path, in scenario order; routes
    /// requests whose Host is an IP literal (by the address they came in on).
    by_path: HashMap<String, Vec<usize>>,
    /// (host, path) of a canonical redirect target -> the URL whose content it serves.
    canonical: HashMap<(String, String), usize>,
    /// The URL strings, by index.
    urls: Vec<String>,
    http_port: u16,
    https_port: u16,
}

/// A running simulated network. Dropping it stops every server (use
/// [`SimNet::shutdown`] to wait for that).
pub struct SimNet {
    shared: Arc<Shared>,
    dns_addr: SocketAddr,
    dns_server: Option<hickory_server::Server<dns::DnsHandler>>,
    asn_db_path: PathBuf,
    /// A directory we created for the database, removed at shutdown.
    owned_dir: Option<PathBuf>,
    ca_pem: String,
    ca_der: Vec<u8>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet")
            .field("dns_addr", &self.dns_addr)
            .field("http_port", &self.shared.http_port)
            .field("https_port", &self.shared.https_port)
            .field("asn_db_path", &self.asn_db_path)
            .field("urls", &self.shared.urls.len())
            .finish_non_exhaustive()
    }
}

impl SimNet {
    /// Validates the scenario, binds every listener, writes the ASN database
    /// and starts serving. Returns when everything is bound.
    pub async fn start(scenario: Scenario, options: SimNetOptions) -> Result<SimNet, SimNetError> {
        scenario.validate()?;
        let zone = scenario.zone_name();
        let mut hosts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, url) in scenario.urls.iter().enumerate() {
            hosts.entry(scenario.full_host(url)).or_default().push(i);
        }
        // A redirect target host without URLs of its own resolves to the
        // address of the URL redirecting there.
        for (i, url) in scenario.urls.iter().enumerate() {
            if let Some((_, host, _)) = scenario.redirect_target(url) {
                hosts.entry(host).or_insert_with(|| vec![i]);
            }
        }
        let addrs: Vec<Ipv4Addr> = scenario
            .hosters
            .iter()
            .flat_map(Hoster::server_addrs)
            .collect();
        let (http_listeners, http_port) = bind_all(&addrs, "HTTP")?;
        let (https_listeners, https_port) = bind_all(&addrs, "HTTPS")?;

        let mut routes = HashMap::new();
        let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
        let mut urls = Vec::new();
        for (i, url) in scenario.urls.iter().enumerate() {
            let host = scenario.full_host(url);
            let port = match url.scheme {
                Scheme::Http => http_port,
                Scheme::Https => https_port,
            };
            urls.push(format!(
                "{}://{host}:{port}{}",
                url.scheme.as_str(),
                url.path
            ));
            routes.insert((host, url.path.clone()), i);
            by_path.entry(url.path.clone()).or_default().push(i);
        }
        let mut canonical = HashMap::new();
        for (i, url) in scenario.urls.iter().enumerate() {
            if scenario.is_canonical_redirect(url)
                && let Some((_, host, path)) = scenario.redirect_target(url)
                && !routes.contains_key(&(host.clone(), path.clone()))
            {
                canonical.insert((host, path), i);
            }
        }

        let host_names: Vec<String> = hosts.keys().cloned().collect();
        let certs = tls::generate(&zone, &host_names)?;

        let (asn_db_path, owned_dir) = match options.asn_db_path {
            Some(path) => (path, None),
            None => {
                let dir = fresh_temp_dir().map_err(SimNetError::TempDir)?;
                (dir.join("asn.mmdb"), Some(dir))
            }
        };
        asn::write(&scenario, &asn_db_path)?;

        // By default the notice was `start_offset` (simulated) ago.
        let notice_time = options.notice_time.unwrap_or_else(|| {
            let back = options.start_offset.div_f64(scenario.time_scale);
            Utc::now() - chrono::TimeDelta::from_std(back).unwrap_or(chrono::TimeDelta::zero())
        });
        let clock = if options.manual_clock {
            SimClock::manual(notice_time, scenario.time_scale, options.start_offset)
        } else {
            SimClock::real(notice_time, scenario.time_scale, options.start_offset)
        };
        let shared = Arc::new(Shared {
            scenario,
            zone,
            clock,
            counters: Counters::default(),
            hosts,
            routes,
            by_path,
            canonical,
            urls,
            http_port,
            https_port,
        });

        let (dns_server, dns_addr) = dns::start(
            dns::DnsHandler {
                shared: shared.clone(),
            },
            options.dns_port,
        )
        .await
        .map_err(|source| SimNetError::Bind {
            what: "DNS server".into(),
            source,
        })?;

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let acceptor = TlsAcceptor::from(certs.server_config.clone());
        for listener in http_listeners {
            tracker.spawn(http::serve(
                listener,
                Scheme::Http,
                None,
                shared.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
        }
        for listener in https_listeners {
            tracker.spawn(http::serve(
                listener,
                Scheme::Https,
                Some(acceptor.clone()),
                shared.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
        }
        tracing::info!(%dns_addr, http_port, https_port, "simulated network started");
        Ok(SimNet {
            shared,
            dns_addr,
            dns_server: Some(dns_server),
            asn_db_path,
            owned_dir,
            ca_pem: certs.ca_pem,
            ca_der: certs.ca_der,
            cancel,
            tracker,
        })
    }

    /// The DNS server (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// The zone, without trailing dot.
    pub fn zone(&self) -> &str {
        &self.shared.zone
    }

    /// Every scenario URL, in scenario order: `http(s)://host.zone:PORT/path`.
    pub fn urls(&self) -> Vec<String> {
        self.shared.urls.clone()
    }

    /// Every scenario URL with its host replaced by the address serving it
    /// right now (`http://127.10.0.2:PORT/path`), in scenario order. The
    /// servers route a request whose Host is an IP literal by the address it
    /// came in on and its path, so clients that cannot use the network's DNS
    /// (other link checkers, load generators) reach the same URLs. Where two
    /// hosts on one address share a path, the first in scenario order answers.
    pub fn address_urls(&self) -> Vec<String> {
        let shared = &self.shared;
        let t = shared.clock.elapsed();
        shared
            .scenario
            .urls
            .iter()
            .map(|url| {
                let port = match url.scheme {
                    Scheme::Http => shared.http_port,
                    Scheme::Https => shared.https_port,
                };
                let ip = timeline::address_at(&shared.scenario, url, t);
                format!("{}://{ip}:{port}{}", url.scheme.as_str(), url.path)
            })
            .collect()
    }

    /// The URL string of the scenario URL with this host (relative or full) and path.
    pub fn url(&self, host: &str, path: &str) -> Option<String> {
        let probe = UrlSpec::new(host, path, "");
        let host = self.shared.scenario.full_host(&probe);
        let index = self.shared.routes.get(&(host, path.to_owned()))?;
        Some(self.shared.urls[*index].clone())
    }

    /// The address the DNS server gives for a host (relative or full name)
    /// right now; `None` when it answers NXDOMAIN, SERVFAIL or nothing, or
    /// does not know the name. For tests that bypass DNS.
    pub fn current_address(&self, host: &str) -> Option<IpAddr> {
        let shared = &self.shared;
        let full = shared.scenario.full_host(&UrlSpec::new(host, "/", ""));
        let index = *shared.hosts.get(&full)?.first()?;
        let url = &shared.scenario.urls[index];
        match timeline::dns_at(&shared.scenario, url, shared.clock.elapsed()) {
            timeline::DnsAction::Answer(ip) => Some(IpAddr::V4(ip)),
            _ => None,
        }
    }

    pub fn http_port(&self) -> u16 {
        self.shared.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.shared.https_port
    }

    /// The ASN database (GeoLite2-ASN schema) for the hosters' prefixes.
    pub fn asn_db_path(&self) -> &Path {
        &self.asn_db_path
    }

    /// The prefixes a client's target policy must allow: every hoster's prefix.
    pub fn allowed_cidrs(&self) -> Vec<IpNet> {
        self.shared
            .scenario
            .hosters
            .iter()
            .map(|h| IpNet::V4(h.prefix))
            .collect()
    }

    /// Every server address of every hoster.
    pub fn server_addrs(&self) -> Vec<IpAddr> {
        self.shared
            .scenario
            .hosters
            .iter()
            .flat_map(Hoster::server_addrs)
            .map(IpAddr::V4)
            .collect()
    }

    /// The CA that signed the HTTPS certificate, PEM; a client that should
    /// trust the network adds it as a root.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The same CA, DER.
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.ca_der
    }

    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    pub fn clock(&self) -> &SimClock {
        &self.shared.clock
    }

    /// Simulated time zero as a wall-clock time.
    pub fn notice_time(&self) -> DateTime<Utc> {
        self.shared.clock.notice_time()
    }

    /// Simulated time since the notice.
    pub fn sim_elapsed(&self) -> Duration {
        self.shared.clock.elapsed()
    }

    /// Moves a manual clock forward; returns false on a real clock.
    pub fn advance(&self, by: Duration) -> bool {
        self.shared.clock.advance(by)
    }

    /// What the servers saw so far (a live handle: it keeps counting).
    pub fn counters(&self) -> Counters {
        self.shared.counters.clone()
    }

    /// The scripted fate of every URL, in scenario order. Wall-clock times are
    /// `notice_time + simulated time / time_scale`.
    pub fn truth(&self) -> Vec<UrlTruth> {
        let shared = &self.shared;
        let clock = &shared.clock;
        shared
            .scenario
            .urls
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let (down, back) = timeline::down_and_back(&shared.scenario, spec);
                let moved = spec.moves.as_ref().map(|m| MoveTruth {
                    at: clock.wall_time(m.at),
                    at_sim: m.at,
                    from: spec.hoster.clone(),
                    to: m.to.clone(),
                    from_addr: IpAddr::V4(timeline::address_at(
                        &shared.scenario,
                        spec,
                        Duration::ZERO,
                    )),
                    to_addr: IpAddr::V4(timeline::address_at(&shared.scenario, spec, m.at)),
                });
                UrlTruth {
                    url: shared.urls[i].clone(),
                    host: shared.scenario.full_host(spec),
                    path: spec.path.clone(),
                    hoster: spec.hoster.clone(),
                    behaviour: spec.behaviour.clone(),
                    went_down: down.map(|d| clock.wall_time(d)),
                    went_down_sim: down,
                    came_back: back.map(|d| clock.wall_time(d)),
                    came_back_sim: back,
                    already_removed: down == Some(Duration::ZERO),
                    moved,
                }
            })
            .collect()
    }

    /// The truth of one URL (as returned by [`SimNet::urls`]).
    pub fn truth_for(&self, url: &str) -> Option<UrlTruth> {
        self.truth().into_iter().find(|t| t.url == url)
    }

    /// Stops every server and waits (at most a few seconds) for open
    /// connections to close; removes the ASN database if it made its directory.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.tracker.close();
        if let Some(mut server) = self.dns_server.take()
            && let Err(error) = server.shutdown_gracefully().await
        {
            tracing::debug!(%error, "simnet dns: shutdown");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

impl Drop for SimNet {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(server) = &self.dns_server {
            server.shutdown_token().cancel();
        }
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Binds one listener per address on one shared port.
fn bind_all(addrs: &[Ipv4Addr], what: &str) -> Result<(Vec<TcpListener>, u16), SimNetError> {
    let bind_error = |source| SimNetError::Bind {
        what: format!("{what} listeners"),
        source,
    };
    let Some(first) = addrs.first() else {
        return Ok((Vec::new(), 0));
    };
    let mut last_error = None;
    for _ in 0..20 {
        let head = http::bind(SocketAddr::new((*first).into(), 0)).map_err(bind_error)?;
        let port = head.local_addr().map_err(bind_error)?.port();
        let mut listeners = vec![head];
        let mut failed = None;
        for addr in &addrs[1..] {
            match http::bind(SocketAddr::new((*addr).into(), port)) {
                Ok(listener) => listeners.push(listener),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => return Ok((listeners, port)),
            Some(e) => last_error = Some(e),
        }
    }
    Err(bind_error(
        last_error.unwrap_or_else(|| std::io::Error::other("no free port")),
    ))
}

fn fresh_temp_dir() -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("tdmon-simnet-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
