//! The RabbitMQ bus of the distributed deployment: the [`Bus`] interface on
//! lapin, with the topology described in docs/MESSAGES.md.
//!
//! - One connection per process, named `tdmon-<role>-<host>-<pid>`, with
//!   heartbeats; one channel in confirm mode shared by every publisher, and a
//!   channel of its own for each consumer.
//! - Every message is persistent JSON. Publishing waits for the broker's
//!   confirms, a batch at a time; a nack is published again, and a message
//!   returned as unroutable is an error ([`BusError::Returned`]).
//! - Consumers acknowledge manually, with a bounded prefetch. A message that
//!   does not decode is dead-lettered with the reason in `x-tdmon-error`.
//! - A lost connection is opened again with backoff and jitter, declaring
//!   the topology and applying each consumer's prefetch again (see
//!   `broker.rs`). Deliveries from the lost connection fail to settle with
//!   [`BusError::Stale`]; the broker delivers them again.

mod backoff;
mod broker;
mod config;
mod link;
mod settle;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicAckOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tdmon_bus::{Bus, BusError, Delivery};
use tdmon_core::notice::Notice;
use tdmon_core::{CheckJob, Event, Observation};
use tokio::time::Instant;

use crate::broker::{
    Broker, Intake, Outgoing, Source, Subscription, broker_error, json_properties,
};
use crate::settle::Settle;

pub use config::{BrokerUrl, BusConfig, BusSettings, ConfigError, Prefetch, UrlError};
pub use link::ConnectError;
pub use topology::{DeclareError, ERROR_HEADER, Topology, event_key, observation_key};

/// A work queue this process may consume.
#[derive(Debug)]
struct Work {
    intake: Intake,
    queue: String,
    /// What its messages are, for the reason a message that does not decode
    /// is dead-lettered with.
    what: &'static str,
}

impl Work {
    fn new(queue: &str, prefetch: u16, what: &'static str) -> Work {
        Work {
            intake: Intake::new(Source::Queue(queue.to_owned()), prefetch),
            queue: queue.to_owned(),
            what,
        }
    }
}

/// The RabbitMQ [`Bus`]. Consumers start on first use, so a process
/// consumes only what its role asks for.
#[derive(Debug)]
pub struct AmqpBus {
    broker: Arc<Broker>,
    jobs: Work,
    observations: Work,
    notices: Work,
}

impl AmqpBus {
    /// Connects and declares the topology. While the broker cannot be
    /// reached this keeps trying, with backoff, logging each failure; it
    /// fails only when the broker refuses the topology (such as queues
    /// declared earlier with another `delivery_limit`). `role` names the
    /// connection: `tdmon-<role>-<host>-<pid>`.
    pub async fn connect(settings: BusSettings, role: &str) -> Result<AmqpBus, BusError> {
        let broker = Arc::new(Broker::new(settings, link::connection_name(role)));
        broker.link().await?;
        Ok(AmqpBus::on(broker))
    }

    /// Like [`AmqpBus::connect`], but one attempt: a broker that cannot be
    /// reached is an error ([`BusError::Unreachable`], naming where it
    /// tried), for commands that should not wait. Once connected, the bus
    /// reconnects as always.
    pub async fn try_connect(settings: BusSettings, role: &str) -> Result<AmqpBus, BusError> {
        let broker = Arc::new(Broker::new(settings, link::connection_name(role)));
        broker.link_once().await?;
        Ok(AmqpBus::on(broker))
    }

    fn on(broker: Arc<Broker>) -> AmqpBus {
        let prefetch = broker.settings.prefetch();
        let topology = &broker.topology;
        AmqpBus {
            jobs: Work::new(topology.checks(), prefetch.jobs, "check job"),
            observations: Work::new(topology.collector(), prefetch.observations, "observation"),
            notices: Work::new(topology.notices(), prefetch.notices, "notice"),
            broker,
        }
    }

    /// The name the broker lists the connection under.
    pub fn connection_name(&self) -> &str {
        &self.broker.name
    }

    pub fn topology(&self) -> &Topology {
        &self.broker.topology
    }

    /// Ends consumption: waiting and later calls of `next_*` return nothing.
    /// Publishing, and settling what was delivered, go on: a role stops
    /// taking work, finishes what it holds, then closes the bus.
    pub fn stop_consuming(&self) {
        self.broker.consuming.cancel();
    }

    /// Stops consuming and publishing, and closes the connection; the broker
    /// delivers again whatever was not acknowledged.
    pub async fn close(&self) {
        self.broker.close().await;
    }

