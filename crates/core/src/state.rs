//! The state machine of one monitored notice-URL, as one pure function:
//! [`advance`]`(state, observation, now, rules) -> (new state, events)`, with the
//! next check time in the new state.
//!
//! The rules it implements are DESIGN.md's "Measurement semantics":
//! - a takedown is confirmed only after `K` consecutive non-online checks that
//!   span at least `min_span`, of which at least one is an offline verdict, or
//!   whose inconclusive run lasted at least `inconclusive_limit`;
//! - the takedown time is the first check of the confirmed run, and the true
//!   moment lies in the bracket (last online check, first non-online check]:
//!   from the start of the one to the answer of the other, so that the
//!   bracket holds even when a check took long;
//! - a URL never seen online whose run is confirmed is `already_offline`;
//! - after a takedown the URL is rechecked sparsely; content that is served
//!   again is a `reappeared` event and starts a new online episode, whose
//!   regular schedule restarts from the reappearance so that a second takedown
//!   is bracketed as tightly as the first;
//! - the hoster of record is the one that served the first online check; a
//!   different hoster on a later online check is a `hoster_changed` event;
//! - the check at the horizon ends monitoring with an `expired` event.
//!
//! Observations are applied in the order of their `started_at`. One that is not
//! newer than the last applied check (a redelivered job, or a stale check that
//! lost a race with its own re-dispatch) is ignored: it changes nothing and
//! emits nothing. So is a `not_checked` one, whose host was never contacted.
//! The store still keeps them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::message::{
    Attribution, Bracket, Event, EventKind, Observation, Purpose, SchemaV1, UrlId,
};
use crate::outcome::{Outcome, Verdict};
use crate::schedule::{Confirmation, Schedule};

/// The rules the state machine follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub schedule: Schedule,
    pub confirmation: Confirmation,
}

/// What is being monitored: one notice about one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub url_id: UrlId,
    pub url: String,
    pub notice_id: Option<String>,
    pub notified_at: DateTime<Utc>,
}

/// Where a monitored URL stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not checked yet.
    Pending,
    /// Checked, never seen online, not confirmed offline either.
    Unseen,
    /// Seen online; a non-online run may be under confirmation.
    Online,
    /// Confirmed offline (a takedown, or already offline).
    Offline,
    /// Monitoring has ended.
    Expired,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Unseen => "unseen",
            Phase::Online => "online",
            Phase::Offline => "offline",
            Phase::Expired => "expired",
        }
    }
}

/// A run of consecutive non-online checks not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// When the first check of the run started ...
    pub first: DateTime<Utc>,
    /// ... and when it had its answer: the late end of the takedown bracket.
    pub first_answered: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub checks: u32,
    pub any_offline: bool,
}

impl Run {
    fn start(at: DateTime<Utc>, answered: DateTime<Utc>, verdict: Verdict) -> Self {
        Self {
            first: at,
            first_answered: answered,
            last: at,
            checks: 1,
            any_offline: verdict == Verdict::Offline,
        }
    }

    fn extend(self, at: DateTime<Utc>, verdict: Verdict) -> Self {
        Self {
            last: at,
            checks: self.checks + 1,
            any_offline: self.any_offline || verdict == Verdict::Offline,
            ..self
        }
    }

    fn span(&self) -> TimeDelta {
        self.last - self.first
    }

    /// DESIGN.md's confirmation rule.
    pub fn is_confirmed(&self, rule: &Confirmation) -> bool {
        self.checks >= rule.checks
            && self.span() >= rule.min_span
            && (self.any_offline || self.span() >= rule.inconclusive_limit)
    }
}

/// The next check of a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextCheck {
    pub at: DateTime<Utc>,
    pub purpose: Purpose,
}

/// A confirmed takedown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takedown {
    pub bracket: Bracket,
    /// The check that confirmed it; sparse rechecks count from here.
    pub confirmed_at: DateTime<Utc>,
}

