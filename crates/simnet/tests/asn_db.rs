//! The generated ASN database reads back with the `maxminddb` crate, in the
//! GeoLite2-ASN schema, for an address in each hoster's prefix.

use std::net::IpAddr;

use maxminddb::geoip2;
use tdmon_simnet::{Hoster, Scenario, SimNet, SimNetOptions};

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
