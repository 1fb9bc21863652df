//! The store's behaviour, the same tests on SQLite and on PostgreSQL.

mod support;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_core::message::{DnsOutcome, DnsResult, HttpResult, RedirectHop, SchemaV1};
use tdmon_core::notice::{DuplicateKey, Notice};
use tdmon_core::state::{Phase, Rules};
use tdmon_core::url::NormalizedUrl;
use tdmon_core::{EventKind, Observation, ObservedAddress, Outcome, Purpose, UrlId, Verdict};
use tdmon_store::{DuplicateReason, Status, StoreError};
use uuid::Uuid;

use support::TestDb;

on_both_backends!(
    add_reports_duplicates_within_and_across_calls,
    lease_returns_due_unleased_urls_in_due_order_once_per_lease,
    release_gives_urls_back,
    held_urls_stay_leased_until_their_time,
    reservations_run_out_unless_extended,
    the_baseline_fingerprint_comes_with_the_lease,
    concurrent_leases_never_share_a_url,
    concurrent_adds_store_each_notice_once,
    applying_an_observation_twice_changes_nothing,
    a_check_that_did_not_look_gives_its_url_back,
    observations_advance_to_a_takedown_and_fill_the_outbox,
    observations_of_unknown_urls_are_reported_not_stored,
    observations_round_trip_every_field,
    status_counts_phases_leases_and_rows,
    kept_counts_equal_a_full_count,
    all_states_reads_every_page,
    a_store_without_urls_has_no_range_of_ids,
    states_carry_the_addresses_of_their_applied_checks,
    observations_of_reads_each_urls_in_check_order,
    opening_an_older_store_fills_in_the_addresses_of_its_states,
    reopening_keeps_everything,
    one_monitor_lock_per_store,
);

