//! When to check a URL: the recheck schedule from the notice time, the
//! confirmation rule for a non-online run, sparse rechecks after a takedown and
//! the give-up horizon. Pure functions of times; validated on construction so a
//! `Schedule` or a `Confirmation` cannot hold nonsense.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A rule that a schedule or confirmation setting breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("schedule.offsets must not be empty")]
    NoOffsets,
    #[error("schedule.offsets must increase strictly: {0} is not after {1}")]
    OffsetsNotIncreasing(String, String),
    #[error("{0} must be at least 1ms")]
    NotPositive(&'static str),
    #[error("schedule.horizon ({horizon}) must be after the last offset ({last})")]
    HorizonTooShort { horizon: String, last: String },
    #[error("confirmation.checks must be at least 1")]
    NoConfirmationChecks,
    #[error("confirmation.max_gap_factor must be at least 2, so that a recheck may run late")]
    GapFactorTooSmall,
    #[error("{0} is too long to compute with")]
    TooLong(&'static str),
}

/// The schedule as written in the configuration's `[schedule]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Checks at these offsets from the notice time.
    #[serde(with = "crate::duration::list")]
    pub offsets: Vec<Duration>,
    /// After the last offset, one check every this long.
    #[serde(with = "crate::duration")]
    pub then_every: Duration,
    /// Monitoring of a notice ends this long after its notice time.
    #[serde(with = "crate::duration")]
    pub horizon: Duration,
    /// After a takedown, look for the content's return at these offsets from
    /// the confirming check ...
    #[serde(with = "crate::duration::list")]
    pub after_takedown: Vec<Duration>,
    /// ... then every this long.
    #[serde(with = "crate::duration")]
    pub after_takedown_every: Duration,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// How long before each default norm's deadline the default schedule checks
/// once more: a check at the deadline itself answers after it, so only a
/// check that answers before the deadline can find a takedown within it.
/// As long as the default recheck delay, the closest two checks may be.
const BEFORE_DEADLINE: u64 = 15 * MINUTE;

impl Default for ScheduleConfig {
    /// Dense around 24h, then daily to a week, weekly to four weeks, and
    /// every week up to 90 days; and a check a quarter of an hour before each
    /// default norm's deadline, so that each norm is decidable to a quarter
    /// of an hour (`tdmon schedule plan` shows it).
    fn default() -> Self {
        let minutes = [0, 15, 30];
        let hours = [1, 2, 4, 8, 12, 16, 20, 22, 23, 24, 25, 36, 48];
        let days = [3, 4, 5, 6, 7, 14, 21, 28];
        let mut offsets: Vec<Duration> = minutes
            .iter()
            .map(|m| m * MINUTE)
            .chain(hours.iter().map(|h| h * HOUR))
            .chain(days.iter().map(|d| d * DAY))
            .chain(
                crate::norm::default_durations()
                    .iter()
                    .map(|norm| norm.as_secs() - BEFORE_DEADLINE),
            )
            .map(Duration::from_secs)
            .collect();
        offsets.sort();
        Self {
            offsets,
            then_every: Duration::from_secs(7 * DAY),
            horizon: Duration::from_secs(90 * DAY),
            after_takedown: [DAY, 3 * DAY, 7 * DAY].map(Duration::from_secs).to_vec(),
            after_takedown_every: Duration::from_secs(7 * DAY),
        }
    }
}

/// The confirmation rule as written in the configuration's `[confirmation]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfirmationConfig {
    /// K: consecutive non-online checks needed to confirm a takedown.
    pub checks: u32,
    /// The K checks must span at least this long (first to last).
    #[serde(with = "crate::duration")]
    pub min_span: Duration,
    /// Delay between the rechecks of an unconfirmed non-online run.
    #[serde(with = "crate::duration")]
    pub recheck_delay: Duration,
    /// A run of only inconclusive checks (no offline verdict) confirms once it
    /// has been watched this long; before that it never does.
    #[serde(with = "crate::duration")]
    pub inconclusive_limit: Duration,
    /// An inconclusive run counts as watched only while its consecutive checks
    /// are at most this many `recheck_delay`s apart: a gap in tdmon's own
    /// checking is never counted as time the URL was down.
    pub max_gap_factor: u32,
}

impl Default for ConfirmationConfig {
    fn default() -> Self {
        Self {
            checks: 3,
            min_span: Duration::from_secs(30 * MINUTE),
            recheck_delay: Duration::from_secs(15 * MINUTE),
            inconclusive_limit: Duration::from_secs(DAY),
            max_gap_factor: 4,
        }
    }
}

/// A validated schedule: offsets strictly increasing, every period positive,
/// the horizon after the last offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    offsets: Vec<TimeDelta>,
    then_every: TimeDelta,
    horizon: TimeDelta,
    after_takedown: Vec<TimeDelta>,
    after_takedown_every: TimeDelta,
}

