//! ASN databases in the record layouts of the products people use, written
//! with the `mmdb-writer` crate: the scenario's own database (GeoLite2-ASN
//! layout, one record per hoster prefix), and any list of networks in any of
//! the layouts of [`AsnDbLayout`], for tests of readers.

use std::path::Path;

use ipnet::IpNet;
use mmdb_writer::{IpVersion, Ipv4Aliasing, RecordSize, Value, Writer};

use crate::scenario::Scenario;

/// Why the database could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsnDbError {
    #[error("cannot build the ASN database")]
    Build(#[from] mmdb_writer::Error),
    #[error("cannot write the ASN database to {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The record layout of an ASN database product: its metadata
/// `database_type`, its field names and the MaxMind DB type of each value.
/// Every layout is an IPv6 tree holding IPv4 at `::/96`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AsnDbLayout {
    /// MaxMind GeoLite2-ASN (`GeoLite2-ASN.mmdb`): `database_type`
    /// "GeoLite2-ASN"; `autonomous_system_number` (uint32),
    /// `autonomous_system_organization` (utf8_string); 24-bit records; IPv4
    /// also reachable through the `::ffff:0:0/96`, `2002::/16` and Teredo
    /// aliases.
    #[default]
    GeoLite2Asn,
    /// DB-IP ASN Lite (`dbip-asn-lite-YYYY-MM.mmdb`), made to be read as
    /// GeoLite2-ASN: `database_type` "DBIP-ASN-Lite (compat=GeoLite2-ASN)"; the
    /// same two fields and types. (32-bit records here, to exercise another
    /// record size: readers must not depend on it.)
    DbIpAsnLite,
    /// ip-location-db asn (the converted file in `../shared/data/asn`, and
    /// files written by the PyPI `mmdb-writer`): `database_type`
    /// "GeoLite2-ASN" and its two fields, but each integer in the smallest
    /// type that holds it: uint16 below 65,536, uint32 above. No IPv4 aliases:
    /// `::ffff:a.b.c.d` finds nothing in the tree itself.
    IpLocationDbAsn,
    /// IPinfo's free ASN database (`asn.mmdb`): `database_type`
    /// "ipinfo asn.mmdb"; flat records of utf8_strings: `asn` ("AS13335"),
    /// `name` (the organisation), `domain`; 32-bit records.
    IpinfoAsn,
    /// IPinfo Lite (`ipinfo_lite.mmdb`), the free database that followed it:
    /// `database_type` "ipinfo ipinfo_lite.mmdb"; utf8_strings `asn`
    /// ("AS13335"), `as_name`, `as_domain`, `country_code`, `country`,
    /// `continent_code`, `continent`; 32-bit records.
    IpinfoLite,
}

impl AsnDbLayout {
    /// Every layout.
    pub const ALL: [AsnDbLayout; 5] = [
        AsnDbLayout::GeoLite2Asn,
        AsnDbLayout::DbIpAsnLite,
        AsnDbLayout::IpLocationDbAsn,
        AsnDbLayout::IpinfoAsn,
        AsnDbLayout::IpinfoLite,
    ];

