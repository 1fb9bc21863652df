//! The collector against a real (SQLite) store and the in-process bus.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tdmon_bus::{Bus, InProcessBus, InProcessCapacity};
use tdmon_collector::{Collector, CollectorConfig};
use tdmon_core::message::{DnsOutcome, DnsResult, SchemaV1};
use tdmon_core::notice::Notice;
use tdmon_core::state::Rules;
use tdmon_core::url::NormalizedUrl;
use tdmon_core::{EventKind, Observation, Outcome, Verdict, VerdictMap};
use tdmon_store::Store;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn observation(url_id: i64) -> Observation {
    Observation {
        schema: SchemaV1,
        job_id: Uuid::new_v4(),
        url_id,
        url: "http://a.sim.test/x.html".into(),
        worker: "test".into(),
        started_at: Utc::now(),
        answered_at: Utc::now(),
        duration_ms: 3,
        dns: DnsResult {
            outcome: DnsOutcome::Ok,
            answers: vec![],
        },
        ip: None,
        asn: None,
        as_org: None,
        hoster: None,
        cdn: false,
        http: None,
        tls_error: None,
        fingerprint: None,
        outcome: Outcome::Served,
        verdict: Verdict::Online,
    }
}

async fn store_with_one_url(dir: &std::path::Path) -> (Store, i64) {
    let store = Store::open(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .unwrap();
    let notice = Notice {
        url: NormalizedUrl::parse("http://a.sim.test/x.html").unwrap(),
        notified_at: Utc::now(),
        notice_id: None,
        category: None,
        reporter: None,
        claimed_hoster: None,
    };
    let added = store.add_notices(&[notice], Utc::now()).await.unwrap();
    (store, added.added[0])
}

fn config() -> CollectorConfig {
    CollectorConfig {
        retry_delay: Duration::from_millis(20),
        ..CollectorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_are_stored_once_and_their_events_published() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url_id) = store_with_one_url(dir.path()).await;
    let bus = Arc::new(InProcessBus::default());
    let mut events = bus.subscribe_events();
    let first = observation(url_id);
    for copy in [first.clone(), first.clone(), observation(999)] {
        bus.publish_observation(copy).await.unwrap();
    }
    bus.close_observations();
    let collector = Collector::new(
        store.clone(),
        Arc::clone(&bus),
        Rules::default(),
        VerdictMap::default(),
        config(),
    );
    collector.run(CancellationToken::new(), None).await.unwrap();

    assert_eq!(
        store.observations(url_id).await.unwrap().len(),
        1,
        "a redelivery is stored once"
    );
    assert_eq!(
        bus.dead_letters(),
        1,
        "the unknown URL's observation is dead-lettered"
    );
    assert_eq!(events.recv().await.unwrap().kind, EventKind::FirstOnline);
    assert!(events.try_recv().is_err(), "one event, published once");
    assert!(
        store.unpublished_events(10).await.unwrap().is_empty(),
        "the outbox is empty"
    );
}

/// A store that fails must not wedge the collector: it keeps its batch and
/// retries, while the workers fill the (small) queue behind it; a shutdown
/// then ends it instead of waiting forever for room in its own queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_does_not_wedge_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url_id) = store_with_one_url(dir.path()).await;
    store.close().await;
    let bus = Arc::new(InProcessBus::new(InProcessCapacity {
        jobs: 2,
        observations: 2,
        events: 2,
    }));
    let collector = Collector::new(
        store,
        Arc::clone(&bus),
        Rules::default(),
        VerdictMap::default(),
        config(),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(collector.run(shutdown.clone(), None));
    // The collector holds at least one in its batch; two more fill the queue.
    for _ in 0..3 {
        tokio::time::timeout(
            Duration::from_secs(5),
            bus.publish_observation(observation(url_id)),
        )
        .await
        .expect("the queue drains into the collector's batch")
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    bus.close_observations();
    let ended = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the collector stops once shut down")
        .unwrap();
    assert!(ended.is_err(), "the store failure is reported");
}

/// The collector, not the worker, decides what an outcome means: a worker
/// configured otherwise (or an old one) changes no figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_re_derived_with_the_owners_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url_id) = store_with_one_url(dir.path()).await;
    let bus = Arc::new(InProcessBus::default());
    let mut forbidden = observation(url_id);
    forbidden.outcome = Outcome::HttpForbidden;
    forbidden.verdict = Verdict::Online; // what a misconfigured worker said
    bus.publish_observation(forbidden).await.unwrap();
    bus.close_observations();
    let owners = VerdictMap::with_overrides([(Outcome::HttpForbidden, Verdict::Offline)].into());
    let collector = Collector::new(
        store.clone(),
        Arc::clone(&bus),
        Rules::default(),
        owners,
        config(),
    );
    collector.run(CancellationToken::new(), None).await.unwrap();
    let stored = store.observations(url_id).await.unwrap();
    assert_eq!(
        stored[0].verdict,
        Verdict::Offline,
        "stored as the owner maps it"
    );
    let state = &store.states(&[url_id]).await.unwrap()[0];
    assert_eq!(
        state.first_online_at, None,
        "and applied so: never seen online"
    );
    assert!(state.run.unwrap().first_offline.is_some());
}
