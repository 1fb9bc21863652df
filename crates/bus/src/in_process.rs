//! The embedded bus: bounded channels inside one process. Bounded, so a full
//! checks queue pushes back on the dispatcher instead of growing without end.
//! A message lost with the process is not a lost measurement: its URL's lease
//! runs out and the dispatcher queues it again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tdmon_core::notice::Notice;
use tdmon_core::{CheckJob, Event, Observation};
use tokio::sync::{Mutex as AsyncMutex, broadcast, mpsc};

use crate::{AckFuture, Acknowledge, Bus, BusError, Delivery, Reject};

/// Channel sizes of an [`InProcessBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProcessCapacity {
    pub jobs: usize,
    pub observations: usize,
    /// Events kept for a slow subscriber before it misses some (the store
    /// keeps every event; this feed is for live displays).
    pub events: usize,
}

impl Default for InProcessCapacity {
    fn default() -> Self {
        Self {
            jobs: 1024,
            observations: 1024,
            events: 1024,
        }
    }
}

/// Notices the intake holds. The embedded monitor takes its notices from
/// files, straight into the store; this intake is for code written against
/// [`Bus`] that takes notices from it.
const NOTICE_CAPACITY: usize = 1024;

/// One bounded queue that can be closed from the publishing side.
#[derive(Debug)]
struct Queue<T> {
    sender: Mutex<Option<mpsc::Sender<T>>>,
    receiver: AsyncMutex<mpsc::Receiver<T>>,
}

impl<T: Send + 'static> Queue<T> {
    fn new(capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        Self {
            sender: Mutex::new(Some(sender)),
            receiver: AsyncMutex::new(receiver),
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<T>, BusError> {
        self.sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or(BusError::Closed)
    }

    async fn send(&self, message: T) -> Result<(), BusError> {
        self.sender()?
            .send(message)
            .await
            .map_err(|_| BusError::Closed)
    }

    fn close(&self) {
        self.sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }

    fn waiting(&self) -> Result<usize, BusError> {
        let sender = self.sender()?;
        Ok(sender.max_capacity() - sender.capacity())
    }

    /// Waits for the first message, then at most `linger` for more, up to `max`.
    async fn next_batch(&self, max: usize, linger: Duration) -> Vec<T> {
        let mut receiver = self.receiver.lock().await;
        let Some(first) = receiver.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(message)) => batch.push(message),
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }
}

/// The in-process [`Bus`].
#[derive(Debug)]
pub struct InProcessBus {
    jobs: Queue<CheckJob>,
    observations: Queue<Observation>,
    notices: Queue<Notice>,
    events: broadcast::Sender<Event>,
    dead_letters: Arc<AtomicU64>,
}

impl InProcessBus {
    pub fn new(capacity: InProcessCapacity) -> Self {
        Self {
            jobs: Queue::new(capacity.jobs),
            observations: Queue::new(capacity.observations),
            notices: Queue::new(NOTICE_CAPACITY),
            events: broadcast::channel(capacity.events.max(1)).0,
            dead_letters: Arc::default(),
        }
    }

    /// Stops the flow of jobs: publishing fails, and consumers get `None`
    /// once the queue is empty.
    pub fn close_jobs(&self) {
        self.jobs.close();
    }

    /// Stops the flow of observations, likewise. Deliveries not settled yet
    /// may still requeue, so consumers see the end once they are settled.
    pub fn close_observations(&self) {
        self.observations.close();
    }

    /// Stops the intake of notices, likewise.
    pub fn close_notices(&self) {
        self.notices.close();
    }

    /// Takes every job still waiting, so that a shutdown can give their
    /// leases back instead of letting them run out.
    pub async fn take_waiting_jobs(&self) -> Vec<CheckJob> {
        let mut receiver = self.jobs.receiver.lock().await;
        std::iter::from_fn(|| receiver.try_recv().ok()).collect()
    }

    /// A live feed of the events published from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Deliveries rejected without requeue (each was logged as an error).
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(InProcessCapacity::default())
    }
}

/// Settles an in-process delivery: an ack is a no-op; a requeue puts the
/// message back if the queue has room; a dead letter is counted and logged.
struct Settle<T> {
    requeue: mpsc::Sender<T>,
    message: T,
    dead_letters: Arc<AtomicU64>,
}

