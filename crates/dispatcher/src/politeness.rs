//! Per-host politeness: at most one check every `interval` per host name, with
//! bursts of `burst`. A governor keyed limiter; per-host state is created on
//! first use and evicted on a timer once it no longer limits anything, so a
//! long-running dispatcher does not grow with every host it has ever seen.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

#[derive(Debug)]
pub(crate) struct Politeness {
    limiter: DefaultKeyedRateLimiter<String>,
    interval: Duration,
    /// Per host with URLs held back: the first slot not yet promised to one.
    /// Kept across ticks, so that the URLs held by successive ticks get
    /// distinct slots instead of all coming back at once.
    booked: Mutex<HashMap<String, Instant>>,
}

impl Politeness {
    pub(crate) fn new(interval: Duration, burst: NonZeroU32) -> Self {
        let quota = Quota::with_period(interval)
            .expect("validated: the interval is positive")
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            interval,
            booked: Mutex::default(),
        }
    }

    /// Sorts URLs (in due order) into those that may be checked now and
    /// those held back, each with how long it must wait: a held-back URL gets
    /// the host's next free slot, one interval after the one before.
    pub(crate) fn sort<T>(
        &self,
        urls: Vec<T>,
        host: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Vec<(T, Duration)>) {
        let clock_now = DefaultClock::default().now();
        let now = Instant::now();
        let mut booked = self
            .booked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut admitted = Vec::new();
        let mut held = Vec::new();
        for url in urls {
            let key = host(&url);
            match self.limiter.check_key(&key.to_owned()) {
                Ok(()) => admitted.push(url),
                Err(not_until) => {
                    let earliest = now + not_until.wait_time_from(clock_now);
                    let slot = booked
                        .get(key)
                        .copied()
                        .filter(|next_free| *next_free > earliest)
                        .unwrap_or(earliest);
                    booked.insert(key.to_owned(), slot + self.interval);
                    held.push((url, slot - now));
                }
            }
        }
        (admitted, held)
    }

    /// Forgets hosts whose state no longer limits anything.
    pub(crate) fn evict(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        self.booked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, next_free| *next_free > now);
    }

    #[cfg(test)]
    fn hosts(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_gets_its_burst_then_waits_and_others_are_not_held_up() {
        let politeness = Politeness::new(Duration::from_secs(10), NonZeroU32::new(2).unwrap());
        let urls = vec!["a", "a", "a", "b", "a"];
        let (admitted, held) = politeness.sort(urls, |h| h);
        assert_eq!(admitted, ["a", "a", "b"]);
        assert_eq!(held.len(), 2);
        let waits: Vec<Duration> = held.iter().map(|(_, wait)| *wait).collect();
        let tolerance = Duration::from_millis(50);
        assert!(
            waits[0] > Duration::from_secs(9) && waits[0] <= Duration::from_secs(10) + tolerance,
            "{waits:?}"
        );
        assert_eq!(
            waits[1],
            waits[0] + Duration::from_secs(10),
            "the next one of the host waits an interval more"
        );
    }

    #[test]
    fn holds_of_successive_ticks_get_distinct_slots() {
        let politeness = Politeness::new(Duration::from_secs(10), NonZeroU32::new(1).unwrap());
        let (_, first) = politeness.sort(vec!["a", "a"], |h| h);
        let (_, second) = politeness.sort(vec!["a"], |h| h);
        let last_of_first = first.last().unwrap().1;
        let next = second[0].1;
        assert!(
            next >= last_of_first + Duration::from_secs(9),
            "the next tick's hold comes after the first tick's: {last_of_first:?} then {next:?}"
        );
    }

    #[test]
    fn idle_hosts_are_evicted() {
        let politeness = Politeness::new(Duration::from_millis(1), NonZeroU32::new(1).unwrap());
        let _ = politeness.sort(vec!["a", "b", "c"], |h| h);
        assert_eq!(politeness.hosts(), 3);
        std::thread::sleep(Duration::from_millis(20));
        politeness.evict();
        assert_eq!(politeness.hosts(), 0);
    }
}
