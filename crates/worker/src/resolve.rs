//! Name resolution: one shared, caching hickory resolver, whose failures are
//! told apart (NXDOMAIN, no records, SERVFAIL, timeout), and the addresses a
//! request may connect to.
//!
//! A check looks each host up once, keeps the addresses the target policy
//! admits ([`Admitted`]) and hands them to the fetch, which connects (or
//! takes an idle connection) only to those, for that host only. So the
//! connection comes from the answer the observation records, and a name that
//! changes after the lookup (DNS rebinding) cannot lead a connection anywhere
//! the check did not admit.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use tdmon_core::message::DnsOutcome;

use crate::config::ResolverSettings;
use crate::policy::TargetPolicy;

/// The resolver could not be built (unreadable system configuration).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver")]
pub struct ResolverError(#[source] NetError);

/// The shared resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// Bound on one whole lookup (every attempt), on top of hickory's own.
    bound: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub(crate) fn new(settings: &ResolverSettings) -> Result<Self, ResolverError> {
        let (config, mut options) = if settings.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf().map_err(ResolverError)?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|addr| {
                    let connection = |mut c: ConnectionConfig| {
                        c.port = addr.port();
                        c
                    };
                    NameServerConfig::new(
                        addr.ip(),
                        true,
                        vec![
                            connection(ConnectionConfig::udp()),
                            connection(ConnectionConfig::tcp()),
                        ],
                    )
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        options.timeout = settings.timeout;
        options.attempts = settings.attempts;
        options.cache_size = settings.cache_size;
        options.positive_max_ttl = Some(settings.max_ttl);
        options.negative_max_ttl = Some(settings.max_ttl);
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Names are looked up as given (made absolute below): no search list,
        // no hosts file, so that what a check sees is what DNS says.
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = options;
        let inner = builder.build().map_err(ResolverError)?;
        let attempts = u32::try_from(settings.attempts.max(1)).unwrap_or(u32::MAX);
        Ok(Self {
            inner,
            bound: settings.timeout.saturating_mul(attempts.saturating_add(1)),
        })
    }

    /// The addresses `host` resolves to (IPv4 first), or why there are none.
    /// The outcome is never `Ok` or `RefusedByPolicy` in the error.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, DnsOutcome> {
        let name = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let started = tokio::time::Instant::now();
        let found = self.lookup_within_bound(name).await;
        let metrics = tdmon_metrics::metrics();
        metrics
            .dns_lookup_duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &found {
            Ok(_) => DnsOutcome::Ok,
            Err(outcome) => *outcome,
        };
        metrics
            .dns_lookups
            .get_or_create(&tdmon_metrics::KindLabel {
                kind: dns_outcome_name(outcome),
            })
            .inc();
        found
    }

    async fn lookup_within_bound(&self, name: String) -> Result<Vec<IpAddr>, DnsOutcome> {
        match tokio::time::timeout(self.bound, self.inner.lookup_ip(name)).await {
            Err(_elapsed) => Err(DnsOutcome::Timeout),
            Ok(Err(e)) => Err(dns_outcome(&e)),
            Ok(Ok(lookup)) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for ip in lookup.iter() {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    Err(DnsOutcome::NoRecords)
                } else {
                    Ok(ips)
                }
            }
        }
    }
}

/// The metric label of a DNS outcome (its name in messages).
fn dns_outcome_name(outcome: DnsOutcome) -> &'static str {
    match outcome {
        DnsOutcome::Ok => "ok",
        DnsOutcome::Nxdomain => "nxdomain",
        DnsOutcome::Servfail => "servfail",
        DnsOutcome::Timeout => "timeout",
        DnsOutcome::NoRecords => "no_records",
        DnsOutcome::RefusedByPolicy => "refused_by_policy",
    }
}

/// Maps a resolver error to the observation's DNS outcome: NXDOMAIN and an
/// empty answer (NODATA) are the name's state; a timeout is ours; anything else
/// (SERVFAIL, REFUSED, an unreachable or garbled server) is a server failure.
pub(crate) fn dns_outcome(error: &NetError) -> DnsOutcome {
    if error.is_nx_domain() {
        return DnsOutcome::Nxdomain;
    }
    match error {
        NetError::Dns(DnsError::NoRecordsFound(_)) => DnsOutcome::NoRecords,
        NetError::Timeout => DnsOutcome::Timeout,
        _ => DnsOutcome::Servfail,
    }
}

/// The addresses of one host, from one lookup of a check, that the target
/// policy admits, in the order of the answer: where the request to that host
/// may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admitted {
    host: String,
    addrs: Arc<[IpAddr]>,
}

impl Admitted {
    /// The addresses of `answer` (for `host`) that `policy` admits; `None`
    /// when it admits none.
    pub(crate) fn new(host: &str, answer: &[IpAddr], policy: &TargetPolicy) -> Option<Self> {
        let addrs: Arc<[IpAddr]> = policy.admitted(answer).collect();
        (!addrs.is_empty()).then(|| Self {
            host: host.to_owned(),
            addrs,
        })
    }

