//! Attribution (docs/MEASUREMENT.md "Attribution"): an address's ASN and
//! organisation from a MaxMind-format ASN database, and the hoster of record
//! after the configured merges (several ASNs of one company) and CIDR
//! overrides (resellers on another network's space; the most specific range
//! wins). ASNs of CDNs and reverse proxies are flagged, not silently blamed.
//!
//! The database is read into memory when it is opened, and its record layout
//! is learnt then from the fields of its first records ([`LAYOUTS`]): a
//! database without an ASN field tdmon knows is refused at start. When its
//! file is replaced (or on request: SIGHUP), it is read again and swapped in
//! whole between two lookups ([`Attributor::reload`]); a new file that does
//! not open leaves the one in use in place. Integers
//! of every width a writer may choose are read; a record that still does not
//! decode is counted ([`Attributor::undecodable_records`]), never dropped
//! silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Visitor};
use tdmon_core::hoster::{HosterMap, canonical};
use tdmon_core::message::Attribution;

use crate::config::WorkerSettings;

/// Where an ASN database keeps a network's ASN and organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The layout's name, after the product that defined it.
    pub name: &'static str,
    /// The field holding the ASN: an unsigned integer of any width (uint16,
    /// uint32, uint64, uint128), a non-negative int32, or a string "AS13335"
    /// (or "13335").
    pub asn_field: &'static str,
    /// The field holding the organisation's name (a string).
    pub org_field: &'static str,
}

/// The layouts tdmon reads, in the order they are tried. Other fields of a
/// record (IPinfo's `domain`, `country`, ...) are ignored.
pub const LAYOUTS: [Layout; 3] = [
    // GeoLite2-ASN, and the databases written to be read like it: DB-IP ASN
    // Lite, ip-location-db asn (integers in the smallest type that holds
    // them), GeoIP2-ISP.
    Layout {
        name: "GeoLite2-ASN",
        asn_field: "autonomous_system_number",
        org_field: "autonomous_system_organization",
    },
    // IPinfo's free ASN database (asn.mmdb): `asn` "AS13335", `name`, `domain`.
    Layout {
        name: "IPinfo ASN",
        asn_field: "asn",
        org_field: "name",
    },
    // IPinfo Lite (ipinfo_lite.mmdb), and IPinfo's country_asn.mmdb: `asn`
    // "AS13335", `as_name`, `as_domain`, country fields.
    Layout {
        name: "IPinfo Lite",
        asn_field: "asn",
        org_field: "as_name",
    },
];

/// How many records are read at start to learn the layout; every one of them
/// must decode in it.
const PROBED_RECORDS: usize = 16;

/// The CDN and reverse-proxy networks flagged by default
/// (`worker.attribution.cdn_asns`). What is in and what was left out, and
/// why, is in docs/MEASUREMENT.md "Attribution": in short, networks that
/// overwhelmingly front other parties' origins, and not the CDNs that share
/// their ASN with an ordinary hosting business (CloudFront on AWS's 16509).
pub const DEFAULT_CDN_ASNS: [(u32, &str); 42] = [
    (13335, "Cloudflare"),
    (14789, "Cloudflare"),
    (132892, "Cloudflare"),
    (139242, "Cloudflare"),
    (202623, "Cloudflare"),
    (203898, "Cloudflare"),
    (209242, "Cloudflare"),
    (394536, "Cloudflare"),
    (395747, "Cloudflare"),
    (400095, "Cloudflare"),
    (12222, "Akamai"),
    (16625, "Akamai"),
    (17204, "Akamai"),
    (18680, "Akamai"),
    (18717, "Akamai"),
    (20940, "Akamai"),
    (21342, "Akamai"),
    (24319, "Akamai"),
    (26008, "Akamai"),
    (31108, "Akamai"),
    (31984, "Akamai"),
    (32787, "Akamai (Prolexic)"),
    (33047, "Akamai"),
    (33905, "Akamai"),
    (34164, "Akamai"),
    (35204, "Akamai"),
    (35994, "Akamai"),
    (36029, "Akamai"),
    (43639, "Akamai"),
    (49846, "Akamai"),
    (55770, "Akamai"),
    (200005, "Akamai"),
    (213120, "Akamai"),
    (393234, "Akamai"),
    (393560, "Akamai"),
    (54113, "Fastly"),
    (19551, "Imperva Incapsula"),
    (30148, "Sucuri"),
    (30081, "CacheFly"),
    (200325, "Bunny CDN"),
    (200449, "Qrator Labs"),
    (209671, "Qrator Labs"),
];

