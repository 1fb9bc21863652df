//! Who is named for an address: the hoster mapping. From an address, its ASN
//! and the ASN's organisation, the hoster is the most specific configured
//! CIDR override (resellers on another network's space), else the configured
//! merge of the ASN (several ASNs of one company), else the organisation.
//!
//! The worker applies it when it checks; the report applies it again to the
//! stored address and ASN, so that correcting a mapping re-ranks history
//! without checking anything again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HosterMapError {
    #[error("a hoster name must not be empty ({0})")]
    EmptyName(&'static str),
    #[error("ASN {asn} is merged into both {first:?} and {second:?}")]
    MergeConflict {
        asn: u32,
        first: String,
        second: String,
    },
    #[error("CIDR {0} is overridden twice")]
    DuplicateOverride(IpNet),
}

/// The configured mapping from addresses and ASNs to hosters, and the ASNs of
/// CDNs and reverse proxies (flagged, never blamed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HosterMap {
    merges: BTreeMap<u32, String>,
    /// Most specific first.
    overrides: Vec<(IpNet, String)>,
    cdn_asns: BTreeSet<u32>,
}

impl HosterMap {
    /// Validates the mapping: names not empty, no ASN merged into two
    /// hosters, no range overridden twice.
    pub fn new(
        merges: impl IntoIterator<Item = (u32, String)>,
        overrides: impl IntoIterator<Item = (IpNet, String)>,
        cdn_asns: impl IntoIterator<Item = u32>,
    ) -> Result<Self, HosterMapError> {
        let mut merged: BTreeMap<u32, String> = BTreeMap::new();
        for (asn, hoster) in merges {
            if hoster.trim().is_empty() {
                return Err(HosterMapError::EmptyName("merge"));
            }
            if let Some(first) = merged.get(&asn).filter(|first| **first != hoster) {
                return Err(HosterMapError::MergeConflict {
                    asn,
                    first: first.clone(),
                    second: hoster,
                });
            }
            merged.insert(asn, hoster);
        }
        let mut ranges: Vec<(IpNet, String)> = Vec::new();
        for (net, hoster) in overrides {
            if hoster.trim().is_empty() {
                return Err(HosterMapError::EmptyName("override"));
            }
            let net = net.trunc();
            if ranges.iter().any(|(seen, _)| *seen == net) {
                return Err(HosterMapError::DuplicateOverride(net));
            }
            ranges.push((net, hoster));
        }
        ranges.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Ok(Self {
            merges: merged,
            overrides: ranges,
            cdn_asns: cdn_asns.into_iter().collect(),
        })
    }

    /// The hoster named for an address with this ASN and organisation.
    /// Borrowed, not allocated: the report maps every address of every URL.
    pub fn hoster<'a>(
        &'a self,
        ip: Option<IpAddr>,
        asn: Option<u32>,
        as_org: Option<&'a str>,
    ) -> Option<&'a str> {
        let ip = ip.map(canonical);
        let overridden = ip.and_then(|ip| {
            self.overrides
                .iter()
                .find(|(net, _)| net.contains(&ip))
                .map(|(_, hoster)| hoster.as_str())
        });
        overridden
            .or_else(|| asn.and_then(|asn| self.merges.get(&asn).map(String::as_str)))
            .or(as_org)
    }

    /// The ASN belongs to a CDN or reverse proxy.
    pub fn is_cdn(&self, asn: Option<u32>) -> bool {
        asn.is_some_and(|asn| self.cdn_asns.contains(&asn))
    }

    /// The merges, by hoster: what the methodology prints.
    pub fn merges(&self) -> BTreeMap<&str, Vec<u32>> {
        let mut by_hoster: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (asn, hoster) in &self.merges {
            by_hoster.entry(hoster).or_default().push(*asn);
        }
        by_hoster
    }

    /// The overrides, most specific first.
    pub fn overrides(&self) -> &[(IpNet, String)] {
        &self.overrides
    }

    pub fn cdn_asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.cdn_asns.iter().copied()
    }
}

/// An IPv6 address that carries an IPv4 one is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The IPv4 address an IPv4-mapped, IPv4-translated or NAT64 (well-known
/// prefix) address carries.
pub fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    const TRANSLATED: [u16; 6] = [0, 0, 0, 0, 0xffff, 0];
    const NAT64: [u16; 6] = [0x64, 0xff9b, 0, 0, 0, 0];
    let prefix = &v6.segments()[..6];
    if prefix == TRANSLATED || prefix == NAT64 {
        let [.., a, b, c, d] = v6.octets();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> HosterMap {
        HosterMap::new(
            [(64501, "Alpha".into()), (64502, "Alpha".into())],
            [
                ("198.51.100.0/24".parse().unwrap(), "Reseller".into()),
                ("198.51.100.128/25".parse().unwrap(), "Sub".into()),
            ],
            [13335],
        )
        .unwrap()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn override_then_merge_then_organisation() {
        let map = map();
        assert_eq!(
            map.hoster(ip("198.51.100.200"), Some(64501), Some("Org")),
            Some("Sub")
        );
        assert_eq!(
            map.hoster(ip("198.51.100.5"), Some(64501), Some("Org")),
            Some("Reseller")
        );
        assert_eq!(
            map.hoster(ip("::ffff:198.51.100.5"), None, None),
            Some("Reseller"),
            "a mapped IPv6 address is its IPv4 address"
        );
        assert_eq!(
            map.hoster(ip("203.0.113.1"), Some(64502), Some("Alpha Cloud")),
            Some("Alpha")
        );
        assert_eq!(
            map.hoster(ip("203.0.113.1"), Some(64999), Some("Other")),
            Some("Other")
        );
        assert_eq!(map.hoster(None, None, None), None);
        assert_eq!(map.merges()["Alpha"], [64501, 64502]);
    }

    #[test]
    fn cdns_are_recognised_by_asn() {
        let map = map();
        assert!(map.is_cdn(Some(13335)));
        assert!(!map.is_cdn(Some(64501)));
        assert!(!map.is_cdn(None));
    }

    #[test]
    fn inconsistent_mappings_are_refused() {
        let conflict = HosterMap::new([(1, "A".into()), (1, "B".into())], [], []);
        assert!(matches!(
            conflict,
            Err(HosterMapError::MergeConflict { asn: 1, .. })
        ));
        assert_eq!(
            HosterMap::new([(1, " ".into())], [], []),
            Err(HosterMapError::EmptyName("merge"))
        );
        let twice = HosterMap::new(
            [],
            [
                ("10.0.0.0/8".parse().unwrap(), "A".into()),
                ("10.1.0.0/8".parse().unwrap(), "B".into()),
            ],
            [],
        );
        assert!(matches!(twice, Err(HosterMapError::DuplicateOverride(_))));
    }

    #[test]
    fn translated_and_nat64_addresses_carry_ipv4() {
        let v4: Ipv4Addr = "192.0.2.1".parse().unwrap();
        for text in [
            "::ffff:192.0.2.1",
            "::ffff:0:192.0.2.1",
            "64:ff9b::192.0.2.1",
        ] {
            assert_eq!(embedded_v4(text.parse().unwrap()), Some(v4), "{text}");
        }
        assert_eq!(embedded_v4("2001:db8::1".parse().unwrap()), None);
    }
}
