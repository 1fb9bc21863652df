//! The target policy (docs/OPERATIONS.md, "Worker"): which addresses a check may connect
//! to. Special-purpose ranges (loopback, private, link-local, CGNAT, multicast,
//! documentation, reserved, ...) are refused unless an explicit allow-list of
//! CIDRs admits them. Pure: no IO, no clock.
//!
//! IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`, RFC
//! 2765's SIIT prefix `::ffff:0:0/96`) and NAT64 well-known-prefix
//! (`64:ff9b::a.b.c.d`, RFC 6052) addresses are judged by the IPv4 address
//! they carry: a translator would connect to that address.
//! 6to4 (`2002::/16`) and Teredo (`2001::/32`, inside `2001::/23`) are refused
//! outright: they tunnel to an address we cannot vet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tdmon_core::hoster::embedded_v4;

/// Why an address is special, for the refusal message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    pub cidr: &'static str,
    pub name: &'static str,
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cidr, self.name)
    }
}

/// An address the policy refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is in {range}, which the target policy refuses")]
pub struct Refused {
    pub ip: IpAddr,
    pub range: SpecialRange,
}

const V4_RANGES: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
];

const V6_RANGES: &[(&str, &str)] = &[
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (Teredo included)"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
];

/// The special-purpose range an address falls in, if any. The broadcast
/// address is reported as such although `240.0.0.0/4` also holds it.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_v4(v4);
            }
            V6_RANGES
                .iter()
                .filter(|(cidr, _)| cidr.parse::<Ipv6Net>().is_ok_and(|net| net.contains(&v6)))
                // The most specific range names the address best.
                .max_by_key(|(cidr, _)| cidr.parse::<Ipv6Net>().map_or(0, |n| n.prefix_len()))
                .map(|&(cidr, name)| SpecialRange { cidr, name })
        }
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<SpecialRange> {
    V4_RANGES
        .iter()
        .filter(|(cidr, _)| cidr.parse::<Ipv4Net>().is_ok_and(|net| net.contains(&v4)))
        .max_by_key(|(cidr, _)| cidr.parse::<Ipv4Net>().map_or(0, |n| n.prefix_len()))
        .map(|&(cidr, name)| SpecialRange { cidr, name })
}

/// The policy: special-purpose ranges refused unless the allow-list admits them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    allow: Vec<IpNet>,
}

impl TargetPolicy {
    /// A policy admitting, besides every ordinary public address, the given
    /// CIDRs (which may be special-purpose: the simulated network's prefix).
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether a check may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let mapped = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let admitted = |addr: IpAddr| self.allow.iter().any(|net| net.contains(&addr));
        if admitted(ip) || mapped.is_some_and(admitted) {
            return Ok(());
        }
        match special_range(ip) {
            Some(range) => Err(Refused { ip, range }),
            None => Ok(()),
        }
    }

    /// The addresses the policy admits, in their original order.
    pub fn admitted<'a>(&'a self, ips: &'a [IpAddr]) -> impl Iterator<Item = IpAddr> + 'a {
        ips.iter().copied().filter(|&ip| self.check(ip).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn policy(allow: &[&str]) -> TargetPolicy {
        TargetPolicy::new(allow.iter().map(|c| c.parse().unwrap()).collect())
    }

    #[test]
    fn the_range_tables_parse() {
        for (cidr, _) in V4_RANGES {
            cidr.parse::<Ipv4Net>().unwrap();
        }
        for (cidr, _) in V6_RANGES {
            cidr.parse::<Ipv6Net>().unwrap();
        }
    }

    #[test]
    fn special_addresses_are_refused_by_default() {
        let p = TargetPolicy::default();
        for refused in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.10.0.5",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "2001::1",
            "2002:c0a8:0101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(p.check(ip(refused)).is_err(), "{refused} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let p = TargetPolicy::default();
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "193.0.6.139",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(p.check(ip(public)), Ok(()), "{public} should pass");
        }
    }

    #[test]
    fn the_allow_list_admits_only_its_ranges() {
        let p = policy(&["127.10.0.0/16"]);
        assert_eq!(p.check(ip("127.10.3.4")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.10.3.4")), Ok(()));
        assert_eq!(p.check(ip("::ffff:0:127.10.3.4")), Ok(()));
        assert_eq!(p.check(ip("64:ff9b::127.10.3.4")), Ok(()));
        for refused in ["127.0.0.1", "127.11.0.1", "10.0.0.1", "169.254.1.1", "::1"] {
            assert!(p.check(ip(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn refusals_name_the_range() {
        let err = TargetPolicy::default()
            .check(ip("169.254.169.254"))
            .unwrap_err();
        assert_eq!(err.range.cidr, "169.254.0.0/16");
        assert!(err.to_string().contains("link-local"), "{err}");
        let err = TargetPolicy::default()
            .check(ip("255.255.255.255"))
            .unwrap_err();
        assert_eq!(err.range.name, "broadcast");
        let err = TargetPolicy::default()
            .check(ip("::ffff:0:169.254.169.254"))
            .unwrap_err();
        assert_eq!(
            err.range.cidr, "169.254.0.0/16",
            "judged by the IPv4 it carries"
        );
        let err = TargetPolicy::default().check(ip("::1")).unwrap_err();
        assert_eq!(err.range.name, "loopback");
        let err = TargetPolicy::default()
            .check(ip("2001:db8::1"))
            .unwrap_err();
        assert_eq!(err.range.name, "documentation");
    }

    #[test]
    fn admitted_keeps_order_and_drops_refused() {
        let p = policy(&["127.10.0.0/16"]);
        let ips = [
            ip("127.0.0.1"),
            ip("127.10.0.2"),
            ip("8.8.8.8"),
            ip("10.0.0.1"),
        ];
        assert_eq!(
            p.admitted(&ips).collect::<Vec<_>>(),
            vec![ip("127.10.0.2"), ip("8.8.8.8")]
        );
    }
}
