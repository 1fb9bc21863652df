//! The scenario: hosters, the URLs they serve and how each URL behaves over
//! (simulated) time since the notice. Read from TOML or built in code; either
//! way [`Scenario::validate`] runs before a network starts.
//!
//! Every time in a behaviour is a *simulated* duration since the notice (the
//! network's start). The scenario's `time_scale` says how many simulated
//! seconds pass per real second. The exceptions are the `pause` of the slow
//! drip and of the delay, which are real time: they exercise a client's real
//! timeouts and concurrency.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The DNS zone used when a scenario names none.
pub const DEFAULT_ZONE: &str = "sim.test";

/// A whole simulated hosting landscape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The zone the DNS server is authoritative for; every URL host lies in it.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Simulated seconds per real second (3600: one simulated hour per second).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    #[serde(default)]
    pub hosters: Vec<Hoster>,
    #[serde(default)]
    pub urls: Vec<UrlSpec>,
}

fn default_zone() -> String {
    DEFAULT_ZONE.to_owned()
}

fn default_time_scale() -> f64 {
    1.0
}

/// A hosting provider: one ASN, one address prefix inside 127.0.0.0/8, and
/// `servers` addresses in it (the first `servers` host addresses of the prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hoster {
    pub name: String,
    pub asn: u32,
    /// The organisation name written to the ASN database.
    pub org: String,
    pub prefix: Ipv4Net,
    #[serde(default = "default_servers")]
    pub servers: u32,
}

fn default_servers() -> u32 {
    1
}

/// Whether the URL is served over plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the notified content is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// An HTML page (`text/html`).
    #[default]
    Html,
    /// An image (`image/png`).
    Image,
}

/// One notified URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSpec {
    /// The host name: either a full name inside the zone (`a.fast.sim.test`) or
    /// a relative one (`a.fast`) that gets the zone appended.
    pub host: String,
    /// The path, starting with `/`.
    pub path: String,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub kind: ContentKind,
    /// The hoster serving it at notice time.
    pub hoster: String,
    /// Which of the hoster's server addresses (0-based); by default one chosen
    /// from the host name, so every URL of a host lands on one address.
    #[serde(default)]
    pub server: Option<u32>,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// A move to another hoster: from `at` the DNS answer is the new hoster's address.
    #[serde(default, rename = "move")]
    pub moves: Option<Move>,
}

/// A change of hoster at a simulated time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    #[serde(with = "tdmon_core::duration")]
    pub at: Duration,
    /// The hoster it moves to.
    pub to: String,
    /// Which of the new hoster's addresses; chosen from the host name by default.
    #[serde(default)]
    pub server: Option<u32>,
}

