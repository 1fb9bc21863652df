//! Kaplan-Meier quantiles with their 95% confidence interval.
//!
//! The point estimate is tdmon-core's exact product-limit quantile. Its
//! interval is Brookmeyer and Crowley's: the times whose pointwise 95% band
//! of the survival curve holds the quantile's level, with the band from
//! Greenwood's variance on the log-log scale (the band stays inside [0, 1]):
//!
//! - `V(t) = sum over removal times t_i <= t of d_i / (n_i (n_i - d_i))`;
//! - `se = sqrt(V) / |ln S(t)|`, and the band is `S^exp(+z se)` (lower) to
//!   `S^exp(-z se)` (upper), `z = 1.959964`;
//! - the interval of the time by which a share `p` is removed runs from the
//!   first removal time at which the lower band reaches `1 - p` to the first
//!   at which the upper band does; no such time leaves the end open.

use chrono::TimeDelta;
use serde::Serialize;
use tdmon_core::state::seconds;
use tdmon_core::survival::{KaplanMeier, Percentile, Survival};

/// The 97.5% quantile of the standard normal distribution.
const Z: f64 = 1.959_963_984_540_054;

/// A time to takedown by Kaplan-Meier, in seconds from the notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TimeEstimate {
    /// `None` when the curve never reaches the share (too many still online).
    pub seconds: Option<f64>,
    /// URLs still at risk (online and watched) just before that time.
    pub at_risk: Option<u64>,
    /// The 95% interval; `ci_high_s` is `None` when it is open-ended.
    pub ci_low_s: Option<f64>,
    pub ci_high_s: Option<f64>,
}

/// One point of the curve with its band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandStep {
    pub time: TimeDelta,
    pub at_risk: u64,
    pub removed: u64,
    pub share: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The curve's steps with their pointwise 95% band.
pub fn band(km: &KaplanMeier) -> Vec<BandStep> {
    let mut variance = 0.0;
    km.steps()
        .iter()
        .map(|step| {
            let (n, d) = (step.at_risk as f64, step.removed as f64);
            if step.at_risk > step.removed {
                variance += d / (n * (n - d));
            }
            let (lower, upper) = if step.share <= 0.0 {
                (0.0, 0.0)
            } else if step.share >= 1.0 {
                (1.0, 1.0)
            } else {
                let se = variance.sqrt() / step.share.ln().abs();
                (
                    step.share.powf((Z * se).exp()),
                    step.share.powf((-Z * se).exp()),
                )
            };
            BandStep {
                time: step.time,
                at_risk: step.at_risk,
                removed: step.removed,
                share: step.share,
                lower,
                upper,
            }
        })
        .collect()
}

/// The time by which a share `p` is estimated removed, with its interval.
pub fn quantile(km: &KaplanMeier, p: Percentile) -> TimeEstimate {
    let Some(time) = km.quantile(p) else {
        return TimeEstimate::default();
    };
    let level = f64::from(100 - p.percent()) / 100.0;
    let steps = band(km);
    let first_below = |bound: fn(&BandStep) -> f64| {
        steps
            .iter()
            .find(|s| bound(s) <= level)
            .map(|s| seconds(s.time))
    };
    TimeEstimate {
        seconds: Some(seconds(time)),
        at_risk: steps.iter().find(|s| s.time == time).map(|s| s.at_risk),
        ci_low_s: first_below(|s| s.lower),
        ci_high_s: first_below(|s| s.upper),
    }
}

