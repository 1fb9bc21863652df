//! The worker's configuration: the `[worker]` table of the config file as it is
//! written ([`WorkerConfig`], with every default in one `Default` impl), and the
//! validated form the checker is built from ([`WorkerSettings`]).
//!
//! ```toml
//! [worker]
//! name = "worker-1"
//! contact = "mailto:abuse@hotline.example"
//! connect_timeout = "5s"
//! total_timeout = "20s"
//! max_redirects = 5
//! body_prefix = 0
//!
//! [worker.resolver]
//! nameservers = ["127.0.0.1:5353"]
//!
//! [worker.policy]
//! allow = ["127.10.0.0/16"]
//!
//! [worker.limits]
//! checks_per_second = 20
//!
//! [worker.attribution]
//! asn_db = "GeoLite2-ASN.mmdb"
//! extra_cdn_asns = [64500]
//! [[worker.attribution.merge]]
//! hoster = "Example Hosting"
//! asns = [64500, 64501]
//! [[worker.attribution.override]]
//! cidr = "198.51.100.0/24"
//! hoster = "Reseller B.V."
//! ```

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use tdmon_core::hoster::{HosterMap, HosterMapError};

use crate::attribute::DEFAULT_CDN_ASNS;

/// The largest body prefix a check may read to fingerprint it (README.md,
/// "Safety": at most a few KiB, never stored).
pub const MAX_BODY_PREFIX: usize = 16 * 1024;

/// The `[worker]` table as written. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The name written into every observation's `worker` field.
    pub name: String,
    /// Contact appended to the User-Agent (`tdmon/<version> (+contact)`): a URL
    /// or mail address where a hoster can reach the monitor's operator.
    pub contact: String,
    /// Bound on establishing the TCP connection (and TLS handshake) to one address.
    #[serde(with = "tdmon_core::duration")]
    pub connect_timeout: Duration,
    /// Bound on the check's time on the network: its lookups and every redirect
    /// hop's request, headers and body prefix. Waits for our own limits are not
    /// counted (the job's expiry bounds them).
    #[serde(with = "tdmon_core::duration")]
    pub total_timeout: Duration,
    /// Redirects followed at most; one more ends the check as `too_many_redirects`.
    pub max_redirects: u8,
    /// Bytes of the body read (in memory only) to fingerprint a 2xx; 0 reads none.
    pub body_prefix: usize,
    /// Response header fields accepted at most (HTTP/1); more is a protocol error.
    pub max_header_fields: usize,
    /// Retry a failed TLS handshake without certificate verification, to learn
    /// whether the content is still served behind a bad certificate. The TLS
    /// error is recorded either way.
    pub accept_invalid_certs_as_alive: bool,
    /// PEM files with extra trust roots (a private CA, the simulated network's).
    pub extra_root_certs: Vec<PathBuf>,
    /// The socket receive buffer of a check's connection, in bytes, set
    /// before connecting: about what a hoster sends before a headers-only
    /// check closes. 0 leaves the system's default (which grows to MiBs).
    pub receive_buffer: u32,
    /// How long a connection may wait idle for another check to the same
    /// address; 0 opens a new connection for every request.
    #[serde(with = "tdmon_core::duration")]
    pub reuse_idle: Duration,
    pub resolver: ResolverConfig,
    pub policy: PolicyConfig,
    pub limits: LimitsConfig,
    pub attribution: AttributionConfig,
}

/// `[worker.resolver]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverConfig {
    /// "IP" or "IP:port" ("[v6]:port"); empty uses the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// Bound on one DNS query.
    #[serde(with = "tdmon_core::duration")]
    pub timeout: Duration,
    /// Queries per lookup before giving up (hickory's `attempts`).
    pub attempts: usize,
    /// Responses cached at most.
    pub cache_size: u64,
    /// Answers are cached at most this long, whatever their TTL, so that a
    /// move to another address is seen soon.
    #[serde(with = "tdmon_core::duration")]
    pub max_ttl: Duration,
}

