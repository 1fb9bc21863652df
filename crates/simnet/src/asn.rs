//! The ASN database for the scenario's prefixes, in MaxMind's GeoLite2-ASN
//! schema (`autonomous_system_number`, `autonomous_system_organization`),
//! written with the `mmdb-writer` crate.

use std::path::Path;

use ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

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

/// The database bytes: one record per hoster prefix.
pub fn build(scenario: &Scenario) -> Result<Vec<u8>, AsnDbError> {
    // An IPv6 tree (as GeoLite2 ships) with the IPv4 space aliased, so that
    // readers find 127.x addresses whichever way they ask.
    let mut writer = Writer::builder("GeoLite2-ASN")
        .ip_version(IpVersion::V6)
        .description(&[("en", "tdmon simulated network ASN database")])
        .build();
    for hoster in &scenario.hosters {
        writer.insert_value(
            IpNet::V4(hoster.prefix),
            Value::map([
                ("autonomous_system_number", Value::from(hoster.asn)),
                (
                    "autonomous_system_organization",
                    Value::from(hoster.org.as_str()),
                ),
            ]),
        )?;
    }
    Ok(writer.to_bytes()?)
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
