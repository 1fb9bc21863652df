//! Time to takedown with censoring handled properly: the Kaplan-Meier
//! estimator. A URL still online when monitoring ends is right-censored: it
//! counts as "at risk" up to its last observation and is never dropped nor
//! counted as removed.

use chrono::TimeDelta;

/// One URL's time to takedown: removed after `time`, or still online
/// (censored) when last seen at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survival {
    pub time: TimeDelta,
    pub removed: bool,
}

/// The Kaplan-Meier survival curve: the estimated share still online after
/// each time at which some URL was removed.
#[derive(Debug, Clone, PartialEq)]
pub struct KaplanMeier {
    /// `(time, share still online just after it)`, times ascending.
    steps: Vec<(TimeDelta, f64)>,
}

impl KaplanMeier {
    pub fn estimate(samples: &[Survival]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by_key(|s| s.time);
        let mut at_risk = sorted.len();
        let mut share = 1.0;
        let mut steps = Vec::new();
        let mut rest = sorted.as_slice();
        while let Some(first) = rest.first() {
            let same = rest.iter().take_while(|s| s.time == first.time).count();
            let removed = rest[..same].iter().filter(|s| s.removed).count();
            if removed > 0 {
                // Censored at the same time still count as at risk.
                share *= 1.0 - removed as f64 / at_risk as f64;
                steps.push((first.time, share));
            }
            at_risk -= same;
            rest = &rest[same..];
        }
        Self { steps }
    }

    /// The share still online after `time`.
    pub fn share_online(&self, time: TimeDelta) -> f64 {
        self.steps
            .iter()
            .take_while(|(t, _)| *t <= time)
            .last()
            .map_or(1.0, |(_, share)| *share)
    }

    /// The time by which a share `p` (0 < p < 1) is estimated removed; `None`
    /// when the curve never gets there (too many still online).
    pub fn quantile(&self, p: f64) -> Option<TimeDelta> {
        self.steps
            .iter()
            .find(|(_, share)| *share <= 1.0 - p + f64::EPSILON)
            .map(|(t, _)| *t)
    }

    pub fn median(&self) -> Option<TimeDelta> {
        self.quantile(0.5)
    }
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

    #[test]
    fn without_censoring_it_is_the_plain_median() {
        let km = KaplanMeier::estimate(&[h(1, true), h(2, true), h(3, true), h(4, true)]);
        assert_eq!(km.median(), Some(TimeDelta::hours(2)));
        assert_eq!(km.share_online(TimeDelta::hours(3)), 0.25);
        assert_eq!(km.quantile(0.9), Some(TimeDelta::hours(4)));
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
    fn mostly_online_has_no_median() {
        let km = KaplanMeier::estimate(&[h(1, true), h(5, false), h(5, false), h(5, false)]);
        assert_eq!(km.median(), None);
        assert_eq!(KaplanMeier::estimate(&[]).median(), None);
    }
}
