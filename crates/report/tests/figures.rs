//! The report read from a real store (SQLite, and PostgreSQL in a fresh
//! schema): figures per hoster from stored observations, across more than
//! one page of URLs, and a corrected hoster mapping re-ranking history
//! without any new check.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/test` unless
//! `TDMON_TEST_POSTGRES` names another database (`off` skips it).

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_core::hoster::HosterMap;
use tdmon_core::message::{DnsOutcome, DnsResult, SchemaV1};
use tdmon_core::norm::Norms;
use tdmon_core::notice::Notice;
use tdmon_core::state::Rules;
use tdmon_core::url::NormalizedUrl;
use tdmon_core::{Observation, Outcome, UrlId, Verdict};
use tdmon_report::{GroupBy, Inputs, Methodology, Period, RankKey, Report, figures};
use tdmon_store::{Store, StoreOptions};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    "2026-03-31T12:00:00Z".parse().unwrap()
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

const H: i64 = 60;

/// A check of `url_id` at `at` seeing `verdict` at `ip` (AS, organisation).
fn check(
    url_id: UrlId,
    at: DateTime<Utc>,
    verdict: Verdict,
    net: (&str, u32, &str),
) -> Observation {
    let ip: IpAddr = net.0.parse().unwrap();
    Observation {
        schema: SchemaV1,
        job_id: Uuid::new_v4(),
        url_id,
        url: String::new(),
        worker: "w".into(),
        started_at: at,
        answered_at: at + TimeDelta::milliseconds(10),
        duration_ms: 10,
        dns: DnsResult {
            outcome: DnsOutcome::Ok,
            answers: vec![ip],
        },
        ip: Some(ip),
        asn: Some(net.1),
        as_org: Some(net.2.into()),
        // What the worker named then; the report maps again.
        hoster: Some(net.2.into()),
        cdn: false,
        http: None,
        tls_error: None,
        fingerprint: None,
        outcome: match verdict {
            Verdict::Online => Outcome::Served,
            _ => Outcome::HttpNotFound,
        },
        verdict,
    }
}

const ALPHA: (&str, u32, &str) = ("192.0.2.10", 64501, "Alpha Hosting");
const BETA: (&str, u32, &str) = ("198.51.100.20", 64502, "Beta Cloud");
const FILLER: (&str, u32, &str) = ("203.0.113.5", 64503, "Gamma Net");

/// Two URLs on Alpha (one removed at 2h and still gone at 26h, one served
/// at 30h), one on Beta (removed at 1h, still gone at 25h, noticed a month
/// later), and 1,000 on Gamma checked once, so that the report reads more
/// than one page of URLs.
async fn fill(store: &Store) -> Vec<UrlId> {
    let mut notices = vec![
        notice("http://a1.example.com/x", t0()),
        notice("http://a2.example.com/x", t0()),
        notice("http://b1.example.org/x", t0() - TimeDelta::days(31)),
    ];
    for i in 0..1000 {
        notices.push(notice(&format!("http://f{i}.example.net/x"), t0()));
    }
    let ids = store.add_notices(&notices, minutes(0)).await.unwrap().added;
    let (a1, a2, b1) = (ids[0], ids[1], ids[2]);
    let b = |m: i64| t0() - TimeDelta::days(31) + TimeDelta::minutes(m);
    let mut batch = vec![
        check(a1, minutes(0), Verdict::Online, ALPHA),
        check(a1, minutes(2 * H), Verdict::Offline, ALPHA),
        check(a1, minutes(2 * H + 15), Verdict::Offline, ALPHA),
        check(a1, minutes(2 * H + 30), Verdict::Offline, ALPHA),
        check(a1, minutes(26 * H), Verdict::Offline, ALPHA),
        check(a2, minutes(0), Verdict::Online, ALPHA),
        check(a2, minutes(30 * H), Verdict::Online, ALPHA),
        check(b1, b(0), Verdict::Online, BETA),
        check(b1, b(H), Verdict::Offline, BETA),
        check(b1, b(H + 15), Verdict::Offline, BETA),
        check(b1, b(H + 30), Verdict::Offline, BETA),
        check(b1, b(25 * H), Verdict::Offline, BETA),
    ];
    batch.extend(
        ids[3..]
            .iter()
            .map(|id| check(*id, minutes(0), Verdict::Online, FILLER)),
    );
    store
        .apply_observations(&batch, minutes(31 * H), &Rules::default())
        .await
        .unwrap();
    ids
}

fn notice(url: &str, at: DateTime<Utc>) -> Notice {
    Notice {
        url: NormalizedUrl::parse(url).unwrap(),
        notified_at: at,
        notice_id: None,
        category: None,
        reporter: None,
        claimed_hoster: None,
    }
}

async fn report(store: &Store, hosters: &HosterMap, by: GroupBy, period: Period) -> Report {
    let inputs = Inputs {
        hosters,
        norms: &Norms::default(),
        period,
        by,
        rank_by: RankKey::default(),
        urls_per_group: 5,
        methodology: Methodology::default(),
    };
    figures(store, &inputs).await.unwrap()
}

