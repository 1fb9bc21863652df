//! What a URL does at a given simulated time: pure functions of the scenario
//! and the time since the notice, shared by the DNS server, the HTTP servers
//! and the ground truth.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::scenario::{Behaviour, Scenario, UrlSpec};

/// The DNS server's answer for a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnsAction {
    Answer(Ipv4Addr),
    NxDomain,
    ServFail,
    /// Drop the query: the client times out.
    Drop,
}

/// What the HTTP server does with a request for the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpAction {
    /// 200 with the content.
    Serve,
    /// The content, one byte at a time with this real pause.
    SlowDrip(Duration),
    /// 200 with a streamed body of this many bytes.
    Huge(u64),
    /// The content, after this real pause.
    Delay(Duration),
    /// An error status without content.
    Status(u16),
    /// 200 with an HTML placeholder.
    Placeholder,
    /// A redirect to the host's home page.
    RedirectHome(u16),
    /// A redirect to the URL's `redirect_to` target.
    RedirectTo(u16),
    /// 429 with Retry-After in seconds.
    RateLimited(u64),
    /// Read the request and never answer.
    BlackHole,
}

fn within(t: Duration, from: Duration, until: Option<Duration>) -> bool {
    t >= from && until.is_none_or(|u| t < u)
}

/// The hoster and server index serving a URL's host at time `t`.
pub(crate) fn placement_at(url: &UrlSpec, t: Duration) -> (&str, Option<u32>) {
    match &url.moves {
        Some(m) if t >= m.at => (&m.to, m.server),
        _ => (&url.hoster, url.server),
    }
}

/// The server address of a URL's host at time `t`.
pub(crate) fn address_at(scenario: &Scenario, url: &UrlSpec, t: Duration) -> Ipv4Addr {
    let (hoster_name, server) = placement_at(url, t);
    let hoster = scenario
        .hoster_by_name(hoster_name)
        .expect("validated scenario names known hosters");
    let index = server.unwrap_or_else(|| stable_index(&scenario.full_host(url), hoster.servers));
    hoster.server_addr(index)
}

/// A server index picked from the host name, the same in every run.
fn stable_index(host: &str, servers: u32) -> u32 {
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in host.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % servers.max(1)
}

/// The DNS answer for a URL's host at time `t`.
pub(crate) fn dns_at(scenario: &Scenario, url: &UrlSpec, t: Duration) -> DnsAction {
    match url.behaviour {
        Behaviour::DnsRemoval { at } if t >= at => DnsAction::NxDomain,
        Behaviour::DnsServfail { from, until } if within(t, from, until) => DnsAction::ServFail,
        Behaviour::DnsNoAnswer { from, until } if within(t, from, until) => DnsAction::Drop,
        _ => DnsAction::Answer(address_at(scenario, url, t)),
    }
}

/// The HTTP behaviour of a URL at time `t`.
pub(crate) fn http_at(url: &UrlSpec, t: Duration) -> HttpAction {
    match url.behaviour {
        Behaviour::Removed { at, status } if t >= at => HttpAction::Status(status),
        Behaviour::AlreadyRemoved { status } => HttpAction::Status(status),
        Behaviour::SoftRemoval { at } if t >= at => HttpAction::Placeholder,
        Behaviour::RedirectHome { at, status } if t >= at => HttpAction::RedirectHome(status),
        Behaviour::RedirectTo { at, status, .. } if t >= at => HttpAction::RedirectTo(status),
        Behaviour::Flapping {
            down_at,
            up_at,
            status,
        } if within(t, down_at, Some(up_at)) => HttpAction::Status(status),
        Behaviour::BlackHole { from } if t >= from => HttpAction::BlackHole,
        Behaviour::SlowDrip { pause } => HttpAction::SlowDrip(pause),
        Behaviour::HugeBody { size } => HttpAction::Huge(size),
        Behaviour::Delay { pause } => HttpAction::Delay(pause),
        Behaviour::ServerErrors {
            from,
            until,
            status,
        } if within(t, from, Some(until)) => HttpAction::Status(status),
        Behaviour::RateLimited {
            from,
            until,
            retry_after,
        } if within(t, from, Some(until)) => HttpAction::RateLimited(retry_after.as_secs().max(1)),
        _ => HttpAction::Serve,
    }
}