    /// Deletes every queue and exchange of the topology, messages included:
    /// for tests and demos, at their end.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let link = self.broker.link().await?;
        for queue in self.topology().queues() {
            link.control
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .map_err(broker_error)?;
        }
        for exchange in self.topology().exchanges() {
            link.control
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await
                .map_err(broker_error)?;
        }
        Ok(())
    }

    /// What the results exchange carries for these routing keys (such as
    /// `event.#`), from the moment this returns, on a queue of this
    /// connection's own (deleted with it). What is published while the
    /// connection is being restored is missed.
    pub async fn tail(&self, bindings: Vec<String>) -> Result<Tail, BusError> {
        let prefetch = self.broker.settings.prefetch().observations;
        let intake = Intake::new(Source::Private(bindings), prefetch);
        let subscription = self.broker.subscribe(&intake).await?;
        *intake.subscription.lock().await = Some(subscription);
        Ok(Tail {
            broker: Arc::clone(&self.broker),
            intake,
        })
    }

    async fn next_message<T: DeserializeOwned>(
        &self,
        work: &Work,
        subscription: &mut Option<Subscription>,
        until: Option<Instant>,
    ) -> Option<Delivery<T>> {
        loop {
            let raw = self
                .broker
                .next_delivery(&work.intake, subscription, until)
                .await?;
            let decoded = serde_json::from_slice::<T>(&raw.data);
            let settle = Settle {
                broker: Arc::clone(&self.broker),
                queue: work.queue.clone(),
                delivery: raw,
            };
            match decoded {
                Ok(message) => return Some(Delivery::new(message, Box::new(settle))),
                Err(e) => {
                    let reason = format!("not a valid {}: {e}", work.what);
                    tracing::warn!(queue = %work.queue, reason, "message dead-lettered");
                    // On a task of its own: a batch that stops waiting must
                    // not leave it half settled, holding its prefetch slot.
                    tokio::spawn(async move {
                        if let Err(e) = settle.dead_letter(reason).await {
                            tracing::warn!(error = %tdmon_core::error_chain(&e), "cannot dead-letter a message; it was requeued");
                        }
                    });
                }
            }
        }
    }

    async fn next_batch<T: DeserializeOwned>(
        &self,
        work: &Work,
        max: usize,
        linger: Duration,
    ) -> Vec<Delivery<T>> {
        let mut subscription = work.intake.subscription.lock().await;
        let Some(first) = self.next_message(work, &mut subscription, None).await else {
            return Vec::new();
        };
        let until = Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < max {
            match self
                .next_message(work, &mut subscription, Some(until))
                .await
            {
                Some(delivery) => batch.push(delivery),
                None => break,
            }
        }
        batch
    }
}

/// Every message type serializes: no maps, no keys that are not strings.
fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("tdmon's messages always serialize")
}

impl Bus for AmqpBus {
    async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        let checks = self.topology().checks();
        let messages = jobs
            .iter()
            .map(|job| Outgoing {
                // The default exchange routes to the queue of that name.
                exchange: "".into(),
                routing_key: checks.into(),
                body: encode(job),
                properties: json_properties().with_message_id(job.job_id.to_string().into()),
                mandatory: true,
            })
            .collect();
        self.broker.publish(messages).await
    }

    async fn jobs_waiting(&self) -> Result<usize, BusError> {
        self.broker.depth(self.topology().checks()).await
    }

    async fn next_job(&self) -> Option<Delivery<CheckJob>> {
        let mut subscription = self.jobs.intake.subscription.lock().await;
        self.next_message(&self.jobs, &mut subscription, None).await
    }

    async fn publish_observation(&self, observation: Observation) -> Result<(), BusError> {
        let message = Outgoing {
            exchange: self.topology().results().into(),
            routing_key: observation_key(observation.verdict).into(),
            body: encode(&observation),
            properties: json_properties().with_message_id(observation.job_id.to_string().into()),
            mandatory: true,
        };
        self.broker.publish(vec![message]).await
    }

    async fn next_observations(&self, max: usize, linger: Duration) -> Vec<Delivery<Observation>> {
        self.next_batch(&self.observations, max, linger).await
    }

    /// Not mandatory: downstream systems bind queues of their own, and with
    /// none bound an event has no audience yet (the store keeps every event).
    async fn publish_events(&self, events: Vec<Event>) -> Result<(), BusError> {
        let results = self.topology().results();
        let messages = events
            .iter()
            .map(|event| Outgoing {
                exchange: results.into(),
                routing_key: event_key(event.kind).into(),
                body: encode(event),
                properties: json_properties(),
                mandatory: false,
            })
            .collect();
        self.broker.publish(messages).await
    }

    async fn publish_notices(&self, notices: Vec<Notice>) -> Result<(), BusError> {
        let intake = self.topology().notices();
        let messages = notices
            .iter()
            .map(|notice| {
                let mut properties = json_properties();
                if let Some(id) = &notice.notice_id {
                    properties = properties.with_message_id(id.as_str().into());
                }
                Outgoing {
                    exchange: "".into(),
                    routing_key: intake.into(),
                    body: encode(notice),
                    properties,
                    mandatory: true,
                }
            })
            .collect();
        self.broker.publish(messages).await
    }

    async fn next_notices(&self, max: usize, linger: Duration) -> Vec<Delivery<Notice>> {
        self.next_batch(&self.notices, max, linger).await
    }
}

/// A live view of the results exchange: see [`AmqpBus::tail`].
#[derive(Debug)]
pub struct Tail {
    broker: Arc<Broker>,
    intake: Intake,
}

/// One message seen by a [`Tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tailed {
    pub routing_key: String,
    /// JSON, as published.
    pub body: Vec<u8>,
}

impl Tail {
    /// The next message; `None` once the bus stops consuming. Each is
    /// acknowledged as it is handed over: a tail shows what flows, it does
    /// not process it.
    pub async fn next(&mut self) -> Option<Tailed> {
        let mut subscription = self.intake.subscription.lock().await;
        let raw = self
            .broker
            .next_delivery(&self.intake, &mut subscription, None)
            .await?;
        // Fails only with its connection, which takes the queue along.
        let _ = raw.acker.ack(BasicAckOptions::default()).await;
        Some(Tailed {
            routing_key: raw.routing_key.to_string(),
            body: raw.data,
        })
    }
}