/// A validated confirmation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub checks: u32,
    pub min_span: TimeDelta,
    pub recheck_delay: TimeDelta,
    pub inconclusive_limit: TimeDelta,
    /// `max_gap_factor * recheck_delay`: the widest gap between two checks of
    /// a watched inconclusive run.
    pub max_gap: TimeDelta,
}

fn delta(duration: Duration, name: &'static str) -> Result<TimeDelta, RuleError> {
    TimeDelta::from_std(duration)
        .ok()
        // Keep far from chrono's limits so that date arithmetic cannot overflow.
        .filter(|d| *d <= TimeDelta::days(100 * 365))
        .ok_or(RuleError::TooLong(name))
}

fn positive(duration: Duration, name: &'static str) -> Result<TimeDelta, RuleError> {
    let d = delta(duration, name)?;
    if d < TimeDelta::milliseconds(1) {
        return Err(RuleError::NotPositive(name));
    }
    Ok(d)
}

fn increasing(offsets: &[Duration], name: &'static str) -> Result<Vec<TimeDelta>, RuleError> {
    if let Some(pair) = offsets.windows(2).find(|pair| pair[1] <= pair[0]) {
        return Err(RuleError::OffsetsNotIncreasing(
            crate::duration::format(pair[1]),
            crate::duration::format(pair[0]),
        ));
    }
    offsets.iter().map(|d| delta(*d, name)).collect()
}

impl TryFrom<ScheduleConfig> for Schedule {
    type Error = RuleError;

    fn try_from(config: ScheduleConfig) -> Result<Self, RuleError> {
        if config.offsets.is_empty() {
            return Err(RuleError::NoOffsets);
        }
        let offsets = increasing(&config.offsets, "schedule.offsets")?;
        let horizon = positive(config.horizon, "schedule.horizon")?;
        let last = *offsets.last().unwrap_or(&TimeDelta::zero());
        if horizon <= last {
            return Err(RuleError::HorizonTooShort {
                horizon: crate::duration::format(config.horizon),
                last: crate::duration::format(*config.offsets.last().unwrap_or(&Duration::ZERO)),
            });
        }
        let after_takedown = increasing(&config.after_takedown, "schedule.after_takedown")?;
        if after_takedown
            .first()
            .is_some_and(|d| *d <= TimeDelta::zero())
        {
            return Err(RuleError::NotPositive("schedule.after_takedown"));
        }
        Ok(Self {
            offsets,
            then_every: positive(config.then_every, "schedule.then_every")?,
            horizon,
            after_takedown,
            after_takedown_every: positive(
                config.after_takedown_every,
                "schedule.after_takedown_every",
            )?,
        })
    }
}

impl TryFrom<ConfirmationConfig> for Confirmation {
    type Error = RuleError;

    fn try_from(config: ConfirmationConfig) -> Result<Self, RuleError> {
        if config.checks == 0 {
            return Err(RuleError::NoConfirmationChecks);
        }
        if config.max_gap_factor < 2 {
            return Err(RuleError::GapFactorTooSmall);
        }
        let recheck_delay = positive(config.recheck_delay, "confirmation.recheck_delay")?;
        let max_gap = config
            .recheck_delay
            .checked_mul(config.max_gap_factor)
            .ok_or(RuleError::TooLong("confirmation.max_gap_factor"))
            .and_then(|gap| delta(gap, "confirmation.max_gap_factor"))?;
        Ok(Self {
            checks: config.checks,
            min_span: delta(config.min_span, "confirmation.min_span")?,
            recheck_delay,
            inconclusive_limit: positive(
                config.inconclusive_limit,
                "confirmation.inconclusive_limit",
            )?,
            max_gap,
        })
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Self::try_from(ScheduleConfig::default()).expect("the default schedule is valid")
    }
}

impl Default for Confirmation {
    fn default() -> Self {
        Self::try_from(ConfirmationConfig::default()).expect("the default confirmation is valid")
    }
}

/// The first time strictly after `after` in the series `anchor + offsets`,
/// continued every `every` past the last offset.
fn next_in_series(
    anchor: DateTime<Utc>,
    offsets: &[TimeDelta],
    every: TimeDelta,
    after: DateTime<Utc>,
) -> DateTime<Utc> {
    if let Some(offset) = offsets.iter().find(|offset| anchor + **offset > after) {
        return anchor + *offset;
    }
    let last = anchor + offsets.last().copied().unwrap_or(TimeDelta::zero());
    // Whole periods past the last offset, plus one: strictly after `after`.
    // Validation keeps every period at least a millisecond long.
    let periods = (after - last).num_milliseconds() / every.num_milliseconds().max(1) + 1;
    last + every * i32::try_from(periods).unwrap_or(i32::MAX)
}

impl Schedule {
    /// When monitoring of a notice made at `notified_at` ends.
    pub fn end(&self, notified_at: DateTime<Utc>) -> DateTime<Utc> {
        notified_at + self.horizon
    }