    /// The first admitted address: the one the check waits for its turn at.
    pub(crate) fn first(&self) -> IpAddr {
        self.addrs[0]
    }

    /// Where a request to `host` may connect: the admitted addresses when
    /// `host` is the name they were looked up for, else nowhere.
    pub(crate) fn addresses_of(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        let same = self
            .host
            .trim_end_matches('.')
            .eq_ignore_ascii_case(host.trim_end_matches('.'));
        same.then(|| self.addrs.clone())
    }
}

/// The client was asked for a host the check admitted no address of.
#[derive(Debug, thiserror::Error)]
#[error("no address of {host} was admitted for this request")]
pub(crate) struct NoAdmittedAddress {
    pub(crate) host: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tdmon_simnet::{Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};

    use super::*;

    fn settings(net: &SimNet) -> ResolverSettings {
        ResolverSettings {
            nameservers: vec![net.dns_addr()],
            timeout: Duration::from_millis(500),
            attempts: 1,
            cache_size: 64,
            max_ttl: Duration::from_millis(1),
        }
    }

    /// Where a request to `host` may connect with `admitted`.
    fn connect(admitted: &Admitted, host: &str) -> Option<Vec<IpAddr>> {
        admitted.addresses_of(host).map(|addrs| addrs.to_vec())
    }

    fn addrs(ips: &[&str]) -> Option<Vec<IpAddr>> {
        Some(ips.iter().map(|ip| ip.parse().unwrap()).collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connector_gets_only_admitted_addresses_even_after_rebinding() {
        let net = SimNet::start(
            Scenario::new(1.0)
                .hoster(Hoster::new("In", 64501, "In", "127.10.1.0/24", 1))
                .hoster(Hoster::new("Out", 64502, "Out", "127.20.0.0/24", 1))
                .url(UrlSpec::new("stay.in", "/", "In"))
                .url(UrlSpec::new("out.out", "/", "Out"))
                .url(UrlSpec::new("rebind.in", "/", "In").moves_to("Out", Duration::from_secs(60))),
            SimNetOptions::manual_clock(),
        )
        .await
        .unwrap();
        let resolver = Resolver::new(&settings(&net)).unwrap();
        let policy = TargetPolicy::new(vec!["127.10.0.0/16".parse().unwrap()]);
        let zone = net.zone().to_owned();
        let name = |host: &str| format!("{host}.{zone}");
        let admit = async |host: &str| {
            let answer = resolver.lookup(&name(host)).await.unwrap();
            (answer.clone(), Admitted::new(&name(host), &answer, &policy))
        };

        let (_, stay) = admit("stay.in").await;
        let stay = stay.expect("admitted");
        assert_eq!(connect(&stay, &name("stay.in")), addrs(&["127.10.1.1"]));
        assert_eq!(
            connect(&stay, &format!("{}.", name("STAY.in"))),
            addrs(&["127.10.1.1"]),
            "the same name, written otherwise"
        );
        // Outside the policy: nothing admitted, nothing to connect to.
        let (answer, out) = admit("out.out").await;
        assert_eq!(answer, ["127.20.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(out, None);
        // Another name than the one looked up: nowhere.
        assert_eq!(connect(&stay, &name("out.out")), None);

        // The check's own lookup sees an admitted address...
        let (_, rebind) = admit("rebind.in").await;
        let rebind = rebind.expect("admitted");
        // ...then the name moves outside before the connection is made
        // (past the cached answer's TTL): the connection still gets the
        // check's answer, and DNS is not asked again.
        net.advance(Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let queries = net.counters().total_dns_queries();
        assert_eq!(connect(&rebind, &name("rebind.in")), addrs(&["127.10.1.1"]));
        assert_eq!(net.counters().total_dns_queries(), queries);
        // A later check's lookup sees the new address, and admits nothing.
        let (answer, moved) = admit("rebind.in").await;
        assert_eq!(answer, ["127.20.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(moved, None);
        net.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_tell_failures_apart() {
        let net = SimNet::start(
            Scenario::new(1.0)
                .hoster(Hoster::new("In", 64501, "In", "127.10.1.0/24", 1))
                .url(UrlSpec::new("a.in", "/", "In")),
            SimNetOptions::default(),
        )
        .await
        .unwrap();
        let resolver = Resolver::new(&settings(&net)).unwrap();
        let zone = net.zone().to_owned();
        assert!(resolver.lookup(&format!("a.in.{zone}")).await.is_ok());
        assert_eq!(
            resolver.lookup(&format!("nope.{zone}")).await,
            Err(DnsOutcome::Nxdomain)
        );
        assert_eq!(
            resolver.lookup(&format!("in.{zone}")).await,
            Err(DnsOutcome::NoRecords)
        );
        // Outside its zone the simulated server answers REFUSED: a server failure.
        assert_eq!(
            resolver.lookup("elsewhere.test").await,
            Err(DnsOutcome::Servfail)
        );
        net.shutdown().await;
    }
}