/// How a URL behaves over simulated time since the notice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// Served for the whole run.
    #[default]
    Never,
    /// Served until `at`, then answered with `status` (404 by default; 410, 451, ...).
    Removed {
        #[serde(with = "tdmon_core::duration")]
        at: Duration,
        #[serde(default = "status_404")]
        status: u16,
    },
    /// Already gone at notice time: `status` from the start.
    AlreadyRemoved {
        #[serde(default = "status_404")]
        status: u16,
    },
    /// The host name answers NXDOMAIN from `at`.
    DnsRemoval {
        #[serde(with = "tdmon_core::duration")]
        at: Duration,
    },
    /// The DNS server answers SERVFAIL for the host in [from, until).
    DnsServfail {
        #[serde(default, with = "tdmon_core::duration")]
        from: Duration,
        #[serde(default, with = "opt_duration")]
        until: Option<Duration>,
    },
    /// The DNS server drops queries for the host in [from, until): a client timeout.
    DnsNoAnswer {
        #[serde(default, with = "tdmon_core::duration")]
        from: Duration,
        #[serde(default, with = "opt_duration")]
        until: Option<Duration>,
    },
    /// From `at`, 200 with an HTML placeholder instead of the content (an
    /// image URL then answers text/html).
    SoftRemoval {
        #[serde(with = "tdmon_core::duration")]
        at: Duration,
    },
    /// From `at`, a redirect (302 by default) to the host's home page.
    RedirectHome {
        #[serde(with = "tdmon_core::duration")]
        at: Duration,
        #[serde(default = "status_302")]
        status: u16,
    },
    /// From `at`, a redirect (302 by default) to `path` (default "/") on
    /// `host` (default: this URL's host) over `scheme` (default: this URL's).
    /// When the target differs from the URL only by scheme, a leading `www.`
    /// or a trailing slash, the content is served there: a canonical move,
    /// not a takedown. Otherwise the target is a landing page (the home page
    /// of the target host answers 200, other paths 404): a takedown. A target
    /// host that carries no URL of its own resolves to this URL's address.
    RedirectTo {
        #[serde(with = "tdmon_core::duration")]
        at: Duration,
        #[serde(default)]
        host: Option<String>,
        #[serde(default = "root_path")]
        path: String,
        #[serde(default)]
        scheme: Option<Scheme>,
        #[serde(default = "status_302")]
        status: u16,
    },
    /// Down (`status`, 404 by default) in [down_at, up_at), served before and after.
    Flapping {
        #[serde(with = "tdmon_core::duration")]
        down_at: Duration,
        #[serde(with = "tdmon_core::duration")]
        up_at: Duration,
        #[serde(default = "status_404")]
        status: u16,
    },
    /// From `from`, requests are read but never answered; the connection stays open.
    BlackHole {
        #[serde(default, with = "tdmon_core::duration")]
        from: Duration,
    },
    /// The content is served a byte at a time, headers included, with a real
    /// (not simulated) `pause` between bytes.
    SlowDrip {
        #[serde(with = "tdmon_core::duration")]
        pause: Duration,
    },
    /// 200 with a body of `size` bytes, streamed, so a client that stops
    /// reading makes the server stop sending.
    HugeBody { size: u64 },
    /// The content, served normally after a real (not simulated) `pause`
    /// once the request is read: a slow but healthy host, for benchmarks of
    /// many checks in flight at once.
    Delay {
        #[serde(with = "tdmon_core::duration")]
        pause: Duration,
    },
    /// `status` (503 by default) in [from, until), served otherwise.
    ServerErrors {
        #[serde(with = "tdmon_core::duration")]
        from: Duration,
        #[serde(with = "tdmon_core::duration")]
        until: Duration,
        #[serde(default = "status_503")]
        status: u16,
    },
    /// 429 with `Retry-After: retry_after` (whole seconds) in [from, until).
    RateLimited {
        #[serde(with = "tdmon_core::duration")]
        from: Duration,
        #[serde(with = "tdmon_core::duration")]
        until: Duration,
        #[serde(with = "tdmon_core::duration")]
        retry_after: Duration,
    },
}

fn status_404() -> u16 {
    404
}
fn status_302() -> u16 {
    302
}
fn status_503() -> u16 {
    503
}
fn root_path() -> String {
    "/".to_owned()
}

