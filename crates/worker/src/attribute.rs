//! Attribution (DESIGN.md "Attribution"): an address's ASN and organisation
//! from a MaxMind-format ASN database, and the hoster of record after the
//! configured merges (several ASNs of one company) and CIDR overrides
//! (resellers on another network's space; the most specific range wins).
//! ASNs of CDNs and reverse proxies are flagged, not silently blamed.
//!
//! The database is read into memory once, when the [`Attributor`] is built.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use maxminddb::{Reader, geoip2};
use tdmon_core::message::Attribution;

use crate::config::AttributionSettings;

/// The ASN database could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the ASN database {path}")]
pub struct AsnDbError {
    path: PathBuf,
    #[source]
    source: maxminddb::MaxMindDbError,
}

/// Attributes addresses to ASNs and hosters.
pub struct Attributor {
    db: Option<Reader<Vec<u8>>>,
    merges: HashMap<u32, String>,
    /// Most specific first.
    overrides: Vec<(IpNet, String)>,
    cdn_asns: HashSet<u32>,
}

impl std::fmt::Debug for Attributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attributor")
            .field(
                "db",
                &self.db.as_ref().map(|db| &db.metadata().database_type),
            )
            .field("merges", &self.merges.len())
            .field("overrides", &self.overrides.len())
            .field("cdn_asns", &self.cdn_asns)
            .finish()
    }
}

impl Attributor {
    pub(crate) fn from_settings(settings: &AttributionSettings) -> Result<Self, AsnDbError> {
        let db = settings.asn_db.as_deref().map(load).transpose()?;
        Ok(Self::new(
            db,
            settings.merges.iter().cloned(),
            settings.overrides.iter().cloned(),
            settings.cdn_asns.iter().copied(),
        ))
    }

    /// An attributor over an already loaded database (or none).
    pub fn new(
        db: Option<Reader<Vec<u8>>>,
        merges: impl IntoIterator<Item = (u32, String)>,
        overrides: impl IntoIterator<Item = (IpNet, String)>,
        cdn_asns: impl IntoIterator<Item = u32>,
    ) -> Self {
        let mut overrides: Vec<(IpNet, String)> = overrides.into_iter().collect();
        overrides.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self {
            db,
            merges: merges.into_iter().collect(),
            overrides,
            cdn_asns: cdn_asns.into_iter().collect(),
        }
    }

