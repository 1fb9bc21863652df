//! The state machine of one monitored notice-URL, as one pure function:
//! [`advance`]`(state, observation, now, rules) -> (new state, events)`, with the
//! next check time in the new state. docs/MEASUREMENT.md states every rule;
//! in short:
//!
//! - verdicts are evidence: an online check proves the content served, an
//!   offline one proves it gone; an inconclusive check is recorded and counted
//!   in a run, but proves neither, so it never ends a bracket;
//! - a takedown is confirmed after `K` consecutive non-online checks that span
//!   at least `min_span`, of which at least one is offline (the evidence); or,
//!   for a run of inconclusive checks alone, once a watched stretch of it (no
//!   two checks further apart than `max_gap`) has lasted `inconclusive_limit`;
//! - every change of state is dated by a [`Bracket`]: from the start of the
//!   last check that saw the old state to the answer of the first check that
//!   saw the new one. A takedown ends at its first offline verdict; a run
//!   confirmed by inconclusive checks alone ends at the first check of its
//!   watched stretch, and says so ([`Evidence::InconclusiveOnly`]);
//! - a URL never seen online whose run is confirmed is `already_offline`;
//! - after a takedown the URL is rechecked sparsely; content served again is
//!   a `reappeared` event and starts a new online episode, whose regular
//!   schedule restarts from the reappearance;
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
    Attribution, Bracket, Event, EventKind, Evidence, Observation, ObservedAddress, Purpose,
    SchemaV1, UrlId,
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

/// One applied check: when it started and when it had its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub started: DateTime<Utc>,
    pub answered: DateTime<Utc>,
}

impl Check {
    pub fn of(observation: &Observation) -> Self {
        Self {
            started: observation.started_at,
            // Never before the start, whatever a worker's clock did.
            answered: observation.answered_at.max(observation.started_at),
        }
    }
}

/// The part of a run that was watched without a gap: consecutive checks no
/// further apart than the confirmation's `max_gap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    pub first: Check,
    pub checks: u32,
}

/// A run of consecutive non-online checks not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub first: Check,
    /// The first offline verdict of the run: the late end of its bracket.
    pub first_offline: Option<Check>,
    /// The start of the latest offline verdict of the run.
    pub last_offline: Option<DateTime<Utc>>,
    /// The watched stretch the run's latest check belongs to.
    pub watched: Stretch,
    /// The start of the run's latest check.
    pub last: DateTime<Utc>,
    pub checks: u32,
}

impl Run {
    fn start(check: Check, verdict: Verdict) -> Self {
        let offline = verdict == Verdict::Offline;
        Self {
            first: check,
            first_offline: offline.then_some(check),
            last_offline: offline.then_some(check.started),
            watched: Stretch {
                first: check,
                checks: 1,
            },
            last: check.started,
            checks: 1,
        }
    }

    fn extend(self, check: Check, verdict: Verdict, rule: &Confirmation) -> Self {
        let offline = verdict == Verdict::Offline;
        let watched = if check.started - self.last > rule.max_gap {
            // tdmon did not look in between: that time is no evidence.
            Stretch {
                first: check,
                checks: 1,
            }
        } else {
            Stretch {
                checks: self.watched.checks + 1,
                ..self.watched
            }
        };
        Self {
            first_offline: self.first_offline.or(offline.then_some(check)),
            last_offline: if offline {
                Some(check.started)
            } else {
                self.last_offline
            },
            watched,
            last: check.started,
            checks: self.checks + 1,
            ..self
        }
    }

    fn span(&self) -> TimeDelta {
        self.last - self.first.started
    }

    /// The confirmation rule: the check that ends the takedown's bracket, and
    /// what it rests on, once the run is confirmed.
    pub fn confirmation(&self, rule: &Confirmation) -> Option<(Check, Evidence)> {
        if self.checks < rule.checks || self.span() < rule.min_span {
            return None;
        }
        if let Some(offline) = self.first_offline {
            return Some((offline, Evidence::Offline));
        }
        let watched_span = self.last - self.watched.first.started;
        (self.watched.checks >= rule.checks && watched_span >= rule.inconclusive_limit)
            .then_some((self.watched.first, Evidence::InconclusiveOnly))
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
    /// From the last online check to the check that ends the run's bracket.
    pub bracket: Bracket,
    pub evidence: Evidence,
    /// The start of the check that confirmed it; sparse rechecks count from here.
    pub confirmed_at: DateTime<Utc>,
}

/// One confirmed offline episode of a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineEpisode {
    pub takedown: Takedown,
    /// The start of the latest check that saw the content gone: an offline
    /// verdict (for a run of inconclusive checks alone, until one comes, the
    /// check that confirmed it). Inconclusive checks never move it.
    pub last_offline_at: DateTime<Utc>,
    /// When the content was served again: a reappearance, or, for a URL
    /// already offline at its first checks, its first online check.
    pub ended: Option<Bracket>,
}