/// `Option<Duration>` in the human notation.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => tdmon_core::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| tdmon_core::duration::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Why a scenario cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("scenario does not parse")]
    Parse(#[from] toml::de::Error),
    #[error("cannot read scenario file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::Invalid(message.into()))
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl Scenario {
    /// An empty scenario in the default zone.
    pub fn new(time_scale: f64) -> Self {
        Scenario {
            zone: default_zone(),
            time_scale,
            hosters: Vec::new(),
            urls: Vec::new(),
        }
    }

    /// Parses and validates a TOML scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a TOML scenario file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Adds a hoster (builder style).
    pub fn hoster(mut self, hoster: Hoster) -> Self {
        self.hosters.push(hoster);
        self
    }

    /// Adds a URL (builder style).
    pub fn url(mut self, url: UrlSpec) -> Self {
        self.urls.push(url);
        self
    }

    /// The zone without a trailing dot, lowercased.
    pub fn zone_name(&self) -> String {
        self.zone.trim_end_matches('.').to_ascii_lowercase()
    }

    /// The full, lowercased host name of a URL spec.
    pub fn full_host(&self, url: &UrlSpec) -> String {
        let zone = self.zone_name();
        let host = url.host.trim_end_matches('.').to_ascii_lowercase();
        if host == zone || host.ends_with(&format!(".{zone}")) {
            host
        } else {
            format!("{host}.{zone}")
        }
    }

    /// The target (scheme, full host, path) of a `redirect_to` URL.
    pub fn redirect_target(&self, url: &UrlSpec) -> Option<(Scheme, String, String)> {
        let Behaviour::RedirectTo {
            host, path, scheme, ..
        } = &url.behaviour
        else {
            return None;
        };
        let host = match host {
            Some(h) => self.full_host(&UrlSpec::new(h, "/", "")),
            None => self.full_host(url),
        };
        Some((scheme.unwrap_or(url.scheme), host, path.clone()))
    }

    /// Whether a `redirect_to` URL's target is the same resource (a change of
    /// scheme, of a leading `www.` or of a trailing slash only).
    pub fn is_canonical_redirect(&self, url: &UrlSpec) -> bool {
        let Some((_, host, path)) = self.redirect_target(url) else {
            return false;
        };
        let own = self.full_host(url);
        let bare = |h: &str| h.strip_prefix("www.").unwrap_or(h).to_owned();
        let slash = |p: &str| {
            let t = p.trim_end_matches('/');
            if t.is_empty() {
                "/".to_owned()
            } else {
                t.to_owned()
            }
        };
        bare(&host) == bare(&own) && slash(&path) == slash(&url.path)
    }

    pub(crate) fn hoster_by_name(&self, name: &str) -> Option<&Hoster> {
        self.hosters.iter().find(|h| h.name == name)
    }

    /// Checks every rule a running network relies on.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return invalid(format!("time_scale must be > 0, got {}", self.time_scale));
        }
        let zone = self.zone_name();
        if zone.is_empty() || !valid_dns_name(&zone) {
            return invalid(format!("zone {:?} is not a valid DNS name", self.zone));
        }
        let loopback: Ipv4Net = "127.0.0.0/8".parse().expect("valid net");
        let mut names = BTreeSet::new();
        for (i, h) in self.hosters.iter().enumerate() {
            let at = format!("hoster {} ({:?})", i + 1, h.name);
            if h.name.trim().is_empty() || !names.insert(h.name.as_str()) {
                return invalid(format!("{at}: name is empty or used twice"));
            }
            if h.asn == 0 {
                return invalid(format!("{at}: asn must not be 0"));
            }
            if !loopback.contains(&h.prefix) {
                return invalid(format!(
                    "{at}: prefix {} is not inside 127.0.0.0/8",
                    h.prefix
                ));
            }
            if h.prefix.prefix_len() > 30 {
                return invalid(format!("{at}: prefix {} is narrower than /30", h.prefix));
            }
            let room = (1u64 << (32 - h.prefix.prefix_len())) - 2;
            if h.servers == 0 || u64::from(h.servers) > room {
                return invalid(format!(
                    "{at}: {} servers do not fit in {}",
                    h.servers, h.prefix
                ));
            }
            for other in &self.hosters[..i] {
                if other.prefix.contains(&h.prefix) || h.prefix.contains(&other.prefix) {
                    return invalid(format!("{at}: prefix overlaps hoster {:?}", other.name));
                }
            }
        }

        let mut seen = BTreeSet::new();
        // host -> (hoster, server, move): every URL of a host must agree.
        let mut placement: BTreeMap<String, (String, Option<u32>, Option<Move>)> = BTreeMap::new();
        let mut dns_hosts: BTreeMap<String, usize> = BTreeMap::new();
        let mut urls_per_host: BTreeMap<String, usize> = BTreeMap::new();
        for (i, u) in self.urls.iter().enumerate() {
            let host = self.full_host(u);
            let at = format!("url {} ({}{})", i + 1, host, u.path);
            if !valid_dns_name(&host) {
                return invalid(format!("{at}: host is not a valid DNS name"));
            }
            if !u.path.starts_with('/') || u.path.contains(char::is_whitespace) {
                return invalid(format!("{at}: path must start with / and hold no spaces"));
            }
            if !seen.insert((host.clone(), u.path.clone())) {
                return invalid(format!("{at}: the same host and path appear twice"));
            }
            let Some(hoster) = self.hoster_by_name(&u.hoster) else {
                return invalid(format!("{at}: unknown hoster {:?}", u.hoster));
            };
            if let Some(server) = u.server
                && server >= hoster.servers
            {
                return invalid(format!(
                    "{at}: server {server} but hoster {:?} has {}",
                    hoster.name, hoster.servers
                ));
            }
            if let Some(m) = &u.moves {
                let Some(to) = self.hoster_by_name(&m.to) else {
                    return invalid(format!("{at}: move to unknown hoster {:?}", m.to));
                };
                if to.name == hoster.name {
                    return invalid(format!("{at}: move to the hoster it is already on"));
                }
                if let Some(server) = m.server
                    && server >= to.servers
                {
                    return invalid(format!("{at}: move to server {server} of {:?}", to.name));
                }
            }
            let place = (u.hoster.clone(), u.server, u.moves.clone());
            match placement.get(&host) {
                Some(existing) if *existing != place => {
                    return invalid(format!(
                        "{at}: every URL of one host must have the same hoster, server and move"
                    ));
                }
                _ => {
                    placement.insert(host.clone(), place);
                }
            }
            *urls_per_host.entry(host.clone()).or_default() += 1;
            if u.behaviour.affects_dns() {
                *dns_hosts.entry(host.clone()).or_default() += 1;
            }
            u.behaviour
                .validate()
                .map_err(|e| ScenarioError::Invalid(format!("{at}: {e}")))?;
            if let Some(target) = self.redirect_target(u)
                && target == (u.scheme, host.clone(), u.path.clone())
            {
                return invalid(format!("{at}: redirect_to points at the URL itself"));
            }
            if matches!(u.behaviour, Behaviour::SoftRemoval { .. }) && u.kind != ContentKind::Image
            {
                return invalid(format!("{at}: soft_removal needs kind = \"image\""));
            }
        }
        for (host, n) in dns_hosts {
            if urls_per_host[&host] != 1 || n != 1 {
                return invalid(format!(
                    "host {host}: a DNS behaviour acts on the whole name, so its host must carry \
                     exactly one URL"
                ));
            }
        }
        Ok(())
    }
}

