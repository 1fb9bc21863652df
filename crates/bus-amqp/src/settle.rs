//! Settling a delivery with the broker: manual acks on the channel it came
//! from, and dead letters that carry their reason.

use std::sync::Arc;

use lapin::message::Delivery as RawDelivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, LongString};
use tdmon_bus::{AckFuture, Acknowledge, BusError, Reject};

use crate::broker::{Broker, Outgoing};
use crate::topology::ERROR_HEADER;

/// The means to settle one delivery from a work queue.
pub(crate) struct Settle {
    pub(crate) broker: Arc<Broker>,
    /// The queue it came from: its dead letters are routed by its name.
    pub(crate) queue: String,
    pub(crate) delivery: RawDelivery,
}

impl Settle {
    async fn reject(&self, requeue: bool) -> Result<(), BusError> {
        match self
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue })
            .await
        {
            Ok(true) => Ok(()),
            // Its channel has closed (lapin poisons the acker then).
            Ok(false) | Err(_) => Err(BusError::Stale),
        }
    }

    /// With quorum queues a message rejected to its dead-letter exchange
    /// keeps its headers as they were, so the reason cannot travel with a
    /// rejection: the message is published again to the dead-letter exchange,
    /// with the reason in a header, and the original acknowledged once that
    /// copy is confirmed. If the copy fails, the original is requeued: the
    /// delivery limit parks it should that keep happening.
    pub(crate) async fn dead_letter(self, reason: String) -> Result<(), BusError> {
        let mut properties = self.delivery.properties.clone();
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        properties = properties.with_headers(headers);
        let copy = Outgoing {
            exchange: self.broker.topology.dead().into(),
            routing_key: self.queue.as_str().into(),
            body: self.delivery.data.clone(),
            properties,
            mandatory: true,
        };
        match self.broker.publish(vec![copy]).await {
            Ok(()) => self.ack().await,
            Err(e) => {
                let _ = self.reject(true).await;
                Err(e)
            }
        }
    }

    /// Sends the acknowledgement without waiting for it to be written: a
    /// consumer that acknowledges a batch one delivery at a time would
    /// otherwise wait for the connection's IO once per delivery. Waiting
    /// would promise nothing more: the broker answers no acknowledgement, and
    /// one lost with the connection only means the message comes again.
    /// Closing the bus waits for the acknowledgements in flight.
    async fn ack(&self) -> Result<(), BusError> {
        // lapin poisons an acker a moment after its channel closes; a bus
        // closed by its owner is known at once.
        if self.broker.closed.is_cancelled() || self.delivery.acker.poisoned() {
            return Err(BusError::Stale);
        }
        let acker = self.delivery.acker.clone();
        self.broker.acks.spawn(async move {
            if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                tracing::debug!(error = %e, "an acknowledgement was lost with its channel");
            }
        });
        Ok(())
    }
}

impl Acknowledge for Settle {
    fn ack(self: Box<Self>) -> AckFuture {
        Box::pin(async move { Settle::ack(&self).await })
    }

    fn reject(self: Box<Self>, how: Reject) -> AckFuture {
        Box::pin(async move { Settle::reject(&self, how == Reject::Requeue).await })
    }

    fn dead_letter(self: Box<Self>, reason: String) -> AckFuture {
        Box::pin(Settle::dead_letter(*self, reason))
    }
}