impl<T: Send + std::fmt::Debug + 'static> Acknowledge for Settle<T> {
    fn ack(self: Box<Self>) -> AckFuture {
        Box::pin(async { Ok(()) })
    }

    fn reject(self: Box<Self>, how: Reject) -> AckFuture {
        Box::pin(async move {
            match how {
                // Never wait for room: the consumer that would make it may
                // be the one requeueing.
                Reject::Requeue => self.requeue.try_send(self.message).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => BusError::Full,
                    mpsc::error::TrySendError::Closed(_) => BusError::Closed,
                }),
                Reject::DeadLetter => {
                    self.dead_letters.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(message = ?self.message, "message dead-lettered");
                    Ok(())
                }
            }
        })
    }

    fn dead_letter(self: Box<Self>, reason: String) -> AckFuture {
        Box::pin(async move {
            self.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::error!(message = ?self.message, reason, "message dead-lettered");
            Ok(())
        })
    }
}

impl InProcessBus {
    fn delivery<T: Send + std::fmt::Debug + Clone + 'static>(
        &self,
        queue: &Queue<T>,
        message: T,
    ) -> Delivery<T> {
        let acker: Box<dyn Acknowledge> = match queue.sender() {
            Ok(requeue) => Box::new(Settle {
                requeue,
                message: message.clone(),
                dead_letters: Arc::clone(&self.dead_letters),
            }),
            // Closed for publishing: a requeue has nowhere to go.
            Err(_) => Box::new(Closed {
                dead_letters: Arc::clone(&self.dead_letters),
            }),
        };
        Delivery::new(message, acker)
    }
}

/// Settles a delivery taken after its queue was closed.
struct Closed {
    dead_letters: Arc<AtomicU64>,
}

impl Acknowledge for Closed {
    fn ack(self: Box<Self>) -> AckFuture {
        Box::pin(async { Ok(()) })
    }

    fn reject(self: Box<Self>, how: Reject) -> AckFuture {
        Box::pin(async move {
            match how {
                Reject::Requeue => Err(BusError::Closed),
                Reject::DeadLetter => {
                    self.dead_letters.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("message dead-lettered");
                    Ok(())
                }
            }
        })
    }

    fn dead_letter(self: Box<Self>, reason: String) -> AckFuture {
        Box::pin(async move {
            self.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::error!(reason, "message dead-lettered");
            Ok(())
        })
    }
}