impl Behaviour {
    /// Whether the behaviour acts on the DNS name rather than on HTTP.
    pub fn affects_dns(&self) -> bool {
        matches!(
            self,
            Behaviour::DnsRemoval { .. }
                | Behaviour::DnsServfail { .. }
                | Behaviour::DnsNoAnswer { .. }
        )
    }

    fn validate(&self) -> Result<(), String> {
        let status_ok = |s: u16| (100..=599).contains(&s);
        match *self {
            Behaviour::Removed { status, .. } | Behaviour::AlreadyRemoved { status } => {
                if !(400..=599).contains(&status) {
                    return Err(format!("removal status {status} is not 4xx/5xx"));
                }
            }
            Behaviour::RedirectHome { status, .. } => {
                if !is_redirect(status) {
                    return Err(format!("redirect status {status} is not a redirect"));
                }
            }
            Behaviour::RedirectTo {
                ref host,
                ref path,
                status,
                ..
            } => {
                if !is_redirect(status) {
                    return Err(format!("redirect status {status} is not a redirect"));
                }
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return Err("redirect_to path must start with / and hold no spaces".into());
                }
                if host
                    .as_deref()
                    .is_some_and(|h| !valid_dns_name(h.trim_end_matches('.')))
                {
                    return Err("redirect_to host is not a valid DNS name".into());
                }
            }
            Behaviour::Flapping {
                down_at,
                up_at,
                status,
            } => {
                if down_at >= up_at {
                    return Err("flapping: down_at must be before up_at".into());
                }
                if !status_ok(status) {
                    return Err(format!("status {status} out of range"));
                }
            }
            Behaviour::DnsServfail { from, until } | Behaviour::DnsNoAnswer { from, until } => {
                if until.is_some_and(|u| u <= from) {
                    return Err("until must be after from".into());
                }
            }
            Behaviour::ServerErrors {
                from,
                until,
                status,
            } => {
                if until <= from {
                    return Err("until must be after from".into());
                }
                if !(500..=599).contains(&status) {
                    return Err(format!("server error status {status} is not 5xx"));
                }
            }
            Behaviour::RateLimited { from, until, .. } => {
                if until <= from {
                    return Err("until must be after from".into());
                }
            }
            Behaviour::SlowDrip { pause } => {
                if pause.is_zero() || pause > Duration::from_secs(60) {
                    return Err("slow_drip pause must be in (0, 60s]".into());
                }
            }
            Behaviour::Delay { pause } => {
                if pause.is_zero() || pause > Duration::from_secs(60) {
                    return Err("delay pause must be in (0, 60s]".into());
                }
            }
            Behaviour::HugeBody { size } => {
                if size == 0 {
                    return Err("huge_body size must be > 0".into());
                }
            }
            Behaviour::Never
            | Behaviour::DnsRemoval { .. }
            | Behaviour::SoftRemoval { .. }
            | Behaviour::BlackHole { .. } => {}
        }
        Ok(())
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Hoster {
    /// A hoster with `servers` addresses in `prefix` (e.g. "127.10.0.0/24").
    ///
    /// # Panics
    /// When `prefix` is not a valid IPv4 prefix: this is for code-built test
    /// scenarios, where that is a bug in the test.
    pub fn new(name: &str, asn: u32, org: &str, prefix: &str, servers: u32) -> Self {
        Hoster {
            name: name.to_owned(),
            asn,
            org: org.to_owned(),
            prefix: prefix
                .parse()
                .expect("hoster prefix must be an IPv4 prefix"),
            servers,
        }
    }

    /// The address of server `index` (0-based): the prefix's host addresses in order.
    pub fn server_addr(&self, index: u32) -> Ipv4Addr {
        let base = u32::from(self.prefix.network());
        Ipv4Addr::from(base + 1 + index)
    }

    /// Every server address of this hoster.
    pub fn server_addrs(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (0..self.servers).map(|i| self.server_addr(i))
    }
}

impl UrlSpec {
    /// A URL served over HTTP as an HTML page by `hoster`, never removed.
    pub fn new(host: &str, path: &str, hoster: &str) -> Self {
        UrlSpec {
            host: host.to_owned(),
            path: path.to_owned(),
            scheme: Scheme::Http,
            kind: ContentKind::Html,
            hoster: hoster.to_owned(),
            server: None,
            behaviour: Behaviour::Never,
            moves: None,
        }
    }