/// The ASN database cannot be used. Each names the file; those about its
/// content also name what was found in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsnDbError {
    #[error("cannot read the ASN database {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ASN database {path} is not a MaxMind DB file")]
    Format {
        path: PathBuf,
        #[source]
        source: MaxMindDbError,
    },
    #[error("the ASN database {path} (database_type {database_type:?}) holds no network")]
    Empty {
        path: PathBuf,
        database_type: String,
    },
    #[error(
        "the ASN database {path} has no ASN field tdmon knows: database_type {database_type:?}, \
         record fields {fields:?}; tdmon reads {}",
        known_layouts()
    )]
    UnknownLayout {
        path: PathBuf,
        database_type: String,
        fields: Vec<String>,
    },
    #[error(
        "the ASN database {path} (database_type {database_type:?}, {layout} layout): \
         the record of {network} does not decode"
    )]
    Record {
        path: PathBuf,
        database_type: String,
        layout: &'static str,
        network: String,
        #[source]
        source: Box<MaxMindDbError>,
    },
}

fn known_layouts() -> String {
    LAYOUTS
        .iter()
        .map(|l| format!("{} ({}, {})", l.name, l.asn_field, l.org_field))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An opened ASN database and the layout of its records.
pub struct AsnDb {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
    layout: &'static Layout,
}

impl fmt::Debug for AsnDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsnDb")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .field("layout", &self.layout.name)
            .finish()
    }
}

/// What one record says: an ASN, an organisation, either, or neither.
type Record = (Option<u32>, Option<String>);

impl AsnDb {
    /// Reads the database at `path` into memory and learns its layout.
    pub fn open(path: &Path) -> Result<Self, AsnDbError> {
        let bytes = std::fs::read(path).map_err(|source| AsnDbError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// The database in `bytes`, read from `path` (which errors name).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, AsnDbError> {
        let format = |source| AsnDbError::Format {
            path: path.to_owned(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(format)?;
        let database_type = reader.metadata().database_type.clone();
        let probed = || -> Result<Vec<LookupResult<'_, Vec<u8>>>, MaxMindDbError> {
            reader
                .networks(WithinOptions::default())?
                .take(PROBED_RECORDS)
                .collect()
        };
        let probed = probed().map_err(format)?;
        if probed.is_empty() {
            return Err(AsnDbError::Empty {
                path: path.to_owned(),
                database_type,
            });
        }
        let record_error =
            |found: &LookupResult<'_, Vec<u8>>, layout: &Layout, source| AsnDbError::Record {
                path: path.to_owned(),
                database_type: database_type.clone(),
                layout: layout.name,
                network: found
                    .network()
                    .map_or_else(|_| "?".to_owned(), |net| net.to_string()),
                source: Box::new(source),
            };

        let mut fields = BTreeSet::new();
        for found in &probed {
            // A record that is not a map has no field to offer.
            if let Ok(Some(record)) = found.decode::<BTreeMap<String, IgnoredAny>>() {
                fields.extend(record.into_keys());
            }
        }
        let Some(layout) = detect(&fields) else {
            return Err(AsnDbError::UnknownLayout {
                path: path.to_owned(),
                database_type,
                fields: fields.into_iter().collect(),
            });
        };
        for found in &probed {
            decode(found, layout).map_err(|source| record_error(found, layout, source))?;
        }
        drop(probed); // it borrows `reader`
        Ok(Self {
            reader,
            path: path.to_owned(),
            layout,
        })
    }

    /// The metadata's `database_type` ("GeoLite2-ASN", "ipinfo asn.mmdb", ...).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built (its metadata's `build_epoch`, Unix seconds).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The layout learnt from the records.
    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    /// The file the database was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the database says about `ip`; an address it does not cover
    /// (outside every network, or IPv6 in an IPv4-only database) is `(None,
    /// None)`. Errors are records (or tree nodes) that do not decode.
    fn lookup(&self, ip: IpAddr) -> Result<Record, MaxMindDbError> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return Ok((None, None));
        }
        let found = self.reader.lookup(ip)?;
        if !found.has_data() {
            return Ok((None, None));
        }
        decode(&found, self.layout)
    }
}