fn row<'a>(report: &'a Report, key: &str) -> &'a tdmon_report::Row {
    report
        .rows
        .iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| {
            panic!(
                "no row {key}: {:?}",
                report.rows.iter().map(|r| &r.key).collect::<Vec<_>>()
            )
        })
}

async fn figures_follow_the_store_and_the_mapping(store: &Store) {
    fill(store).await;
    let plain = report(
        store,
        &HosterMap::default(),
        GroupBy::Hoster,
        Period::default(),
    )
    .await;
    assert_eq!(plain.totals.notices, 1003, "every page read");
    assert_eq!(plain.totals.distinct_addresses, 3);
    let alpha = row(&plain, "Alpha Hosting");
    assert_eq!(alpha.notices, 2);
    let day = &alpha.norms[0];
    assert_eq!((day.met, day.missed, day.undetermined), (1, 1, 0));
    assert_eq!(day.share_met, Some(0.5));
    assert_eq!(alpha.removed, 1);
    assert_eq!(alpha.still_online, 1);
    // Removed at 2h plus the 10 ms answer; the other censored at 30h: S = 1/2.
    assert_eq!(alpha.median.seconds, Some(7200.01));
    assert_eq!(alpha.median.at_risk, Some(2));
    // Ranked worst first: Alpha missed half, Beta none; Gamma decides nothing.
    assert_eq!(plain.rows[0].key, "Alpha Hosting");
    assert_eq!(plain.rows[0].rank, Some(1));
    assert_eq!(row(&plain, "Beta Cloud").rank, Some(2));
    assert_eq!(row(&plain, "Gamma Net").norms[0].undetermined, 1000);
    let months: Vec<(&str, u64)> = plain
        .monthly
        .iter()
        .map(|m| (m.month.as_str(), m.notices))
        .collect();
    assert_eq!(months, [("2026-02", 1), ("2026-03", 1002)]);
    assert_eq!(plain.urls["Alpha Hosting"].0.len(), 2);
    assert_eq!(
        plain.urls["Gamma Net"],
        (plain.urls["Gamma Net"].0.clone(), 995)
    );

    // A corrected mapping re-ranks history: Beta merged into Alpha's
    // company, and a reseller's range carved out of Gamma.
    let corrected = HosterMap::new(
        [
            (64501, "Alpha Group".to_owned()),
            (64502, "Alpha Group".to_owned()),
        ],
        [("203.0.113.0/28".parse().unwrap(), "Reseller".to_owned())],
        [],
    )
    .unwrap();
    let mapped = report(store, &corrected, GroupBy::Hoster, Period::default()).await;
    let group = row(&mapped, "Alpha Group");
    assert_eq!(group.notices, 3);
    assert_eq!(group.norms[0].met, 2);
    assert_eq!(group.distinct_asns, 2);
    assert_eq!(row(&mapped, "Reseller").notices, 1000);
    assert!(mapped.rows.iter().all(|r| r.key != "Beta Cloud"));

    // A CDN's ASN: flagged, grouped apart, never ranked.
    let cdn = HosterMap::new([], [], [64502]).unwrap();
    let flagged = report(store, &cdn, GroupBy::Hoster, Period::default()).await;
    let fronted = row(&flagged, tdmon_report::figures::CDN_FRONTED);
    assert_eq!(
        (fronted.notices, fronted.cdn_fronted, fronted.rank),
        (1, 1, None)
    );

    // The period: March only; by registrable domain.
    let march = Period {
        from: Some("2026-03-01T00:00:00Z".parse().unwrap()),
        to: Some("2026-04-01T00:00:00Z".parse().unwrap()),
    };
    let by_domain = report(store, &HosterMap::default(), GroupBy::Domain, march).await;
    assert_eq!(by_domain.totals.notices, 1002);
    assert_eq!(row(&by_domain, "example.com").notices, 2);
    assert_eq!(row(&by_domain, "example.net").notices, 1000);
    let by_asn = report(store, &HosterMap::default(), GroupBy::Asn, march).await;
    assert_eq!(row(&by_asn, "AS64501 Alpha Hosting").notices, 2);
}

#[tokio::test]
async fn figures_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tdmon.db").display());
    let store = Store::open(&url).await.unwrap();
    figures_follow_the_store_and_the_mapping(&store).await;
    store.close().await;
}

#[tokio::test]
async fn figures_on_postgres() {
    let url = std::env::var("TDMON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "off" {
        eprintln!("TDMON_TEST_POSTGRES=off: PostgreSQL run skipped");
        return;
    }
    let options = StoreOptions {
        schema: Some(format!("tdmon_report_{}", Uuid::new_v4().simple())),
    };
    let store = Store::open_with(&url, &options).await.unwrap();
    let outcome = tokio::spawn({
        let store = store.clone();
        async move { figures_follow_the_store_and_the_mapping(&store).await }
    })
    .await;
    store.drop_schema().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