/// Everything the monitor knows about one notice-URL: the snapshot the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlState {
    pub subject: Subject,
    pub phase: Phase,
    /// `None` once monitoring has ended.
    pub next_check: Option<NextCheck>,
    /// Starts of the first and the latest applied check.
    pub first_check_at: Option<DateTime<Utc>>,
    pub last_check_at: Option<DateTime<Utc>>,
    /// Starts of the first and the latest online check.
    pub first_online_at: Option<DateTime<Utc>>,
    pub last_online_at: Option<DateTime<Utc>>,
    /// The anchor of the regular schedule: the notice time, or the start of
    /// the check that saw the content reappear.
    pub episode_start: DateTime<Utc>,
    /// The unconfirmed non-online run, if one is under way.
    pub run: Option<Run>,
    /// True when the first confirmed run came before any online check.
    pub already_offline: bool,
    /// Every confirmed offline episode, oldest first. The first one's
    /// takedown is the one time to takedown measures.
    pub episodes: Vec<OfflineEpisode>,
    /// The hoster that served the content at its first online check (or, for a
    /// URL never online, the first attribution seen).
    pub hoster_of_record: Option<Attribution>,
    /// The hoster that served the content at its latest attributed online check ...
    pub current_hoster: Option<Attribution>,
    /// ... and that check's start: the early end of a change of hoster.
    pub current_hoster_seen_at: Option<DateTime<Utc>>,
    /// Fingerprint of the first online check, for "content replaced".
    pub baseline_fingerprint: Option<String>,
    /// Applied checks: not the ignored ones (stale, `not_checked`, after expiry).
    pub checks: u32,
    /// The verdict, address and network of every applied check that reached
    /// an address or named a network, in check order, each left out when it
    /// equals the one before it: what the report maps to hosters (the hoster
    /// of record, distinct addresses and ASNs, hoster changes), all of which
    /// the repeats leave unchanged. So the report reads no observation.
    pub addresses: Vec<ObservedAddress>,
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
            first_online_at: None,
            last_online_at: None,
            episode_start: notified_at,
            run: None,
            already_offline: false,
            episodes: Vec::new(),
            hoster_of_record: None,
            current_hoster: None,
            current_hoster_seen_at: None,
            baseline_fingerprint: None,
            checks: 0,
            addresses: Vec::new(),
        }
    }

    /// The first confirmed takedown (or already-offline confirmation).
    pub fn first_takedown(&self) -> Option<&Takedown> {
        self.episodes.first().map(|episode| &episode.takedown)
    }

    /// The offline episode under way, if the URL is confirmed offline now.
    pub fn current_episode(&self) -> Option<&OfflineEpisode> {
        self.episodes
            .last()
            .filter(|episode| episode.ended.is_none())
    }

    /// Times the content came back after a takedown (not counting the first
    /// online check of a URL that was already offline).
    pub fn reappearances(&self) -> usize {
        self.episodes
            .iter()
            .skip(usize::from(self.already_offline))
            .filter(|episode| episode.ended.is_some())
            .count()
    }

    /// Served at the latest conclusive evidence: seen online, and no
    /// confirmed offline episode since (also once monitoring has ended).
    pub fn is_served(&self) -> bool {
        self.first_online_at.is_some() && self.current_episode().is_none()
    }

    /// Time the content was served between the first and the latest check.
    /// An online episode runs from the first online check (or a
    /// reappearance's late end) to its takedown's late end, the same ends
    /// every figure dates changes by; an episode still online runs to the
    /// latest check.
    pub fn online_time(&self) -> TimeDelta {
        let (Some(mut start), Some(last)) = (self.first_online_at, self.last_check_at) else {
            return TimeDelta::zero();
        };
        // Ends past the latest check (a late end is an answer) are cut to it.
        let served =
            |from: DateTime<Utc>, to: DateTime<Utc>| (to.min(last) - from).max(TimeDelta::zero());
        let mut total = TimeDelta::zero();
        for episode in &self.episodes {
            total += served(start, episode.takedown.bracket.to);
            match episode.ended {
                Some(back) => start = start.max(back.to),
                None => return total,
            }
        }
        total + served(start, last)
    }

    /// Online time over the time between the first and the latest check,
    /// once they are apart.
    pub fn uptime(&self) -> Option<f64> {
        let observed = self.last_check_at? - self.first_check_at?;
        (observed > TimeDelta::zero()).then(|| seconds(self.online_time()) / seconds(observed))
    }

    fn event(
        &self,
        kind: EventKind,
        at: DateTime<Utc>,
        bracket: Option<Bracket>,
        evidence: Option<Evidence>,
    ) -> Event {
        let hoster = self
            .current_hoster
            .as_ref()
            .or(self.hoster_of_record.as_ref());
        let takedown = matches!(kind, EventKind::Takedown | EventKind::AlreadyOffline);
        Event {
            schema: SchemaV1,
            kind,
            url_id: self.subject.url_id,
            url: self.subject.url.clone(),
            notice_id: self.subject.notice_id.clone(),
            notified_at: self.subject.notified_at,
            at,
            bracket,
            evidence,
            time_to_takedown_s: takedown.then(|| seconds(at - self.subject.notified_at)),
            hoster: hoster.and_then(|h| h.hoster.clone()),
            asn: hoster.and_then(|h| h.asn),
        }
    }

    fn bracketed(&self, kind: EventKind, bracket: Bracket, evidence: Option<Evidence>) -> Event {
        self.event(kind, bracket.to, Some(bracket), evidence)
    }
}

