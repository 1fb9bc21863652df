//! Throughput of the RabbitMQ bus on this machine's broker (docs/BENCHMARKS.md).
//! Benchmarks, not tests: run them alone, in release mode:
//!
//! ```text
//! cargo test --release -p tdmon-bus-amqp --test throughput -- --ignored --nocapture --test-threads 1
//! ```

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tdmon_bus::Bus;
use tdmon_bus_amqp::AmqpBus;

use support::{Scratch, job, observation};

/// The collector's default batch and linger.
const COLLECT_BATCH: usize = 500;
const LINGER: Duration = Duration::from_millis(50);
/// A worker's default `max_in_flight`: observations published at once.
const PUBLISHERS: usize = 64;

fn rate(count: usize, elapsed: Duration) -> String {
    format!(
        "{count} in {:.2} s = {:.0}/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark"]
async fn jobs_published_with_confirms() {
    const JOBS: usize = 100_000;
    // One `publish_jobs` per dispatcher round: 500 jobs by default.
    for (round, confirm_batch) in [(500, 100), (500, 500), (2000, 2000)] {
        let scratch = Scratch::new();
        let settings = scratch.settings(|config| config.confirm_batch = confirm_batch);
        let bus = AmqpBus::connect(settings, &scratch.role("bench"))
            .await
            .unwrap();
        let batches: Vec<Vec<_>> = (0..JOBS as i64)
            .map(job)
            .collect::<Vec<_>>()
            .chunks(round)
            .map(<[_]>::to_vec)
            .collect();
        let start = Instant::now();
        for batch in batches {
            bus.publish_jobs(batch).await.unwrap();
        }
        let elapsed = start.elapsed();
        assert_eq!(bus.jobs_waiting().await.unwrap(), JOBS);
        println!(
            "jobs published, {round} per call, confirm_batch {confirm_batch}: {}",
            rate(JOBS, elapsed)
        );
        bus.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark"]
async fn observations_published_then_consumed_and_acknowledged() {
    const OBSERVATIONS: usize = 100_000;
    let scratch = Scratch::new();
    let bus = Arc::new(
        AmqpBus::connect(scratch.settings(|_| {}), &scratch.role("bench"))
            .await
            .unwrap(),
    );
    let start = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let bus = Arc::clone(&bus);
            tokio::spawn(async move {
                for n in (publisher..OBSERVATIONS).step_by(PUBLISHERS) {
                    bus.publish_observation(observation(n as i64))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    println!(
        "observations published, {PUBLISHERS} at a time: {}",
        rate(OBSERVATIONS, start.elapsed())
    );

    let start = Instant::now();
    let mut consumed = 0;
    while consumed < OBSERVATIONS {
        let batch = bus.next_observations(COLLECT_BATCH, LINGER).await;
        consumed += batch.len();
        for delivery in batch {
            delivery.ack().await.unwrap();
        }
    }
    println!(
        "observations consumed and acknowledged, batches of {COLLECT_BATCH}: {}",
        rate(consumed, start.elapsed())
    );
    assert_eq!(consumed, OBSERVATIONS);
    bus.close().await;
}