/// The first layout whose ASN and organisation fields both occur, else the
/// first whose ASN field does.
fn detect(fields: &BTreeSet<String>) -> Option<&'static Layout> {
    let has = |field: &str| fields.contains(field);
    LAYOUTS
        .iter()
        .find(|l| has(l.asn_field) && has(l.org_field))
        .or_else(|| LAYOUTS.iter().find(|l| has(l.asn_field)))
}

/// One record's ASN and organisation in `layout`. A missing field is `None`,
/// and so is an empty organisation.
fn decode(found: &LookupResult<'_, Vec<u8>>, layout: &Layout) -> Result<Record, MaxMindDbError> {
    let asn = found
        .decode_path::<AsnNumber>(&[PathElement::Key(layout.asn_field)])?
        .map(|AsnNumber(asn)| asn);
    let org = found
        .decode_path::<&str>(&[PathElement::Key(layout.org_field)])?
        .filter(|org| !org.is_empty())
        .map(str::to_owned);
    Ok((asn, org))
}

/// An ASN however the database wrote it: an integer of any width or sign
/// that holds a 32-bit ASN, or a string "AS13335" / "13335".
struct AsnNumber(u32);

impl<'de> Deserialize<'de> for AsnNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AsnVisitor)
    }
}

struct AsnVisitor;

impl AsnVisitor {
    fn number<E: de::Error, T: Copy + fmt::Display>(value: T) -> Result<AsnNumber, E>
    where
        u32: TryFrom<T>,
    {
        u32::try_from(value)
            .map(AsnNumber)
            .map_err(|_| E::custom(format!("{value} is not an ASN (0 to 4294967295)")))
    }
}

impl Visitor<'_> for AsnVisitor {
    type Value = AsnNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ASN: an integer, or a string such as \"AS13335\"")
    }

    // uint16 and uint32 arrive here through serde's default widening.
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<AsnNumber, E> {
        Self::number(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<AsnNumber, E> {
        Self::number(value)
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<AsnNumber, E> {
        Self::number(value)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<AsnNumber, E> {
        let digits = text
            .strip_prefix("AS")
            .or_else(|| text.strip_prefix("as"))
            .unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits
                .parse()
                .map(AsnNumber)
                .map_err(|_| E::custom(format!("{text:?} is not an ASN (0 to 4294967295)")))
        } else {
            Err(E::invalid_value(de::Unexpected::Str(text), &self))
        }
    }
}

/// Attributes addresses to ASNs and hosters.
pub struct Attributor {
    /// Swapped whole on reload: a lookup holds the database it started with.
    db: RwLock<Option<Arc<AsnDb>>>,
    /// The file `db` came from, and what it looked like when last read.
    source: Option<Source>,
    hosters: HosterMap,
    /// Lookups whose record did not decode, since the start.
    undecodable: AtomicU64,
}

/// The database file, and its stamp when it was last read (whether that
/// read worked or not: a broken file is reported once, not at every look).
#[derive(Debug)]
struct Source {
    path: PathBuf,
    read: Mutex<Option<FileStamp>>,
}

/// Enough of a file's metadata to see that it was replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of the file `path` names (a symbolic link is followed, so
    /// pointing it at another file counts as a change).
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// What [`Attributor::reload`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reload {
    /// No database is configured.
    NoDatabase,
    /// The file is as it was when last read.
    Unchanged,
    /// The file was read again and is in use from now on.
    Replaced,
    /// The file could not be used; the database in use stays.
    Kept(AsnDbError),
}

impl fmt::Debug for Attributor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributor")
            .field("db", &self.db)
            .field("hosters", &self.hosters)
            .field("undecodable", &self.undecodable)
            .finish()
    }
}