/// Everything the monitor knows about one notice-URL: the snapshot the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlState {
    pub subject: Subject,
    pub phase: Phase,
    /// `None` once monitoring has ended.
    pub next_check: Option<NextCheck>,
    pub first_check_at: Option<DateTime<Utc>>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub last_online_at: Option<DateTime<Utc>>,
    /// Start of the current online episode: the notice time, or the reappearance.
    pub episode_start: DateTime<Utc>,
    /// The unconfirmed non-online run, if one is under way.
    pub run: Option<Run>,
    /// True when the first confirmed run came before any online check.
    pub already_offline: bool,
    /// The first confirmed takedown: the one the norms judge.
    pub first_takedown: Option<Takedown>,
    /// The takedown of the current offline episode.
    pub takedown: Option<Takedown>,
    pub reappearances: u32,
    /// The hoster that served the content at its first online check (or, for a
    /// URL never online, the first attribution seen).
    pub hoster_of_record: Option<Attribution>,
    /// The hoster that served the content at its latest online check.
    pub current_hoster: Option<Attribution>,
    /// Fingerprint of the first online check, for "content replaced".
    pub baseline_fingerprint: Option<String>,
    /// Time between checks attributed to online (the earlier check was online).
    pub online_seconds: i64,
    pub checks: u32,
}

impl UrlState {
    /// A notice that has not been checked yet; its baseline check is due at the
    /// notice time, or now if that has passed.
    pub fn new(subject: Subject, now: DateTime<Utc>) -> Self {
        let notified_at = subject.notified_at;
        Self {
            subject,
            phase: Phase::Pending,
            next_check: Some(NextCheck {
                at: notified_at.max(now),
                purpose: Purpose::Baseline,
            }),
            first_check_at: None,
            last_check_at: None,
            last_online_at: None,
            episode_start: notified_at,
            run: None,
            already_offline: false,
            first_takedown: None,
            takedown: None,
            reappearances: 0,
            hoster_of_record: None,
            current_hoster: None,
            baseline_fingerprint: None,
            online_seconds: 0,
            checks: 0,
        }
    }

    /// Online time over observed time, once two checks span some time.
    pub fn uptime(&self) -> Option<f64> {
        let observed = (self.last_check_at? - self.first_check_at?).num_seconds();
        (observed > 0).then(|| self.online_seconds as f64 / observed as f64)
    }

    fn event(&self, kind: EventKind, at: DateTime<Utc>) -> Event {
        let takedown = match kind {
            EventKind::Takedown | EventKind::AlreadyOffline => self.takedown,
            _ => None,
        };
        let hoster = self
            .current_hoster
            .as_ref()
            .or(self.hoster_of_record.as_ref());
        Event {
            schema: SchemaV1,
            kind,
            url_id: self.subject.url_id,
            url: self.subject.url.clone(),
            notice_id: self.subject.notice_id.clone(),
            notified_at: self.subject.notified_at,
            at,
            bracket: takedown.map(|t| t.bracket),
            time_to_takedown_s: takedown
                .map(|t| (t.bracket.first_offline - self.subject.notified_at).num_seconds()),
            hoster: hoster.and_then(|h| h.hoster.clone()),
            asn: hoster.and_then(|h| h.asn),
        }
    }
}