impl Bus for InProcessBus {
    async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        let sender = self.jobs.sender()?;
        for job in jobs {
            sender.send(job).await.map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    async fn jobs_waiting(&self) -> Result<usize, BusError> {
        self.jobs.waiting()
    }

    async fn next_job(&self) -> Option<Delivery<CheckJob>> {
        let job = self.jobs.receiver.lock().await.recv().await?;
        Some(self.delivery(&self.jobs, job))
    }

    async fn publish_observation(&self, observation: Observation) -> Result<(), BusError> {
        self.observations.send(observation).await
    }

    async fn next_observations(&self, max: usize, linger: Duration) -> Vec<Delivery<Observation>> {
        let batch = self.observations.next_batch(max, linger).await;
        batch
            .into_iter()
            .map(|observation| self.delivery(&self.observations, observation))
            .collect()
    }

    async fn publish_events(&self, events: Vec<Event>) -> Result<(), BusError> {
        for event in events {
            // No subscriber is fine: the store keeps every event.
            let _ = self.events.send(event);
        }
        Ok(())
    }

    async fn publish_notices(&self, notices: Vec<Notice>) -> Result<(), BusError> {
        let sender = self.notices.sender()?;
        for notice in notices {
            sender.send(notice).await.map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    async fn next_notices(&self, max: usize, linger: Duration) -> Vec<Delivery<Notice>> {
        let batch = self.notices.next_batch(max, linger).await;
        batch
            .into_iter()
            .map(|notice| self.delivery(&self.notices, notice))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tdmon_core::message::SchemaV1;
    use tdmon_core::{CheckJob, Purpose};
    use uuid::Uuid;

    use super::*;

    fn job(url_id: i64) -> CheckJob {
        CheckJob {
            schema: SchemaV1,
            job_id: Uuid::new_v4(),
            url_id,
            url: format!("http://h{url_id}.sim.test/"),
            purpose: Purpose::Scheduled,
            due_at: Utc::now(),
            expires_at: Utc::now(),
            baseline: None,
        }
    }

    #[tokio::test]
    async fn a_full_queue_pushes_back_and_reports_its_depth() {
        let bus = InProcessBus::new(InProcessCapacity {
            jobs: 2,
            observations: 2,
            events: 2,
        });
        bus.publish_jobs(vec![job(1), job(2)]).await.unwrap();
        assert_eq!(bus.jobs_waiting().await.unwrap(), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), bus.publish_jobs(vec![job(3)]));
        assert!(third.await.is_err(), "a third job must wait for room");
        let first = bus.next_job().await.unwrap();
        assert_eq!(first.message.url_id, 1);
        first.ack().await.unwrap();
        assert_eq!(bus.jobs_waiting().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn requeue_delivers_again_and_dead_letters_are_counted() {
        let bus = InProcessBus::default();
        bus.publish_jobs(vec![job(7)]).await.unwrap();
        let delivery = bus.next_job().await.unwrap();
        delivery.reject(Reject::Requeue).await.unwrap();
        let again = bus.next_job().await.unwrap();
        assert_eq!(again.message.url_id, 7);
        again.reject(Reject::DeadLetter).await.unwrap();
        assert_eq!(bus.dead_letters(), 1);
        assert_eq!(bus.jobs_waiting().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn closing_drains_then_ends_and_refuses_publishing() {
        let bus = InProcessBus::default();
        bus.publish_jobs(vec![job(1), job(2)]).await.unwrap();
        bus.close_jobs();
        assert!(matches!(
            bus.publish_jobs(vec![job(3)]).await,
            Err(BusError::Closed)
        ));
        let waiting = bus.take_waiting_jobs().await;
        assert_eq!(waiting.iter().map(|j| j.url_id).collect::<Vec<_>>(), [1, 2]);
        assert!(bus.next_job().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn observations_come_in_batches_bounded_by_size_and_linger() {
        let bus = std::sync::Arc::new(InProcessBus::default());
        let observation = |url_id| {
            serde_json::from_value::<Observation>(serde_json::json!({
                "schema": 1, "job_id": Uuid::new_v4(), "url_id": url_id, "url": "http://a.sim.test/",
                "worker": "w", "started_at": "2026-01-01T00:00:00Z",
                "answered_at": "2026-01-01T00:00:00.001Z", "duration_ms": 1,
                "dns": {"outcome": "ok", "answers": []}, "ip": null, "asn": null, "as_org": null,
                "hoster": null, "http": null, "tls_error": null, "fingerprint": null,
                "outcome": "served", "verdict": "online"
            }))
            .unwrap()
        };
        for url_id in 0..5 {
            bus.publish_observation(observation(url_id)).await.unwrap();
        }
        let batch = bus.next_observations(3, Duration::from_secs(1)).await;
        assert_eq!(batch.len(), 3);
        let rest = bus.next_observations(3, Duration::from_secs(1)).await;
        assert_eq!(rest.len(), 2, "the linger ends a short batch");
        // Unsettled deliveries can still requeue: the queue ends once they are settled.
        for delivery in batch.into_iter().chain(rest) {
            delivery.ack().await.unwrap();
        }
        bus.close_observations();
        assert!(
            bus.next_observations(3, Duration::from_secs(1))
                .await
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn notices_flow_through_the_intake_and_dead_letters_are_counted() {
        let bus = InProcessBus::default();
        let notice = |n: u32| {
            serde_json::from_value::<Notice>(serde_json::json!({
                "url": format!("http://h{n}.example/x"),
                "notified_at": "2026-01-01T00:00:00Z",
            }))
            .unwrap()
        };
        bus.publish_notices(vec![notice(1), notice(2)])
            .await
            .unwrap();
        let batch = bus.next_notices(10, Duration::from_millis(10)).await;
        let urls: Vec<String> = batch.iter().map(|d| d.message.url.to_string()).collect();
        assert_eq!(urls, ["http://h1.example/x", "http://h2.example/x"]);
        let mut batch = batch.into_iter();
        batch.next().unwrap().ack().await.unwrap();
        batch
            .next()
            .unwrap()
            .dead_letter("duplicate of notice 1")
            .await
            .unwrap();
        assert_eq!(bus.dead_letters(), 1);
        bus.close_notices();
        assert!(
            bus.next_notices(10, Duration::from_millis(10))
                .await
                .is_empty()
        );
    }
}
