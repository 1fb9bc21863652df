//! The worker's own limits, protecting the hosters and the worker itself:
//!
//! - a bound on checks in flight (a semaphore) and a global checks-per-second
//!   limiter;
//! - per address: a request-rate limiter (governor's keyed limiter), a cap on
//!   concurrent requests (a semaphore per address), and a back-off set by a
//!   `429 Too Many Requests` with `Retry-After`.
//!
//! Per-address state is created lazily and evicted by [`Limits::evict`], which
//! the checker runs on a timer: the keyed limiter forgets addresses whose
//! limit has recovered (`retain_recent`, `shrink_to_fit`), idle semaphores
//! and expired back-offs are dropped.
//!
//! Every wait is bounded by the job's expiry. When the wait would pass it, the
//! check ends without contacting the host ([`NotAdmitted`]): a late check
//! would date a takedown wrongly, and a host that asked us to wait must not be
//! contacted early. A request's turn at the per-address rate is taken only
//! when nothing else can hold it back, and the request goes out at once: a
//! check that is not admitted never spends a turn another check could use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::LimitSettings;

/// Why a check did not contact its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The host asked us (429 + Retry-After) to wait past the job's expiry.
    BackedOff,
    /// Our own limits would have held the check past the job's expiry.
    Expired,
}

/// The right to send requests to one address, held for the request's life.
#[derive(Debug)]
pub(crate) struct AddressPermit {
    _slot: OwnedSemaphorePermit,
}

/// The right to run one check.
#[derive(Debug)]
pub(crate) struct CheckPermit {
    _slot: OwnedSemaphorePermit,
}

/// Governor's clock on Tokio's time: the per-address rate and the sleeps that
/// wait for it share one clock (which tests can pause).
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type PerAddressRate =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, TokioClock, NoOpMiddleware<Duration>>;

