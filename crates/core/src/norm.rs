//! Norms: removal deadlines counted from the notice time (24 hours in the Dutch
//! code of conduct). A URL **meets** a norm when it was offline at the
//! deadline: taken down within it and not back before it. It **misses** the
//! norm when it was served at the deadline, and is **undetermined** when the
//! checks cannot tell: the deadline falls inside a bracket, or after the
//! latest check. Undetermined is counted apart, never guessed.
//!
//! What the checks tell, from a URL's offline episodes (docs/MEASUREMENT.md):
//! - offline from a takedown's late end to the latest check that saw the
//!   content gone;
//! - served from the notice time (for a URL that was ever seen online and was
//!   not already offline), or from a reappearance's late end, to the latest
//!   online check before the next takedown.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::UrlState;

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

    /// How one URL fares against this norm.
    pub fn judge(self, state: &UrlState) -> NormResult {
        let notified_at = state.subject.notified_at;
        let deadline = notified_at + self.0;
        let between = |from: DateTime<Utc>, to: DateTime<Utc>| from <= deadline && deadline <= to;
        let mut served_from = (!state.already_offline).then_some(notified_at);
        for episode in &state.episodes {
            let takedown = &episode.takedown.bracket;
            if let (Some(from), Some(last_online)) = (served_from, takedown.from)
                && between(from, last_online)
            {
                return NormResult::Missed;
            }
            if between(takedown.to, episode.last_offline_at) {
                return NormResult::Met;
            }
            served_from = episode.ended.map(|back| back.to);
        }
        match (served_from, state.last_online_at) {
            (Some(from), Some(last_online)) if between(from, last_online) => NormResult::Missed,
            _ => NormResult::Undetermined,
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
    use uuid::Uuid;

    use super::*;
    use crate::message::{DnsOutcome, DnsResult, Observation, SchemaV1};
    use crate::outcome::{Outcome, Verdict};
    use crate::state::{Rules, Subject, advance};

    fn t0() -> DateTime<Utc> {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    fn day() -> Norm {
        Norm(TimeDelta::hours(24))
    }

    /// A URL checked at the given hours (each check answered a second after
    /// it started) with the given verdicts, under the default rules.
    fn url(checks: &[(f64, Verdict)]) -> UrlState {
        let rules = Rules::default();
        let subject = Subject {
            url_id: 1,
            url: "http://a.test/x.jpg".into(),
            notice_id: None,
            notified_at: t0(),
        };
        let mut state = UrlState::new(subject, t0());
        for &(hours, verdict) in checks {
            let at = t0() + TimeDelta::seconds((hours * 3600.0) as i64);
            let observation = Observation {
                schema: SchemaV1,
                job_id: Uuid::new_v4(),
                url_id: 1,
                url: String::new(),
                worker: "t".into(),
                started_at: at,
                answered_at: at + TimeDelta::seconds(1),
                duration_ms: 1000,
                dns: DnsResult {
                    outcome: DnsOutcome::Ok,
                    answers: vec![],
                },
                ip: None,
                asn: None,
                as_org: None,
                hoster: None,
                cdn: false,
                http: None,
                tls_error: None,
                fingerprint: None,
                outcome: match verdict {
                    Verdict::Online => Outcome::Served,
                    Verdict::Offline => Outcome::HttpNotFound,
                    Verdict::Inconclusive => Outcome::HttpServerError,
                },
                verdict,
            };
            state = advance(&state, &observation, at, &rules).0;
        }
        state
    }

    use Verdict::{Inconclusive as I, Offline as X, Online as O};

    #[test]
    fn offline_at_the_deadline_after_a_takedown_within_it_meets_it() {
        let state = url(&[(0.0, O), (20.0, X), (20.25, X), (20.5, X), (44.5, X)]);
        assert_eq!(day().judge(&state), NormResult::Met);
        // Taken down at 22h, confirmed at 22.5h, offline again at 46.5h.
        let late = url(&[
            (0.0, O),
            (21.0, O),
            (22.0, X),
            (22.25, X),
            (22.5, X),
            (46.5, X),
        ]);
        assert_eq!(day().judge(&late), NormResult::Met);
    }

    #[test]
    fn a_takedown_not_yet_seen_past_the_deadline_is_undetermined() {
        // Confirmed at 20.5h; the next check (a day later) has not happened yet.
        let state = url(&[(0.0, O), (20.0, X), (20.25, X), (20.5, X)]);
        assert_eq!(day().judge(&state), NormResult::Undetermined);
    }

    #[test]
    fn content_back_before_the_deadline_does_not_meet_it() {
        // Down at 5h, back at 10h (a reappearance recheck), served at 30h.
        let state = url(&[
            (0.0, O),
            (5.0, X),
            (5.25, X),
            (5.5, X),
            (10.0, O),
            (30.0, O),
        ]);
        assert_eq!(state.reappearances(), 1);
        assert_eq!(day().judge(&state), NormResult::Missed);
        // Back before the deadline and down again for good before it: offline
        // at the deadline, in an episode that started within it.
        let again = url(&[
            (0.0, O),
            (5.0, X),
            (5.25, X),
            (5.5, X),
            (10.0, O),
            (12.0, X),
            (12.25, X),
            (12.5, X),
            (36.5, X),
        ]);
        assert_eq!(day().judge(&again), NormResult::Met);
    }

    #[test]
    fn served_at_the_deadline_misses_it() {
        let state = url(&[(0.0, O), (30.0, O)]);
        assert_eq!(day().judge(&state), NormResult::Missed);
        let exactly = url(&[(0.0, O), (24.0, O), (25.0, X), (25.25, X), (25.5, X)]);
        assert_eq!(day().judge(&exactly), NormResult::Missed);
    }

    #[test]
    fn a_bracket_straddling_the_deadline_is_undetermined() {
        let state = url(&[(0.0, O), (23.0, O), (25.0, X), (25.25, X), (25.5, X)]);
        assert_eq!(day().judge(&state), NormResult::Undetermined);
        // Still online, last seen before the deadline: not decided yet.
        assert_eq!(
            day().judge(&url(&[(0.0, O), (20.0, O)])),
            NormResult::Undetermined
        );
        // Never seen online, first seen offline after the deadline.
        assert_eq!(
            day().judge(&url(&[(30.0, X), (30.25, X), (30.5, X)])),
            NormResult::Undetermined
        );
    }

    #[test]
    fn a_run_of_inconclusive_checks_counts_as_offline_only_once_confirmed() {
        let rules = Rules::default();
        let mut checks = vec![(0.0, O)];
        // 503s every half hour from 2h to 27h: confirmed at 26h, ending at 2h.
        checks.extend((0..=50).map(|k| (2.0 + f64::from(k) * 0.5, I)));
        let state = url(&checks);
        let takedown = state.first_takedown().expect("confirmed");
        assert_eq!(
            takedown.evidence,
            crate::message::Evidence::InconclusiveOnly
        );
        assert!(rules.confirmation.inconclusive_limit <= TimeDelta::hours(25));
        assert_eq!(day().judge(&state), NormResult::Met);
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
        let durations: Vec<TimeDelta> = norms.iter().map(Norm::duration).collect();
        assert_eq!(durations, [TimeDelta::hours(24), TimeDelta::hours(48)]);
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

    #[test]
    fn norms_are_bounded_at_a_hundred_years_like_the_schedule() {
        let century = Duration::from_secs(100 * 365 * 86_400);
        let norms = Norms::try_from(vec![century]).expect("a hundred years is allowed");
        assert_eq!(
            norms.iter().map(Norm::duration).collect::<Vec<_>>(),
            [TimeDelta::days(100 * 365)]
        );
        assert!(matches!(
            Norms::try_from(vec![century + Duration::from_secs(1)]),
            Err(NormError::TooLong(_))
        ));
        // Beyond what a TimeDelta holds at all.
        assert!(matches!(
            Norms::try_from(vec![Duration::MAX]),
            Err(NormError::TooLong(_))
        ));
    }
}