impl Attributor {
    /// The attributor the worker settings describe: their ASN database
    /// (opened and checked now), merges, overrides and CDN ASNs.
    pub fn from_settings(settings: &WorkerSettings) -> Result<Self, AsnDbError> {
        let settings = &settings.attribution;
        let db = settings.asn_db.as_deref().map(AsnDb::open).transpose()?;
        if let Some(db) = &db {
            log_loaded(db, "ASN database loaded");
        }
        Ok(Self::new(db, settings.hosters.clone()))
    }

    /// An attributor over an already opened database (or none) and a
    /// hoster mapping; a reload reads the file the database was opened from.
    pub fn new(db: Option<AsnDb>, hosters: HosterMap) -> Self {
        let source = db.as_ref().map(|db| Source {
            path: db.path().to_owned(),
            read: Mutex::new(FileStamp::of(db.path()).ok()),
        });
        Self {
            db: RwLock::new(db.map(Arc::new)),
            source,
            hosters,
            undecodable: AtomicU64::new(0),
        }
    }

    /// Who `ip` belongs to. An address the database does not know gets no
    /// ASN; a CIDR override names its hoster all the same.
    pub fn attribute(&self, ip: IpAddr) -> Attribution {
        let ip = canonical(ip);
        let (asn, as_org) = self.lookup(ip);
        Attribution {
            hoster: self
                .hosters
                .hoster(Some(ip), asn, as_org.as_deref())
                .map(str::to_owned),
            cdn: self.hosters.is_cdn(asn),
            asn,
            as_org,
        }
    }