pub(crate) struct Limits {
    in_flight: Arc<Semaphore>,
    global: DefaultDirectRateLimiter,
    per_ip: PerAddressRate,
    per_ip_concurrency: usize,
    slots: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    backoff: Mutex<HashMap<IpAddr, Instant>>,
    max_backoff: Duration,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("in_flight_available", &self.in_flight.available_permits())
            .field("per_ip_concurrency", &self.per_ip_concurrency)
            .field("tracked_addresses", &self.tracked())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Limits {
    pub(crate) fn new(settings: &LimitSettings) -> Self {
        let per_ip_quota = Quota::with_period(settings.per_ip_interval)
            .expect("validated: per_ip_interval > 0")
            .allow_burst(settings.per_ip_burst);
        Self {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.get())),
            global: RateLimiter::direct(Quota::per_second(settings.checks_per_second)),
            per_ip: RateLimiter::new(
                per_ip_quota,
                DefaultKeyedStateStore::default(),
                TokioClock {
                    origin: Instant::now(),
                },
            ),
            per_ip_concurrency: settings.per_ip_concurrency.get(),
            slots: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            max_backoff: settings.max_backoff,
        }
    }

    /// Waits for a check slot and for the global rate, at most until `deadline`.
    pub(crate) async fn start_check(&self, deadline: Instant) -> Result<CheckPermit, NotAdmitted> {
        let slot = tokio::time::timeout_at(deadline, self.in_flight.clone().acquire_owned())
            .await
            .map_err(|_| NotAdmitted::Expired)?
            .expect("the in-flight semaphore is never closed");
        tokio::time::timeout_at(deadline, self.global.until_ready())
            .await
            .map_err(|_| NotAdmitted::Expired)?;
        Ok(CheckPermit { _slot: slot })
    }

    /// Waits until one more request may go to `ip`: past its back-off, for a
    /// free per-address slot and for the per-address rate, at most until
    /// `deadline`. The rate's turn is taken last, when nothing can refuse the
    /// request any more: the caller sends it at once.
    pub(crate) async fn admit(
        &self,
        ip: IpAddr,
        deadline: Instant,
    ) -> Result<AddressPermit, NotAdmitted> {
        self.wait_backoff(ip, deadline).await?;
        let semaphore = lock(&self.slots)
            .entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_ip_concurrency)))
            .clone();
        let slot = tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .map_err(|_| NotAdmitted::Expired)?
            .expect("per-address semaphores are never closed");
        loop {
            // A 429 may have arrived while we queued: heed it before taking
            // a turn.
            self.wait_backoff(ip, deadline).await?;
            let not_until = match self.per_ip.check_key(&ip) {
                Ok(()) => return Ok(AddressPermit { _slot: slot }),
                Err(not_until) => not_until,
            };
            // A wait that would pass the deadline is refused at once rather
            // than waited out.
            let wait = not_until.wait_time_from(self.per_ip.clock().now());
            if Instant::now() + wait > deadline {
                return Err(NotAdmitted::Expired);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits out a back-off of `ip` that ends by `deadline`; refuses one
    /// that ends later.
    async fn wait_backoff(&self, ip: IpAddr, deadline: Instant) -> Result<(), NotAdmitted> {
        loop {
            let until = lock(&self.backoff).get(&ip).copied();
            match until {
                Some(until) if until > deadline => return Err(NotAdmitted::BackedOff),
                // Another 429 may lengthen it while we sleep.
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return Ok(()),
            }
        }
    }

    /// Holds every later request to `ip` back for `wait` (cut to the
    /// configured maximum). A longer back-off already in place is kept.
    pub(crate) fn back_off(&self, ip: IpAddr, wait: Duration) {
        let until = Instant::now() + wait.min(self.max_backoff);
        let mut backoff = lock(&self.backoff);
        let entry = backoff.entry(ip).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    /// Drops per-address state nobody needs any more.
    pub(crate) fn evict(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        let now = Instant::now();
        // A semaphore is idle when no permit (each holds a clone) is out.
        lock(&self.slots).retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        lock(&self.slots).shrink_to_fit();
        lock(&self.backoff).retain(|_, until| *until > now);
    }

    /// Addresses with per-address state (slots, back-offs, rate limiter).
    pub(crate) fn tracked(&self) -> usize {
        lock(&self.slots).len() + lock(&self.backoff).len() + self.per_ip.len()
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
/// A date in the past asks for no wait; a value that parses as neither is
/// ignored (`None`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroUsize};

    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            checks_per_second: NonZeroU32::new(1000).unwrap(),
            per_ip_interval: Duration::from_millis(200),
            per_ip_burst: NonZeroU32::new(1).unwrap(),
            per_ip_concurrency: NonZeroUsize::new(1).unwrap(),
            max_in_flight: NonZeroUsize::new(2).unwrap(),
            evict_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T07:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 07:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 06:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_address_rate_is_held() {
        let limits = Limits::new(&settings());
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let mut admitted = Vec::new();
        for _ in 0..3 {
            drop(limits.admit(ip("127.10.0.1"), deadline).await.unwrap());
            admitted.push(Instant::now() - start);
        }
        // One immediately, then one per 200 ms.
        assert_eq!(
            admitted,
            [0, 200, 400].map(Duration::from_millis),
            "{admitted:?}"
        );
        // Another address has its own budget.
        drop(limits.admit(ip("127.10.0.2"), deadline).await.unwrap());
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_is_not_admitted() {
        let limits = Limits::new(&settings());
        let held = limits
            .admit(ip("127.10.0.1"), Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            limits.admit(ip("127.10.0.1"), soon).await.unwrap_err(),
            NotAdmitted::Expired,
            "the only slot is held"
        );
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_wait_past_the_deadline_is_refused_at_once_and_takes_no_turn() {
        let mut s = settings();
        s.per_ip_interval = Duration::from_secs(10);
        let limits = Limits::new(&s);
        let target = ip("127.10.0.1");
        let start = Instant::now();
        drop(
            limits
                .admit(target, start + Duration::from_secs(60))
                .await
                .unwrap(),
        );
        assert_eq!(
            limits
                .admit(target, start + Duration::from_secs(2))
                .await
                .unwrap_err(),
            NotAdmitted::Expired
        );
        assert_eq!(Instant::now(), start, "not waited out");
        // The refused request took no turn: the next one has the 10 s one.
        drop(
            limits
                .admit(target, start + Duration::from_secs(60))
                .await
                .unwrap(),
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_that_arrives_while_queued_refuses_before_a_turn_is_taken() {
        let mut s = settings();
        s.per_ip_interval = Duration::from_secs(10);
        let limits = Arc::new(Limits::new(&s));
        let target = ip("127.10.0.1");
        let start = Instant::now();
        drop(
            limits
                .admit(target, start + Duration::from_secs(60))
                .await
                .unwrap(),
        );
        // Queued for the turn at 10 s, due by 12 s...
        let queued = tokio::spawn({
            let limits = limits.clone();
            async move {
                let admitted = limits.admit(target, start + Duration::from_secs(12)).await;
                admitted.map(drop)
            }
        });
        // ...when a 429 holds the address until 13 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        limits.back_off(target, Duration::from_secs(12));
        assert_eq!(queued.await.unwrap(), Err(NotAdmitted::BackedOff));
        // It took no turn: the next request goes when the back-off ends.
        drop(
            limits
                .admit(target, start + Duration::from_secs(60))
                .await
                .unwrap(),
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn back_offs_hold_requests_and_refuse_past_the_deadline() {
        let mut s = settings();
        s.per_ip_interval = Duration::from_nanos(1);
        let limits = Limits::new(&s);
        let target = ip("127.10.0.9");
        limits.back_off(target, Duration::from_secs(30));
        // A shorter back-off does not shorten the one in place.
        limits.back_off(target, Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(
            limits
                .admit(target, start + Duration::from_secs(10))
                .await
                .unwrap_err(),
            NotAdmitted::BackedOff
        );
        assert_eq!(Instant::now(), start, "refused without waiting");
        drop(
            limits
                .admit(target, start + Duration::from_secs(60))
                .await
                .unwrap(),
        );
        assert!(Instant::now() >= start + Duration::from_secs(30));
        // A huge Retry-After is cut to max_backoff.
        limits.back_off(target, Duration::from_secs(86_400));
        let until = limits.backoff.lock().unwrap()[&target];
        assert!(until <= Instant::now() + Duration::from_secs(60));
    }

    #[tokio::test]
    async fn idle_state_is_evicted() {
        let mut s = settings();
        s.per_ip_interval = Duration::from_millis(10);
        let limits = Limits::new(&s);
        let deadline = Instant::now() + Duration::from_secs(1);
        let held = limits.admit(ip("127.10.0.1"), deadline).await.unwrap();
        drop(limits.admit(ip("127.10.0.2"), deadline).await.unwrap());
        limits.back_off(ip("127.10.0.3"), Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        limits.evict();
        assert_eq!(lock(&limits.slots).len(), 1, "the held slot stays");
        assert!(lock(&limits.backoff).is_empty());
        drop(held);
        limits.evict();
        assert_eq!(limits.tracked(), 0);
    }

    #[tokio::test]
    async fn checks_in_flight_are_bounded() {
        let limits = Limits::new(&settings());
        let deadline = Instant::now() + Duration::from_millis(100);
        let a = limits.start_check(deadline).await.unwrap();
        let _b = limits.start_check(deadline).await.unwrap();
        assert_eq!(
            limits.start_check(deadline).await.unwrap_err(),
            NotAdmitted::Expired
        );
        drop(a);
        limits
            .start_check(Instant::now() + Duration::from_millis(100))
            .await
            .unwrap();
    }
}