    /// The next regular check strictly after `after`, for an online episode
    /// that started at `anchor` (the notice time, or the reappearance), never
    /// later than the end of monitoring.
    pub fn next_regular(
        &self,
        anchor: DateTime<Utc>,
        after: DateTime<Utc>,
        notified_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        next_in_series(anchor, &self.offsets, self.then_every, after).min(self.end(notified_at))
    }

    /// The next recheck strictly after `after` of content taken down at
    /// `confirmed_at`, never later than the end of monitoring.
    pub fn next_after_takedown(
        &self,
        confirmed_at: DateTime<Utc>,
        after: DateTime<Utc>,
        notified_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        next_in_series(
            confirmed_at,
            &self.after_takedown,
            self.after_takedown_every,
            after,
        )
        .min(self.end(notified_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-01-05T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn default_is_dense_around_the_24h_norm() {
        let schedule = Schedule::default();
        let t0 = t0();
        let mut checks = vec![t0];
        while let Some(last) = checks.last().copied() {
            let next = schedule.next_regular(t0, last, t0);
            if next == last {
                break;
            }
            checks.push(next);
        }
        let hours: Vec<i64> = checks.iter().map(|t| (*t - t0).num_minutes()).collect();
        // 22h, 23h, 24h, 25h are all checked: the bracket around 24h is at most an hour.
        for h in [22, 23, 24, 25] {
            assert!(hours.contains(&(h * 60)), "{h}h missing from {hours:?}");
        }
        assert_eq!(hours[..4], [0, 15, 30, 60]);
        // Weekly after four weeks, ending exactly at the 90-day horizon.
        assert!(hours.contains(&(35 * 24 * 60)));
        assert_eq!(*hours.last().unwrap(), 90 * 24 * 60);
    }

    #[test]
    fn next_is_strictly_after_even_when_late() {
        let schedule = Schedule::default();
        let t0 = t0();
        // A check that ran 10 minutes late at 1h10m: the next is 2h, not 1h.
        let late = t0 + TimeDelta::minutes(70);
        assert_eq!(
            schedule.next_regular(t0, late, t0),
            t0 + TimeDelta::hours(2)
        );
        // Far past the offsets: the next weekly slot.
        let day40 = t0 + TimeDelta::days(40);
        assert_eq!(
            schedule.next_regular(t0, day40, t0),
            t0 + TimeDelta::days(42)
        );
    }

    #[test]
    fn after_takedown_is_sparse_and_capped_by_the_horizon() {
        let schedule = Schedule::default();
        let t0 = t0();
        let confirmed = t0 + TimeDelta::hours(30);
        assert_eq!(
            schedule.next_after_takedown(confirmed, confirmed, t0),
            confirmed + TimeDelta::days(1)
        );
        let late = t0 + TimeDelta::days(89);
        assert_eq!(
            schedule.next_after_takedown(confirmed, late, t0),
            schedule.end(t0)
        );
    }

    #[test]
    fn sub_second_periods_work() {
        let config = ScheduleConfig {
            offsets: vec![Duration::ZERO],
            then_every: Duration::from_millis(500),
            horizon: Duration::from_secs(10),
            ..ScheduleConfig::default()
        };
        let schedule = Schedule::try_from(config).unwrap();
        let t0 = t0();
        let after = t0 + TimeDelta::milliseconds(1_200);
        assert_eq!(
            schedule.next_regular(t0, after, t0),
            t0 + TimeDelta::milliseconds(1_500)
        );
        let too_short = ScheduleConfig {
            then_every: Duration::from_micros(10),
            ..ScheduleConfig::default()
        };
        assert!(Schedule::try_from(too_short).is_err());
    }

    #[test]
    fn validation_rejects_nonsense() {
        let bad_order = ScheduleConfig {
            offsets: vec![Duration::from_secs(60), Duration::from_secs(60)],
            ..ScheduleConfig::default()
        };
        assert!(matches!(
            Schedule::try_from(bad_order),
            Err(RuleError::OffsetsNotIncreasing(..))
        ));
        let empty = ScheduleConfig {
            offsets: vec![],
            ..ScheduleConfig::default()
        };
        assert_eq!(Schedule::try_from(empty), Err(RuleError::NoOffsets));
        let short = ScheduleConfig {
            horizon: Duration::from_secs(DAY),
            ..ScheduleConfig::default()
        };
        assert!(matches!(
            Schedule::try_from(short),
            Err(RuleError::HorizonTooShort { .. })
        ));
        let zero_every = ScheduleConfig {
            then_every: Duration::ZERO,
            ..ScheduleConfig::default()
        };
        assert_eq!(
            Schedule::try_from(zero_every),
            Err(RuleError::NotPositive("schedule.then_every"))
        );
        let k0 = ConfirmationConfig {
            checks: 0,
            ..ConfirmationConfig::default()
        };
        assert_eq!(
            Confirmation::try_from(k0),
            Err(RuleError::NoConfirmationChecks)
        );
        let no_limit = ConfirmationConfig {
            inconclusive_limit: Duration::ZERO,
            ..ConfirmationConfig::default()
        };
        assert!(Confirmation::try_from(no_limit).is_err());
    }
}
