//! The `[dispatcher]` table, and its validated form.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[dispatcher]` table as written; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// How often to look for due URLs when the last round found few.
    #[serde(with = "tdmon_core::duration")]
    pub tick: Duration,
    /// URLs leased per round at most.
    pub batch: usize,
    /// How long a dispatched URL stays leased: a job not answered by then is
    /// dispatched again. Longer than a check can take, queueing included.
    #[serde(with = "tdmon_core::duration")]
    pub lease: Duration,
    /// A job not started within this long after dispatch is dropped by the worker.
    #[serde(with = "tdmon_core::duration")]
    pub job_ttl: Duration,
    /// Dispatching pauses while this many jobs wait in the checks queue.
    pub high_water: usize,
    /// Checks of one host name: one every `per_host_interval` ...
    #[serde(with = "tdmon_core::duration")]
    pub per_host_interval: Duration,
    /// ... with bursts of at most this many.
    pub per_host_burst: u32,
    /// How often idle per-host state is forgotten.
    #[serde(with = "tdmon_core::duration")]
    pub evict_interval: Duration,
    /// Distributed deployment: notices taken from the intake queue and
    /// stored per transaction at most ...
    pub intake_batch: usize,
    /// ... waiting this long for a batch to fill once its first notice is in.
    #[serde(with = "tdmon_core::duration")]
    pub intake_linger: Duration,
    /// Pause after a failed write of notices before the batch is tried again.
    #[serde(with = "tdmon_core::duration")]
    pub retry_delay: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            batch: 500,
            lease: Duration::from_secs(10 * 60),
            job_ttl: Duration::from_secs(5 * 60),
            high_water: 1000,
            per_host_interval: Duration::from_secs(1),
            per_host_burst: 5,
            evict_interval: Duration::from_secs(60),
            intake_batch: 500,
            intake_linger: Duration::from_millis(100),
            retry_delay: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("dispatcher.{0} must be greater than zero")]
    Zero(&'static str),
    #[error(
        "dispatcher.job_ttl ({ttl}) must be shorter than dispatcher.lease ({lease}), or a URL could be dispatched twice"
    )]
    TtlNotShorterThanLease { ttl: String, lease: String },
}

/// Validated dispatcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherSettings {
    pub(crate) tick: Duration,
    pub(crate) batch: usize,
    pub(crate) lease: Duration,
    pub(crate) job_ttl: Duration,
    pub(crate) high_water: usize,
    pub(crate) per_host_interval: Duration,
    pub(crate) per_host_burst: NonZeroU32,
    pub(crate) evict_interval: Duration,
    pub(crate) intake_batch: usize,
    pub(crate) intake_linger: Duration,
    pub(crate) retry_delay: Duration,
}

impl DispatcherSettings {
    /// Jobs allowed to wait in the checks queue.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// URLs leased per round at most.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

impl DispatcherConfig {
    pub fn validate(self) -> Result<DispatcherSettings, ConfigError> {
        let positive = |d: Duration, key| {
            if d.is_zero() {
                Err(ConfigError::Zero(key))
            } else {
                Ok(d)
            }
        };
        let count = |n: usize, key| {
            if n == 0 {
                Err(ConfigError::Zero(key))
            } else {
                Ok(n)
            }
        };
        if self.job_ttl >= self.lease {
            return Err(ConfigError::TtlNotShorterThanLease {
                ttl: tdmon_core::duration::format(self.job_ttl),
                lease: tdmon_core::duration::format(self.lease),
            });
        }
        Ok(DispatcherSettings {
            tick: positive(self.tick, "tick")?,
            batch: count(self.batch, "batch")?,
            lease: positive(self.lease, "lease")?,
            job_ttl: positive(self.job_ttl, "job_ttl")?,
            high_water: count(self.high_water, "high_water")?,
            per_host_interval: positive(self.per_host_interval, "per_host_interval")?,
            per_host_burst: NonZeroU32::new(self.per_host_burst)
                .ok_or(ConfigError::Zero("per_host_burst"))?,
            evict_interval: positive(self.evict_interval, "evict_interval")?,
            intake_batch: count(self.intake_batch, "intake_batch")?,
            intake_linger: self.intake_linger,
            retry_delay: positive(self.retry_delay, "retry_delay")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert!(DispatcherConfig::default().validate().is_ok());
        let zero = DispatcherConfig {
            batch: 0,
            ..DispatcherConfig::default()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("batch")));
        let ttl = DispatcherConfig {
            job_ttl: Duration::from_secs(3600),
            ..DispatcherConfig::default()
        };
        assert!(matches!(
            ttl.validate(),
            Err(ConfigError::TtlNotShorterThanLease { .. })
        ));
    }
}