fn t0() -> DateTime<Utc> {
    "2026-03-02T10:00:00Z".parse().unwrap()
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

const LEASE: Duration = Duration::from_secs(5 * 60);

fn notice(url: &str, notice_id: Option<&str>, notified_at: DateTime<Utc>) -> Notice {
    Notice {
        url: NormalizedUrl::parse(url).unwrap(),
        notified_at,
        notice_id: notice_id.map(str::to_owned),
        category: Some("csam".into()),
        reporter: Some("hotline".into()),
        claimed_hoster: None,
    }
}

fn observe(url_id: UrlId, at: DateTime<Utc>, verdict: Verdict) -> Observation {
    let outcome = match verdict {
        Verdict::Online => Outcome::Served,
        Verdict::Offline => Outcome::HttpNotFound,
        Verdict::Inconclusive => Outcome::Timeout,
    };
    Observation {
        schema: SchemaV1,
        job_id: Uuid::new_v4(),
        url_id,
        url: format!("http://files.sim.test/{url_id}.jpg"),
        worker: "w1".into(),
        started_at: at,
        answered_at: at + TimeDelta::milliseconds(12),
        duration_ms: 12,
        dns: DnsResult {
            outcome: DnsOutcome::Ok,
            answers: vec!["127.0.10.1".parse().unwrap()],
        },
        ip: Some("127.0.10.1".parse().unwrap()),
        asn: Some(64500),
        as_org: Some("HostA BV".into()),
        hoster: Some("HostA".into()),
        cdn: false,
        http: None,
        tls_error: None,
        fingerprint: Some("image/jpeg".into()),
        outcome,
        verdict,
    }
}

/// Adds one notice per `(path, notified_at)` at `now` and returns the URL ids.
async fn add(db: &TestDb, notices: &[(&str, DateTime<Utc>)], now: DateTime<Utc>) -> Vec<UrlId> {
    let notices: Vec<Notice> = notices
        .iter()
        .map(|(path, at)| notice(&format!("http://files.sim.test/{path}"), None, *at))
        .collect();
    let added = db.store.add_notices(&notices, now).await.unwrap();
    assert!(added.duplicates.is_empty(), "{:?}", added.duplicates);
    added.added
}

async fn status(db: &TestDb, now: DateTime<Utc>) -> Status {
    db.store.status(now).await.unwrap()
}

async fn add_reports_duplicates_within_and_across_calls(db: &TestDb) {
    let nanos = t0() + TimeDelta::nanoseconds(123_456_789);
    let first = [
        notice("http://a.test/1", Some("N1"), t0()),
        notice("http://b.test/2", Some("N2"), t0()),
        notice("http://c.test/3", Some("N1"), t0()),
        notice("http://a.test/1", None, t0()),
        notice("http://e.test/5", None, nanos),
    ];
    let added = db.store.add_notices(&first, t0()).await.unwrap();
    assert_eq!(added.added.len(), 3);
    assert_eq!(added.added.iter().collect::<HashSet<_>>().len(), 3);
    let a_key = DuplicateKey::UrlAndTime {
        url: NormalizedUrl::parse("http://a.test/1").unwrap(),
        notified_at: t0(),
    };
    assert_eq!(
        added.duplicates,
        [
            (
                2,
                DuplicateReason::InInput {
                    first: 0,
                    key: DuplicateKey::NoticeId("N1".into())
                }
            ),
            (
                3,
                DuplicateReason::InInput {
                    first: 0,
                    key: a_key.clone()
                }
            ),
        ]
    );

    let second = [
        notice("http://f.test/6", Some("N2"), t0()),
        notice("http://b.test/2", None, t0()),
        // Same URL at another time is another notice.
        notice("http://a.test/1", Some("N9"), minutes(1)),
        // Sub-microsecond parts are dropped on both sides of the comparison.
        notice("http://e.test/5", None, nanos),
    ];
    let again = db.store.add_notices(&second, t0()).await.unwrap();
    assert_eq!(again.added.len(), 1);
    assert!(
        !added.added.contains(&again.added[0]),
        "URL ids must be new"
    );
    let e_key = DuplicateKey::UrlAndTime {
        url: NormalizedUrl::parse("http://e.test/5").unwrap(),
        notified_at: t0() + TimeDelta::microseconds(123_456),
    };
    assert_eq!(
        again.duplicates,
        [
            (
                0,
                DuplicateReason::Stored {
                    key: DuplicateKey::NoticeId("N2".into())
                }
            ),
            (
                1,
                DuplicateReason::Stored {
                    key: DuplicateKey::UrlAndTime {
                        url: NormalizedUrl::parse("http://b.test/2").unwrap(),
                        notified_at: t0(),
                    }
                }
            ),
            (3, DuplicateReason::Stored { key: e_key }),
        ]
    );

    // Exactly one monitored URL per stored notice, each with its initial state.
    let states = db.store.all_states().await.unwrap();
    assert_eq!(states.len(), 4);
    let ids: Vec<UrlId> = states.iter().map(|s| s.subject.url_id).collect();
    let mut expected: Vec<UrlId> = added.added.iter().chain(&again.added).copied().collect();
    expected.sort();
    assert_eq!(ids, expected);
    for state in &states {
        assert_eq!(state.phase, Phase::Pending);
        let next = state.next_check.unwrap();
        assert_eq!(next.purpose, Purpose::Baseline);
        assert_eq!(next.at, state.subject.notified_at.max(t0()));
    }
    let n9 = db.store.states(&again.added).await.unwrap();
    assert_eq!(n9.len(), 1);
    assert_eq!(n9[0].subject.url, "http://a.test/1");
    assert_eq!(n9[0].subject.notice_id.as_deref(), Some("N9"));
    assert_eq!(n9[0].subject.notified_at, minutes(1));
    assert_eq!(status(db, t0()).await.by_phase, [(Phase::Pending, 4)]);
}

async fn lease_returns_due_unleased_urls_in_due_order_once_per_lease(db: &TestDb) {
    let ids = add(
        db,
        &[
            ("u1", minutes(3)),
            ("u2", minutes(1)),
            ("u3", minutes(2)),
            ("u4", minutes(30)),
        ],
        t0(),
    )
    .await;
    let (u1, u2, u3, u4) = (ids[0], ids[1], ids[2], ids[3]);

    let due = db.store.lease_due(minutes(10), 10, LEASE).await.unwrap();
    let got: Vec<UrlId> = due.iter().map(|d| d.url_id).collect();
    assert_eq!(got, [u2, u3, u1], "only due URLs, oldest due first");
    assert_eq!(due[0].url, "http://files.sim.test/u2");
    assert_eq!(due[0].host, "files.sim.test");
    assert_eq!(due[0].purpose, Purpose::Baseline);
    assert_eq!(due[0].due_at, minutes(1));

    // Leased until minute 15: not again before the lease has run out.
    assert!(
        db.store
            .lease_due(minutes(11), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .lease_due(minutes(15), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let again = db.store.lease_due(minutes(16), 10, LEASE).await.unwrap();
    let got: Vec<UrlId> = again.iter().map(|d| d.url_id).collect();
    assert_eq!(got, [u2, u3, u1], "a lost lease makes the URL due again");

    // The limit takes the oldest first; the rest come on the next call.
    let first = db.store.lease_due(minutes(40), 2, LEASE).await.unwrap();
    let got: Vec<UrlId> = first.iter().map(|d| d.url_id).collect();
    assert_eq!(got, [u2, u3]);
    let rest = db.store.lease_due(minutes(40), 10, LEASE).await.unwrap();
    let got: Vec<UrlId> = rest.iter().map(|d| d.url_id).collect();
    assert_eq!(got, [u1, u4]);
    assert!(
        db.store
            .lease_due(minutes(40), 0, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn release_gives_urls_back(db: &TestDb) {
    let ids = add(db, &[("r1", t0()), ("r2", t0()), ("r3", t0())], t0()).await;
    assert_eq!(
        db.store
            .lease_due(minutes(1), 10, LEASE)
            .await
            .unwrap()
            .len(),
        3
    );
    db.store.release(&[ids[1], 999_999]).await.unwrap();
    db.store.release(&[]).await.unwrap();
    let back = db.store.lease_due(minutes(1), 10, LEASE).await.unwrap();
    let got: Vec<UrlId> = back.iter().map(|d| d.url_id).collect();
    assert_eq!(got, [ids[1]], "only the released URL is leasable again");
}

async fn held_urls_stay_leased_until_their_time(db: &TestDb) {
    let ids = add(db, &[("h1", t0()), ("h2", t0())], t0()).await;
    assert_eq!(
        db.store
            .lease_due(minutes(1), 10, LEASE)
            .await
            .unwrap()
            .len(),
        2
    );
    db.store.release_all().await.unwrap();
    // h1 is held back for 30 minutes; h2 is free again.
    db.store.hold(&[(ids[0], minutes(31))]).await.unwrap();
    let now: Vec<UrlId> = db
        .store
        .lease_due(minutes(2), 10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|d| d.url_id)
        .collect();
    assert_eq!(now, [ids[1]], "the held URL waits");
    let later: Vec<UrlId> = db
        .store
        .lease_due(minutes(32), 10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|d| d.url_id)
        .collect();
    assert_eq!(
        later, ids,
        "once its time has passed it is due again, beside h2 whose lease ran out"
    );
    assert_eq!(db.store.release_all().await.unwrap(), 2);
    assert_eq!(status(db, minutes(33)).await.leased.count, 0);
}

async fn reservations_run_out_unless_extended(db: &TestDb) {
    let ids = add(db, &[("x1", t0()), ("x2", t0()), ("x3", t0())], t0()).await;
    let reserved = Duration::from_secs(5);
    let leased_at = minutes(1);
    assert_eq!(
        db.store
            .lease_due(leased_at, 10, reserved)
            .await
            .unwrap()
            .len(),
        3
    );
    // x1's job is published and its check applied before the extension:
    // that lease is over and stays over.
    let rules = Rules::default();
    db.store
        .apply_observations(
            &[observe(ids[0], leased_at, Verdict::Online)],
            leased_at,
            &rules,
        )
        .await
        .unwrap();
    // The jobs of x1 and x2 were published; x3's never was.
    let extended = db
        .store
        .extend_leases(&[ids[0], ids[1]], leased_at, reserved, LEASE)
        .await
        .unwrap();
    assert_eq!(extended, 1, "only x2 still had its reservation");
    let after_reservation = leased_at + TimeDelta::seconds(6);
    let due: Vec<UrlId> = db
        .store
        .lease_due(after_reservation, 10, reserved)
        .await
        .unwrap()
        .iter()
        .map(|d| d.url_id)
        .collect();
    assert_eq!(due, [ids[2]], "the unpublished URL is due again at once");
    // Extending an old reservation again changes nothing: x3 has a new one.
    let again = db
        .store
        .extend_leases(&[ids[2]], leased_at, reserved, LEASE)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let status = status(db, after_reservation).await;
    assert_eq!(
        status.leased.count, 2,
        "x2 for the whole lease, x3 reserved"
    );
}

async fn the_baseline_fingerprint_comes_with_the_lease(db: &TestDb) {
    let ids = add(db, &[("b1", t0())], t0()).await;
    let first = db.store.lease_due(t0(), 10, LEASE).await.unwrap();
    assert_eq!(first[0].baseline, None, "no online check yet");
    let mut online = observe(ids[0], minutes(1), Verdict::Online);
    online.fingerprint = Some("image".into());
    db.store
        .apply_observations(&[online], minutes(1), &Rules::default())
        .await
        .unwrap();
    let next = db.store.lease_due(minutes(60), 10, LEASE).await.unwrap();
    assert_eq!(next[0].baseline.as_deref(), Some("image"));
}

async fn concurrent_leases_never_share_a_url(db: &TestDb) {
    let paths: Vec<String> = (0..90).map(|i| format!("c{i}")).collect();
    let notices: Vec<(&str, DateTime<Utc>)> = paths.iter().map(|p| (p.as_str(), t0())).collect();
    add(db, &notices, t0()).await;
    let other = db.open_again().await;
    // Six dispatchers at once, over two handles (two processes), in rounds
    // that start after the previous round's leases have run out.
    for round in 0..5 {
        let now = minutes(1 + 10 * round);
        let mut leases = tokio::task::JoinSet::new();
        for i in 0..6 {
            let store = if i % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            leases.spawn(async move { store.lease_due(now, 15, LEASE).await });
        }
        let mut seen = HashSet::new();
        for leased in leases.join_all().await {
            for due in leased.unwrap() {
                assert!(
                    seen.insert(due.url_id),
                    "round {round}: URL {} leased twice",
                    due.url_id
                );
            }
        }
        assert_eq!(
            seen.len(),
            90,
            "round {round}: every due URL is leased once"
        );
    }
    other.close().await;
}

async fn concurrent_adds_store_each_notice_once(db: &TestDb) {
    let batch = |own: &str| -> Vec<Notice> {
        (0..100)
            .map(|i| notice(&format!("http://shared.test/{i}"), None, t0()))
            .chain((0..100).map(|i| notice(&format!("http://{own}.test/{i}"), None, t0())))
            .collect()
    };
    let (left, right) = (batch("left"), batch("right"));
    let other = db.open_again().await;
    let (a, b) = tokio::join!(
        db.store.add_notices(&left, t0()),
        other.add_notices(&right, t0()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.added.len() + b.added.len(), 300);
    assert_eq!(a.duplicates.len() + b.duplicates.len(), 100);
    for (index, reason) in a.duplicates.iter().chain(&b.duplicates) {
        assert!(*index < 100, "only shared notices are duplicates");
        assert!(
            matches!(reason, DuplicateReason::Stored { .. }),
            "{reason:?}"
        );
    }
    assert_eq!(db.store.all_states().await.unwrap().len(), 300);
    other.close().await;
}

async fn applying_an_observation_twice_changes_nothing(db: &TestDb) {
    let ids = add(db, &[("i1", t0())], t0()).await;
    let url_id = ids[0];
    assert_eq!(db.store.lease_due(t0(), 10, LEASE).await.unwrap().len(), 1);
    let rules = Rules::default();
    let obs = observe(url_id, minutes(1), Verdict::Online);

    let first = db
        .store
        .apply_observations(std::slice::from_ref(&obs), minutes(2), &rules)
        .await
        .unwrap();
    assert_eq!((first.new, first.duplicates), (1, 0));
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].kind, EventKind::FirstOnline);
    assert_eq!(
        status(db, minutes(2)).await.leased.count,
        0,
        "applying clears the lease"
    );
    let state = db.store.states(&[url_id]).await.unwrap();

    let second = db
        .store
        .apply_observations(std::slice::from_ref(&obs), minutes(3), &rules)
        .await
        .unwrap();
    assert_eq!((second.new, second.duplicates), (0, 1));
    assert!(second.events.is_empty());
    assert_eq!(
        db.store.states(&[url_id]).await.unwrap(),
        state,
        "state unchanged"
    );
    assert_eq!(
        db.store.unpublished_events(10).await.unwrap().len(),
        1,
        "no second event"
    );
    assert_eq!(db.store.observations(url_id).await.unwrap().len(), 1);

    // Twice within one call, beside a stored one and a new one.
    let new = observe(url_id, minutes(20), Verdict::Online);
    let mixed = db
        .store
        .apply_observations(&[obs.clone(), new.clone(), new], minutes(21), &rules)
        .await
        .unwrap();
    assert_eq!((mixed.new, mixed.duplicates), (1, 2));
    assert_eq!(db.store.observations(url_id).await.unwrap().len(), 2);
}

async fn a_check_that_did_not_look_gives_its_url_back(db: &TestDb) {
    let ids = add(db, &[("n1", t0())], t0()).await;
    let url_id = ids[0];
    let rules = Rules::default();
    assert_eq!(db.store.lease_due(t0(), 10, LEASE).await.unwrap().len(), 1);
    let mut not_checked = observe(url_id, minutes(1), Verdict::Inconclusive);
    not_checked.outcome = Outcome::NotChecked;
    let applied = db
        .store
        .apply_observations(&[not_checked], minutes(2), &rules)
        .await
        .unwrap();
    assert_eq!(applied.new, 1, "stored all the same");
    let again = db.store.lease_due(minutes(2), 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1, "due again at once, not after the lease");
    assert_eq!(again[0].purpose, Purpose::Baseline);

    // A stale one (older than the last applied check) leaves the lease of
    // the job in flight alone.
    db.store
        .apply_observations(
            &[observe(url_id, minutes(3), Verdict::Online)],
            minutes(3),
            &rules,
        )
        .await
        .unwrap();
    let next = db.store.states(&[url_id]).await.unwrap()[0]
        .next_check
        .unwrap();
    assert_eq!(
        db.store.lease_due(next.at, 10, LEASE).await.unwrap().len(),
        1
    );
    let mut stale = observe(url_id, minutes(2), Verdict::Inconclusive);
    stale.outcome = Outcome::NotChecked;
    db.store
        .apply_observations(&[stale], next.at, &rules)
        .await
        .unwrap();
    assert!(
        db.store
            .lease_due(next.at, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "still leased"
    );
}

async fn observations_advance_to_a_takedown_and_fill_the_outbox(db: &TestDb) {
    let added = db
        .store
        .add_notices(
            &[notice("http://files.sim.test/t.jpg", Some("N-1"), t0())],
            t0(),
        )
        .await
        .unwrap();
    let url_id = added.added[0];
    let rules = Rules::default();
    // Out of order on purpose: the store applies them in started_at order.
    let batch = [
        observe(url_id, minutes(90), Verdict::Offline),
        observe(url_id, t0(), Verdict::Online),
        observe(url_id, minutes(75), Verdict::Offline),
        observe(url_id, minutes(60), Verdict::Offline),
    ];
    let applied = db
        .store
        .apply_observations(&batch, minutes(91), &rules)
        .await
        .unwrap();
    assert_eq!(applied.new, 4);
    let kinds: Vec<EventKind> = applied.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::FirstOnline, EventKind::Takedown]);
    let takedown = &applied.events[1];
    let bracket = takedown.bracket.unwrap();
    assert_eq!(bracket.from, Some(t0()));
    // The late end is when the first offline check had its answer (12 ms).
    assert_eq!(bracket.to, minutes(60) + TimeDelta::milliseconds(12));
    assert_eq!(takedown.at, bracket.to);
    assert_eq!(takedown.time_to_takedown_s, Some(3600.012));
    assert_eq!(takedown.notice_id.as_deref(), Some("N-1"));
    assert_eq!(takedown.hoster.as_deref(), Some("HostA"));

    let state = &db.store.states(&[url_id]).await.unwrap()[0];
    assert_eq!(state.phase, Phase::Offline);
    let next = state.next_check.unwrap();
    assert_eq!(next.purpose, Purpose::Reappearance);
    assert_eq!(
        status(db, minutes(91)).await.by_phase,
        [(Phase::Offline, 1)]
    );

    // The next check is scheduled in the columns the lease reads.
    assert!(
        db.store
            .lease_due(next.at - TimeDelta::seconds(1), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let due = db.store.lease_due(next.at, 10, LEASE).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].url_id, due[0].purpose, due[0].due_at),
        (url_id, Purpose::Reappearance, next.at)
    );

    // The outbox holds both events until they are marked published.
    let outbox = db.store.unpublished_events(10).await.unwrap();
    assert_eq!(outbox.len(), 2);
    assert!(outbox[0].0 < outbox[1].0);
    let events: Vec<_> = outbox.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(events, applied.events);
    let limited = db.store.unpublished_events(1).await.unwrap();
    assert_eq!(limited, outbox[..1]);
    db.store.mark_published(&[outbox[0].0]).await.unwrap();
    let left = db.store.unpublished_events(10).await.unwrap();
    assert_eq!(left, outbox[1..]);
    db.store
        .mark_published(&[outbox[1].0, 999_999])
        .await
        .unwrap();
    assert!(db.store.unpublished_events(10).await.unwrap().is_empty());
    assert_eq!(
        status(db, minutes(91)).await.events,
        2,
        "published events are kept"
    );
}

async fn observations_of_unknown_urls_are_reported_not_stored(db: &TestDb) {
    let ids = add(db, &[("k1", t0())], t0()).await;
    let known = observe(ids[0], minutes(1), Verdict::Online);
    let unknown = observe(424_242, minutes(1), Verdict::Online);
    let applied = db
        .store
        .apply_observations(&[unknown.clone(), known], minutes(2), &Rules::default())
        .await
        .unwrap();
    assert_eq!(applied.unknown_url, [unknown.job_id]);
    assert_eq!((applied.new, applied.duplicates), (1, 0));
    assert!(db.store.observations(424_242).await.unwrap().is_empty());
    assert_eq!(status(db, minutes(2)).await.observations, 1);
    // Still unknown, not a duplicate, the second time.
    let again = db
        .store
        .apply_observations(
            std::slice::from_ref(&unknown),
            minutes(3),
            &Rules::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.unknown_url, [unknown.job_id]);
    assert_eq!((again.new, again.duplicates), (0, 0));
}

async fn observations_round_trip_every_field(db: &TestDb) {
    let ids = add(db, &[("o1", t0())], t0()).await;
    let url_id = ids[0];
    let mut full = observe(
        url_id,
        minutes(1) + TimeDelta::nanoseconds(987_654_321),
        Verdict::Offline,
    );
    full.worker = "worker-7".into();
    full.answered_at = full.started_at + TimeDelta::nanoseconds(1_234_567_891);
    full.duration_ms = 1234;
    full.dns = DnsResult {
        outcome: DnsOutcome::Ok,
        answers: vec![
            "127.0.10.1".parse().unwrap(),
            "::1".parse::<IpAddr>().unwrap(),
        ],
    };
    full.ip = Some("::1".parse().unwrap());
    full.cdn = true;
    full.http = Some(HttpResult {
        status: 404,
        content_type: Some("text/html".into()),
        content_length: Some(5120),
        etag: Some("\"abc\"".into()),
        last_modified: Some("Mon, 02 Mar 2026 09:00:00 GMT".into()),
        location: None,
        redirects: vec![
            RedirectHop {
                url: "http://files.sim.test/o1".into(),
                status: 301,
            },
            RedirectHop {
                url: "https://files.sim.test/o1".into(),
                status: 308,
            },
        ],
        connection_reused: true,
    });
    full.tls_error = Some("certificate expired".into());
    full.outcome = Outcome::HttpNotFound;
    let mut bare = observe(url_id, minutes(2), Verdict::Inconclusive);
    bare.dns = DnsResult {
        outcome: DnsOutcome::Servfail,
        answers: vec![],
    };
    bare.ip = None;
    bare.asn = None;
    bare.as_org = None;
    bare.hoster = None;
    bare.fingerprint = None;
    bare.outcome = Outcome::DnsServfail;

    db.store
        .apply_observations(&[bare.clone(), full.clone()], minutes(3), &Rules::default())
        .await
        .unwrap();
    let mut expected_full = full;
    expected_full.started_at = minutes(1) + TimeDelta::microseconds(987_654);
    expected_full.answered_at = minutes(1) + TimeDelta::microseconds(2_222_222);
    assert_eq!(
        db.store.observations(url_id).await.unwrap(),
        [expected_full, bare]
    );
}

async fn status_counts_phases_leases_and_rows(db: &TestDb) {
    let empty = status(db, t0()).await;
    assert_eq!(empty, Status::default());

    let ids = add(
        db,
        &[("s1", t0()), ("s2", minutes(1)), ("s3", minutes(60))],
        t0(),
    )
    .await;
    let leased = db.store.lease_due(minutes(5), 1, LEASE).await.unwrap();
    assert_eq!(leased[0].url_id, ids[0]);
    let s = status(db, minutes(5)).await;
    assert_eq!(s.by_phase, [(Phase::Pending, 3)]);
    assert_eq!(
        s.due_now.to_string(),
        "1",
        "s2 is due; s1 is leased, s3 not yet due"
    );
    assert_eq!(s.leased.to_string(), "1");
    assert_eq!(s.next_due, Some(minutes(1)), "earliest unleased next check");
    assert_eq!((s.observations, s.events, s.unattributed), (0, 0, 0));

    let mut nowhere = observe(ids[2], minutes(6), Verdict::Offline);
    (nowhere.asn, nowhere.as_org, nowhere.hoster) = (None, None, None);
    db.store
        .apply_observations(
            &[observe(ids[0], minutes(6), Verdict::Online), nowhere],
            minutes(6),
            &Rules::default(),
        )
        .await
        .unwrap();
    let s = status(db, minutes(6)).await;
    assert_eq!(
        s.by_phase,
        [(Phase::Pending, 1), (Phase::Unseen, 1), (Phase::Online, 1)]
    );
    assert_eq!(s.leased.count, 0);
    assert_eq!((s.observations, s.events), (2, 1));
    assert_eq!(s.unattributed, 1, "an address no database named");
    // After its lease runs out a URL counts as due again, not as leased.
    db.store.lease_due(minutes(6), 10, LEASE).await.unwrap();
    let later = status(db, minutes(12)).await;
    assert_eq!(later.leased.count, 0);
    assert_eq!(later.due_now.count, 1);
}

/// The kept counts equal a full count after a mix of notices, observations,
/// duplicates and takedowns, also when applied by concurrent writers.
async fn kept_counts_equal_a_full_count(db: &TestDb) {
    let notices: Vec<(String, DateTime<Utc>)> = (0..40).map(|i| (format!("c{i}"), t0())).collect();
    let named: Vec<(&str, DateTime<Utc>)> = notices.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let ids = add(db, &named, t0()).await;
    let rules = Rules::default();
    let mut writers = tokio::task::JoinSet::new();
    for (k, chunk) in ids.chunks(10).enumerate() {
        let store = db.store.clone();
        let rules = rules.clone();
        let batch: Vec<Observation> = chunk
            .iter()
            .enumerate()
            .flat_map(|(i, &url_id)| {
                let verdicts = match (k + i) % 4 {
                    0 => vec![Verdict::Online],
                    1 => vec![
                        Verdict::Online,
                        Verdict::Offline,
                        Verdict::Offline,
                        Verdict::Offline,
                    ],
                    2 => vec![Verdict::Offline, Verdict::Offline, Verdict::Offline],
                    _ => vec![Verdict::Inconclusive],
                };
                verdicts
                    .into_iter()
                    .enumerate()
                    .map(move |(n, v)| observe(url_id, minutes(20 * n as i64 + 1), v))
            })
            .collect();
        writers.spawn(async move {
            store
                .apply_observations(&batch, minutes(90), &rules)
                .await
                .unwrap();
            // A redelivery of the whole batch counts nothing twice.
            store
                .apply_observations(&batch, minutes(91), &rules)
                .await
                .unwrap();
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let s = status(db, minutes(91)).await;
    let states = db.store.all_states().await.unwrap();
    let mut phases: Vec<(Phase, u64)> = Vec::new();
    for phase in [
        Phase::Pending,
        Phase::Unseen,
        Phase::Online,
        Phase::Offline,
        Phase::Expired,
    ] {
        let n = states.iter().filter(|st| st.phase == phase).count() as u64;
        if n > 0 {
            phases.push((phase, n));
        }
    }
    assert_eq!(s.by_phase, phases);
    let mut observations = 0;
    for id in &ids {
        observations += db.store.observations(*id).await.unwrap().len() as u64;
    }
    assert_eq!(s.observations, observations);
    assert_eq!(
        s.events,
        db.store.unpublished_events(10_000).await.unwrap().len() as u64
    );
}

async fn all_states_reads_every_page(db: &TestDb) {
    let paths: Vec<String> = (0..2345).map(|i| format!("p{i}")).collect();
    let notices: Vec<(&str, DateTime<Utc>)> = paths.iter().map(|p| (p.as_str(), t0())).collect();
    let ids = add(db, &notices, t0()).await;
    let states = db.store.all_states().await.unwrap();
    assert_eq!(states.len(), 2345);
    let got: Vec<UrlId> = states.iter().map(|s| s.subject.url_id).collect();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    let mut paged = Vec::new();
    loop {
        let after = paged
            .last()
            .map(|s: &tdmon_core::state::UrlState| s.subject.url_id);
        let page = db.store.states_after(after, 1000).await.unwrap();
        assert!(page.len() <= 1000);
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, states);
    assert_eq!(
        db.store.url_ids().await.unwrap(),
        Some(want[0]..=want[2344]),
        "the lowest and highest id"
    );
    let ranged = db.store.states_in(want[10]..=want[1010]).await.unwrap();
    assert_eq!(ranged, states[10..=1010], "both ends included, in id order");
    let some = db
        .store
        .states(&[ids[2000], ids[5], 123_456_789])
        .await
        .unwrap();
    let got: Vec<UrlId> = some.iter().map(|s| s.subject.url_id).collect();
    let mut want = vec![ids[5], ids[2000]];
    want.sort();
    assert_eq!(got, want, "known ids only, in id order");
}

/// Each state carries the address and network of its applied checks, as
/// the report reads them: every kind (both, ASN only, address only; neither
/// is left out), in check order, through the store's JSON and back.
async fn states_carry_the_addresses_of_their_applied_checks(db: &TestDb) {
    let ids = add(db, &[("r1", t0()), ("r2", t0()), ("r3", t0())], t0()).await;
    let mut quoted = observe(ids[0], minutes(1), Verdict::Online);
    quoted.as_org = Some("Host \"Q\", \\ Ltd ☃".into());
    let mut asn_only = observe(ids[0], minutes(2), Verdict::Offline);
    asn_only.ip = None;
    let mut address_only = observe(ids[0], minutes(3), Verdict::Online);
    address_only.ip = Some("::1".parse().unwrap());
    address_only.asn = None;
    address_only.as_org = None;
    let mut neither = observe(ids[0], minutes(4), Verdict::Inconclusive);
    (neither.ip, neither.asn, neither.as_org) = (None, None, None);
    let other = observe(ids[2], minutes(1), Verdict::Online);
    let checks = [quoted, asn_only, address_only, neither];
    db.store
        .apply_observations(
            &[checks[2].clone(), other.clone()],
            minutes(5),
            &Rules::default(),
        )
        .await
        .unwrap();
    // Not newer than the last applied check: stored, not applied.
    db.store
        .apply_observations(&checks[..2], minutes(6), &Rules::default())
        .await
        .unwrap();
    db.store
        .apply_observations(&checks[3..], minutes(6), &Rules::default())
        .await
        .unwrap();

    let page: Vec<_> = db.store.states_after(None, 3).await.unwrap();
    let addresses = |i: usize| &page[i].addresses;
    assert_eq!(*addresses(0), [ObservedAddress::of(&checks[2]).unwrap()]);
    assert!(
        addresses(1).is_empty(),
        "a URL never checked has no addresses"
    );
    assert_eq!(*addresses(2), [ObservedAddress::of(&other).unwrap()]);
    assert_eq!(db.store.observations(ids[0]).await.unwrap().len(), 4);

    // In check order, and every kind of address through the JSON.
    let ids = add(db, &[("r4", t0())], t0()).await;
    let checks: Vec<Observation> = checks
        .into_iter()
        .map(|check| Observation {
            url_id: ids[0],
            job_id: Uuid::new_v4(),
            ..check
        })
        .collect();
    db.store
        .apply_observations(&checks, minutes(6), &Rules::default())
        .await
        .unwrap();
    let state = db.store.states(&ids).await.unwrap().remove(0);
    let want: Vec<ObservedAddress> = checks.iter().filter_map(ObservedAddress::of).collect();
    assert_eq!(state.addresses, want);
    assert_eq!(
        state.addresses[0].as_org.as_deref(),
        Some("Host \"Q\", \\ Ltd ☃")
    );
}

/// `observations_of` reads what `observations` reads, URL by URL.
async fn observations_of_reads_each_urls_in_check_order(db: &TestDb) {
    let ids = add(db, &[("o1", t0()), ("o2", t0()), ("o3", t0())], t0()).await;
    let later = observe(ids[0], minutes(2), Verdict::Offline);
    let earlier = observe(ids[0], minutes(1), Verdict::Online);
    let other = observe(ids[2], minutes(1), Verdict::Online);
    db.store
        .apply_observations(&[later, other, earlier], minutes(3), &Rules::default())
        .await
        .unwrap();
    let mut one_by_one = Vec::new();
    for id in &ids {
        one_by_one.extend(db.store.observations(*id).await.unwrap());
    }
    assert_eq!(one_by_one.len(), 3);
    assert!(one_by_one[0].started_at < one_by_one[1].started_at);
    let reversed: Vec<UrlId> = ids.iter().rev().copied().collect();
    assert_eq!(
        db.store.observations_of(&reversed).await.unwrap(),
        one_by_one,
        "by URL id, each URL's in check order"
    );
}

/// A store written before states carried their addresses gets them from
/// its observations when it is opened: what the collector would have
/// written, so the figures stay the same.
async fn opening_an_older_store_fills_in_the_addresses_of_its_states(db: &TestDb) {
    let ids = add(db, &[("m1", t0()), ("m2", t0()), ("m3", t0())], t0()).await;
    let at = |m: i64, verdict: Verdict, ip: Option<&str>, asn: Option<u32>| Observation {
        ip: ip.map(|ip| ip.parse().unwrap()),
        asn,
        as_org: asn.map(|asn| format!("AS{asn} \"Host\" ☃")),
        ..observe(ids[0], minutes(m), verdict)
    };
    let mut checks = vec![
        at(1, Verdict::Online, Some("127.0.10.1"), Some(64500)),
        at(2, Verdict::Online, Some("127.0.10.1"), Some(64500)),
        at(3, Verdict::Offline, Some("127.0.10.1"), Some(64500)),
        at(4, Verdict::Online, Some("::1"), None),
        at(5, Verdict::Inconclusive, None, None),
        at(6, Verdict::Online, None, Some(64501)),
        at(7, Verdict::Online, None, Some(64501)),
        at(8, Verdict::Online, Some("127.0.10.1"), Some(64500)),
    ];
    checks.push(Observation {
        url_id: ids[2],
        ..at(1, Verdict::Inconclusive, None, None)
    });
    db.store
        .apply_observations(&checks, minutes(9), &Rules::default())
        .await
        .unwrap();
    let before = db.store.all_states().await.unwrap();
    assert_eq!(before[0].addresses.len(), 5, "{:?}", before[0].addresses);
    assert!(before[1].addresses.is_empty() && before[2].addresses.is_empty());
    db.store.close().await;

    // Back to before the migration that added them.
    let (forget, version) = match db.schema() {
        None => ("json_remove(state, '$.addresses')", 7),
        Some(_) => ("state - 'addresses'", 6),
    };
    db.execute(&format!(
        "UPDATE urls SET state = {forget}; DELETE FROM _sqlx_migrations WHERE version = {version};"
    ))
    .await;
    let reopened = db.open_again().await;
    assert_eq!(reopened.all_states().await.unwrap(), before);
    reopened.close().await;
}

async fn a_store_without_urls_has_no_range_of_ids(db: &TestDb) {
    assert_eq!(db.store.url_ids().await.unwrap(), None);
    assert!(db.store.states_in(1..=1000).await.unwrap().is_empty());
}

async fn reopening_keeps_everything(db: &TestDb) {
    let ids = add(db, &[("z1", t0()), ("z2", t0())], t0()).await;
    db.store
        .apply_observations(
            &[observe(ids[0], minutes(1), Verdict::Online)],
            minutes(1),
            &Rules::default(),
        )
        .await
        .unwrap();
    let before = db.store.all_states().await.unwrap();
    db.store.close().await;
    let reopened = db.open_again().await;
    assert_eq!(reopened.all_states().await.unwrap(), before);
    assert_eq!(reopened.unpublished_events(10).await.unwrap().len(), 1);
    let dup = reopened
        .add_notices(&[notice("http://files.sim.test/z1", None, t0())], t0())
        .await
        .unwrap();
    assert!(dup.added.is_empty(), "{:?}", dup.added);
    assert_eq!(dup.duplicates.len(), 1);
    reopened.close().await;
}

/// A second handle, as another process opens the store, cannot take the lock
/// while the first holds it, and can once it is released.
async fn one_monitor_lock_per_store(db: &TestDb) {
    let lock = db.store.lock_monitor().await.unwrap();
    let other = db.open_again().await;
    let err = other.lock_monitor().await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("another tdmon run is already monitoring "),
        "{err}"
    );
    lock.release().await;
    other.lock_monitor().await.unwrap().release().await;
    other.close().await;
}

#[tokio::test]
async fn the_sqlite_lock_follows_symlinks_to_the_file() {
    let db = TestDb::sqlite().await;
    let path = db.sqlite_url().unwrap().strip_prefix("sqlite://").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(path, &link).unwrap();
    let lock = db.store.lock_monitor().await.unwrap();
    let through_link = tdmon_store::Store::open(&format!("sqlite://{}", link.display()))
        .await
        .unwrap();
    let err = through_link.lock_monitor().await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    lock.release().await;
    through_link.close().await;
}

#[tokio::test]
async fn open_refuses_unknown_urls_and_bad_schemas_without_leaking_passwords() {
    let err = tdmon_store::Store::open("mysql://root:hunter2@127.0.0.1/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let bad = tdmon_store::StoreOptions {
        schema: Some("x; DROP TABLE y".into()),
    };
    let err = tdmon_store::Store::open_with("postgres://u:hunter2@127.0.0.1:1/x", &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidSchema(_)), "{err:?}");

    // No such role: the error names the masked URL, never the password.
    let err = tdmon_store::Store::open("postgres://u:hunter2@127.0.0.1:5432/test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(err.to_string().contains("u:***@127.0.0.1:5432"), "{err}");
}

#[tokio::test]
async fn a_corrupt_snapshot_is_reported_as_corrupt() {
    let db = TestDb::sqlite().await;
    let ids = add(&db, &[("bad", t0())], t0()).await;
    let url = db.sqlite_url().unwrap().to_owned();
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE urls SET state = '{\"subject\": 1}' WHERE url_id = $1")
        .bind(ids[0])
        .execute(&mut conn)
        .await
        .unwrap();
    let err = db.store.states(&ids).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("state of URL {}", ids[0])),
        "{err}"
    );
}

/// A PostgreSQL lock lives as long as its connection: when the server drops
/// it, the holder can tell, and another process can take the lock.
#[tokio::test]
async fn a_lock_whose_connection_dropped_is_no_longer_held() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut lock = db.store.lock_monitor().await.unwrap();
    assert!(lock.is_held(Duration::from_secs(5)).await);
    let url = std::env::var("TDMON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    // The backend holding this schema's lock, and only that one.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND granted AND objsubid = 1 \
         AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('tdmon monitor ' || $1, 0)",
    )
    .bind(db.schema().unwrap())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "the lock's connection was found and ended");
    let other = db.open_again().await;
    assert!(!lock.is_held(Duration::from_secs(5)).await);
    other.lock_monitor().await.unwrap().release().await;
    other.close().await;
}

/// Processes that open one new SQLite file at once (a monitor starting and a
/// `tdmon status` beside it) all get a migrated store: the one that loses the
/// race to migrate finds the other's work done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_file_opened_by_several_at_once_is_migrated_once() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { tdmon_store::Store::open(&url).await })
            })
            .collect();
        for open in opening {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {}", tdmon_core::error_chain(&e)));
            assert_eq!(store.status(Utc::now()).await.unwrap().observations, 0);
            store.close().await;
        }
    }
}

/// Roles that open one new PostgreSQL schema at once (a compose file starting
/// them together) all get it, migrated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_postgres_schema_opened_by_several_at_once_is_created_once() {
    let url = std::env::var("TDMON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "off" {
        return;
    }
    let schema = format!("tdmon_test_{}", Uuid::new_v4().simple());
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move {
                let options = tdmon_store::StoreOptions {
                    schema: Some(schema),
                };
                tdmon_store::Store::open_with(&url, &options).await
            })
        })
        .collect();
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for open in opening {
        match open.await.unwrap() {
            Ok(store) => opened.push(store),
            Err(e) => failed.push(tdmon_core::error_chain(&e)),
        }
    }
    for store in &opened {
        assert_eq!(store.status(Utc::now()).await.unwrap().observations, 0);
    }
    if let Some(store) = opened.first() {
        store.drop_schema().await.unwrap();
    }
    for store in opened {
        store.close().await;
    }
    assert!(failed.is_empty(), "{failed:?}");
}