/// Applies one observation to a URL's state. `now` is the time of applying; the
/// next check is never before it.
pub fn advance(
    state: &UrlState,
    observation: &Observation,
    now: DateTime<Utc>,
    rules: &Rules,
) -> (UrlState, Vec<Event>) {
    let at = observation.started_at;
    let stale = state.last_check_at.is_some_and(|last| at <= last);
    let not_checked = observation.outcome == Outcome::NotChecked;
    if stale || not_checked || state.phase == Phase::Expired {
        return (state.clone(), Vec::new());
    }

    let mut next = state.clone();
    let mut events = Vec::new();
    let verdict = observation.verdict;

    if let Some(last) = state.last_check_at
        && state.last_online_at == Some(last)
    {
        next.online_seconds += (at - last).num_seconds();
    }
    next.first_check_at.get_or_insert(at);
    next.last_check_at = Some(at);
    next.checks += 1;
    if next.hoster_of_record.is_none() {
        next.hoster_of_record = observation.attribution();
    }

    if verdict == Verdict::Online {
        let attribution = observation.attribution();
        let first_online = state.last_online_at.is_none();
        if first_online {
            // Also for a URL confirmed already offline that turns out to be
            // served after all: this is its first online check, which fixes
            // the hoster of record and the baseline.
            next.hoster_of_record = attribution.clone().or(next.hoster_of_record);
            next.baseline_fingerprint = observation.fingerprint.clone();
            events.push(EventKind::FirstOnline);
        } else if state.phase == Phase::Offline {
            next.reappearances += 1;
            events.push(EventKind::Reappeared);
        }
        if state.phase == Phase::Offline {
            next.takedown = None;
            next.episode_start = at;
        }
        let serving = attribution.as_ref().and_then(|a| a.hoster.as_ref());
        let before = state
            .current_hoster
            .as_ref()
            .and_then(|a| a.hoster.as_ref());
        if !first_online && serving.is_some() && before.is_some() && serving != before {
            events.push(EventKind::HosterChanged);
        }
        if attribution.is_some() {
            next.current_hoster = attribution;
        }
        next.phase = Phase::Online;
        next.last_online_at = Some(at);
        next.run = None;
    } else if state.phase != Phase::Offline {
        let run = match state.run {
            Some(run) => run.extend(at, verdict),
            None => Run::start(at, answered(observation), verdict),
        };
        if state.phase == Phase::Pending {
            next.phase = Phase::Unseen;
        }
        if run.is_confirmed(&rules.confirmation) {
            let takedown = Takedown {
                bracket: Bracket {
                    last_online: state.last_online_at,
                    first_offline: run.first_answered,
                },
                confirmed_at: at,
            };
            let kind = if state.last_online_at.is_none() {
                next.already_offline = true;
                EventKind::AlreadyOffline
            } else {
                EventKind::Takedown
            };
            next.phase = Phase::Offline;
            next.takedown = Some(takedown);
            next.first_takedown.get_or_insert(takedown);
            next.run = None;
            events.push(kind);
        } else {
            next.run = Some(run);
        }
    }

    let notified_at = state.subject.notified_at;
    let end = rules.schedule.end(notified_at);
    next.next_check = if at >= end {
        next.phase = Phase::Expired;
        events.push(EventKind::Expired);
        None
    } else {
        let planned = plan_next(&next, at, rules);
        Some(NextCheck {
            at: planned.at.min(end).max(now),
            purpose: planned.purpose,
        })
    };
    let events = events
        .into_iter()
        .map(|kind| next.event(kind, at))
        .collect();
    (next, events)
}

/// When a check had its answer. The server answered somewhere between the
/// start and this moment, so a bracket from the start of the last online check
/// to the answer of the first non-online one holds the true takedown however
/// slow the checks were.
fn answered(observation: &Observation) -> DateTime<Utc> {
    let duration = i64::try_from(observation.duration_ms).unwrap_or(i64::MAX);
    observation.started_at + TimeDelta::milliseconds(duration.min(86_400_000))
}

/// The next check for a state that has just taken in a check at `at`. Never
/// sooner than `recheck_delay` after it: a check that ran late is not
/// followed at once by the next slot, and two checks of a URL are always
/// that far apart, however the plan comes out.
fn plan_next(state: &UrlState, at: DateTime<Utc>, rules: &Rules) -> NextCheck {
    let planned = plan(state, at, rules);
    NextCheck {
        at: planned.at.max(at + rules.confirmation.recheck_delay),
        ..planned
    }
}

fn plan(state: &UrlState, at: DateTime<Utc>, rules: &Rules) -> NextCheck {
    let schedule = &rules.schedule;
    let rule = &rules.confirmation;
    let notified_at = state.subject.notified_at;
    let regular = schedule.next_regular(state.episode_start, at, notified_at);

    if let Some(takedown) = state.takedown.filter(|_| state.phase == Phase::Offline) {
        return NextCheck {
            at: schedule.next_after_takedown(takedown.confirmed_at, at, notified_at),
            purpose: Purpose::Reappearance,
        };
    }
    let Some(run) = state.run else {
        return NextCheck {
            at: regular,
            purpose: Purpose::Scheduled,
        };
    };
    let confirm_at = if run.checks < rule.checks {
        at + rule.recheck_delay
    } else if run.span() < rule.min_span {
        run.first + rule.min_span
    } else {
        // Enough checks over enough time, but only inconclusive ones: keep the
        // regular pace, and check again when the inconclusive limit is reached.
        regular.min(run.first + rule.inconclusive_limit)
    };
    NextCheck {
        at: confirm_at,
        purpose: Purpose::Confirm,
    }
}

#[cfg(test)]
mod tests;
