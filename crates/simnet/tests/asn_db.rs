//! The generated ASN databases read back with the `maxminddb` crate: the
//! scenario's in the GeoLite2-ASN schema, and each product layout as written.

use std::net::IpAddr;

use maxminddb::{PathElement, Reader, geoip2};
use tdmon_simnet::{
    AsnDbLayout, AsnEntry, Hoster, Scenario, SimNet, SimNetOptions, build_asn_db_entries,
};

#[tokio::test]
async fn each_prefix_reads_back_with_its_asn_and_org() {
    let scenario = Scenario::new(60.0)
        .hoster(Hoster::new(
            "FastHost",
            64500,
            "FastHost B.V.",
            "127.10.0.0/24",
            2,
        ))
        .hoster(Hoster::new(
            "SlowHost",
            64501,
            "SlowHost Ltd",
            "127.11.0.0/16",
            1,
        ))
        .hoster(Hoster::new(
            "Bullet",
            4_200_000_000,
            "Bulletproof S.A.",
            "127.12.8.0/22",
            1,
        ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("asn.mmdb");
    let net = SimNet::start(scenario, SimNetOptions::manual_clock().asn_db(&path))
        .await
        .unwrap();
    assert_eq!(net.asn_db_path(), path);

    let reader = maxminddb::Reader::open_readfile(&path).unwrap();
    assert_eq!(reader.metadata().database_type, "GeoLite2-ASN");
    let expect = [
        ("127.10.0.1", 64500, "FastHost B.V."),
        ("127.10.0.254", 64500, "FastHost B.V."),
        ("127.11.200.3", 64501, "SlowHost Ltd"),
        ("127.12.11.255", 4_200_000_000, "Bulletproof S.A."),
    ];
    for (ip, asn, org) in expect {
        let ip: IpAddr = ip.parse().unwrap();
        let record: geoip2::Asn = reader.lookup(ip).unwrap().decode().unwrap().unwrap();
        assert_eq!(record.autonomous_system_number, Some(asn), "{ip}");
        assert_eq!(record.autonomous_system_organization, Some(org), "{ip}");
    }
    for outside in ["127.13.0.1", "127.0.0.1"] {
        let result = reader.lookup(outside.parse().unwrap()).unwrap();
        assert!(!result.has_data(), "{outside} is in no prefix");
    }
    // Every prefix is one a client must allow.
    assert_eq!(net.allowed_cidrs().len(), 3);
    drop(net);
    assert!(path.exists(), "a caller-given path is left in place");
}

/// Each product layout is written with its own `database_type`, field names
/// and value types: the `maxminddb` crate decodes a uint16 only as `u16` and a
/// uint32 only as `u32`, so the widths are checked, not just the numbers.
#[test]
fn each_layout_is_written_with_its_fields_and_types() {
    let entries = [
        AsnEntry::new("1.1.1.0/24", 13335, "Cloudflare, Inc."),
        AsnEntry::new("5.104.136.0/21", 4_200_000_001, "Private Use"),
        AsnEntry::new("2a01:4f8::/32", 24940, "Hetzner Online GmbH"),
    ];
    let key = |name| [PathElement::Key(name)];
    for layout in AsnDbLayout::ALL {
        let reader = Reader::from_source(build_asn_db_entries(layout, &entries).unwrap()).unwrap();
        assert_eq!(reader.metadata().database_type, layout.database_type());
        let small = reader.lookup("1.1.1.1".parse().unwrap()).unwrap();
        let large = reader.lookup("5.104.136.5".parse().unwrap()).unwrap();
        let v6 = reader.lookup("2a01:4f8::1".parse().unwrap()).unwrap();
        match layout {
            AsnDbLayout::GeoLite2Asn | AsnDbLayout::DbIpAsnLite | AsnDbLayout::IpLocationDbAsn => {
                let number = key("autonomous_system_number");
                // ip-location-db writes the smallest type that holds the ASN.
                let minimal = layout == AsnDbLayout::IpLocationDbAsn;
                for (result, asn) in [(&small, 13335_u16), (&v6, 24940)] {
                    if minimal {
                        assert_eq!(result.decode_path::<u16>(&number).unwrap(), Some(asn));
                        assert!(result.decode_path::<u32>(&number).is_err(), "not a uint32");
                    } else {
                        assert_eq!(
                            result.decode_path::<u32>(&number).unwrap(),
                            Some(asn.into())
                        );
                    }
                }
                assert_eq!(
                    large.decode_path::<u32>(&number).unwrap(),
                    Some(4_200_000_001)
                );
                let org = key("autonomous_system_organization");
                assert_eq!(
                    small.decode_path::<&str>(&org).unwrap(),
                    Some("Cloudflare, Inc.")
                );
            }
            AsnDbLayout::IpinfoAsn | AsnDbLayout::IpinfoLite => {
                let (name, domain) = if layout == AsnDbLayout::IpinfoAsn {
                    ("name", "domain")
                } else {
                    ("as_name", "as_domain")
                };
                assert_eq!(
                    small.decode_path::<&str>(&key("asn")).unwrap(),
                    Some("AS13335")
                );
                assert_eq!(
                    large.decode_path::<&str>(&key("asn")).unwrap(),
                    Some("AS4200000001")
                );
                assert_eq!(
                    v6.decode_path::<&str>(&key(name)).unwrap(),
                    Some("Hetzner Online GmbH")
                );
                assert_eq!(
                    small.decode_path::<&str>(&key(domain)).unwrap(),
                    Some("cloudflare-inc.example")
                );
            }
            _ => unreachable!("a layout without a test: {layout:?}"),
        }
        // ip-location-db's file has no IPv4 aliases; MaxMind's and the others do.
        let mapped = reader.lookup("::ffff:1.1.1.1".parse().unwrap()).unwrap();
        assert_eq!(
            mapped.has_data(),
            layout != AsnDbLayout::IpLocationDbAsn,
            "{layout:?}"
        );
    }
}
