//! The queues and exchanges of the distributed deployment (docs/MESSAGES.md),
//! every name derived from one prefix:
//!
//! - `<prefix>.checks`: the check jobs (published through the default
//!   exchange), consumed by the workers;
//! - `<prefix>.results`: topic exchange, routing keys `observation.<verdict>`
//!   and `event.<kind>`; `<prefix>.collector` binds `observation.#`;
//! - `<prefix>.notices`: the intake, consumed by the dispatcher;
//! - `<prefix>.dead`: direct exchange for dead letters; the dead letters of
//!   queue Q go to `Q.dead`, with Q's name as routing key.
//!
//! The three work queues are durable quorum queues with a delivery limit: a
//! message whose deliveries keep ending without an ack (a job that kills its
//! worker) is dead-lettered instead of looping. Their dead-lettering is
//! at-least-once (the broker keeps a dead letter until its queue confirms it),
//! which RabbitMQ allows only with `x-overflow = reject-publish`: a length
//! limit set by a policy then refuses publishing, which the publisher sees as
//! a nack, instead of dropping old messages.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use tdmon_core::{EventKind, Verdict};

/// The names of one deployment's queues and exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    checks: String,
    checks_dead: String,
    notices: String,
    notices_dead: String,
    collector: String,
    collector_dead: String,
    results: String,
    dead: String,
}

impl Topology {
    pub fn new(prefix: &str) -> Topology {
        let name = |suffix: &str| format!("{prefix}.{suffix}");
        Topology {
            checks: name("checks"),
            checks_dead: name("checks.dead"),
            notices: name("notices"),
            notices_dead: name("notices.dead"),
            collector: name("collector"),
            collector_dead: name("collector.dead"),
            results: name("results"),
            dead: name("dead"),
        }
    }

    /// The queue of check jobs.
    pub fn checks(&self) -> &str {
        &self.checks
    }

    /// Where jobs that cannot be processed are parked.
    pub fn checks_dead(&self) -> &str {
        &self.checks_dead
    }

    /// The intake of notices.
    pub fn notices(&self) -> &str {
        &self.notices
    }

    pub fn notices_dead(&self) -> &str {
        &self.notices_dead
    }

    /// The collector's queue of observations.
    pub fn collector(&self) -> &str {
        &self.collector
    }

    pub fn collector_dead(&self) -> &str {
        &self.collector_dead
    }

    /// The topic exchange of observations and events.
    pub fn results(&self) -> &str {
        &self.results
    }

    /// The exchange of dead letters.
    pub fn dead(&self) -> &str {
        &self.dead
    }

    pub fn queues(&self) -> [&str; 6] {
        [
            &self.checks,
            &self.checks_dead,
            &self.notices,
            &self.notices_dead,
            &self.collector,
            &self.collector_dead,
        ]
    }

    pub fn exchanges(&self) -> [&str; 2] {
        [&self.results, &self.dead]
    }

    /// Work queues and their dead-letter queues.
    fn work_queues(&self) -> [(&str, &str); 3] {
        [
            (&self.checks, &self.checks_dead),
            (&self.notices, &self.notices_dead),
            (&self.collector, &self.collector_dead),
        ]
    }
}

/// The routing key of an observation on the results exchange.
pub fn observation_key(verdict: Verdict) -> String {
    format!("observation.{}", verdict.as_str())
}

/// The routing key of an event on the results exchange.
pub fn event_key(kind: EventKind) -> String {
    format!("event.{}", kind.as_str())
}

/// The header a dead letter carries its reason in.
pub const ERROR_HEADER: &str = "x-tdmon-error";

/// A declaration the broker refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot declare {what}")]
pub struct DeclareError {
    what: String,
    #[source]
    source: lapin::Error,
}

/// Declares the whole topology. Idempotent: the broker accepts a declaration
/// that matches what exists, and refuses (closing the channel) one whose
/// arguments differ, such as another `delivery_limit`.
///
/// Every role declares all of it, not only the queues it consumes: a worker
/// publishing observations before the collector ever ran needs the
/// collector's queue bound, or its mandatory publishes come back unroutable.
pub(crate) async fn declare(
    channel: &Channel,
    topology: &Topology,
    delivery_limit: u32,
) -> Result<(), DeclareError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (exchange, kind) in [
        (&topology.results, ExchangeKind::Topic),
        (&topology.dead, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|source| DeclareError {
                what: format!("exchange {exchange}"),
                source,
            })?;
    }
    for (queue, dead) in topology.work_queues() {
        declare_queue(channel, dead, quorum()).await?;
        bind(channel, dead, &topology.dead, queue).await?;
        let mut arguments = quorum();
        let mut set = |key: &str, value: AMQPValue| {
            arguments.insert(key.into(), value);
        };
        set(
            "x-delivery-limit",
            AMQPValue::LongLongInt(i64::from(delivery_limit)),
        );
        set("x-dead-letter-exchange", text(&topology.dead));
        set("x-dead-letter-routing-key", text(queue));
        set("x-dead-letter-strategy", text("at-least-once"));
        set("x-overflow", text("reject-publish"));
        declare_queue(channel, queue, arguments).await?;
    }
    bind(
        channel,
        &topology.collector,
        &topology.results,
        "observation.#",
    )
    .await
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), DeclareError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .map(drop)
        .map_err(|source| DeclareError {
            what: format!("queue {queue}"),
            source,
        })
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), DeclareError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| DeclareError {
            what: format!("the binding of queue {queue} to {exchange} with key {key}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_derives_from_the_prefix() {
        let topology = Topology::new("t1");
        assert_eq!(
            topology.queues(),
            [
                "t1.checks",
                "t1.checks.dead",
                "t1.notices",
                "t1.notices.dead",
                "t1.collector",
                "t1.collector.dead"
            ]
        );
        assert_eq!(topology.exchanges(), ["t1.results", "t1.dead"]);
    }

    #[test]
    fn routing_keys_name_the_verdict_or_the_kind() {
        assert_eq!(
            observation_key(Verdict::Inconclusive),
            "observation.inconclusive"
        );
        assert_eq!(event_key(EventKind::HosterChanged), "event.hoster_changed");
    }
}
