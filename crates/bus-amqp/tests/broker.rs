//! The RabbitMQ bus against this machine's broker. Each test has a topology
//! of its own (a fresh prefix), deleted at its end; none stops the broker.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tdmon_bus::{Bus, BusError, Reject};
use tdmon_bus_amqp::{AmqpBus, BusConfig, ERROR_HEADER};
use tdmon_core::error_chain;
use tdmon_core::notice::Notice;
use tokio::time::timeout;

use support::{Admin, Scratch, event, find_connection, header, job, observation, rabbitmqctl};

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_round_and_acknowledged_ones_stay_gone() {
    let scratch = Scratch::new();
    let bus = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    let jobs = vec![job(1), job(2), job(3)];
    bus.publish_jobs(jobs.clone()).await.unwrap();
    assert_eq!(bus.jobs_waiting().await.unwrap(), 3);

    for expected in &jobs {
        let delivery = timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap();
        assert_eq!(&delivery.message, expected, "in publishing order");
        delivery.ack().await.unwrap();
    }
    bus.close().await;

    let again = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    assert_eq!(again.jobs_waiting().await.unwrap(), 0);
    assert!(
        timeout(Duration::from_millis(500), again.next_job())
            .await
            .is_err(),
        "an acknowledged job is never delivered again"
    );
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_not_acknowledged_is_delivered_again_once_its_consumer_is_gone() {
    let scratch = Scratch::new();
    let first = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    let sent = job(7);
    first.publish_jobs(vec![sent.clone()]).await.unwrap();
    let held = timeout(PATIENCE, first.next_job()).await.unwrap().unwrap();
    assert_eq!(held.message, sent);
    first.close().await;
    assert!(
        matches!(held.ack().await, Err(BusError::Stale)),
        "a delivery of a closed channel cannot be acknowledged"
    );

    let second = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    let again = timeout(PATIENCE, second.next_job()).await.unwrap().unwrap();
    assert_eq!(again.message, sent);
    again.ack().await.unwrap();
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_waits_for_confirms_and_a_refusal_is_an_error() {
    let mut scratch = Scratch::new();
    let settings = scratch.settings(|config| config.confirm_batch = 100);
    let bus = AmqpBus::connect(settings, &scratch.role("dispatcher"))
        .await
        .unwrap();
    let jobs: Vec<_> = (0..1050).map(job).collect();
    bus.publish_jobs(jobs).await.unwrap();
    assert_eq!(
        bus.jobs_waiting().await.unwrap(),
        1050,
        "every confirmed job is in the queue"
    );

    // A full queue refuses more (the topology sets `x-overflow =
    // reject-publish`): the broker nacks, and the publish fails.
    let checks = scratch.topology().checks().to_owned();
    scratch.set_policy(&checks, r#"{"max-length": 1050}"#);
    // The queue applies a policy a moment after it is set.
    let mut refused = None;
    for url_id in 5000..5050 {
        if let Err(e) = bus.publish_jobs(vec![job(url_id)]).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("a full queue refuses publishing");
    assert!(matches!(refused, BusError::NotConfirmed(_)), "{refused:?}");
    assert!(
        error_chain(&refused).contains("nack"),
        "{}",
        error_chain(&refused)
    );
    scratch.clear_policies();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_returned_and_the_topology_declared_again() {
    let scratch = Scratch::new();
    let bus = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    let admin = Admin::connect().await;
    // Nothing binds `observation.#` any more.
    admin.delete_queue(scratch.topology().collector()).await;

    let lost = observation(1);
    let err = bus.publish_observation(lost).await.unwrap_err();
    let BusError::Returned(what) = &err else {
        panic!("expected a returned message, got {err:?}");
    };
    assert!(what.contains("observation.online"), "{what}");
    assert!(what.contains("NO_ROUTE"), "{what}");

    // The next publish declares the topology again, and goes through.
    let kept = observation(2);
    bus.publish_observation(kept.clone()).await.unwrap();
    let batch = timeout(
        PATIENCE,
        bus.next_observations(10, Duration::from_millis(200)),
    )
    .await
    .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].message, kept);
    for delivery in batch {
        delivery.ack().await.unwrap();
    }
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_its_worker_is_parked() {
    let scratch = Scratch::new();
    let limit = 2;
    let settings = scratch.settings(|config| config.delivery_limit = limit);
    let dispatcher = AmqpBus::connect(settings.clone(), &scratch.role("dispatcher"))
        .await
        .unwrap();
    let poison = job(66);
    dispatcher.publish_jobs(vec![poison.clone()]).await.unwrap();

    let mut deliveries = 0;
    loop {
        let worker = AmqpBus::connect(settings.clone(), &scratch.role("worker"))
            .await
            .unwrap();
        let delivery = timeout(Duration::from_secs(2), worker.next_job()).await;
        // The worker dies with the job: its connection closes unacknowledged.
        worker.close().await;
        match delivery {
            Ok(Some(delivery)) => {
                assert_eq!(delivery.message, poison);
                deliveries += 1;
                assert!(deliveries <= limit + 1, "the job loops");
            }
            _ => break,
        }
    }
    assert_eq!(
        deliveries,
        limit + 1,
        "delivered once, then redelivered `limit` times"
    );
    let admin = Admin::connect().await;
    let parked = admin
        .take(scratch.topology().checks_dead(), PATIENCE)
        .await
        .expect("the job is in the dead-letter queue");
    let parked_job: tdmon_core::CheckJob = serde_json::from_slice(&parked.delivery.data).unwrap();
    assert_eq!(parked_job, poison);
    assert_eq!(
        header(&parked, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(dispatcher.jobs_waiting().await.unwrap(), 0);
    dispatcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_that_cannot_be_processed_is_dead_lettered_with_its_reason() {
    let scratch = Scratch::new();
    let bus = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("dispatcher"))
        .await
        .unwrap();
    let admin = Admin::connect().await;
    let intake = scratch.topology().notices().to_owned();
    let dead = scratch.topology().notices_dead().to_owned();
    let origin = [("x-origin", "hotline-7")];
    admin
        .publish_raw(&intake, b"not json at all", &origin)
        .await;
    admin
        .publish_raw(
            &intake,
            br#"{"url": "ftp://files.example/x", "notified_at": "2026-01-01T00:00:00Z"}"#,
            &origin,
        )
        .await;
    let valid: Notice = serde_json::from_value(serde_json::json!({
        "url": "http://h1.example/a", "notified_at": "2026-01-01T00:00:00Z", "notice_id": "n-1"
    }))
    .unwrap();
    bus.publish_notices(vec![valid.clone()]).await.unwrap();

    let batch = timeout(PATIENCE, bus.next_notices(10, Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(batch.len(), 1, "only the valid notice is handed over");
    assert_eq!(batch[0].message, valid);
    // The dispatcher finds it is a duplicate, say: it says so.
    batch
        .into_iter()
        .next()
        .unwrap()
        .dead_letter("duplicate of notice n-1")
        .await
        .unwrap();

    let mut reasons = Vec::new();
    for _ in 0..3 {
        let message = admin
            .take(&dead, PATIENCE)
            .await
            .expect("three dead letters");
        let reason = header(&message, ERROR_HEADER).expect("every dead letter says why");
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        if body.starts_with("not json") || body.contains("ftp://") {
            assert_eq!(
                header(&message, "x-origin").as_deref(),
                Some("hotline-7"),
                "a dead letter keeps the headers it came with"
            );
        }
        reasons.push((body, reason));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, "not json at all");
    assert!(
        reasons[0].1.starts_with("not a valid notice: expected"),
        "{reasons:?}"
    );
    assert!(reasons[1].0.contains("ftp://"), "{reasons:?}");
    assert_eq!(
        reasons[1].1,
        r#"not a valid notice: url: "ftp://files.example/x": scheme "ftp" is not http or https"#
    );
    assert!(reasons[2].0.contains("h1.example"), "{reasons:?}");
    assert_eq!(reasons[2].1, "duplicate of notice n-1");
    assert!(
        admin.take(&intake, Duration::ZERO).await.is_none(),
        "nothing left"
    );
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefetch_bounds_what_a_consumer_holds_unacknowledged() {
    let scratch = Scratch::new();
    let settings = scratch.settings(|config| config.prefetch.jobs = 3);
    let bus = AmqpBus::connect(settings, &scratch.role("worker"))
        .await
        .unwrap();
    bus.publish_jobs((0..10).map(job).collect()).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap());
    }
    assert!(
        timeout(Duration::from_millis(500), bus.next_job())
            .await
            .is_err(),
        "a fourth waits for an acknowledgement"
    );
    assert_eq!(
        bus.jobs_waiting().await.unwrap(),
        7,
        "the broker keeps the rest"
    );
    held.remove(0).ack().await.unwrap();
    let fourth = timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap();
    assert_eq!(fourth.message.url_id, 3);
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_broker_is_restored_with_its_topology() {
    let scratch = Scratch::new();
    let settings = scratch.settings(|config| config.heartbeat = Duration::from_secs(7));
    let bus = AmqpBus::connect(settings, &scratch.role("worker"))
        .await
        .unwrap();
    let sent = [job(1), job(2)];
    bus.publish_jobs(sent.to_vec()).await.unwrap();
    let held = timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap();

    let (pid, heartbeat) = find_connection(bus.connection_name());
    assert_eq!(heartbeat, 7, "the heartbeat asked for is the one agreed");
    let admin = Admin::connect().await;
    let parking = scratch.topology().checks_dead().to_owned();
    admin.delete_queue(&parking).await;
    rabbitmqctl(&["close_connection", &pid, "test: closed by the broker"]);

    // Consumption goes on, on a new connection: both jobs come again. One
    // taken just as the connection closed may fail to settle, and comes once
    // more.
    let mut done = BTreeSet::new();
    while done.len() < 2 {
        let delivery = timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap();
        let job_id = delivery.message.job_id;
        match delivery.ack().await {
            Ok(()) => done.insert(job_id),
            Err(BusError::Stale) => continue,
            Err(e) => panic!("{e:?}"),
        };
    }
    assert_eq!(done, sent.iter().map(|j| j.job_id).collect::<BTreeSet<_>>());
    assert!(matches!(held.ack().await, Err(BusError::Stale)));
    assert!(
        admin.queue_exists(&parking).await,
        "the topology was declared again"
    );
    let (new_pid, _) = find_connection(bus.connection_name());
    assert_ne!(new_pid, pid);

    // And publishing too.
    let later = job(3);
    bus.publish_jobs(vec![later.clone()]).await.unwrap();
    let delivery = timeout(PATIENCE, bus.next_job()).await.unwrap().unwrap();
    assert_eq!(delivery.message, later);
    delivery.ack().await.unwrap();
    bus.close().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_named_without_the_password() {
    let port = closed_port();
    let config = BusConfig {
        url: format!("amqp://tdmon:s3cret@127.0.0.1:{port}/%2f")
            .try_into()
            .unwrap(),
        ..BusConfig::default()
    };
    let err = AmqpBus::try_connect(config.validate().unwrap(), "test")
        .await
        .unwrap_err();
    let shown = error_chain(&err);
    assert!(matches!(err, BusError::Unreachable(_)), "{shown}");
    assert!(
        shown.starts_with(&format!(
            "the broker is unreachable: cannot connect to the broker at 127.0.0.1:{port}"
        )),
        "{shown}"
    );
    for text in [shown, format!("{err:?}")] {
        assert!(!text.contains("s3cret"), "{text}");
    }
}

/// Runs on one thread, so that the log capture sees the bus's warnings.
#[tokio::test]
async fn connecting_keeps_trying_until_the_broker_answers() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let capture = Arc::clone(&logs);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || Capture(Arc::clone(&capture)))
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let scratch = Scratch::new();
    let port = closed_port();
    let settings = scratch.settings(|config| {
        config.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
            .try_into()
            .unwrap();
    });
    let connecting = tokio::spawn(AmqpBus::connect(settings, "test"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!connecting.is_finished(), "still trying");

    // The broker appears at that address: a relay to the real one.
    let relay = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = relay.accept().await {
            tokio::spawn(async move {
                let mut broker = tokio::net::TcpStream::connect("127.0.0.1:5672")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            });
        }
    });
    let bus = timeout(PATIENCE, connecting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    bus.publish_jobs(vec![job(1)]).await.unwrap();
    bus.close().await;

    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let warnings: Vec<_> = logs
        .lines()
        .filter(|line| line.contains("cannot reach the broker; retrying"))
        .collect();
    assert!(warnings.len() >= 3, "{logs}");
    assert!(
        warnings[0].contains(&format!("cannot connect to the broker at 127.0.0.1:{port}")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_delivery_limit_is_refused_with_the_queue_named() {
    let scratch = Scratch::new();
    let bus = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("worker"))
        .await
        .unwrap();
    let changed = scratch.settings(|config| config.delivery_limit = 3);
    let err = AmqpBus::connect(changed, &scratch.role("worker"))
        .await
        .unwrap_err();
    let shown = error_chain(&err);
    assert!(matches!(err, BusError::Refused(_)), "{shown}");
    assert!(
        shown.contains(&format!(
            "cannot declare queue {}",
            scratch.topology().checks()
        )),
        "{shown}"
    );
    assert!(shown.contains("x-delivery-limit"), "{shown}");
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_sees_what_its_bindings_select() {
    let scratch = Scratch::new();
    let bus = AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("collector"))
        .await
        .unwrap();
    let mut tail = bus.tail(vec!["event.takedown".to_owned()]).await.unwrap();
    bus.publish_events(vec![event("first_online", 1), event("takedown", 2)])
        .await
        .unwrap();
    let seen = timeout(PATIENCE, tail.next()).await.unwrap().unwrap();
    assert_eq!(seen.routing_key, "event.takedown");
    let event: tdmon_core::Event = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(event.url_id, 2);
    assert!(
        timeout(Duration::from_millis(300), tail.next())
            .await
            .is_err(),
        "event.first_online is not bound"
    );
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_work_comes_back_and_stopping_ends_consumption() {
    let scratch = Scratch::new();
    let bus = Arc::new(
        AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("collector"))
            .await
            .unwrap(),
    );
    bus.publish_observation(observation(4)).await.unwrap();
    let batch = timeout(
        PATIENCE,
        bus.next_observations(10, Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let first = batch.into_iter().next().unwrap();
    let url_id = first.message.url_id;
    first.reject(Reject::Requeue).await.unwrap();
    let again = timeout(
        PATIENCE,
        bus.next_observations(10, Duration::from_millis(100)),
    )
    .await
    .unwrap();
    assert_eq!(again[0].message.url_id, url_id);

    let waiting = tokio::spawn({
        let bus = Arc::clone(&bus);
        async move { bus.next_observations(10, Duration::from_millis(100)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.stop_consuming();
    assert!(
        timeout(PATIENCE, waiting)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    // What was delivered can still be settled.
    for delivery in again {
        delivery.ack().await.unwrap();
    }
    bus.close().await;
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