/// Median and 90th percentile of a sample.
pub fn estimates(samples: &[Survival]) -> (TimeEstimate, TimeEstimate) {
    let km = KaplanMeier::estimate(samples);
    (
        quantile(&km, Percentile::MEDIAN),
        quantile(&km, Percentile::P90),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hours: i64, removed: bool) -> Survival {
        Survival {
            time: TimeDelta::hours(hours),
            removed,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Four removals, none censored: S = 3/4, 1/2, 1/4, 0. Greenwood: V(1h)
    /// = 1/12, V(2h) = 1/4, V(3h) = 3/4. The log-log band at 1h is
    /// [0.12795, 0.96055], at 2h [0.05785, 0.84486], at 3h [0.00895,
    /// 0.66533], and [0, 0] at 4h where S = 0.
    #[test]
    fn none_censored() {
        let km = KaplanMeier::estimate(&[h(1, true), h(2, true), h(3, true), h(4, true)]);
        let steps = band(&km);
        let expected = [
            (0.127_946_917_595_145_8, 0.960_548_642_285_078_4),
            (0.057_847_082_995_144_57, 0.844_861_281_190_374),
            (0.008_947_824_416_603_167, 0.665_325_342_788_865_3),
            (0.0, 0.0),
        ];
        for (step, (lower, upper)) in steps.iter().zip(expected) {
            assert!(close(step.lower, lower), "{step:?}");
            assert!(close(step.upper, upper), "{step:?}");
        }
        let median = quantile(&km, Percentile::MEDIAN);
        assert_eq!(
            median,
            TimeEstimate {
                seconds: Some(7200.0),
                at_risk: Some(3),
                ci_low_s: Some(3600.0),
                ci_high_s: Some(14_400.0),
            }
        );
        let p90 = quantile(&km, Percentile::P90);
        assert_eq!(p90.seconds, Some(14_400.0));
        assert_eq!(p90.ci_low_s, Some(7200.0), "lower band 0.0578 <= 0.1 at 2h");
        assert_eq!(p90.ci_high_s, Some(14_400.0));
    }

    /// Ties and censoring: two removed at 1h (of 8), one censored at 2h, one
    /// removed at 3h (of 5), one censored at 4h, two removed at 5h (of 3),
    /// one censored at 6h. S = 3/4, 3/5, 1/5.
    #[test]
    fn ties_and_censoring() {
        let km = KaplanMeier::estimate(&[
            h(1, true),
            h(1, true),
            h(2, false),
            h(3, true),
            h(4, false),
            h(5, true),
            h(5, true),
            h(6, false),
        ]);
        let steps = band(&km);
        let at: Vec<(u64, u64)> = steps.iter().map(|s| (s.at_risk, s.removed)).collect();
        assert_eq!(at, [(8, 2), (5, 1), (3, 2)]);
        assert!(close(steps[0].lower, 0.314_807_113_705_519_06));
        assert!(close(steps[1].upper, 0.852_254_345_762_209));
        assert!(close(steps[2].upper, 0.572_736_485_551_547_9));
        let median = quantile(&km, Percentile::MEDIAN);
        assert_eq!(median.seconds, Some(5.0 * 3600.0));
        assert_eq!(median.at_risk, Some(3));
        assert_eq!(median.ci_low_s, Some(3600.0));
        assert_eq!(median.ci_high_s, None, "the upper band never reaches 1/2");
        assert_eq!(quantile(&km, Percentile::P90), TimeEstimate::default());
    }

    #[test]
    fn all_censored() {
        let km = KaplanMeier::estimate(&[h(1, false), h(2, false)]);
        assert!(band(&km).is_empty());
        assert_eq!(estimates(&[h(1, false)]), Default::default());
        assert_eq!(quantile(&km, Percentile::MEDIAN), TimeEstimate::default());
    }

    proptest::proptest! {
        /// On random samples with ties and censoring: the band holds the
        /// estimate, narrows nothing to a point before the curve reaches 0,
        /// and the interval of a quantile holds the quantile.
        #[test]
        fn the_interval_holds_the_estimate(
            raw in proptest::collection::vec((1i64..40, proptest::bool::ANY), 1..80),
        ) {
            let samples: Vec<Survival> = raw.iter().map(|&(t, removed)| h(t, removed)).collect();
            let km = KaplanMeier::estimate(&samples);
            for step in band(&km) {
                proptest::prop_assert!(step.lower <= step.share && step.share <= step.upper, "{step:?}");
                proptest::prop_assert!((0.0..=1.0).contains(&step.lower) && step.upper <= 1.0);
            }
            for p in [Percentile::MEDIAN, Percentile::P90] {
                let e = quantile(&km, p);
                if let Some(point) = e.seconds {
                    let low = e.ci_low_s.expect("a reached quantile has a lower end");
                    proptest::prop_assert!(low <= point);
                    if let Some(high) = e.ci_high_s {
                        proptest::prop_assert!(point <= high);
                    }
                    proptest::prop_assert!(e.at_risk.is_some_and(|n| n >= 1));
                } else {
                    proptest::prop_assert_eq!(e, TimeEstimate::default());
                }
            }
        }
    }

    #[test]
    fn nothing_at_all() {
        assert_eq!(estimates(&[]), Default::default());
    }
}
