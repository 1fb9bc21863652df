//! The bus between tdmon's roles (docs/OPERATIONS.md): the dispatcher takes
//! [`Notice`]s in and publishes [`CheckJob`]s, workers consume those and
//! publish [`Observation`]s, the collector consumes those and publishes
//! [`Event`]s for downstream systems.
//!
//! [`Bus`] is the interface the role code is written against; [`InProcessBus`]
//! implements it on bounded channels for the embedded deployment, and the
//! RabbitMQ implementation of the distributed deployment (crate
//! `tdmon-bus-amqp`) sits behind the same trait. Delivery is at least once: a
//! consumer acknowledges a [`Delivery`] only after what it caused is durable,
//! and every consumer is idempotent.

mod in_process;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tdmon_core::notice::Notice;
use tdmon_core::{CheckJob, Event, Observation};

pub use in_process::{InProcessBus, InProcessCapacity};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus is shut down; nothing more can be published.
    #[error("the bus is closed")]
    Closed,
    /// A requeue found no room (a lease brings the message's URL back).
    #[error("the queue is full")]
    Full,
    /// The broker refused or lost a message.
    #[error("the broker did not confirm the message: {0}")]
    NotConfirmed(String),
    /// The broker cannot be reached.
    #[error("the broker is unreachable")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The broker could not route a message published as mandatory: no queue
    /// is bound for it.
    #[error("the broker returned a message as unroutable ({0})")]
    Returned(String),
    /// The broker refused a request, such as a declaration that contradicts
    /// the topology it already has.
    #[error("the broker refused a request")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The delivery came over a channel that has closed since: it can no
    /// longer be settled, and the broker delivers the message again.
    #[error("the delivery's channel has closed; the broker delivers the message again")]
    Stale,
}

/// A settlement's result with a closed channel taken as done: the broker
/// delivers such a message again, and what it causes is applied idempotently
/// (a stored observation is a duplicate the second time, a stored notice
/// too), so a consumer goes on instead of failing. Other errors stay errors.
pub fn settled(result: Result<(), BusError>) -> Result<(), BusError> {
    match result {
        Err(BusError::Stale) => {
            tracing::warn!(
                "a delivery's channel closed before it was settled; the broker delivers it again"
            );
            Ok(())
        }
        other => other,
    }
}

/// What to do with a delivery that was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Put it back for another consumer (a transient failure of ours).
    Requeue,
    /// Never deliver it again: it goes to the dead-letter queue (a message that
    /// cannot be processed must not loop).
    DeadLetter,
}

/// What settling a delivery returns.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>>;

/// Settles a delivery with the bus it came from.
pub trait Acknowledge: Send + 'static {
    fn ack(self: Box<Self>) -> AckFuture;
    fn reject(self: Box<Self>, how: Reject) -> AckFuture;
    /// Like `reject(Reject::DeadLetter)`, and the dead letter says why.
    fn dead_letter(self: Box<Self>, reason: String) -> AckFuture;
}

/// A message and the means to settle it.
pub struct Delivery<T> {
    pub message: T,
    acker: Box<dyn Acknowledge>,
}

impl<T> Delivery<T> {
    pub fn new(message: T, acker: Box<dyn Acknowledge>) -> Self {
        Self { message, acker }
    }

    /// Done: the bus forgets the message.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    pub async fn reject(self, how: Reject) -> Result<(), BusError> {
        self.acker.reject(how).await
    }

    /// Never deliver it again, and keep `reason` with the dead letter (for a
    /// message that cannot be processed, such as an invalid notice).
    pub async fn dead_letter(self, reason: impl Into<String>) -> Result<(), BusError> {
        self.acker.dead_letter(reason.into()).await
    }
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// The operations the roles need from a bus.
pub trait Bus: Send + Sync + 'static {
    /// Publishes check jobs; returns once the bus holds all of them.
    fn publish_jobs(
        &self,
        jobs: Vec<CheckJob>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Jobs published and not yet taken by a worker: the dispatcher pauses
    /// above its high-water mark.
    fn jobs_waiting(&self) -> impl Future<Output = Result<usize, BusError>> + Send;

    /// The next job; `None` once the bus is closed and drained.
    fn next_job(&self) -> impl Future<Output = Option<Delivery<CheckJob>>> + Send;

    /// Publishes one observation; returns once the bus holds it.
    fn publish_observation(
        &self,
        observation: Observation,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Up to `max` observations: waits for the first, then at most `linger`
    /// for more to fill the batch. Empty once the bus is closed and drained.
    fn next_observations(
        &self,
        max: usize,
        linger: Duration,
    ) -> impl Future<Output = Vec<Delivery<Observation>>> + Send;

    /// Publishes state-change events for downstream consumers.
    fn publish_events(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Publishes notices to the intake; returns once the bus holds all of
    /// them. Other systems publish to the intake directly.
    fn publish_notices(
        &self,
        notices: Vec<Notice>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Up to `max` notices from the intake, batched like
    /// [`Bus::next_observations`]. A message that is not a valid notice never
    /// gets here: the bus dead-letters it with the reason.
    fn next_notices(
        &self,
        max: usize,
        linger: Duration,
    ) -> impl Future<Output = Vec<Delivery<Notice>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_channel_is_settled_and_every_other_failure_is_not() {
        assert!(settled(Ok(())).is_ok());
        assert!(settled(Err(BusError::Stale)).is_ok());
        assert!(matches!(
            settled(Err(BusError::Closed)),
            Err(BusError::Closed)
        ));
    }
}
