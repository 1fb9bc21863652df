//! Name resolution: one shared, caching hickory resolver, whose failures are
//! told apart (NXDOMAIN, no records, SERVFAIL, timeout), and the
//! [`reqwest::dns::Resolve`] implementation that lets the HTTP client connect
//! only to addresses the target policy admits.
//!
//! The check resolves a name itself (to record the answers and choose the
//! address it rate-limits), and reqwest resolves it again, through
//! [`PolicyResolve`], when it connects; both go through the same cache, and
//! the second filters by the policy again, so a DNS answer that changed in
//! between (rebinding) cannot lead the connection to a refused address.

use std::net::{IpAddr, SocketAddr};
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
use crate::policy::{Refused, TargetPolicy};

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

/// The resolver reqwest connects through: it answers only with addresses the
/// target policy admits, and fails when there are none.
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolve {
    pub(crate) resolver: Resolver,
    pub(crate) policy: Arc<TargetPolicy>,
}

/// reqwest's resolver found no address the policy admits.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectRefusedByPolicy {
    #[error("every address of {host} is refused by the target policy (first: {first})")]
    Refused { host: String, first: Refused },
    #[error("{host} did not resolve at connect time ({outcome:?})")]
    Unresolved { host: String, outcome: DnsOutcome },
}

impl reqwest::dns::Resolve for PolicyResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = this.resolver.lookup(&host).await.map_err(|outcome| {
                Box::new(ConnectRefusedByPolicy::Unresolved {
                    host: host.clone(),
                    outcome,
                }) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let admitted: Vec<SocketAddr> = this
                .policy
                .admitted(&ips)
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if admitted.is_empty() {
                let error = match ips.iter().find_map(|&ip| this.policy.check(ip).err()) {
                    Some(first) => ConnectRefusedByPolicy::Refused { host, first },
                    None => ConnectRefusedByPolicy::Unresolved {
                        host,
                        outcome: DnsOutcome::NoRecords,
                    },
                };
                return Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::dns::Resolve;
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
        let connector = PolicyResolve {
            resolver: resolver.clone(),
            policy: Arc::new(TargetPolicy::new(vec!["127.10.0.0/16".parse().unwrap()])),
        };
        let zone = net.zone().to_owned();
        let resolve = |host: &str| connector.resolve(format!("{host}.{zone}").parse().unwrap());

        let addrs: Vec<SocketAddr> = resolve("stay.in").await.unwrap().collect();
        assert_eq!(addrs, vec!["127.10.1.1:0".parse().unwrap()]);

        type Resolved = Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>>;
        let refused = |result: Resolved| match result {
            Ok(addrs) => panic!("admitted {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => matches!(
                e.downcast_ref::<ConnectRefusedByPolicy>(),
                Some(ConnectRefusedByPolicy::Refused { .. })
            ),
        };
        assert!(refused(resolve("out.out").await));

        // The check's own lookup sees an admitted address...
        let host = format!("rebind.in.{zone}");
        assert_eq!(
            resolver.lookup(&host).await,
            Ok(vec!["127.10.1.1".parse().unwrap()])
        );
        // ...then the name moves outside before the connection is made: the
        // connector is refused, not led to the new address.
        net.advance(Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(refused(resolve("rebind.in").await));
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
