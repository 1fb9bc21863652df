//! Helpers for the tests against this machine's RabbitMQ (127.0.0.1:5672,
//! guest/guest): a fresh topology per test, removed when the test ends,
//! pass or fail; a plain lapin connection to look behind the bus; and
//! `rabbitmqctl` for what only the broker's side can do.

#![allow(dead_code)] // Each test binary uses a part.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tdmon_bus_amqp::{BusConfig, BusSettings, Topology};
use tdmon_core::message::SchemaV1;
use tdmon_core::{CheckJob, Event, Observation, Purpose};
use uuid::Uuid;

pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("tdmon-test-{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A topology of its own for one test, deleted on drop (on a thread of its
/// own, so that this works while a failed test unwinds too), with the
/// policies the test set on it.
#[derive(Debug)]
pub struct Scratch {
    pub prefix: String,
    policies: Vec<String>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            prefix: fresh_prefix(),
            policies: Vec::new(),
        }
    }

    /// The default settings with this topology's prefix, changed by `tweak`.
    pub fn settings(&self, tweak: impl FnOnce(&mut BusConfig)) -> BusSettings {
        let mut config = BusConfig {
            prefix: self.prefix.clone(),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            ..BusConfig::default()
        };
        tweak(&mut config);
        config.validate().unwrap()
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.prefix)
    }

    /// A role name that finds this test's connections in the broker's list.
    pub fn role(&self, role: &str) -> String {
        format!("{role}-{}", self.prefix)
    }

    /// Sets a policy on one queue of this topology (`definition` is JSON).
    pub fn set_policy(&mut self, queue: &str, definition: &str) {
        let name = format!("{queue}-policy");
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        rabbitmqctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            &name,
            &pattern,
            definition,
        ]);
        self.policies.push(name);
    }

    pub fn clear_policies(&mut self) {
        for name in self.policies.drain(..) {
            rabbitmqctl(&["clear_policy", &name]);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.clear_policies();
        let topology = self.topology();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = Admin::connect().await;
                for queue in topology.queues() {
                    let channel = admin.connection.create_channel().await.unwrap();
                    let _ = channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in topology.exchanges() {
                    let channel = admin.connection.create_channel().await.unwrap();
                    let _ = channel
                        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A plain lapin connection, to look at queues behind the bus's back.
pub struct Admin {
    pub connection: Connection,
}

impl Admin {
    pub async fn connect() -> Admin {
        let connection = Connection::connect(BROKER, ConnectionProperties::default())
            .await
            .unwrap();
        Admin { connection }
    }

    /// A channel for one request: a refused request closes its channel.
    async fn channel(&self) -> Channel {
        self.connection.create_channel().await.unwrap()
    }

    pub async fn queue_exists(&self, queue: &str) -> bool {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.channel()
            .await
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .is_ok()
    }

    pub async fn delete_queue(&self, queue: &str) {
        self.channel()
            .await
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }

    /// Takes (and acknowledges) the next message of `queue`, waiting up to
    /// `within` for one: dead-lettering is asynchronous.
    pub async fn take(&self, queue: &str, within: Duration) -> Option<BasicGetMessage> {
        let channel = self.channel().await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .unwrap();
            if let Some(message) = got {
                message
                    .delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
                return Some(message);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes raw bytes to a queue, as another system would, with
    /// confirms.
    pub async fn publish_raw(&self, queue: &str, body: &[u8], headers: &[(&str, &str)]) {
        let channel = self.channel().await;
        channel.confirm_select(Default::default()).await.unwrap();
        let mut table = FieldTable::default();
        for (key, value) in headers {
            table.insert(
                (*key).into(),
                AMQPValue::LongString(LongString::from(*value)),
            );
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(table);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            confirm,
            lapin::Confirmation::Ack(None),
            "raw publish to {queue}"
        );
    }
}

/// A string header of a message.
pub fn header(message: &BasicGetMessage, key: &str) -> Option<String> {
    let headers = message.delivery.properties.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::ShortString(value) => Some(value.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Runs `rabbitmqctl` and returns its output; panics if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The broker's process id and heartbeat timeout of the connection whose
/// name contains `name`, once the broker lists it.
pub fn find_connection(name: &str) -> (String, u16) {
    for _ in 0..50 {
        let listing = rabbitmqctl(&[
            "-q",
            "list_connections",
            "pid",
            "timeout",
            "client_properties",
        ]);
        if let Some(line) = listing.lines().find(|line| line.contains(name)) {
            let mut fields = line.split('\t');
            let pid = fields.next().unwrap().to_owned();
            let timeout = fields.next().unwrap().parse().unwrap();
            return (pid, timeout);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the broker does not list a connection named {name}");
}

pub fn job(url_id: i64) -> CheckJob {
    CheckJob {
        schema: SchemaV1,
        job_id: Uuid::now_v7(),
        url_id,
        url: format!("http://h{url_id}.sim.test/"),
        purpose: Purpose::Scheduled,
        due_at: Utc::now(),
        expires_at: Utc::now() + chrono::TimeDelta::minutes(5),
        baseline: None,
    }
}

pub fn observation(url_id: i64) -> Observation {
    serde_json::from_value(serde_json::json!({
        "schema": 1, "job_id": Uuid::now_v7(), "url_id": url_id,
        "url": format!("http://h{url_id}.sim.test/"),
        "worker": "test", "started_at": "2026-01-01T00:00:00Z",
        "answered_at": "2026-01-01T00:00:00.003Z", "duration_ms": 3,
        "dns": {"outcome": "ok", "answers": ["127.0.0.1"]}, "ip": "127.0.0.1",
        "asn": 64500, "as_org": "Sim", "hoster": "Sim", "http": null,
        "tls_error": null, "fingerprint": null, "outcome": "served", "verdict": "online"
    }))
    .unwrap()
}

pub fn event(kind: &str, url_id: i64) -> Event {
    serde_json::from_value(serde_json::json!({
        "schema": 1, "kind": kind, "url_id": url_id,
        "url": format!("http://h{url_id}.sim.test/"), "notice_id": null,
        "notified_at": "2026-01-01T00:00:00Z", "at": "2026-01-01T01:00:00Z",
        "bracket": null, "time_to_takedown_s": null, "hoster": null, "asn": null
    }))
    .unwrap()
}