/// When the content stops being served in the sense of docs/MEASUREMENT.md (offline),
/// and when it comes back, in simulated time since the notice. Inconclusive
/// disturbances (5xx, 429, SERVFAIL, no answer, black hole) are not takedowns.
/// A canonical redirect (scheme, `www.`, trailing slash) keeps the content
/// online.
pub(crate) fn down_and_back(
    scenario: &Scenario,
    url: &UrlSpec,
) -> (Option<Duration>, Option<Duration>) {
    match url.behaviour {
        Behaviour::RedirectTo { at, .. } if !scenario.is_canonical_redirect(url) => {
            (Some(at), None)
        }
        Behaviour::Removed { at, .. }
        | Behaviour::DnsRemoval { at }
        | Behaviour::SoftRemoval { at }
        | Behaviour::RedirectHome { at, .. } => (Some(at), None),
        Behaviour::AlreadyRemoved { .. } => (Some(Duration::ZERO), None),
        Behaviour::Flapping { down_at, up_at, .. } => (Some(down_at), Some(up_at)),
        Behaviour::Never
        | Behaviour::RedirectTo { .. }
        | Behaviour::DnsServfail { .. }
        | Behaviour::DnsNoAnswer { .. }
        | Behaviour::BlackHole { .. }
        | Behaviour::SlowDrip { .. }
        | Behaviour::HugeBody { .. }
        | Behaviour::Delay { .. }
        | Behaviour::ServerErrors { .. }
        | Behaviour::RateLimited { .. } => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Hoster;

    const H: Duration = Duration::from_secs(3600);

    fn scenario(url: UrlSpec) -> Scenario {
        Scenario::new(3600.0)
            .hoster(Hoster::new("A", 64500, "A", "127.10.0.0/24", 4))
            .hoster(Hoster::new("B", 64501, "B", "127.11.0.0/24", 1))
            .url(url)
    }

    #[test]
    fn removal_flapping_and_windows_follow_time() {
        let removed = UrlSpec::new("a", "/", "A").behaviour(Behaviour::Removed {
            at: 3 * H,
            status: 410,
        });
        assert_eq!(http_at(&removed, 2 * H), HttpAction::Serve);
        assert_eq!(http_at(&removed, 3 * H), HttpAction::Status(410));

        let flap = UrlSpec::new("a", "/", "A").behaviour(Behaviour::Flapping {
            down_at: H,
            up_at: 2 * H,
            status: 404,
        });
        assert_eq!(http_at(&flap, H / 2), HttpAction::Serve);
        assert_eq!(http_at(&flap, H), HttpAction::Status(404));
        assert_eq!(http_at(&flap, 2 * H), HttpAction::Serve);
        let s = scenario(flap.clone());
        assert_eq!(down_and_back(&s, &flap), (Some(H), Some(2 * H)));

        let limited = UrlSpec::new("a", "/", "A").behaviour(Behaviour::RateLimited {
            from: H,
            until: 2 * H,
            retry_after: Duration::from_secs(120),
        });
        assert_eq!(http_at(&limited, H), HttpAction::RateLimited(120));
        let s = scenario(limited.clone());
        assert_eq!(down_and_back(&s, &limited), (None, None));
    }

    #[test]
    fn dns_follows_moves_and_removals() {
        let moved = scenario(UrlSpec::new("a", "/", "A").moves_to("B", 2 * H));
        let url = &moved.urls[0];
        let before = dns_at(&moved, url, H);
        let DnsAction::Answer(ip) = before else {
            panic!("{before:?}")
        };
        assert!(ip.octets()[..3] == [127, 10, 0]);
        assert_eq!(
            dns_at(&moved, url, 2 * H),
            DnsAction::Answer("127.11.0.1".parse().unwrap())
        );

        let gone = scenario(UrlSpec::new("a", "/", "A").behaviour(Behaviour::DnsRemoval { at: H }));
        assert!(matches!(
            dns_at(&gone, &gone.urls[0], H / 2),
            DnsAction::Answer(_)
        ));
        assert_eq!(dns_at(&gone, &gone.urls[0], H), DnsAction::NxDomain);

        let fail = scenario(
            UrlSpec::new("a", "/", "A").behaviour(Behaviour::DnsNoAnswer {
                from: H,
                until: Some(2 * H),
            }),
        );
        assert_eq!(dns_at(&fail, &fail.urls[0], H), DnsAction::Drop);
        assert!(matches!(
            dns_at(&fail, &fail.urls[0], 2 * H),
            DnsAction::Answer(_)
        ));
    }

    #[test]
    fn only_a_non_canonical_redirect_is_a_takedown() {
        let redirect = |host: Option<&str>, path: &str| {
            UrlSpec::new("a", "/p", "A").behaviour(Behaviour::RedirectTo {
                at: H,
                host: host.map(str::to_owned),
                path: path.to_owned(),
                scheme: Some(crate::scenario::Scheme::Https),
                status: 301,
            })
        };
        for (host, path, down) in [
            (None, "/p/", None),
            (Some("www.a"), "/p", None),
            (Some("www.a.sim.test"), "/p", None),
            (None, "/", Some(H)),
            (Some("b"), "/p", Some(H)),
        ] {
            let url = redirect(host, path);
            let s = scenario(url.clone());
            assert_eq!(down_and_back(&s, &url).0, down, "{host:?} {path}");
        }
    }

    #[test]
    fn server_index_is_stable_per_host() {
        let s = scenario(UrlSpec::new("a", "/", "A"));
        let first = address_at(&s, &s.urls[0], Duration::ZERO);
        assert_eq!(first, address_at(&s, &s.urls[0], 5 * H));
        assert_eq!(stable_index("x.sim.test", 4), stable_index("x.sim.test", 4));
    }
}
