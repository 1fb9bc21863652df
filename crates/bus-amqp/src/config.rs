//! The `[bus]` table: where the broker is, and how the bus uses it. Parsed
//! into [`BusConfig`] (defaults in its `Default`), then validated into
//! [`BusSettings`], the only form the bus takes.

use std::fmt;
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};
use serde::{Deserialize, Serialize};

/// The `[bus]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `amqp://USER:PASSWORD@HOST:PORT/VHOST` (or `amqps://`).
    pub url: BrokerUrl,
    /// Every queue and exchange is named `<prefix>.<name>`.
    pub prefix: String,
    pub prefetch: Prefetch,
    /// Deliveries of one message that end without an ack (its consumer died,
    /// or it was requeued) before it is parked in the dead-letter queue.
    pub delivery_limit: u32,
    /// Messages published before their confirms are awaited together.
    pub confirm_batch: usize,
    /// The first pause before reconnecting; it doubles up to `reconnect_max`.
    #[serde(with = "tdmon_core::duration")]
    pub reconnect_min: Duration,
    #[serde(with = "tdmon_core::duration")]
    pub reconnect_max: Duration,
    /// Heartbeat interval proposed to the broker (whole seconds).
    #[serde(with = "tdmon_core::duration")]
    pub heartbeat: Duration,
    /// Bound on one connection attempt, handshake included.
    #[serde(with = "tdmon_core::duration")]
    pub connect_timeout: Duration,
}

/// The `[bus.prefetch]` table: deliveries a consumer holds unacknowledged at
/// most, per queue. A worker should hold a little more than its checks in
/// flight, so that other workers get the rest; the collector at least two of
/// its batches, so that the next fills while one is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prefetch {
    pub jobs: u16,
    pub observations: u16,
    pub notices: u16,
}

