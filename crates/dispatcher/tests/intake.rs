//! Notice intake against a real (SQLite) store and the in-process bus.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use tdmon_bus::{Bus, InProcessBus};
use tdmon_core::notice::{Notice, NoticeRules};
use tdmon_core::url::NormalizedUrl;
use tdmon_dispatcher::{DispatcherConfig, Intake, IntakeTotals};
use tdmon_store::Store;
use tokio_util::sync::CancellationToken;

fn notice(id: &str, hours_ago: i64) -> Notice {
    Notice {
        url: NormalizedUrl::parse(&format!("http://files.sim.test/{id}.jpg")).unwrap(),
        notified_at: Utc::now() - TimeDelta::hours(hours_ago),
        notice_id: Some(id.to_owned()),
        category: None,
        reporter: None,
        claimed_hoster: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_stored_once_and_bad_times_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    store
        .add_notices(&[notice("N-0", 5)], Utc::now())
        .await
        .unwrap();
    let bus = Arc::new(InProcessBus::default());
    let future = notice("N-9", -72); // three days ahead: over notices.max_future
    bus.publish_notices(vec![
        notice("N-1", 2),
        notice("N-0", 5), // already stored
        future,
        notice("N-2", 1),
        notice("N-1", 2), // again, within the batch
    ])
    .await
    .unwrap();
    bus.close_notices();
    let intake = Intake::new(
        store.clone(),
        Arc::clone(&bus),
        NoticeRules::default(),
        DispatcherConfig::default().validate().unwrap(),
    );
    let totals = intake.run(CancellationToken::new()).await.unwrap();
    assert_eq!(
        totals,
        IntakeTotals {
            added: 2,
            duplicates: 2,
            refused: 1
        }
    );
    assert_eq!(bus.dead_letters(), 1, "the future notice, with its reason");
    let stored: Vec<String> = store
        .all_states()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.subject.notice_id)
        .collect();
    assert_eq!(stored, ["N-0", "N-1", "N-2"]);
}
