//! The process's connection to the broker, kept alive: reconnects with
//! backoff, publishes with confirms, consumes with a bounded prefetch.
//!
//! Recovery is this crate's own, not lapin's: whenever the connection or one
//! of its channels fails, [`Broker::link`] opens a new connection (declaring
//! the topology again), and each consumer subscribes again on it, applying
//! its prefetch before consuming. Deliveries taken from the old connection
//! cannot be settled any more ([`BusError::Stale`]); the broker delivers them
//! again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{StreamExt, future};
use lapin::message::Delivery as RawDelivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Consumer, PublisherConfirm};
use tdmon_bus::BusError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff;
use crate::config::BusSettings;
use crate::link::{ConnectError, Link};
use crate::topology::{self, Topology};

/// Publishing gives up after this many rounds that left messages
/// unconfirmed (nacked, or caught in a connection failure).
const PUBLISH_ATTEMPTS: usize = 3;

/// How long one round of publishing waits for the socket and the broker's
/// confirms. A connection reset mid-publish can leave a confirm that never
/// resolves; past this bound the rest of the round counts as unconfirmed
/// and is published again, on a new connection if need be.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(15);

/// How long closing waits for the acknowledgements in flight.
const ACK_DRAIN: Duration = Duration::from_secs(5);

/// One message to publish.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
    /// Unroutable is a failure (the broker returns the message), not a loss.
    pub(crate) mandatory: bool,
}

/// Persistent JSON.
pub(crate) fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

/// Where a consumer's deliveries come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A queue of the topology.
    Queue(String),
    /// A private queue of this connection (exclusive, deleted with it),
    /// bound to the results exchange with these keys.
    Private(Vec<String>),
}

/// A consumer that survives reconnections.
#[derive(Debug)]
pub(crate) struct Intake {
    source: Source,
    prefetch: u16,
    pub(crate) subscription: tokio::sync::Mutex<Option<Subscription>>,
}

impl Intake {
    pub(crate) fn new(source: Source, prefetch: u16) -> Intake {
        Intake {
            source,
            prefetch,
            subscription: tokio::sync::Mutex::default(),
        }
    }
}

/// A consumer on its own channel of one connection.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The queue it consumes (server-named for a private one).
    queue: String,
    consumer: Consumer,
    /// Kept open for as long as its deliveries may be settled.
    _channel: Channel,
}

#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) settings: BusSettings,
    pub(crate) topology: Topology,
    pub(crate) name: String,
    current: Mutex<Option<Arc<Link>>>,
    /// Held while connecting, so that one task connects and the others wait
    /// for it; counts the connections opened.
    connecting: tokio::sync::Mutex<u64>,
    /// One publisher at a time hands messages to the connection.
    publishing: tokio::sync::Mutex<()>,
    /// Acknowledgements on their way to the broker.
    pub(crate) acks: TaskTracker,
    /// Something was unroutable or a consumer was cancelled: the topology
    /// may have lost a queue, so the next use declares it again.
    redeclare: AtomicBool,
    /// Ends consumption; publishing and settling go on.
    pub(crate) consuming: CancellationToken,
    /// Ends everything.
    pub(crate) closed: CancellationToken,
}

impl Broker {
    pub(crate) fn new(settings: BusSettings, name: String) -> Broker {
        Broker {
            topology: Topology::new(settings.prefix()),
            settings,
            name,
            current: Mutex::default(),
            connecting: tokio::sync::Mutex::default(),
            publishing: tokio::sync::Mutex::default(),
            acks: TaskTracker::new(),
            redeclare: AtomicBool::new(false),
            consuming: CancellationToken::new(),
            closed: CancellationToken::new(),
        }
    }