impl Default for Prefetch {
    fn default() -> Self {
        Self {
            jobs: 100,
            observations: 1000,
            notices: 1000,
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: BrokerUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f")
                .expect("the default broker URL is valid"),
            prefix: "tdmon".to_owned(),
            prefetch: Prefetch::default(),
            delivery_limit: 5,
            confirm_batch: 500,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A setting of `[bus]` that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bus.{key}: {reason}")]
pub struct ConfigError {
    key: &'static str,
    reason: String,
}

fn refuse(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl BusConfig {
    pub fn validate(self) -> Result<BusSettings, ConfigError> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 200
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !prefix_ok {
            return Err(refuse(
                "prefix",
                format!(
                    "{:?} must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
                    self.prefix
                ),
            ));
        }
        for (key, value) in [
            ("prefetch.jobs", self.prefetch.jobs),
            ("prefetch.observations", self.prefetch.observations),
            ("prefetch.notices", self.prefetch.notices),
        ] {
            // 0 would mean "no limit" to the broker.
            if value == 0 {
                return Err(refuse(key, "must be at least 1"));
            }
        }
        if self.delivery_limit == 0 {
            return Err(refuse("delivery_limit", "must be at least 1"));
        }
        if self.confirm_batch == 0 {
            return Err(refuse("confirm_batch", "must be at least 1"));
        }
        if self.reconnect_min.is_zero() {
            return Err(refuse("reconnect_min", "must be longer than 0s"));
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(refuse(
                "reconnect_max",
                "must not be shorter than reconnect_min",
            ));
        }
        let heartbeat = u16::try_from(self.heartbeat.as_secs())
            .ok()
            .filter(|&secs| secs > 0 && self.heartbeat.subsec_nanos() == 0)
            .ok_or_else(|| refuse("heartbeat", "must be whole seconds, from 1s to 65535s"))?;
        if self.connect_timeout.is_zero() {
            return Err(refuse("connect_timeout", "must be longer than 0s"));
        }
        Ok(BusSettings {
            url: self.url,
            prefix: self.prefix,
            prefetch: self.prefetch,
            delivery_limit: self.delivery_limit,
            confirm_batch: self.confirm_batch,
            reconnect_min: self.reconnect_min,
            reconnect_max: self.reconnect_max,
            heartbeat,
            connect_timeout: self.connect_timeout,
        })
    }
}

/// The validated `[bus]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSettings {
    url: BrokerUrl,
    prefix: String,
    prefetch: Prefetch,
    delivery_limit: u32,
    confirm_batch: usize,
    reconnect_min: Duration,
    reconnect_max: Duration,
    heartbeat: u16,
    connect_timeout: Duration,
}

impl BusSettings {
    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn prefetch(&self) -> Prefetch {
        self.prefetch
    }

    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    pub fn confirm_batch(&self) -> usize {
        self.confirm_batch
    }

    pub fn reconnect_min(&self) -> Duration {
        self.reconnect_min
    }

    pub fn reconnect_max(&self) -> Duration {
        self.reconnect_max
    }

    /// Whole seconds, at least 1.
    pub fn heartbeat(&self) -> u16 {
        self.heartbeat
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// The broker's URL. Its password is never shown: `Debug`, `Display` and
/// `Serialize` all write `***` in its place, so a configuration printed or
/// logged keeps the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BrokerUrl {
    uri: AMQPUri,
    masked: String,
}

/// A `bus.url` that is not an AMQP URL. The message never quotes the URL,
/// which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an AMQP URL: {0}")]
pub struct UrlError(String);

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<BrokerUrl, UrlError> {
        let parsed = url::Url::parse(text).map_err(|e| UrlError(e.to_string()))?;
        if !matches!(parsed.scheme(), "amqp" | "amqps") {
            return Err(UrlError(format!(
                "the scheme is {:?}, expected \"amqp\" or \"amqps\"",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(UrlError("it names no host".to_owned()));
        }
        // Checked above for what the AMQP parser would echo the URL for; what
        // it can still refuse (a bad port or query value) it states alone.
        let uri: AMQPUri = text.parse().map_err(UrlError)?;
        let mut masked = parsed;
        if masked.password().is_some() {
            // Fails only for URLs that cannot have a password.
            let _ = masked.set_password(Some("***"));
        }
        Ok(BrokerUrl {
            uri,
            masked: masked.to_string(),
        })
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.uri.authority.host, self.uri.authority.port)
    }

    pub fn is_tls(&self) -> bool {
        self.uri.scheme == AMQPScheme::AMQPS
    }

    /// What the connection is made with (password included).
    pub(crate) fn uri(&self) -> &AMQPUri {
        &self.uri
    }
}

impl TryFrom<String> for BrokerUrl {
    type Error = UrlError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        BrokerUrl::parse(&text)
    }
}

impl Serialize for BrokerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BrokerUrl").field(&self.masked).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the configuration loader does: the file is read into a table
    /// first, then each part deserializes its own.
    fn parse(toml: &str) -> Result<BusSettings, String> {
        let table: toml::Table = toml::from_str(toml).unwrap();
        let config =
            BusConfig::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_point_at_the_local_broker() {
        let settings = parse("").unwrap();
        assert_eq!(settings.url().endpoint(), "127.0.0.1:5672");
        assert_eq!(settings.url().uri().vhost, "/");
        assert_eq!(settings.prefix(), "tdmon");
        assert_eq!(settings.heartbeat(), 10);
        assert_eq!(settings.prefetch().jobs, 100);
    }

    #[test]
    fn the_password_is_kept_for_connecting_and_never_shown() {
        let toml = r#"url = "amqp://tdmon:s3cr%40t@rabbit.internal:5673/prod""#;
        let settings = parse(toml).unwrap();
        let url = settings.url();
        assert_eq!(url.uri().authority.userinfo.password, "s3cr@t");
        assert_eq!(url.endpoint(), "rabbit.internal:5673");
        assert_eq!(
            url.to_string(),
            "amqp://tdmon:***@rabbit.internal:5673/prod"
        );
        for shown in [
            format!("{settings:?}"),
            format!("{url}"),
            toml::to_string(&BusConfig {
                url: url.clone(),
                ..BusConfig::default()
            })
            .unwrap(),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn mistakes_are_refused_by_name_without_echoing_the_url() {
        let refused = |toml: &str, expected: &str| {
            let err = parse(toml).unwrap_err();
            assert!(err.contains(expected), "{toml}: {err}");
            assert!(!err.contains("s3cret"), "{toml}: {err}");
        };
        refused(
            r#"url = "http://u:s3cret@host/""#,
            "expected \"amqp\" or \"amqps\"",
        );
        refused(r#"url = "amqp://u:s3cret@host:99999/""#, "not an AMQP URL");
        refused(r#"url = "u:s3cret@host""#, "not an AMQP URL");
        refused(r#"prefix = "a b""#, "bus.prefix");
        refused(r#"prefix = """#, "bus.prefix");
        refused(
            "[prefetch]\njobs = 0",
            "bus.prefetch.jobs: must be at least 1",
        );
        refused("delivery_limit = 0", "bus.delivery_limit");
        refused("confirm_batch = 0", "bus.confirm_batch");
        refused(
            "reconnect_min = \"2s\"\nreconnect_max = \"1s\"",
            "bus.reconnect_max",
        );
        refused(
            r#"heartbeat = "1500ms""#,
            "bus.heartbeat: must be whole seconds",
        );
        refused(r#"heartbeat = "0s""#, "bus.heartbeat");
        refused(r#"heartbeat = "20h""#, "bus.heartbeat");
        refused(r#"connect_timeout = "0s""#, "bus.connect_timeout");
        refused("prefech = 5", "prefech");
    }
}