    /// The metadata's `database_type`.
    pub const fn database_type(self) -> &'static str {
        match self {
            AsnDbLayout::GeoLite2Asn | AsnDbLayout::IpLocationDbAsn => "GeoLite2-ASN",
            AsnDbLayout::DbIpAsnLite => "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
            AsnDbLayout::IpinfoAsn => "ipinfo asn.mmdb",
            AsnDbLayout::IpinfoLite => "ipinfo ipinfo_lite.mmdb",
        }
    }

    fn writer(self) -> Writer {
        let (record_size, aliasing, description) = match self {
            AsnDbLayout::GeoLite2Asn => (
                RecordSize::Bits24,
                Ipv4Aliasing::Enabled,
                "GeoLite2 ASN database",
            ),
            AsnDbLayout::DbIpAsnLite => (
                RecordSize::Bits32,
                Ipv4Aliasing::Enabled,
                "ASN Lite database by DB-IP",
            ),
            AsnDbLayout::IpLocationDbAsn => (
                RecordSize::Bits24,
                Ipv4Aliasing::Disabled,
                "IP to ASN from ip-location-db asn",
            ),
            AsnDbLayout::IpinfoAsn => {
                (RecordSize::Bits32, Ipv4Aliasing::Enabled, "ipinfo asn.mmdb")
            }
            AsnDbLayout::IpinfoLite => (
                RecordSize::Bits32,
                Ipv4Aliasing::Enabled,
                "ipinfo ipinfo_lite.mmdb",
            ),
        };
        Writer::builder(self.database_type())
            .ip_version(IpVersion::V6)
            .record_size(record_size)
            .ipv4_aliasing(aliasing)
            .languages(["en"])
            .description(&[("en", description)])
            .build()
    }

    fn record(self, entry: &AsnEntry) -> Value {
        let org = Value::from(entry.org.as_str());
        match self {
            AsnDbLayout::GeoLite2Asn | AsnDbLayout::DbIpAsnLite => Value::map([
                ("autonomous_system_number", Value::U32(entry.asn)),
                ("autonomous_system_organization", org),
            ]),
            AsnDbLayout::IpLocationDbAsn => {
                let asn = u16::try_from(entry.asn).map_or(Value::U32(entry.asn), Value::U16);
                Value::map([
                    ("autonomous_system_number", asn),
                    ("autonomous_system_organization", org),
                ])
            }
            AsnDbLayout::IpinfoAsn => Value::map([
                ("asn", Value::from(format!("AS{}", entry.asn))),
                ("name", org),
                ("domain", Value::from(domain_of(&entry.org))),
            ]),
            AsnDbLayout::IpinfoLite => Value::map([
                ("asn", Value::from(format!("AS{}", entry.asn))),
                ("as_name", org),
                ("as_domain", Value::from(domain_of(&entry.org))),
                ("country_code", Value::from("NL")),
                ("country", Value::from("Netherlands")),
                ("continent_code", Value::from("EU")),
                ("continent", Value::from("Europe")),
            ]),
        }
    }
}

/// A made-up domain for an organisation ("Alpha Hosting B.V." ->
/// "alpha-hosting-b-v.example"), so that the IPinfo layouts carry the field.
fn domain_of(org: &str) -> String {
    let words: Vec<String> = org
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("{}.example", words.join("-"))
}

/// One network of an ASN database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsnEntry {
    pub network: IpNet,
    pub asn: u32,
    pub org: String,
}

impl AsnEntry {
    /// # Panics
    /// If `network` is not a CIDR: entries are written by tests and scenarios.
    pub fn new(network: &str, asn: u32, org: &str) -> Self {
        Self {
            network: network
                .parse()
                .unwrap_or_else(|_| panic!("{network:?} is not a CIDR")),
            asn,
            org: org.to_owned(),
        }
    }
}

/// The bytes of a database in `layout` holding `entries` (a later entry wins
/// where networks overlap).
pub fn build_entries(layout: AsnDbLayout, entries: &[AsnEntry]) -> Result<Vec<u8>, AsnDbError> {
    let mut writer = layout.writer();
    for entry in entries {
        writer.insert_value(entry.network, layout.record(entry))?;
    }
    Ok(writer.to_bytes()?)
}

/// The scenario's database bytes: one GeoLite2-ASN record per hoster prefix.
pub fn build(scenario: &Scenario) -> Result<Vec<u8>, AsnDbError> {
    let entries: Vec<AsnEntry> = scenario
        .hosters
        .iter()
        .map(|hoster| AsnEntry {
            network: IpNet::V4(hoster.prefix),
            asn: hoster.asn,
            org: hoster.org.clone(),
        })
        .collect();
    build_entries(AsnDbLayout::GeoLite2Asn, &entries)
}

/// Builds the database and writes it to `path`, creating its directory.
pub fn write(scenario: &Scenario, path: &Path) -> Result<(), AsnDbError> {
    let bytes = build(scenario)?;
    let io = |source| AsnDbError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_made_from_the_organisation() {
        assert_eq!(domain_of("Alpha Hosting B.V."), "alpha-hosting-b-v.example");
        assert_eq!(domain_of("Cloudflare, Inc."), "cloudflare-inc.example");
    }
}