    fn live(&self) -> Option<Arc<Link>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .filter(|link| link.is_open())
    }

    /// The current connection, once it is open and the topology declared.
    /// Waits, reconnecting with backoff, for as long as the broker cannot be
    /// reached (each failure is logged); fails at once when the broker
    /// refuses the topology, or when the bus is closed.
    pub(crate) async fn link(&self) -> Result<Arc<Link>, BusError> {
        self.link_or_retry(true).await
    }

    /// Like [`Broker::link`], but a broker that cannot be reached is an
    /// error instead of a reason to wait.
    pub(crate) async fn link_once(&self) -> Result<Arc<Link>, BusError> {
        self.link_or_retry(false).await
    }

    async fn link_or_retry(&self, retry: bool) -> Result<Arc<Link>, BusError> {
        if let Some(link) = self.live()
            && !self.redeclare.load(Ordering::Acquire)
        {
            return Ok(link);
        }
        let mut opened = tokio::select! {
            guard = self.connecting.lock() => guard,
            () = self.closed.cancelled() => return Err(BusError::Closed),
        };
        if let Some(link) = self.live() {
            if self.redeclare.swap(false, Ordering::AcqRel) {
                topology::declare(
                    &link.control,
                    &self.topology,
                    self.settings.delivery_limit(),
                )
                .await
                .map_err(|source| {
                    BusError::Refused(Box::new(ConnectError::Topology {
                        endpoint: self.settings.url().endpoint(),
                        source,
                    }))
                })?;
            }
            return Ok(link);
        }
        let stale = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(stale) = stale {
            // Ends the consumers still on it, so that they subscribe again.
            stale.close("reconnecting").await;
        }
        self.redeclare.store(false, Ordering::Release);
        let mut attempt = 0;
        loop {
            match Link::open(&self.settings, &self.topology, &self.name).await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *opened += 1;
                    if *opened > 1 {
                        tracing::info!(broker = %self.settings.url().endpoint(), reconnections = *opened - 1, "connected to the broker again");
                    }
                    *self
                        .current
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&link));
                    return Ok(link);
                }
                Err(e @ ConnectError::Topology { .. }) => {
                    return Err(BusError::Refused(Box::new(e)));
                }
                Err(e) if !retry => return Err(BusError::Unreachable(Box::new(e))),
                Err(e) => {
                    let pause = backoff::delay(
                        attempt,
                        self.settings.reconnect_min(),
                        self.settings.reconnect_max(),
                        fastrand::f64(),
                    );
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        error = %tdmon_core::error_chain(&e),
                        retry_in = %tdmon_core::duration::format(pause),
                        "cannot reach the broker; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.closed.cancelled() => return Err(BusError::Closed),
                    }
                }
            }
        }
    }

    /// Publishes `messages` and awaits their confirms, `confirm_batch` at a
    /// time. Nacked messages, and those caught in a connection failure, are
    /// published again (on a new connection if need be), for
    /// [`PUBLISH_ATTEMPTS`] rounds. A returned (unroutable) message fails the
    /// call at once: publishing it again would only route it nowhere again;
    /// the topology is declared again before the next publish.
    pub(crate) async fn publish(&self, mut messages: Vec<Outgoing>) -> Result<(), BusError> {
        let mut failure = None;
        for _ in 0..PUBLISH_ATTEMPTS {
            let link = self.link().await?;
            let mut unconfirmed = vec![false; messages.len()];
            let mut returned = None;
            for (offset, chunk) in (0..)
                .step_by(self.settings.confirm_batch())
                .zip(messages.chunks(self.settings.confirm_batch()))
            {
                let deadline = tokio::time::Instant::now() + CONFIRM_PATIENCE;
                let Ok(confirms) =
                    tokio::time::timeout_at(deadline, self.send(&link.publisher, chunk)).await
                else {
                    unconfirmed[offset..offset + chunk.len()].fill(true);
                    failure = Some(format!(
                        "the broker did not take them within {CONFIRM_PATIENCE:?}"
                    ));
                    continue;
                };
                for (index, confirm) in (offset..).zip(confirms) {
                    let confirmation = match confirm {
                        Ok(confirm) => tokio::time::timeout_at(deadline, confirm).await.ok(),
                        Err(e) => Some(Err(e)),
                    };
                    let Some(confirmation) = confirmation else {
                        unconfirmed[index] = true;
                        failure = Some(format!("no confirm within {CONFIRM_PATIENCE:?}"));
                        continue;
                    };
                    confirmed(match &confirmation {
                        Ok(Confirmation::Ack(None)) => "ack",
                        Ok(Confirmation::Ack(Some(_))) => "returned",
                        Ok(Confirmation::Nack(_)) => "nack",
                        Ok(Confirmation::NotRequested) | Err(_) => "failed",
                    });
                    match confirmation {
                        Ok(Confirmation::Ack(None)) => {}
                        Ok(Confirmation::Ack(Some(back))) => {
                            returned.get_or_insert_with(|| {
                                format!(
                                    "exchange {:?}, routing key {:?}: {}",
                                    back.delivery.exchange.as_str(),
                                    back.delivery.routing_key.as_str(),
                                    back.reply_text
                                )
                            });
                        }
                        Ok(Confirmation::Nack(_)) => {
                            unconfirmed[index] = true;
                            failure = Some("the broker refused it (nack)".to_owned());
                        }
                        Ok(Confirmation::NotRequested) => {
                            unconfirmed[index] = true;
                            failure = Some("the channel was not in confirm mode".to_owned());
                        }
                        Err(e) => {
                            unconfirmed[index] = true;
                            failure = Some(format!("the connection failed ({e})"));
                        }
                    }
                }
            }
            if let Some(returned) = returned {
                self.redeclare.store(true, Ordering::Release);
                return Err(BusError::Returned(returned));
            }
            let mut flags = unconfirmed.into_iter();
            messages.retain(|_| flags.next().unwrap_or(false));
            if messages.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                unconfirmed = messages.len(),
                reason = failure.as_deref().unwrap_or_default(),
                "messages not confirmed; publishing them again"
            );
        }
        Err(BusError::NotConfirmed(format!(
            "{} messages after {PUBLISH_ATTEMPTS} attempts, the last because {}",
            messages.len(),
            failure.unwrap_or_default()
        )))
    }

    /// Hands `messages` to the connection, pipelined, and returns what each
    /// publish gave: the future of its confirm, or the error.
    async fn send(
        &self,
        channel: &Channel,
        messages: &[Outgoing],
    ) -> Vec<lapin::Result<PublisherConfirm>> {
        // The broker numbers confirms in the order messages reach it, and
        // lapin in the order they were published: one publisher at a time
        // on the shared channel keeps the two orders the same.
        let serial = self.publishing.lock().await;
        let mut sending = Vec::with_capacity(messages.len());
        for message in messages {
            let options = BasicPublishOptions {
                mandatory: message.mandatory,
                immediate: false,
            };
            let mut publish = Box::pin(channel.basic_publish(
                message.exchange.clone(),
                message.routing_key.clone(),
                options,
                &message.body,
                message.properties.clone(),
            ));
            // The first poll numbers the message and queues its frames; the
            // rest waits for the socket. Polling each once before awaiting
            // any sends the batch without a wait per message.
            let early = future::poll_once(&mut publish).await;
            sending.push((early, publish));
        }
        drop(serial);
        let mut confirms = Vec::with_capacity(sending.len());
        for (early, publish) in sending {
            confirms.push(match early {
                Some(done) => done,
                None => publish.await,
            });
        }
        confirms
    }

    /// Ready messages in `queue` (not counting those delivered and not yet
    /// acknowledged): one passive declaration on the long-lived control
    /// channel.
    pub(crate) async fn depth(&self, queue: &str) -> Result<usize, BusError> {
        let link = self.link().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = link
            .control
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(broker_error)?;
        Ok(declared.message_count() as usize)
    }

    /// The next delivery of `intake`, subscribing (again) as needed; `None`
    /// once consumption stops, or at `until`.
    pub(crate) async fn next_delivery(
        &self,
        intake: &Intake,
        subscription: &mut Option<Subscription>,
        until: Option<Instant>,
    ) -> Option<RawDelivery> {
        let mut failures = 0;
        loop {
            if self.consuming.is_cancelled() {
                return None;
            }
            let current = match subscription {
                Some(current) => current,
                // A batch filling up ends rather than wait for a new
                // subscription.
                None if until.is_some() => return None,
                None => match self.subscribe(intake).await {
                    Ok(new) => subscription.insert(new),
                    Err(BusError::Closed) => return None,
                    Err(e) => {
                        tracing::error!(error = %tdmon_core::error_chain(&e), "cannot consume; retrying");
                        self.pause(failures).await;
                        failures = failures.saturating_add(1);
                        continue;
                    }
                },
            };
            let deadline = async {
                match until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                () = self.consuming.cancelled() => return None,
                () = deadline => return None,
                next = current.consumer.next() => next,
            };
            match next {
                // Taken from lapin's buffer after its channel closed: the
                // broker delivers it again, on the new channel.
                Some(Ok(delivery)) if delivery.acker.poisoned() => continue,
                Some(Ok(delivery)) => return Some(delivery),
                Some(Err(e)) => {
                    tracing::warn!(queue = %current.queue, error = %e, "consumer lost; subscribing again");
                }
                None => {
                    // Cancelled by the broker: its queue may have been deleted.
                    tracing::warn!(queue = %current.queue, "consumer cancelled; subscribing again");
                    self.redeclare.store(true, Ordering::Release);
                }
            }
            *subscription = None;
            self.pause(0).await;
        }
    }

    /// A reconnection pause, so that a failing subscription does not spin.
    async fn pause(&self, failures: u32) {
        let pause = backoff::delay(
            failures,
            self.settings.reconnect_min(),
            self.settings.reconnect_max(),
            fastrand::f64(),
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.consuming.cancelled() => {}
        }
    }

    /// A new consumer on its own channel, its prefetch set first: lapin
    /// buffers whatever the broker sends, so the prefetch is what bounds it.
    pub(crate) async fn subscribe(&self, intake: &Intake) -> Result<Subscription, BusError> {
        let link = self.link().await?;
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(broker_error)?;
        channel
            .basic_qos(intake.prefetch, BasicQosOptions::default())
            .await
            .map_err(broker_error)?;
        let queue = match &intake.source {
            Source::Queue(queue) => queue.clone(),
            Source::Private(bindings) => {
                let options = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                };
                let declared = channel
                    .queue_declare("".into(), options, FieldTable::default())
                    .await
                    .map_err(broker_error)?;
                let queue = declared.name().to_string();
                for key in bindings {
                    channel
                        .queue_bind(
                            queue.as_str().into(),
                            self.topology.results().into(),
                            key.as_str().into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(broker_error)?;
                }
                queue
            }
        };
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_error)?;
        Ok(Subscription {
            queue,
            consumer,
            _channel: channel,
        })
    }

    /// Stops consuming, lets the acknowledgements in flight go out, and
    /// closes the connection.
    pub(crate) async fn close(&self) {
        self.consuming.cancel();
        self.acks.close();
        if tokio::time::timeout(ACK_DRAIN, self.acks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "acknowledgements still unsent at close; the broker delivers those messages again"
            );
        }
        self.closed.cancel();
        let current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(link) = current {
            link.close("closing").await;
        }
    }
}

/// A failed request: refused by the broker, or lost with the connection.
pub(crate) fn broker_error(error: lapin::Error) -> BusError {
    if error.is_amqp_error() {
        BusError::Refused(Box::new(error))
    } else {
        BusError::Unreachable(Box::new(error))
    }
}

/// Counts one publisher confirm by its result.
fn confirmed(result: &'static str) {
    tdmon_metrics::metrics()
        .publish_confirms
        .get_or_create(&tdmon_metrics::ResultLabel { result })
        .inc();
}