/// `[worker.policy]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// CIDRs admitted although special-purpose (tests and the simulated
    /// network: `["127.10.0.0/16"]`). Empty by default: nothing special passes.
    pub allow: Vec<String>,
}

/// `[worker.limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Checks started per second by this worker, all hosts together.
    pub checks_per_second: u32,
    /// Requests per address: one every `per_ip_interval`...
    #[serde(with = "tdmon_core::duration")]
    pub per_ip_interval: Duration,
    /// ...with bursts of at most this many.
    pub per_ip_burst: u32,
    /// Requests in flight at once to one address.
    pub per_ip_concurrency: usize,
    /// Checks in flight at once in this worker.
    pub max_in_flight: usize,
    /// How often idle per-address state is evicted.
    #[serde(with = "tdmon_core::duration")]
    pub evict_interval: Duration,
    /// A `Retry-After` longer than this is cut to it.
    #[serde(with = "tdmon_core::duration")]
    pub max_backoff: Duration,
}

/// `[worker.attribution]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionConfig {
    /// A MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN Lite,
    /// ip-location-db asn, IPinfo ASN or Lite); without one, only the CIDR
    /// overrides attribute.
    pub asn_db: Option<PathBuf>,
    /// Several ASNs of one company under one hoster name.
    pub merge: Vec<MergeConfig>,
    /// A hoster for an address range, whatever its ASN (resellers); the most
    /// specific range wins.
    #[serde(rename = "override")]
    pub overrides: Vec<OverrideConfig>,
    /// ASNs of CDNs and reverse proxies: flagged in the observation, not
    /// blamed. By default [`DEFAULT_CDN_ASNS`]; a list written here replaces it.
    pub cdn_asns: Vec<u32>,
    /// More CDN ASNs, flagged on top of `cdn_asns` (to extend the default list
    /// without copying it).
    pub extra_cdn_asns: Vec<u32>,
    /// How often the ASN database file is looked at: when it was replaced,
    /// it is read again (SIGHUP reads it at once).
    #[serde(with = "tdmon_core::duration")]
    pub watch_interval: Duration,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            asn_db: None,
            merge: Vec::new(),
            overrides: Vec::new(),
            cdn_asns: DEFAULT_CDN_ASNS.iter().map(|&(asn, _)| asn).collect(),
            extra_cdn_asns: Vec::new(),
            watch_interval: Duration::from_secs(10),
        }
    }
}