    /// How many lookups since the start found a record that did not decode
    /// (and so attributed nothing from the database).
    pub fn undecodable_records(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Reads the database file again when it differs from the one last read
    /// (replaced by a rename, rewritten, or a link pointed elsewhere), or in
    /// any case with `force`; the new database serves every lookup that
    /// starts after it is read. A file that cannot be used (missing, half
    /// written, another layout) is reported and the database in use stays,
    /// so no check ever goes unattributed for it. Blocking: it reads the
    /// whole file.
    pub fn reload(&self, force: bool) -> Reload {
        let Some(source) = &self.source else {
            return Reload::NoDatabase;
        };
        let mut read = source.read.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = FileStamp::of(&source.path).ok();
        if !force && stamp.is_some() && stamp == *read {
            return Reload::Unchanged;
        }
        *read = stamp;
        match AsnDb::open(&source.path) {
            Ok(db) => {
                log_loaded(&db, "ASN database reloaded");
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                Reload::Replaced
            }
            Err(error) => {
                tracing::warn!(
                    error = %tdmon_core::error_chain(&error),
                    "the ASN database file changed but cannot be used; the one loaded before stays in use"
                );
                Reload::Kept(error)
            }
        }
    }

    fn lookup(&self, ip: IpAddr) -> Record {
        let db = self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(db) = db else {
            return (None, None);
        };
        db.lookup(ip).unwrap_or_else(|error| {
            let count = self.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
            // The 1st, 2nd, 4th, 8th, ... : a broken database cannot flood the log.
            if count.is_power_of_two() {
                tracing::warn!(
                    %ip,
                    %error,
                    undecodable_records = count,
                    database = %db.path().display(),
                    "an ASN database record does not decode; the address gets no ASN"
                );
            }
            (None, None)
        })
    }
}

fn log_loaded(db: &AsnDb, what: &'static str) {
    tracing::info!(
        path = %db.path().display(),
        database_type = db.database_type(),
        layout = db.layout().name,
        build_epoch = db.build_epoch(),
        "{what}"
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use ipnet::IpNet;

    use super::*;
    use tdmon_simnet::{AsnDbLayout, AsnEntry, build_asn_db_entries};

    /// A GeoLite2-ASN database over the given networks.
    pub(crate) fn asn_db(entries: &[(&str, u32, &str)]) -> AsnDb {
        layout_db(AsnDbLayout::GeoLite2Asn, entries)
    }

    fn layout_db(layout: AsnDbLayout, entries: &[(&str, u32, &str)]) -> AsnDb {
        let entries: Vec<AsnEntry> = entries
            .iter()
            .map(|&(net, asn, org)| AsnEntry::new(net, asn, org))
            .collect();
        let bytes = build_asn_db_entries(layout, &entries).unwrap();
        AsnDb::from_bytes(Path::new("test.mmdb"), bytes).unwrap()
    }

    fn attributor() -> Attributor {
        let db = asn_db(&[
            ("127.10.1.0/24", 64501, "Alpha Hosting"),
            ("127.10.2.0/24", 64502, "Alpha Cloud"),
            ("127.10.3.0/24", 64503, "Beta Networks"),
            ("127.10.4.0/24", 13335, "Cloudflare, Inc."),
        ]);
        let hosters = HosterMap::new(
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
        .unwrap();
        Attributor::new(Some(db), hosters)
    }

    fn hosters(
        merges: impl IntoIterator<Item = (u32, String)>,
        overrides: impl IntoIterator<Item = (IpNet, String)>,
        cdn_asns: impl IntoIterator<Item = u32>,
    ) -> HosterMap {
        HosterMap::new(merges, overrides, cdn_asns).unwrap()
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
        let attributor = attributor();
        let a = attributor.attribute(ip("127.10.9.9"));
        assert_eq!(
            (a.asn, a.as_org, a.hoster, a.cdn),
            (None, None, None, false)
        );
        assert_eq!(attributor.undecodable_records(), 0, "a miss is no failure");
        let none = Attributor::new(
            None,
            hosters([], [("10.0.0.0/8".parse().unwrap(), "X".into())], []),
        );
        assert_eq!(none.attribute(ip("10.1.1.1")).hoster.as_deref(), Some("X"));
        assert_eq!(none.attribute(ip("11.1.1.1")).hoster, None);
    }

    /// The networks of the product-layout tests: small and large ASNs (a
    /// uint16 and a uint32 in ip-location-db), IPv4 and IPv6.
    const PRODUCT_ENTRIES: [(&str, u32, &str); 4] = [
        ("1.1.1.0/24", 13335, "Cloudflare, Inc."),
        ("51.38.0.0/16", 16276, "OVH SAS"),
        ("5.104.136.0/21", 205_000, "Large ASN B.V."),
        ("2a01:4f8::/32", 24940, "Hetzner Online GmbH"),
    ];

    #[test]
    fn every_product_layout_is_read() {
        for layout in AsnDbLayout::ALL {
            let db = layout_db(layout, &PRODUCT_ENTRIES);
            let expected = match layout {
                AsnDbLayout::IpinfoAsn => "IPinfo ASN",
                AsnDbLayout::IpinfoLite => "IPinfo Lite",
                _ => "GeoLite2-ASN",
            };
            assert_eq!(db.layout().name, expected, "{layout:?}");
            assert_eq!(db.database_type(), layout.database_type());
            let attributor = Attributor::new(Some(db), hosters([], [], [13335]));
            for (addr, asn, org) in [
                ("1.1.1.1", 13335, "Cloudflare, Inc."),
                ("::ffff:1.1.1.1", 13335, "Cloudflare, Inc."),
                ("::ffff:0:1.1.1.1", 13335, "Cloudflare, Inc."),
                ("64:ff9b::1.1.1.1", 13335, "Cloudflare, Inc."),
                ("51.38.1.1", 16276, "OVH SAS"),
                ("5.104.136.5", 205_000, "Large ASN B.V."),
                ("2a01:4f8::1", 24940, "Hetzner Online GmbH"),
            ] {
                let a = attributor.attribute(ip(addr));
                assert_eq!(a.asn, Some(asn), "{layout:?} {addr}");
                assert_eq!(a.as_org.as_deref(), Some(org), "{layout:?} {addr}");
                assert_eq!(a.hoster.as_deref(), Some(org), "{layout:?} {addr}");
                assert_eq!(a.cdn, asn == 13335, "{layout:?} {addr}");
            }
            assert_eq!(attributor.attribute(ip("9.9.9.9")).asn, None);
            assert_eq!(attributor.attribute(ip("2001:db8::1")).asn, None);
            assert_eq!(attributor.undecodable_records(), 0, "{layout:?}");
        }
    }

    /// A database written with the given records, through the same writer
    /// as the product layouts, for value types no product uses.
    fn raw_db(database_type: &str, records: Vec<(&str, mmdb_writer::Value)>) -> Vec<u8> {
        let mut writer = mmdb_writer::Writer::new(database_type);
        for (net, value) in records {
            writer
                .insert_value(net.parse::<IpNet>().unwrap(), value)
                .unwrap();
        }
        writer.to_bytes().unwrap()
    }

    fn geolite(asn: mmdb_writer::Value) -> mmdb_writer::Value {
        mmdb_writer::Value::map([
            ("autonomous_system_number", asn),
            (
                "autonomous_system_organization",
                mmdb_writer::Value::from("Org"),
            ),
        ])
    }

    #[test]
    fn every_integer_encoding_of_an_asn_is_read() {
        use mmdb_writer::Value;
        let bytes = raw_db(
            "Custom-ASN",
            vec![
                ("10.0.1.0/24", geolite(Value::U16(7))),
                ("10.0.2.0/24", geolite(Value::U32(4_294_967_295))),
                ("10.0.3.0/24", geolite(Value::U64(64_512))),
                ("10.0.4.0/24", geolite(Value::U128(65_536))),
                ("10.0.5.0/24", geolite(Value::I32(3_320))),
                ("10.0.6.0/24", geolite(Value::from("AS1299"))),
                ("10.0.7.0/24", geolite(Value::from("174"))),
            ],
        );
        let db = AsnDb::from_bytes(Path::new("custom.mmdb"), bytes).unwrap();
        let attributor = Attributor::new(Some(db), HosterMap::default());
        for (addr, asn) in [
            ("10.0.1.1", 7),
            ("10.0.2.1", 4_294_967_295),
            ("10.0.3.1", 64_512),
            ("10.0.4.1", 65_536),
            ("10.0.5.1", 3_320),
            ("10.0.6.1", 1_299),
            ("10.0.7.1", 174),
        ] {
            assert_eq!(attributor.attribute(ip(addr)).asn, Some(asn), "{addr}");
        }
        assert_eq!(attributor.undecodable_records(), 0);
    }

    #[test]
    fn a_record_that_does_not_decode_is_counted() {
        use mmdb_writer::Value;
        // Enough good records first (distinct, or the writer merges them)
        // that the bad ones are not among those probed at start.
        let mut records: Vec<(String, Value)> = (0..PROBED_RECORDS)
            .map(|i| {
                let asn = 64_500 + u32::try_from(i).unwrap();
                (format!("10.0.{i}.0/24"), geolite(Value::U32(asn)))
            })
            .collect();
        records.push(("10.1.0.0/24".into(), geolite(Value::I32(-1))));
        records.push(("10.1.1.0/24".into(), geolite(Value::U64(1 << 32))));
        records.push(("10.1.2.0/24".into(), geolite(Value::from("ASx"))));
        records.push(("10.1.3.0/24".into(), geolite(Value::Double(1.5))));
        let bytes = raw_db(
            "GeoLite2-ASN",
            records
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect(),
        );
        let db = AsnDb::from_bytes(Path::new("broken.mmdb"), bytes).unwrap();
        let attributor = Attributor::new(Some(db), HosterMap::default());
        assert_eq!(attributor.attribute(ip("10.0.3.3")).asn, Some(64_503));
        for bad in ["10.1.0.1", "10.1.1.1", "10.1.2.1", "10.1.3.1"] {
            let a = attributor.attribute(ip(bad));
            assert_eq!((a.asn, a.as_org), (None, None), "{bad}");
        }
        assert_eq!(attributor.undecodable_records(), 4);
    }

    #[test]
    fn an_unusable_database_is_refused_naming_file_and_layout() {
        use mmdb_writer::Value;
        let city = raw_db(
            "GeoLite2-City",
            vec![(
                "10.0.0.0/8",
                Value::map([
                    (
                        "city",
                        Value::map([("names", Value::map([("en", "Amsterdam")]))]),
                    ),
                    ("country", Value::map([("iso_code", "NL")])),
                ]),
            )],
        );
        let err = AsnDb::from_bytes(Path::new("/data/city.mmdb"), city)
            .unwrap_err()
            .to_string();
        for part in [
            "/data/city.mmdb",
            "\"GeoLite2-City\"",
            "\"city\"",
            "\"country\"",
        ] {
            assert!(err.contains(part), "{err} should name {part}");
        }
        assert!(err.contains("autonomous_system_number"), "{err}");

        let empty = raw_db("GeoLite2-ASN", vec![]);
        let err = AsnDb::from_bytes(Path::new("empty.mmdb"), empty).unwrap_err();
        assert!(matches!(err, AsnDbError::Empty { .. }), "{err}");

        let garbage = AsnDb::from_bytes(Path::new("notes.txt"), b"not a database".to_vec());
        let err = garbage.unwrap_err().to_string();
        assert!(
            err.contains("notes.txt") && err.contains("not a MaxMind DB"),
            "{err}"
        );

        // The ASN field is there but holds something else: refused at start.
        let bytes = raw_db(
            "ipinfo asn.mmdb",
            vec![(
                "10.0.0.0/8",
                Value::map([("asn", Value::map([("n", 1_u32)])), ("name", "X".into())]),
            )],
        );
        let err = AsnDb::from_bytes(Path::new("odd.mmdb"), bytes)
            .unwrap_err()
            .to_string();
        for part in ["odd.mmdb", "IPinfo ASN", "10.0.0.0/8", "does not decode"] {
            assert!(err.contains(part), "{err} should name {part}");
        }
    }

    #[test]
    fn an_ipv4_only_database_gives_ipv6_nothing() {
        let mut writer = mmdb_writer::Writer::builder("GeoLite2-ASN")
            .ip_version(mmdb_writer::IpVersion::V4)
            .build();
        writer
            .insert_value(
                "192.0.2.0/24".parse::<IpNet>().unwrap(),
                geolite(mmdb_writer::Value::U32(64_496)),
            )
            .unwrap();
        let db = AsnDb::from_bytes(Path::new("v4.mmdb"), writer.to_bytes().unwrap()).unwrap();
        let attributor = Attributor::new(Some(db), HosterMap::default());
        assert_eq!(attributor.attribute(ip("192.0.2.1")).asn, Some(64_496));
        assert_eq!(
            attributor.attribute(ip("::ffff:192.0.2.1")).asn,
            Some(64_496)
        );
        assert_eq!(attributor.attribute(ip("2001:db8::1")).asn, None);
        assert_eq!(attributor.undecodable_records(), 0);
    }

    #[test]
    fn the_configured_database_is_opened_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("asn.mmdb");
        let entries = [AsnEntry::new("127.10.1.0/24", 64501, "Alpha Hosting")];
        let bytes = build_asn_db_entries(AsnDbLayout::IpLocationDbAsn, &entries).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let settings = |asn_db: PathBuf| {
            let mut config = crate::WorkerConfig::default();
            config.attribution.asn_db = Some(asn_db);
            config.validate().unwrap()
        };
        let a = Attributor::from_settings(&settings(path)).unwrap();
        assert_eq!(a.attribute(ip("127.10.1.2")).asn, Some(64501));
        assert!(a.attribute(ip("1.1.1.1")).asn.is_none());
        let missing = Attributor::from_settings(&settings(dir.path().join("missing.mmdb")));
        let err = missing.unwrap_err();
        assert!(err.to_string().contains("missing.mmdb"), "{err}");
    }

    /// Writes a database saying `127.10.1.0/24` is `asn` to `path` the way
    /// an operator rotates one: a new file moved into place.
    fn rotate(path: &Path, asn: u32, org: &str) {
        let entries = [AsnEntry::new("127.10.1.0/24", asn, org)];
        let bytes = build_asn_db_entries(AsnDbLayout::GeoLite2Asn, &entries).unwrap();
        let next = path.with_extension("next");
        std::fs::write(&next, bytes).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    #[test]
    fn a_replaced_database_file_is_read_again_and_a_broken_one_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("asn.mmdb");
        rotate(&path, 64501, "Alpha Hosting");
        let mut config = crate::WorkerConfig::default();
        config.attribution.asn_db = Some(path.clone());
        let a = Attributor::from_settings(&config.validate().unwrap()).unwrap();
        let asn = |a: &Attributor| a.attribute(ip("127.10.1.2")).asn;

        assert!(matches!(a.reload(false), Reload::Unchanged));
        assert_eq!(asn(&a), Some(64501));

        rotate(&path, 64999, "Omega Hosting");
        assert!(matches!(a.reload(false), Reload::Replaced));
        assert_eq!(asn(&a), Some(64999));
        assert_eq!(
            a.attribute(ip("127.10.1.2")).hoster.as_deref(),
            Some("Omega Hosting")
        );
        assert!(matches!(a.reload(false), Reload::Unchanged), "read once");

        // A half-written file: reported once, and the database in use stays.
        std::fs::write(&path, b"not a database").unwrap();
        let kept = a.reload(false);
        assert!(
            matches!(&kept, Reload::Kept(AsnDbError::Format { path: p, .. }) if *p == path),
            "{kept:?}"
        );
        assert_eq!(asn(&a), Some(64999));
        assert!(
            matches!(a.reload(false), Reload::Unchanged),
            "reported once"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            a.reload(false),
            Reload::Kept(AsnDbError::Read { .. })
        ));
        assert_eq!(asn(&a), Some(64999));

        // Forced (SIGHUP): read even when the file looks the same.
        rotate(&path, 64777, "Kappa");
        assert!(matches!(a.reload(true), Reload::Replaced));
        assert!(matches!(a.reload(true), Reload::Replaced));
        assert_eq!(asn(&a), Some(64777));

        let none = Attributor::new(None, HosterMap::default());
        assert!(matches!(none.reload(true), Reload::NoDatabase));
    }

    #[test]
    fn the_default_cdn_list_has_no_duplicates_and_no_hosting_asns() {
        let asns: HashSet<u32> = DEFAULT_CDN_ASNS.iter().map(|&(asn, _)| asn).collect();
        assert_eq!(asns.len(), DEFAULT_CDN_ASNS.len());
        // AWS (CloudFront shares it), Google, Microsoft, Linode (named Akamai
        // in some databases), DDoS-Guard, Gcore: hosting on the same ASN.
        for hosting in [16509, 14618, 15169, 396_982, 8075, 63949, 57724, 199_524] {
            assert!(!asns.contains(&hosting), "AS{hosting} hosts content itself");
        }
    }
}