/// A duration in seconds, to the microsecond.
pub fn seconds(delta: TimeDelta) -> f64 {
    match delta.num_microseconds() {
        Some(micros) => micros as f64 / 1e6,
        None => delta.num_milliseconds() as f64 / 1e3,
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
    let check = Check::of(observation);
    let at = check.started;
    let stale = state.last_check_at.is_some_and(|last| at <= last);
    let not_checked = observation.outcome == Outcome::NotChecked;
    if stale || not_checked || state.phase == Phase::Expired {
        return (state.clone(), Vec::new());
    }

    let mut next = state.clone();
    let mut events = Vec::new();
    next.first_check_at.get_or_insert(at);
    next.last_check_at = Some(at);
    next.checks += 1;
    if next.hoster_of_record.is_none() {
        next.hoster_of_record = observation.attribution();
    }
    if let Some(observed) = ObservedAddress::of(observation)
        && next.addresses.last() != Some(&observed)
    {
        next.addresses.push(observed);
    }

    match observation.verdict {
        Verdict::Online => seen_online(state, &mut next, &mut events, observation, check),
        verdict if state.phase == Phase::Offline => {
            if verdict == Verdict::Offline
                && let Some(episode) = next.episodes.last_mut()
            {
                episode.last_offline_at = at;
            }
            // An inconclusive check proves neither state: nothing changes.
        }
        verdict => not_online(state, &mut next, &mut events, check, verdict, rules),
    }

    let end = rules.schedule.end(state.subject.notified_at);
    next.next_check = if at >= end {
        next.phase = Phase::Expired;
        events.push(next.event(EventKind::Expired, at, None, None));
        None
    } else {
        let planned = plan_next(&next, at, rules);
        Some(NextCheck {
            at: planned.at.min(end).max(now),
            purpose: planned.purpose,
        })
    };
    (next, events)
}

/// An online check: the first one, a reappearance, or one more of an online
/// episode (which ends any non-online run).
fn seen_online(
    state: &UrlState,
    next: &mut UrlState,
    events: &mut Vec<Event>,
    observation: &Observation,
    check: Check,
) {
    let at = check.started;
    let attribution = observation.attribution();
    let first_online = state.first_online_at.is_none();
    if state.phase == Phase::Offline
        && let Some(episode) = next.episodes.last_mut()
    {
        let back = Bracket {
            from: Some(episode.last_offline_at),
            to: check.answered,
        };
        episode.ended = Some(back);
        next.episode_start = at;
        if !first_online {
            events.push(state.bracketed(EventKind::Reappeared, back, None));
        }
    }
    if first_online {
        // Also for a URL confirmed already offline that turns out to be
        // served after all: this is its first online check, which fixes the
        // hoster of record and the baseline.
        next.first_online_at = Some(at);
        next.hoster_of_record = attribution.clone().or(next.hoster_of_record.take());
        next.baseline_fingerprint = observation.fingerprint.clone();
        events.push(next.event(EventKind::FirstOnline, at, None, None));
    }
    if let Some(attribution) = attribution {
        let serving = attribution.hoster.as_ref();
        let before = state
            .current_hoster
            .as_ref()
            .and_then(|a| a.hoster.as_ref());
        if !first_online && serving.is_some() && before.is_some() && serving != before {
            next.current_hoster = Some(attribution.clone());
            let moved = Bracket {
                from: state.current_hoster_seen_at,
                to: check.answered,
            };
            events.push(next.bracketed(EventKind::HosterChanged, moved, None));
        }
        next.current_hoster = Some(attribution);
        next.current_hoster_seen_at = Some(at);
    }
    next.phase = Phase::Online;
    next.last_online_at = Some(at);
    next.run = None;
}

/// A non-online check outside a confirmed offline episode: it starts or
/// extends the run, which may now be confirmed.
fn not_online(
    state: &UrlState,
    next: &mut UrlState,
    events: &mut Vec<Event>,
    check: Check,
    verdict: Verdict,
    rules: &Rules,
) {
    let rule = &rules.confirmation;
    let run = match state.run {
        Some(run) => run.extend(check, verdict, rule),
        None => Run::start(check, verdict),
    };
    if state.phase == Phase::Pending {
        next.phase = Phase::Unseen;
    }
    let Some((end, evidence)) = run.confirmation(rule) else {
        next.run = Some(run);
        return;
    };
    let takedown = Takedown {
        bracket: Bracket {
            from: state.last_online_at,
            to: end.answered,
        },
        evidence,
        confirmed_at: check.started,
    };
    let kind = if state.first_online_at.is_none() {
        next.already_offline = true;
        EventKind::AlreadyOffline
    } else {
        EventKind::Takedown
    };
    next.phase = Phase::Offline;
    next.run = None;
    // The latest check that counts as seeing the content gone: the last
    // offline verdict, or, for a run of inconclusive checks alone, the check
    // that confirmed it (the rule's assumption covers the run).
    let last_offline_at = match evidence {
        Evidence::Offline => run.last_offline.unwrap_or(end.started),
        Evidence::InconclusiveOnly => run.last,
    };
    next.episodes.push(OfflineEpisode {
        takedown,
        last_offline_at,
        ended: None,
    });
    events.push(next.bracketed(kind, takedown.bracket, Some(evidence)));
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

    if let Some(episode) = state.current_episode() {
        return NextCheck {
            at: schedule.next_after_takedown(episode.takedown.confirmed_at, at, notified_at),
            purpose: Purpose::Reappearance,
        };
    }
    let regular = schedule.next_regular(state.episode_start, at, notified_at);
    let Some(run) = state.run else {
        return NextCheck {
            at: regular,
            purpose: Purpose::Scheduled,
        };
    };
    let confirm_at = if run.checks < rule.checks {
        // mutants: equivalent when `+` becomes `-`: plan_next raises any
        // earlier time to this one.
        at + rule.recheck_delay
    } else if run.span() < rule.min_span {
        run.first.started + rule.min_span
    } else {
        // Enough checks over enough time, but only inconclusive ones: keep
        // the regular pace, and check again when the watched stretch reaches
        // the inconclusive limit.
        regular.min(run.watched.first.started + rule.inconclusive_limit)
    };
    let confirm_at = if run.first_offline.is_none() {
        // Keep an inconclusive run watched, with a recheck delay to spare for
        // a check that runs late.
        confirm_at.min(at + rule.max_gap - rule.recheck_delay)
    } else {
        confirm_at
    };
    NextCheck {
        at: confirm_at,
        purpose: Purpose::Confirm,
    }
}

#[cfg(test)]
mod tests;
