//! Norms: removal deadlines counted from the notice time (24 hours in the Dutch
//! code of conduct). A URL meets a norm when its first non-online check falls
//! within it, misses it when it was still seen online at the deadline, and is
//! undetermined otherwise: a bracket that straddles the deadline, or a URL not
//! observed past it yet. Undetermined is counted apart, never guessed.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::message::Bracket;

/// How a URL fares against one norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormResult {
    Met,
    Missed,
    Undetermined,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NormError {
    #[error("norms must not be empty")]
    Empty,
    #[error("norm {0} must be longer than zero")]
    NotPositive(String),
    #[error("norm {0} is listed twice")]
    Duplicate(String),
    #[error("norm {0} is too long to compute with")]
    TooLong(String),
}

/// One deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Norm(TimeDelta);

impl Norm {
    pub fn duration(self) -> TimeDelta {
        self.0
    }

    /// Judges one URL: `takedown` is its first confirmed takedown, if any;
    /// `last_online` its latest online check (used while no takedown is known).
    pub fn judge(
        self,
        notified_at: DateTime<Utc>,
        takedown: Option<&Bracket>,
        last_online: Option<DateTime<Utc>>,
    ) -> NormResult {
        let deadline = notified_at + self.0;
        match takedown {
            Some(bracket) if bracket.first_offline <= deadline => NormResult::Met,
            // Never seen online: it was (presumably) up at the notice itself.
            Some(bracket) if bracket.last_online.unwrap_or(notified_at) >= deadline => {
                NormResult::Missed
            }
            Some(_) => NormResult::Undetermined,
            None if last_online.is_some_and(|online| online >= deadline) => NormResult::Missed,
            None => NormResult::Undetermined,
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = u64::try_from(self.0.num_seconds()).unwrap_or(0);
        f.write_str(&crate::duration::format(Duration::from_secs(secs)))
    }
}

/// The validated list of norms: non-empty, positive, ascending, no duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Norms(Vec<Norm>);

impl Norms {
    pub fn iter(&self) -> impl Iterator<Item = Norm> + '_ {
        self.0.iter().copied()
    }
}

impl TryFrom<Vec<Duration>> for Norms {
    type Error = NormError;

    fn try_from(durations: Vec<Duration>) -> Result<Self, NormError> {
        if durations.is_empty() {
            return Err(NormError::Empty);
        }
        let mut norms = durations
            .iter()
            .map(|d| {
                let name = crate::duration::format(*d);
                match TimeDelta::from_std(*d) {
                    Ok(delta) if delta > TimeDelta::days(100 * 365) => {
                        Err(NormError::TooLong(name))
                    }
                    Ok(delta) if delta > TimeDelta::zero() => Ok(Norm(delta)),
                    Ok(_) => Err(NormError::NotPositive(name)),
                    Err(_) => Err(NormError::TooLong(name)),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        norms.sort();
        if let Some(pair) = norms.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(NormError::Duplicate(pair[0].to_string()));
        }
        Ok(Self(norms))
    }
}

/// The default norms: 24h, 48h, 7d, 28d.
pub fn default_durations() -> Vec<Duration> {
    [1, 2, 7, 28]
        .map(|days| Duration::from_secs(days * 86_400))
        .to_vec()
}

impl Default for Norms {
    fn default() -> Self {
        Self::try_from(default_durations()).expect("the default norms are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    fn hours(h: i64) -> DateTime<Utc> {
        t0() + TimeDelta::hours(h)
    }

    fn day() -> Norm {
        Norm(TimeDelta::hours(24))
    }

    fn bracket(last_online: Option<i64>, first_offline: i64) -> Bracket {
        Bracket {
            last_online: last_online.map(hours),
            first_offline: hours(first_offline),
        }
    }

    #[test]
    fn first_offline_within_the_norm_meets_it() {
        let b = bracket(Some(20), 22);
        assert_eq!(day().judge(t0(), Some(&b), None), NormResult::Met);
        let exactly = bracket(Some(23), 24);
        assert_eq!(day().judge(t0(), Some(&exactly), None), NormResult::Met);
    }

    #[test]
    fn online_at_the_deadline_misses_it() {
        let b = bracket(Some(24), 25);
        assert_eq!(day().judge(t0(), Some(&b), None), NormResult::Missed);
        assert_eq!(day().judge(t0(), None, Some(hours(30))), NormResult::Missed);
    }

    #[test]
    fn a_bracket_straddling_the_deadline_is_undetermined() {
        let b = bracket(Some(23), 25);
        assert_eq!(day().judge(t0(), Some(&b), None), NormResult::Undetermined);
        // Never seen online, first seen offline after the deadline: unknown when.
        let late = bracket(None, 30);
        assert_eq!(
            day().judge(t0(), Some(&late), None),
            NormResult::Undetermined
        );
        // Still online, last seen before the deadline: not decided yet.
        assert_eq!(
            day().judge(t0(), None, Some(hours(20))),
            NormResult::Undetermined
        );
    }

    #[test]
    fn validation_sorts_and_rejects_nonsense() {
        let norms = Norms::try_from(vec![
            Duration::from_secs(172_800),
            Duration::from_secs(86_400),
        ])
        .unwrap();
        let listed: Vec<String> = norms.iter().map(|n| n.to_string()).collect();
        assert_eq!(listed, ["24h", "48h"]);
        assert_eq!(Norms::try_from(vec![]), Err(NormError::Empty));
        assert!(matches!(
            Norms::try_from(vec![Duration::ZERO]),
            Err(NormError::NotPositive(_))
        ));
        assert!(matches!(
            Norms::try_from(vec![Duration::from_secs(60), Duration::from_secs(60)]),
            Err(NormError::Duplicate(_))
        ));
    }
}
