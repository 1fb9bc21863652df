//! What a schedule costs and how precise it is, before it is used: checks per
//! URL over its life for a few fates, and, for each norm, the window of
//! takedown times the schedule cannot judge. `tdmon schedule plan` prints it.
//!
//! The checks are counted by running the state machine itself over a
//! synthetic history (every check answering at once), so the plan follows
//! the rules exactly as a monitor applies them: the regular offsets, the
//! confirmation rechecks, the watch of an inconclusive run, the sparse
//! rechecks after a takedown, the horizon.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::message::{DnsOutcome, DnsResult, Observation, SchemaV1};
use crate::norm::Norm;
use crate::outcome::{Outcome, Verdict};
use crate::state::{Rules, Subject, UrlState, advance};

/// How the content behind a URL fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Served to the end of monitoring.
    Online,
    /// Removed this long after the notice, answering 404 from then on.
    Removed(TimeDelta),
    /// This long after the notice the host stops answering (timeouts,
    /// refused connections): inconclusive checks only.
    HostGone(TimeDelta),
}

impl Fate {
    fn verdict(self, since_notice: TimeDelta) -> Verdict {
        match self {
            Fate::Online => Verdict::Online,
            Fate::Removed(at) if since_notice >= at => Verdict::Offline,
            Fate::HostGone(at) if since_notice >= at => Verdict::Inconclusive,
            Fate::Removed(_) | Fate::HostGone(_) => Verdict::Online,
        }
    }
}

/// The notice time of the synthetic histories; any instant would do.
fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01 is a time")
}

/// The times (since the notice) of every check a URL with this fate gets,
/// from its baseline check to the check at the horizon.
pub fn checks(rules: &Rules, fate: Fate) -> Vec<TimeDelta> {
    let notified_at = epoch();
    let subject = Subject {
        url_id: 0,
        url: "http://plan.invalid/".into(),
        notice_id: None,
        notified_at,
    };
    let mut state = UrlState::new(subject, notified_at);
    let mut times = Vec::new();
    while let Some(next) = state.next_check {
        let since = next.at - notified_at;
        let verdict = fate.verdict(since);
        let observation = Observation {
            schema: SchemaV1,
            job_id: Uuid::nil(),
            url_id: 0,
            url: String::new(),
            worker: "plan".into(),
            started_at: next.at,
            answered_at: next.at,
            duration_ms: 0,
            dns: DnsResult {
                outcome: DnsOutcome::Ok,
                answers: Vec::new(),
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
                Verdict::Inconclusive => Outcome::ConnectRefused,
            },
            verdict,
        };
        state = advance(&state, &observation, next.at, rules).0;
        times.push(since);
    }
    times
}

/// The takedown times a norm cannot judge under a schedule: between the last
/// regular check before the deadline and the first at or after it. A
/// takedown in there has a bracket that straddles the deadline (a check at
/// the deadline itself answers after it), so the norm is `undetermined` for
/// it; outside it the norm is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    pub norm: Norm,
    /// The last regular check that can answer before the deadline ...
    pub before: TimeDelta,
    /// ... and the first at or after it (`None` past the horizon).
    pub after: Option<TimeDelta>,
}

impl Precision {
    /// How wide the window is; `None` when no check follows the deadline.
    pub fn width(&self) -> Option<TimeDelta> {
        self.after.map(|after| after - self.before)
    }
}

/// The precision of each norm, from the regular checks of a URL served to the
/// end (the schedule every takedown is found by).
pub fn precision(rules: &Rules, norms: impl IntoIterator<Item = Norm>) -> Vec<Precision> {
    let regular = checks(rules, Fate::Online);
    norms
        .into_iter()
        .map(|norm| {
            let deadline = norm.duration();
            Precision {
                norm,
                before: regular
                    .iter()
                    .copied()
                    .rfind(|t| *t < deadline)
                    .unwrap_or(TimeDelta::zero()),
                after: regular.iter().copied().find(|t| *t >= deadline),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norm::Norms;

    fn hours(h: i64) -> TimeDelta {
        TimeDelta::hours(h)
    }

    #[test]
    fn a_url_served_to_the_end_gets_the_regular_checks() {
        let rules = Rules::default();
        let times = checks(&rules, Fate::Online);
        assert_eq!(times.first(), Some(&TimeDelta::zero()));
        assert_eq!(times.last(), Some(&TimeDelta::days(90)), "the horizon");
        assert!(times.contains(&hours(24)) && times.contains(&hours(23)));
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_takedown_adds_its_confirmation_and_the_sparse_rechecks() {
        let rules = Rules::default();
        let online = checks(&rules, Fate::Online);
        let removed = checks(&rules, Fate::Removed(hours(5)));
        // Regular to 4h, then 8h (offline), 8h15m and 8h30m (confirmed), then
        // after a day, three days, seven, and weekly to the horizon.
        let until_removed = online.iter().filter(|t| **t < hours(5)).count();
        let after: Vec<TimeDelta> = removed[until_removed..].to_vec();
        let confirmed = hours(8) + TimeDelta::minutes(30);
        assert_eq!(
            after[..6],
            [
                hours(8),
                hours(8) + TimeDelta::minutes(15),
                confirmed,
                confirmed + TimeDelta::days(1),
                confirmed + TimeDelta::days(3),
                confirmed + TimeDelta::days(7)
            ]
        );
        assert_eq!(removed.last(), Some(&TimeDelta::days(90)));
        assert!(removed.len() < online.len());
    }

    #[test]
    fn a_dead_host_is_watched_until_the_inconclusive_limit() {
        let rules = Rules::default();
        let dead = checks(&rules, Fate::HostGone(hours(5)));
        let rule = rules.confirmation;
        let watched: Vec<TimeDelta> = dead
            .iter()
            .copied()
            .filter(|t| *t >= hours(8) && *t <= hours(8) + rule.inconclusive_limit)
            .collect();
        // No two checks of the watched run further apart than max_gap.
        assert!(watched.windows(2).all(|w| w[1] - w[0] <= rule.max_gap));
        assert!(
            watched.len() > 20,
            "watched every 45 minutes: {}",
            watched.len()
        );
    }

    #[test]
    fn the_default_schedule_judges_every_default_norm_to_a_quarter_hour() {
        let rules = Rules::default();
        let norms: Vec<Norm> = Norms::default().iter().collect();
        let plan = precision(&rules, norms);
        assert_eq!(plan[0].norm.to_string(), "24h");
        assert_eq!(plan[0].before, hours(24) - TimeDelta::minutes(15));
        assert_eq!(plan[0].after, Some(hours(24)));
        for norm in &plan {
            assert_eq!(norm.width(), Some(TimeDelta::minutes(15)), "{}", norm.norm);
        }
        assert_eq!(plan[3].norm.to_string(), "28d");
    }

    #[test]
    fn a_norm_between_sparse_checks_is_judged_to_their_gap() {
        let config = crate::schedule::ScheduleConfig {
            offsets: [0, 6, 12, 36]
                .map(|h| std::time::Duration::from_secs(h * 3600))
                .to_vec(),
            ..crate::schedule::ScheduleConfig::default()
        };
        let rules = Rules {
            schedule: crate::schedule::Schedule::try_from(config).unwrap(),
            ..Rules::default()
        };
        let day = Norms::default().iter().next().unwrap();
        let plan = precision(&rules, [day]);
        assert_eq!(
            (plan[0].before, plan[0].after),
            (hours(12), Some(hours(36)))
        );
        assert_eq!(plan[0].width(), Some(hours(24)));
    }
}