    /// Who `ip` belongs to. An address the database does not know gets no
    /// ASN; a CIDR override names its hoster all the same.
    pub fn attribute(&self, ip: IpAddr) -> Attribution {
        let ip = canonical(ip);
        let (asn, as_org) = self.lookup(ip);
        let override_hoster = self
            .overrides
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, hoster)| hoster.clone());
        let merged = asn.and_then(|asn| self.merges.get(&asn).cloned());
        let hoster = override_hoster.or(merged).or_else(|| as_org.clone());
        Attribution {
            asn,
            as_org,
            hoster,
            cdn: asn.is_some_and(|asn| self.cdn_asns.contains(&asn)),
        }
    }

    fn lookup(&self, ip: IpAddr) -> (Option<u32>, Option<String>) {
        let Some(db) = &self.db else {
            return (None, None);
        };
        let record = db
            .lookup(ip)
            .and_then(|found| found.decode::<geoip2::Asn<'_>>());
        match record {
            Ok(Some(asn)) => (
                asn.autonomous_system_number,
                asn.autonomous_system_organization.map(str::to_owned),
            ),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!(%ip, error = %e, "ASN lookup failed");
                (None, None)
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn load(path: &Path) -> Result<Reader<Vec<u8>>, AsnDbError> {
    Reader::open_readfile(path).map_err(|source| AsnDbError {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tdmon_simnet::{Hoster, Scenario};

    /// A GeoLite2-ASN style database over the given networks, written the
    /// way the simulated network writes its own.
    pub(crate) fn asn_db(entries: &[(&str, u32, &str)]) -> Vec<u8> {
        let scenario = entries
            .iter()
            .fold(Scenario::new(1.0), |scenario, &(cidr, asn, org)| {
                scenario.hoster(Hoster::new(org, asn, org, cidr, 1))
            });
        tdmon_simnet::build_asn_db(&scenario).unwrap()
    }

    fn attributor() -> Attributor {
        let db = asn_db(&[
            ("127.10.1.0/24", 64501, "Alpha Hosting"),
            ("127.10.2.0/24", 64502, "Alpha Cloud"),
            ("127.10.3.0/24", 64503, "Beta Networks"),
            ("127.10.4.0/24", 13335, "Cloudflare, Inc."),
        ]);
        Attributor::new(
            Some(Reader::from_source(db).unwrap()),
            [(64501, "Alpha".to_owned()), (64502, "Alpha".to_owned())],
            [
                ("127.10.3.0/24".parse().unwrap(), "Reseller".to_owned()),
                (
                    "127.10.3.128/25".parse().unwrap(),
                    "Sub-reseller".to_owned(),
                ),
            ],
            [13335],
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn asn_and_org_come_from_the_database() {
        let a = attributor().attribute(ip("127.10.1.7"));
        assert_eq!(a.asn, Some(64501));
        assert_eq!(a.as_org.as_deref(), Some("Alpha Hosting"));
        assert!(!a.cdn);
    }

    #[test]
    fn merges_name_one_hoster_for_several_asns() {
        let attributor = attributor();
        assert_eq!(
            attributor.attribute(ip("127.10.1.1")).hoster.as_deref(),
            Some("Alpha")
        );
        let cloud = attributor.attribute(ip("127.10.2.1"));
        assert_eq!(cloud.hoster.as_deref(), Some("Alpha"));
        assert_eq!(cloud.as_org.as_deref(), Some("Alpha Cloud"));
    }

    #[test]
    fn the_most_specific_override_wins() {
        let attributor = attributor();
        let a = attributor.attribute(ip("127.10.3.5"));
        assert_eq!(a.hoster.as_deref(), Some("Reseller"));
        assert_eq!(a.asn, Some(64503), "the ASN is kept");
        let b = attributor.attribute(ip("127.10.3.200"));
        assert_eq!(b.hoster.as_deref(), Some("Sub-reseller"));
        let mapped = attributor.attribute(ip("::ffff:127.10.3.200"));
        assert_eq!(mapped.hoster.as_deref(), Some("Sub-reseller"));
    }

    #[test]
    fn cdns_are_flagged() {
        let a = attributor().attribute(ip("127.10.4.4"));
        assert!(a.cdn);
        assert_eq!(a.hoster.as_deref(), Some("Cloudflare, Inc."));
    }

    #[test]
    fn unknown_addresses_have_no_asn() {
        let a = attributor().attribute(ip("127.10.9.9"));
        assert_eq!(
            (a.asn, a.as_org, a.hoster, a.cdn),
            (None, None, None, false)
        );
        let none = Attributor::new(None, [], [("10.0.0.0/8".parse().unwrap(), "X".into())], []);
        assert_eq!(none.attribute(ip("10.1.1.1")).hoster.as_deref(), Some("X"));
        assert_eq!(none.attribute(ip("11.1.1.1")).hoster, None);
    }

    #[test]
    fn a_database_file_loads_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("asn.mmdb");
        std::fs::write(&path, asn_db(&[("127.10.1.0/24", 64501, "Alpha Hosting")])).unwrap();
        let settings = AttributionSettings {
            asn_db: Some(path),
            ..Default::default()
        };
        let a = Attributor::from_settings(&settings).unwrap();
        assert_eq!(a.attribute(ip("127.10.1.2")).asn, Some(64501));
        let missing = AttributionSettings {
            asn_db: Some(dir.path().join("missing.mmdb")),
            ..Default::default()
        };
        let err = Attributor::from_settings(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.mmdb"), "{err}");
    }
}
