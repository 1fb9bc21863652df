//! Time to takedown with censoring handled properly: the Kaplan-Meier
//! estimator. A URL still online when monitoring ends is right-censored: it
//! counts as "at risk" up to its last observation and is never dropped nor
//! counted as removed.
//!
//! The estimate after the k-th removal time is the product of k factors
//! `(n - d) / n`. In floating point that product drifts (120 URLs removed one
//! by one give 0.5000000000000008 after 60 removals, where the exact value is
//! 1/2), and a quantile would jump to the next removal time. So a quantile
//! is decided exactly: the floating-point product carries a rounding bound
//! that grows with the number of factors, and a comparison that bound cannot
//! decide is redone in integers, as `100 * prod(n - d) <= (100 - p) * prod(n)`.

use std::cmp::Ordering;

use chrono::TimeDelta;
use num_bigint::BigUint;

/// One URL's time to takedown: removed after `time`, or still online
/// (censored) when last seen at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survival {
    pub time: TimeDelta,
    pub removed: bool,
}

/// A percentile of the time to takedown: `Percentile::MEDIAN` is the time by
/// which half are estimated removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percentile(u8);

impl Percentile {
    pub const MEDIAN: Percentile = Percentile(50);
    pub const P90: Percentile = Percentile(90);

    /// `1..=99`; `None` otherwise.
    pub const fn new(percent: u8) -> Option<Percentile> {
        if percent >= 1 && percent <= 99 {
            Some(Percentile(percent))
        } else {
            None
        }
    }

    pub const fn percent(self) -> u8 {
        self.0
    }
}

/// One step of the curve: at `time`, `removed` of the `at_risk` URLs were
/// removed, and an estimated `share` was still online just after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub time: TimeDelta,
    pub at_risk: u64,
    pub removed: u64,
    /// The product so far in floating point: for display, not for decisions.
    pub share: f64,
}

/// The Kaplan-Meier survival curve: the estimated share still online after
/// each time at which some URL was removed.
#[derive(Debug, Clone, PartialEq)]
pub struct KaplanMeier {
    steps: Vec<Step>,
}

impl KaplanMeier {
    pub fn estimate(samples: &[Survival]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by_key(|s| s.time);
        let mut at_risk = sorted.len() as u64;
        let mut share = 1.0;
        let mut steps = Vec::new();
        for group in sorted.chunk_by(|a, b| a.time == b.time) {
            let removed = group.iter().filter(|s| s.removed).count() as u64;
            if removed > 0 {
                // URLs censored at the same time still count as at risk.
                share *= (at_risk - removed) as f64 / at_risk as f64;
                steps.push(Step {
                    time: group[0].time,
                    at_risk,
                    removed,
                    share,
                });
            }
            at_risk -= group.len() as u64;
        }
        Self { steps }
    }

    /// Every removal time, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The share estimated still online after `time` (floating point, for display).
    pub fn share_online(&self, time: TimeDelta) -> f64 {
        self.steps
            .iter()
            .take_while(|step| step.time <= time)
            .last()
            .map_or(1.0, |step| step.share)
    }

    /// The first time by which a share `p` is estimated removed (the
    /// estimate still online is at most `1 - p`), decided exactly; `None`
    /// when the curve never gets there (too many still online).
    pub fn quantile(&self, p: Percentile) -> Option<TimeDelta> {
        let threshold = f64::from(100 - p.0) / 100.0;
        // mutants: equivalent when `k + 1` becomes `k * 1`: a bound for one
        // factor fewer still covers the rounding (see approx_cmp).
        (0..self.steps.len())
            .find(
                |&k| match approx_cmp(self.steps[k].share, threshold, k + 1) {
                    Some(order) => order != Ordering::Greater,
                    None => exactly_at_most(&self.steps[..=k], p),
                },
            )
            .map(|k| self.steps[k].time)
    }

    pub fn median(&self) -> Option<TimeDelta> {
        self.quantile(Percentile::MEDIAN)
    }
}

/// Compares a product of `factors` rounded factors with a rounded threshold,
/// or `None` when their rounding could hide the true order. Each factor
/// costs at most two roundings (a division and a multiplication), the
/// threshold one; twice the unit roundoff per rounding keeps the bound safe
/// against the roundings of the bound itself.
fn approx_cmp(share: f64, threshold: f64, factors: usize) -> Option<Ordering> {
    // mutants: equivalent when a change keeps the bound above the rounding
    // error (`2.0 + factors`, `- 1.0` or `* 1.0` for `+ 1.0`, `<=` for `<`,
    // `>=` for `>`): it only moves comparisons between floating point and
    // the integers, which decide what is left exactly. The tests pin the
    // bound from below.
    let rel = (2.0 * factors as f64 + 1.0) * 2.0 * f64::EPSILON;
    if share * (1.0 + rel) < threshold * (1.0 - rel) {
        Some(Ordering::Less)
    } else if share * (1.0 - rel) > threshold * (1.0 + rel) {
        Some(Ordering::Greater)
    } else {
        None
    }
}

