//! Per-host politeness: at most one check every `interval` per host name, with
//! bursts of `burst`. A governor keyed limiter; per-host state is created on
//! first use and evicted on a timer once it no longer limits anything, so a
//! long-running dispatcher does not grow with every host it has ever seen.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

#[derive(Debug)]
pub(crate) struct Politeness {
    limiter: DefaultKeyedRateLimiter<String>,
    interval: Duration,
}

impl Politeness {
    pub(crate) fn new(interval: Duration, burst: NonZeroU32) -> Self {
        let quota = Quota::with_period(interval)
            .expect("validated: the interval is positive")
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            interval,
        }
    }

    /// Sorts URLs of one tick into those that may be checked now and those
    /// held back, each with how long it must wait: the k-th held-back URL of
    /// a host waits k intervals past the host's next free slot.
    pub(crate) fn sort<T>(
        &self,
        urls: Vec<T>,
        host: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Vec<(T, Duration)>) {
        let now = DefaultClock::default().now();
        let mut admitted = Vec::new();
        let mut held: Vec<(T, Duration)> = Vec::new();
        // Per held-back host: its first free slot, and how many wait behind it.
        let mut queued_per_host: HashMap<String, (Duration, u32)> = HashMap::new();
        for url in urls {
            let key = host(&url).to_owned();
            if let Some((first_slot, behind)) = queued_per_host.get_mut(&key) {
                // Once a host is held back, keep its later URLs behind it.
                *behind += 1;
                held.push((url, *first_slot + self.interval * *behind));
                continue;
            }
            match self.limiter.check_key(&key) {
                Ok(()) => admitted.push(url),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(now);
                    queued_per_host.insert(key, (wait, 0));
                    held.push((url, wait));
                }
            }
        }
        (admitted, held)
    }

    /// Forgets hosts whose state no longer limits anything.
    pub(crate) fn evict(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
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
    fn idle_hosts_are_evicted() {
        let politeness = Politeness::new(Duration::from_millis(1), NonZeroU32::new(1).unwrap());
        let _ = politeness.sort(vec!["a", "b", "c"], |h| h);
        assert_eq!(politeness.hosts(), 3);
        std::thread::sleep(Duration::from_millis(20));
        politeness.evict();
        assert_eq!(politeness.hosts(), 0);
    }
}
