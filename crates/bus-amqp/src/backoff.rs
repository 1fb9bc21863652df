//! Pauses between reconnection attempts: exponential, bounded, jittered.

use std::time::Duration;

/// The pause before reconnection attempt `attempt` (0 for the first):
/// `min` doubled per attempt up to `max`, then a random point (`jitter` in
/// `[0, 1)`) of its upper half, never below `min`. The jitter keeps the
/// processes that one broker restart cut off from all coming back at once.
pub(crate) fn delay(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let ceiling = min.saturating_mul(2u32.saturating_pow(attempt)).min(max);
    let floor = (ceiling / 2).max(min).min(ceiling);
    floor + (ceiling - floor).mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn doubles_from_the_minimum_and_stops_at_the_maximum() {
        let no_jitter: Vec<_> = (0..4).map(|n| delay(n, MIN, MAX, 0.999_999)).collect();
        let rounded: Vec<_> = no_jitter.iter().map(|d| d.as_millis()).collect();
        assert_eq!(rounded, [100, 199, 399, 799]);
        assert_eq!(delay(30, MIN, MAX, 0.999_999).as_millis(), 29_999);
        assert_eq!(delay(u32::MAX, MIN, MAX, 0.0), MAX / 2);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half_never_below_the_minimum() {
        assert_eq!(delay(0, MIN, MAX, 0.0), MIN);
        assert_eq!(delay(0, MIN, MAX, 0.7), MIN);
        assert_eq!(delay(3, MIN, MAX, 0.0), Duration::from_millis(400));
        assert_eq!(delay(3, MIN, MAX, 0.5), Duration::from_millis(600));
        assert_eq!(delay(20, MIN, MAX, 0.5), Duration::from_millis(22_500));
        // Equal bounds: no room to jitter.
        assert_eq!(delay(5, MAX, MAX, 0.9), MAX);
    }
}