/// `prod((n - d) / n) <= (100 - p) / 100`, in integers.
fn exactly_at_most(steps: &[Step], p: Percentile) -> bool {
    let online = product(steps.iter().map(|s| s.at_risk - s.removed));
    let at_risk = product(steps.iter().map(|s| s.at_risk));
    online * 100u32 <= at_risk * u32::from(100 - p.0)
}

/// The product of many small numbers, multiplied pairwise so that the big
/// numbers stay balanced.
fn product(values: impl Iterator<Item = u64>) -> BigUint {
    let mut layer: Vec<BigUint> = values.map(BigUint::from).collect();
    while layer.len() > 1 {
        layer = layer
            .chunks(2)
            .map(|pair| pair.iter().product::<BigUint>())
            .collect();
    }
    layer.pop().unwrap_or_else(|| BigUint::from(1u32))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn h(hours: i64, removed: bool) -> Survival {
        Survival {
            time: TimeDelta::hours(hours),
            removed,
        }
    }

    #[test]
    fn without_censoring_it_is_the_plain_median() {
        let km = KaplanMeier::estimate(&[h(1, true), h(2, true), h(3, true), h(4, true)]);
        assert_eq!(km.median(), Some(TimeDelta::hours(2)));
        assert_eq!(km.share_online(TimeDelta::hours(3)), 0.25);
        assert_eq!(km.share_online(TimeDelta::minutes(30)), 1.0);
        assert_eq!(km.quantile(Percentile::P90), Some(TimeDelta::hours(4)));
        let steps: Vec<(u64, u64)> = km.steps().iter().map(|s| (s.at_risk, s.removed)).collect();
        assert_eq!(steps, [(4, 1), (3, 1), (2, 1), (1, 1)]);
    }

    #[test]
    fn censored_urls_stay_at_risk_and_are_not_counted_as_removed() {
        // Two removed early, two still online at 10h (censored), one removed at 20h.
        let km = KaplanMeier::estimate(&[
            h(1, true),
            h(2, true),
            h(10, false),
            h(10, false),
            h(20, true),
        ]);
        // 1h: 4/5 online; 2h: 3/5; 20h: 3/5 * 0/1 = 0.
        assert!((km.share_online(TimeDelta::hours(5)) - 0.6).abs() < 1e-12);
        assert_eq!(km.median(), Some(TimeDelta::hours(20)));
        // Dropping the censored URLs would give a median of 2h: the bias avoided.
        let dropped = KaplanMeier::estimate(&[h(1, true), h(2, true), h(20, true)]);
        assert_eq!(dropped.median(), Some(TimeDelta::hours(2)));
    }

    #[test]
    fn censored_at_a_removal_time_are_still_at_risk_then() {
        // At 1h: 4 at risk, 2 removed, 1 censored: S = 1/2 exactly.
        let km = KaplanMeier::estimate(&[h(1, true), h(1, true), h(1, false), h(3, true)]);
        assert_eq!(km.steps()[0].at_risk, 4);
        assert_eq!(km.median(), Some(TimeDelta::hours(1)));
        assert_eq!(km.steps()[1].at_risk, 1, "the censored one has left");
    }

    #[test]
    fn mostly_online_has_no_median() {
        let km = KaplanMeier::estimate(&[h(1, true), h(5, false), h(5, false), h(5, false)]);
        assert_eq!(km.median(), None);
        assert_eq!(KaplanMeier::estimate(&[]).median(), None);
        let all_censored = KaplanMeier::estimate(&[h(1, false), h(2, false)]);
        assert!(all_censored.steps().is_empty());
        assert_eq!(all_censored.quantile(Percentile::P90), None);
    }

    #[test]
    fn an_exact_half_is_the_median_however_the_product_rounds() {
        // 120 URLs removed one per minute: after 60 removals S = 60/120 = 1/2
        // exactly, which the running floating-point product overshoots.
        let samples: Vec<Survival> = (1..=120)
            .map(|m| Survival {
                time: TimeDelta::minutes(m),
                removed: true,
            })
            .collect();
        let km = KaplanMeier::estimate(&samples);
        assert!(km.steps()[59].share > 0.5, "the drift this guards against");
        assert_eq!(km.median(), Some(TimeDelta::minutes(60)));
        assert_eq!(km.quantile(Percentile::P90), Some(TimeDelta::minutes(108)));
    }

    #[test]
    fn percentiles_are_bounded() {
        assert_eq!(Percentile::new(0), None);
        assert_eq!(Percentile::new(100), None);
        assert_eq!(Percentile::new(1).map(Percentile::percent), Some(1));
        assert_eq!(Percentile::new(99).map(Percentile::percent), Some(99));
    }

    /// The quantile by exact fractions, independently: u128 numerators and
    /// denominators (small samples keep them in range).
    fn exact_quantile(samples: &[Survival], percent: u8) -> Option<TimeDelta> {
        let mut times: Vec<TimeDelta> = samples.iter().map(|s| s.time).collect();
        times.sort();
        times.dedup();
        let (mut num, mut den) = (1u128, 1u128);
        for time in times {
            let at_risk = samples.iter().filter(|s| s.time >= time).count() as u128;
            let removed = samples
                .iter()
                .filter(|s| s.time == time && s.removed)
                .count() as u128;
            if removed == 0 {
                continue;
            }
            num *= at_risk - removed;
            den *= at_risk;
            if num * 100 <= den * u128::from(100 - percent) {
                return Some(time);
            }
        }
        None
    }

    proptest! {
        #[test]
        fn quantiles_equal_the_exact_product_limit_estimate(
            samples in proptest::collection::vec((0i64..8, proptest::bool::weighted(0.7)), 0..22),
            percent in 1u8..100,
        ) {
            let samples: Vec<Survival> = samples
                .into_iter()
                .map(|(t, removed)| Survival { time: TimeDelta::hours(t), removed })
                .collect();
            let km = KaplanMeier::estimate(&samples);
            let p = Percentile::new(percent).unwrap();
            prop_assert_eq!(km.quantile(p), exact_quantile(&samples, percent));
        }
    }

    #[test]
    fn shares_within_the_rounding_error_are_left_to_the_integers() {
        // A product of n factors, each rounded twice (a division and a
        // multiplication), is within about n * EPSILON of the exact product:
        // a share that close to the threshold could be on either side of it.
        for factors in [1, 10, 60, 1000] {
            let error = factors as f64 * f64::EPSILON;
            for threshold in [0.5, 0.1, 0.99] {
                for share in [threshold * (1.0 - error), threshold * (1.0 + error)] {
                    assert_eq!(approx_cmp(share, threshold, factors), None, "{share}");
                }
            }
        }
    }

    /// Samples whose curve has the given steps `(at risk, removed)`, one an
    /// hour: a URL at risk at one step and neither removed there nor at risk
    /// at the next is censored at that step.
    fn from_steps(steps: &[(u64, u64)]) -> Vec<Survival> {
        let mut samples = Vec::new();
        for (i, &(at_risk, removed)) in steps.iter().enumerate() {
            let next = steps.get(i + 1).map_or(0, |step| step.0);
            let hour = i as i64 + 1;
            samples.extend((0..removed).map(|_| h(hour, true)));
            samples.extend((next..at_risk - removed).map(|_| h(hour, false)));
        }
        samples
    }

    #[test]
    fn a_share_just_above_the_threshold_is_decided_in_integers() {
        // Found by a search: after ten steps the exact estimate exceeds 1/2 by
        // 4.2e-16 of itself, closer than ten rounded factors can tell. Half
        // are estimated removed only at the eleventh step.
        let steps = [
            (2001, 256),
            (1694, 183),
            (1364, 19),
            (1326, 15),
            (1203, 122),
            (304, 17),
            (283, 22),
            (236, 34),
            (196, 2),
            (189, 1),
            (188, 188),
        ];
        let online = product(steps[..10].iter().map(|&(n, d)| n - d));
        let at_risk = product(steps[..10].iter().map(|&(n, _)| n));
        assert!(online * 2u32 > at_risk, "above 1/2 after ten steps");
        let samples = from_steps(&steps);
        let km = KaplanMeier::estimate(&samples);
        let curve: Vec<(u64, u64)> = km.steps().iter().map(|s| (s.at_risk, s.removed)).collect();
        assert_eq!(curve, steps);
        assert_eq!(approx_cmp(km.steps()[9].share, 0.5, 10), None);
        assert_eq!(km.median(), Some(TimeDelta::hours(11)));
        assert_eq!(km.median(), exact_quantile(&samples, 50));
    }

    #[test]
    fn undecided_comparisons_fall_back_to_integers() {
        assert_eq!(approx_cmp(0.25, 0.5, 3), Some(Ordering::Less));
        assert_eq!(approx_cmp(0.75, 0.5, 3), Some(Ordering::Greater));
        assert_eq!(approx_cmp(0.5 + 1e-15, 0.5, 3), None);
        assert_eq!(product([3u64, 5, 7].into_iter()), BigUint::from(105u32));
        assert_eq!(product(std::iter::empty()), BigUint::from(1u32));
    }
}