impl AttributionConfig {
    /// The hoster mapping these settings describe: the worker applies it at
    /// check time, the report again to the stored addresses and ASNs.
    pub fn hoster_map(&self) -> Result<HosterMap, ConfigError> {
        let overrides = self
            .overrides
            .iter()
            .map(|o| {
                Ok((
                    parse_cidr(&o.cidr, "attribution.override.cidr")?,
                    o.hoster.clone(),
                ))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let merges = self
            .merge
            .iter()
            .flat_map(|m| m.asns.iter().map(|&asn| (asn, m.hoster.clone())));
        let cdn_asns = self.cdn_asns.iter().chain(&self.extra_cdn_asns).copied();
        HosterMap::new(merges, overrides, cdn_asns).map_err(|error| match error {
            HosterMapError::EmptyName("merge") => ConfigError::Empty {
                key: "attribution.merge.hoster",
            },
            HosterMapError::EmptyName(_) => ConfigError::Empty {
                key: "attribution.override.hoster",
            },
            HosterMapError::MergeConflict { asn, first, second } => {
                ConfigError::MergeConflict { asn, first, second }
            }
            HosterMapError::DuplicateOverride(net) => ConfigError::DuplicateOverride(net),
        })
    }
}

/// `[[worker.attribution.merge]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    pub hoster: String,
    pub asns: Vec<u32>,
}

/// `[[worker.attribution.override]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    pub cidr: String,
    pub hoster: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: "tdmon-worker".into(),
            contact: String::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            max_redirects: 5,
            body_prefix: 0,
            max_header_fields: 100,
            accept_invalid_certs_as_alive: false,
            extra_root_certs: Vec::new(),
            receive_buffer: 16 * 1024,
            reuse_idle: Duration::from_secs(3),
            resolver: ResolverConfig::default(),
            policy: PolicyConfig::default(),
            limits: LimitsConfig::default(),
            attribution: AttributionConfig::default(),
        }
    }
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(3),
            attempts: 2,
            cache_size: 4096,
            max_ttl: Duration::from_secs(300),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            checks_per_second: 20,
            per_ip_interval: Duration::from_secs(1),
            per_ip_burst: 2,
            per_ip_concurrency: 2,
            max_in_flight: 64,
            evict_interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// A configuration value that cannot be used; each names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("worker.{key} must be greater than zero")]
    Zero { key: &'static str },
    #[error("worker.body_prefix is {0} bytes; at most {MAX_BODY_PREFIX} may be read")]
    BodyPrefixTooLarge(usize),
    #[error("worker.resolver.nameservers: {0:?} is not an address (IP or IP:port)")]
    Nameserver(String),
    #[error("worker.{key}: {value:?} is not a CIDR (e.g. 127.10.0.0/16)")]
    Cidr { key: &'static str, value: String },
    #[error("worker.attribution.merge: ASN {asn} is merged into both {first:?} and {second:?}")]
    MergeConflict {
        asn: u32,
        first: String,
        second: String,
    },
    #[error("worker.{key} must not be empty")]
    Empty { key: &'static str },
    #[error("worker.attribution.override: {0} is listed twice")]
    DuplicateOverride(IpNet),
}

/// The validated worker settings: every timeout and limit positive, every CIDR
/// and nameserver parsed. Only [`WorkerConfig::validate`] makes one.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub(crate) name: String,
    pub(crate) user_agent: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) max_redirects: u8,
    pub(crate) body_prefix: usize,
    pub(crate) max_header_fields: usize,
    pub(crate) accept_invalid_certs_as_alive: bool,
    pub(crate) extra_root_certs: Vec<PathBuf>,
    pub(crate) receive_buffer: Option<u32>,
    pub(crate) reuse_idle: Duration,
    pub(crate) resolver: ResolverSettings,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) limits: LimitSettings,
    pub(crate) attribution: AttributionSettings,
}

#[derive(Debug, Clone)]
pub(crate) struct ResolverSettings {
    pub(crate) nameservers: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) attempts: usize,
    pub(crate) cache_size: u64,
    pub(crate) max_ttl: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct LimitSettings {
    pub(crate) checks_per_second: NonZeroU32,
    pub(crate) per_ip_interval: Duration,
    pub(crate) per_ip_burst: NonZeroU32,
    pub(crate) per_ip_concurrency: NonZeroUsize,
    pub(crate) max_in_flight: NonZeroUsize,
    pub(crate) evict_interval: Duration,
    pub(crate) max_backoff: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct AttributionSettings {
    pub(crate) asn_db: Option<PathBuf>,
    pub(crate) watch_interval: Duration,
    pub(crate) hosters: HosterMap,
}

impl WorkerSettings {
    /// The name written into observations.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The User-Agent every request carries.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// Checks in flight at once: callers size their own concurrency by it.
    pub fn max_in_flight(&self) -> usize {
        self.limits.max_in_flight.get()
    }

    /// Checks this worker starts per second at most, all hosts together.
    pub fn checks_per_second(&self) -> u32 {
        self.limits.checks_per_second.get()
    }

    /// The bound on one check's time on the network (its waits for limits aside).
    pub fn total_timeout(&self) -> Duration {
        self.total_timeout
    }

    /// The same settings with another ASN database (a command-line choice).
    #[must_use]
    pub fn with_asn_db(mut self, path: PathBuf) -> Self {
        self.attribution.asn_db = Some(path);
        self
    }

    /// The ASN database to attribute with, if any.
    pub fn asn_db(&self) -> Option<&std::path::Path> {
        self.attribution.asn_db.as_deref()
    }

    /// The hoster mapping (merges, overrides, CDN ASNs) in force.
    pub fn hoster_map(&self) -> &HosterMap {
        &self.attribution.hosters
    }
}

fn positive(value: Duration, key: &'static str) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::Zero { key })
    } else {
        Ok(value)
    }
}

