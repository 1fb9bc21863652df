//! Simulated time: the time since the notice, compressed by the scenario's
//! `time_scale`, either running with the real clock or moved by hand in tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The network's clock. Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct SimClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    notice_time: DateTime<Utc>,
    time_scale: f64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Simulated time = real time since `start` x scale, plus `offset`.
    Real { start: Instant, offset: Duration },
    /// Simulated time only moves when [`SimClock::advance`] is called.
    Manual(Mutex<Duration>),
}

impl SimClock {
    /// A clock running with real time from now, `offset` simulated time after the notice.
    pub fn real(notice_time: DateTime<Utc>, time_scale: f64, offset: Duration) -> Self {
        Self::with(
            notice_time,
            time_scale,
            Kind::Real {
                start: Instant::now(),
                offset,
            },
        )
    }

    /// A clock standing at `offset` after the notice until moved with [`SimClock::advance`].
    pub fn manual(notice_time: DateTime<Utc>, time_scale: f64, offset: Duration) -> Self {
        Self::with(notice_time, time_scale, Kind::Manual(Mutex::new(offset)))
    }

    fn with(notice_time: DateTime<Utc>, time_scale: f64, kind: Kind) -> Self {
        SimClock {
            inner: Arc::new(Inner {
                notice_time,
                time_scale,
                kind,
            }),
        }
    }

    /// Simulated time since the notice.
    pub fn elapsed(&self) -> Duration {
        match &self.inner.kind {
            Kind::Real { start, offset } => {
                *offset + start.elapsed().mul_f64(self.inner.time_scale)
            }
            Kind::Manual(elapsed) => *elapsed.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock forward by `by` simulated time; returns false (and
    /// does nothing) on a real clock.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.inner.kind {
            Kind::Real { .. } => false,
            Kind::Manual(elapsed) => {
                *elapsed.lock().unwrap_or_else(|e| e.into_inner()) += by;
                true
            }
        }
    }

    /// Whether the clock only moves by [`SimClock::advance`].
    pub fn is_manual(&self) -> bool {
        matches!(self.inner.kind, Kind::Manual(_))
    }

    /// The notice time: simulated time zero, as a wall-clock time.
    pub fn notice_time(&self) -> DateTime<Utc> {
        self.inner.notice_time
    }

    pub fn time_scale(&self) -> f64 {
        self.inner.time_scale
    }

    /// The wall-clock time at which simulated time `sim` is (or was) reached
    /// on a real clock: `notice_time + sim / time_scale`.
    pub fn wall_time(&self, sim: Duration) -> DateTime<Utc> {
        let real = sim.div_f64(self.inner.time_scale);
        self.inner.notice_time + chrono::TimeDelta::from_std(real).unwrap_or(chrono::TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = SimClock::manual(DateTime::UNIX_EPOCH, 3600.0, Duration::ZERO);
        assert_eq!(clock.elapsed(), Duration::ZERO);
        assert!(clock.advance(Duration::from_secs(7200)));
        assert_eq!(clock.elapsed(), Duration::from_secs(7200));
        // Two simulated hours are two real seconds at 3600x.
        assert_eq!(
            clock.wall_time(clock.elapsed()),
            DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(2)
        );
    }

    #[test]
    fn real_clock_is_scaled() {
        let clock = SimClock::real(Utc::now(), 1000.0, Duration::from_secs(5));
        assert!(!clock.advance(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.elapsed();
        assert!(elapsed >= Duration::from_secs(25), "{elapsed:?}");
    }
}