    pub fn https(mut self) -> Self {
        self.scheme = Scheme::Https;
        self
    }

    pub fn image(mut self) -> Self {
        self.kind = ContentKind::Image;
        self
    }

    pub fn kind(mut self, kind: ContentKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn server(mut self, index: u32) -> Self {
        self.server = Some(index);
        self
    }

    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Moves to hoster `to` at simulated time `at`.
    pub fn moves_to(mut self, to: &str, at: Duration) -> Self {
        self.moves = Some(Move {
            at,
            to: to.to_owned(),
            server: None,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Scenario {
        Scenario::new(60.0)
            .hoster(Hoster::new("Fast", 64500, "Fast B.V.", "127.10.0.0/24", 2))
            .hoster(Hoster::new("Slow", 64501, "Slow Ltd", "127.11.0.0/24", 1))
    }

    #[test]
    fn parses_toml_with_every_field() {
        let text = r#"
            zone = "sim.test."
            time_scale = 3600
            [[hosters]]
            name = "Fast"
            asn = 64500
            org = "Fast B.V."
            prefix = "127.10.0.0/24"
            servers = 3
            [[hosters]]
            name = "Other"
            asn = 64501
            org = "Other"
            prefix = "127.11.0.0/24"
            [[urls]]
            host = "a.fast"
            path = "/x.png"
            kind = "image"
            scheme = "https"
            hoster = "Fast"
            behaviour = { type = "removed", at = "3h", status = 410 }
            move = { at = "1h", to = "Other" }
        "#;
        let s = Scenario::from_toml(text).unwrap();
        assert_eq!(s.zone_name(), "sim.test");
        assert_eq!(s.full_host(&s.urls[0]), "a.fast.sim.test");
        assert_eq!(
            s.urls[0].behaviour,
            Behaviour::Removed {
                at: Duration::from_secs(3 * 3600),
                status: 410
            }
        );
        assert_eq!(s.urls[0].moves.as_ref().unwrap().to, "Other");
        assert_eq!(s.hosters[1].servers, 1);
    }

    #[test]
    fn rejects_unknown_fields_and_bare_numbers() {
        let unknown = "time_scale = 1\nspeed = 3\n";
        assert!(matches!(
            Scenario::from_toml(unknown),
            Err(ScenarioError::Parse(_))
        ));
        let text = r#"
            [[hosters]]
            name = "Fast"
            asn = 1
            org = "F"
            prefix = "127.10.0.0/24"
            [[urls]]
            host = "a"
            path = "/"
            hoster = "Fast"
            behaviour = { type = "removed", at = "3h", colour = "red" }
        "#;
        assert!(Scenario::from_toml(text).is_err());
        let bare = text
            .replace(", colour = \"red\"", "")
            .replace("\"3h\"", "\"3\"");
        assert!(Scenario::from_toml(&bare).is_err());
        let ok = text.replace(", colour = \"red\"", "");
        assert!(Scenario::from_toml(&ok).is_ok());
    }

    #[test]
    fn validation_names_the_problem() {
        let outside = Scenario::new(1.0).hoster(Hoster::new("X", 1, "X", "10.0.0.0/24", 1));
        let err = outside.validate().unwrap_err().to_string();
        assert!(err.contains("127.0.0.0/8"), "{err}");

        let overlap = base().hoster(Hoster::new("Y", 3, "Y", "127.10.0.0/25", 1));
        assert!(
            overlap
                .validate()
                .unwrap_err()
                .to_string()
                .contains("overlaps")
        );

        let unknown = base().url(UrlSpec::new("a", "/", "Nobody"));
        assert!(
            unknown
                .validate()
                .unwrap_err()
                .to_string()
                .contains("unknown hoster")
        );

        let shared_dns = base()
            .url(
                UrlSpec::new("a", "/1", "Fast").behaviour(Behaviour::DnsRemoval {
                    at: Duration::from_secs(1),
                }),
            )
            .url(UrlSpec::new("a", "/2", "Fast"));
        assert!(
            shared_dns
                .validate()
                .unwrap_err()
                .to_string()
                .contains("exactly one URL")
        );

        let split_host = base()
            .url(UrlSpec::new("a", "/1", "Fast"))
            .url(UrlSpec::new("a", "/2", "Slow"));
        assert!(split_host.validate().is_err());

        let flap = base().url(
            UrlSpec::new("a", "/", "Fast").behaviour(Behaviour::Flapping {
                down_at: Duration::from_secs(5),
                up_at: Duration::from_secs(5),
                status: 404,
            }),
        );
        assert!(flap.validate().is_err());

        assert!(Scenario::new(0.0).validate().is_err());
        assert!(
            base()
                .url(UrlSpec::new("a", "/", "Fast"))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn server_addresses_follow_the_prefix() {
        let h = Hoster::new("Fast", 64500, "Fast", "127.10.0.0/24", 3);
        let addrs: Vec<_> = h.server_addrs().collect();
        assert_eq!(
            addrs,
            ["127.10.0.1", "127.10.0.2", "127.10.0.3"].map(|a| a.parse::<Ipv4Addr>().unwrap())
        );
    }
}