/// Parses "IP", "IP:port" or "[v6]:port"; the port defaults to 53.
fn parse_nameserver(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ConfigError::Nameserver(text.to_owned()))
}

fn parse_cidr(text: &str, key: &'static str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| ConfigError::Cidr {
            key,
            value: text.to_owned(),
        })
}

impl WorkerConfig {
    /// Checks every value and returns the settings the checker is built from.
    pub fn validate(self) -> Result<WorkerSettings, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::Empty { key: "name" });
        }
        if self.body_prefix > MAX_BODY_PREFIX {
            return Err(ConfigError::BodyPrefixTooLarge(self.body_prefix));
        }
        if self.max_header_fields == 0 {
            return Err(ConfigError::Zero {
                key: "max_header_fields",
            });
        }
        let nonzero_u32 = |value: u32, key| NonZeroU32::new(value).ok_or(ConfigError::Zero { key });
        let nonzero_usize =
            |value: usize, key| NonZeroUsize::new(value).ok_or(ConfigError::Zero { key });

        let resolver = ResolverSettings {
            nameservers: self
                .resolver
                .nameservers
                .iter()
                .map(|ns| parse_nameserver(ns))
                .collect::<Result<_, _>>()?,
            timeout: positive(self.resolver.timeout, "resolver.timeout")?,
            attempts: nonzero_usize(self.resolver.attempts, "resolver.attempts")?.get(),
            cache_size: self.resolver.cache_size,
            max_ttl: self.resolver.max_ttl,
        };
        let allow = self
            .policy
            .allow
            .iter()
            .map(|cidr| parse_cidr(cidr, "policy.allow"))
            .collect::<Result<_, _>>()?;
        let limits = LimitSettings {
            checks_per_second: nonzero_u32(
                self.limits.checks_per_second,
                "limits.checks_per_second",
            )?,
            per_ip_interval: positive(self.limits.per_ip_interval, "limits.per_ip_interval")?,
            per_ip_burst: nonzero_u32(self.limits.per_ip_burst, "limits.per_ip_burst")?,
            per_ip_concurrency: nonzero_usize(
                self.limits.per_ip_concurrency,
                "limits.per_ip_concurrency",
            )?,
            max_in_flight: nonzero_usize(self.limits.max_in_flight, "limits.max_in_flight")?,
            evict_interval: positive(self.limits.evict_interval, "limits.evict_interval")?,
            max_backoff: self.limits.max_backoff,
        };

        let hosters = self.attribution.hoster_map()?;

        let version = env!("CARGO_PKG_VERSION");
        let user_agent = match self.contact.trim() {
            "" => format!("tdmon/{version}"),
            contact => format!("tdmon/{version} (+{contact})"),
        };

        Ok(WorkerSettings {
            name: self.name,
            user_agent,
            connect_timeout: positive(self.connect_timeout, "connect_timeout")?,
            total_timeout: positive(self.total_timeout, "total_timeout")?,
            max_redirects: self.max_redirects,
            body_prefix: self.body_prefix,
            max_header_fields: self.max_header_fields,
            accept_invalid_certs_as_alive: self.accept_invalid_certs_as_alive,
            extra_root_certs: self.extra_root_certs,
            receive_buffer: (self.receive_buffer > 0).then_some(self.receive_buffer),
            reuse_idle: self.reuse_idle,
            resolver,
            allow,
            limits,
            attribution: AttributionSettings {
                asn_db: self.attribution.asn_db,
                watch_interval: positive(
                    self.attribution.watch_interval,
                    "attribution.watch_interval",
                )?,
                hosters,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        worker: WorkerConfig,
    }

    #[test]
    fn empty_table_gives_defaults() {
        let file: File = toml::from_str("[worker]\n").unwrap();
        assert_eq!(file.worker, WorkerConfig::default());
        let settings = file.worker.validate().unwrap();
        assert_eq!(
            settings.user_agent(),
            format!("tdmon/{}", env!("CARGO_PKG_VERSION"))
        );
        assert!(settings.allow.is_empty());
    }

    #[test]
    fn full_table_parses_and_validates() {
        let file: File = toml::from_str(
            r#"
            [worker]
            contact = "mailto:ops@hotline.test"
            total_timeout = "30s"
            body_prefix = 4096
            [worker.resolver]
            nameservers = ["127.0.0.1:5353", "127.0.0.2", "[::1]:53"]
            [worker.policy]
            allow = ["127.10.0.0/16"]
            [worker.limits]
            per_ip_interval = "500ms"
            [worker.attribution]
            extra_cdn_asns = [64500]
            [[worker.attribution.merge]]
            hoster = "Big Host"
            asns = [1, 2]
            [[worker.attribution.override]]
            cidr = "127.10.5.0/24"
            hoster = "Reseller"
            "#,
        )
        .unwrap();
        let settings = file.worker.validate().unwrap();
        assert_eq!(
            settings.resolver.nameservers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
            ]
        );
        assert_eq!(
            settings.allow,
            vec!["127.10.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert_eq!(settings.total_timeout, Duration::from_secs(30));
        assert_eq!(settings.limits.per_ip_interval, Duration::from_millis(500));
        assert!(settings.user_agent.ends_with("(+mailto:ops@hotline.test)"));
        let hosters = settings.hoster_map();
        assert_eq!(hosters.merges().values().map(Vec::len).sum::<usize>(), 2);
        assert!(hosters.is_cdn(Some(64500)));
        assert!(hosters.is_cdn(Some(13335)), "extended");
        assert_eq!(hosters.overrides()[0].1, "Reseller");
    }

    #[test]
    fn cdn_asns_default_to_the_shipped_list_which_a_list_replaces() {
        let defaults = WorkerConfig::default().validate().unwrap();
        let default_asns: Vec<u32> = DEFAULT_CDN_ASNS.iter().map(|&(asn, _)| asn).collect();
        let mut sorted = default_asns.clone();
        sorted.sort_unstable();
        assert!(defaults.hoster_map().cdn_asns().eq(sorted));
        assert!(default_asns.contains(&13335) && default_asns.contains(&54113));

        let file: File =
            toml::from_str("[worker.attribution]\ncdn_asns = [64500]\nextra_cdn_asns = [64501]\n")
                .unwrap();
        let settings = file.worker.validate().unwrap();
        assert!(settings.hoster_map().cdn_asns().eq([64500, 64501]));

        let file: File = toml::from_str("[worker.attribution]\ncdn_asns = []\n").unwrap();
        assert!(
            file.worker
                .validate()
                .unwrap()
                .hoster_map()
                .cdn_asns()
                .next()
                .is_none()
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<File>("[worker]\ntimeout = \"5s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<File>("[worker.policy]\nallowed = []\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases: Vec<(WorkerConfig, &str)> = vec![
            (
                WorkerConfig {
                    connect_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "worker.connect_timeout",
            ),
            (
                WorkerConfig {
                    body_prefix: MAX_BODY_PREFIX + 1,
                    ..Default::default()
                },
                "worker.body_prefix",
            ),
            (
                WorkerConfig {
                    policy: PolicyConfig {
                        allow: vec!["127.10.0.0/33".into()],
                    },
                    ..Default::default()
                },
                "worker.policy.allow",
            ),
            (
                WorkerConfig {
                    resolver: ResolverConfig {
                        nameservers: vec!["dns.example".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "worker.resolver.nameservers",
            ),
            (
                WorkerConfig {
                    limits: LimitsConfig {
                        max_in_flight: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "worker.limits.max_in_flight",
            ),
            (
                WorkerConfig {
                    attribution: AttributionConfig {
                        merge: vec![
                            MergeConfig {
                                hoster: "A".into(),
                                asns: vec![1],
                            },
                            MergeConfig {
                                hoster: "B".into(),
                                asns: vec![1],
                            },
                        ],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "worker.attribution.merge",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }
}
