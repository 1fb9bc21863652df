use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::message::{DnsOutcome, DnsResult};
use crate::outcome::Outcome;

fn t0() -> DateTime<Utc> {
    "2026-03-02T10:00:00Z".parse().unwrap()
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

fn subject() -> Subject {
    Subject {
        url_id: 1,
        url: "http://files.sim.test/a.jpg".into(),
        notice_id: Some("N-1".into()),
        notified_at: t0(),
    }
}

fn observe(at: DateTime<Utc>, verdict: Verdict, hoster: Option<&str>) -> Observation {
    let outcome = match verdict {
        Verdict::Online => Outcome::Served,
        Verdict::Offline => Outcome::HttpNotFound,
        Verdict::Inconclusive => Outcome::Timeout,
    };
    Observation {
        schema: SchemaV1,
        job_id: Uuid::new_v4(),
        url_id: 1,
        url: "http://files.sim.test/a.jpg".into(),
        worker: "test".into(),
        started_at: at,
        duration_ms: 0,
        dns: DnsResult {
            outcome: DnsOutcome::Ok,
            answers: vec![],
        },
        ip: None,
        asn: hoster.map(|h| h.len() as u32),
        as_org: hoster.map(str::to_owned),
        hoster: hoster.map(str::to_owned),
        cdn: false,
        http: None,
        tls_error: None,
        fingerprint: Some("image/jpeg".into()),
        outcome,
        verdict,
    }
}

/// Feeds `(minute, verdict)` checks and returns the final state and every event.
fn feed(checks: &[(i64, Verdict)]) -> (UrlState, Vec<Event>) {
    let rules = Rules::default();
    let mut state = UrlState::new(subject(), t0());
    let mut events = Vec::new();
    for (m, verdict) in checks {
        let (next, new) = advance(
            &state,
            &observe(minutes(*m), *verdict, Some("HostA")),
            minutes(*m),
            &rules,
        );
        state = next;
        events.extend(new);
    }
    (state, events)
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

use Verdict::{Inconclusive as I, Offline as X, Online as O};

#[test]
fn a_single_404_is_not_a_takedown() {
    let (state, events) = feed(&[(0, O), (60, X)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
    assert_eq!(state.phase, Phase::Online);
    let next = state.next_check.unwrap();
    assert_eq!(next.purpose, Purpose::Confirm);
    assert_eq!(
        next.at,
        minutes(75),
        "a recheck after the confirmation delay"
    );
}

#[test]
fn k_offline_checks_over_the_min_span_confirm_with_the_first_as_takedown_time() {
    let (state, events) = feed(&[(0, O), (30, O), (60, X), (75, X)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline], "two of three");
    let (state2, events2) = {
        let rules = Rules::default();
        advance(
            &state,
            &observe(minutes(90), X, Some("HostA")),
            minutes(90),
            &rules,
        )
    };
    assert_eq!(kinds(&events2), [EventKind::Takedown]);
    let bracket = events2[0].bracket.unwrap();
    assert_eq!(bracket.last_online, Some(minutes(30)));
    assert_eq!(bracket.first_offline, minutes(60));
    assert_eq!(events2[0].time_to_takedown_s, Some(3600));
    assert_eq!(events2[0].hoster.as_deref(), Some("HostA"));
    assert_eq!(state2.phase, Phase::Offline);
    assert_eq!(state2.next_check.unwrap().purpose, Purpose::Reappearance);
    assert_eq!(
        state2.next_check.unwrap().at,
        minutes(90) + TimeDelta::days(1)
    );
}

#[test]
fn enough_checks_but_too_short_a_span_wait_for_the_span() {
    let rules = Rules::default();
    let mut state = UrlState::new(subject(), t0());
    for (m, v) in [(0, O), (60, X), (61, X), (62, X)] {
        let (next, events) = advance(&state, &observe(minutes(m), v, None), minutes(m), &rules);
        assert!(
            events.iter().all(|e| e.kind != EventKind::Takedown),
            "at {m}"
        );
        state = next;
    }
    assert_eq!(
        state.next_check.unwrap().at,
        minutes(90),
        "first + min_span"
    );
    let (_, events) = advance(&state, &observe(minutes(90), X, None), minutes(90), &rules);
    assert_eq!(kinds(&events), [EventKind::Takedown]);
}

#[test]
fn a_burst_of_inconclusive_checks_is_no_takedown() {
    let (state, events) = feed(&[(0, O), (60, I), (75, I), (90, I), (105, I), (120, O)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
    assert_eq!(state.run, None);
    assert_eq!(state.phase, Phase::Online);
}

#[test]
fn an_online_check_breaks_the_run() {
    let (_, events) = feed(&[(0, O), (60, X), (75, X), (80, O), (90, X), (105, X)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
}

#[test]
fn inconclusive_runs_confirm_only_past_the_limit() {
    let limit = 24 * 60;
    let (state, events) = feed(&[(0, O), (60, I), (75, I), (90, I), (60 + limit - 20, I)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
    assert_eq!(
        state.next_check.unwrap().at,
        minutes(60 + limit),
        "a check is planned when the limit is reached"
    );
    let (_, events) = feed(&[(0, O), (60, I), (75, I), (90, I), (60 + limit, I)]);
    assert_eq!(
        kinds(&events),
        [EventKind::FirstOnline, EventKind::Takedown]
    );
    assert_eq!(events[1].bracket.unwrap().first_offline, minutes(60));
}

#[test]
fn offline_at_the_first_check_is_already_offline() {
    let (state, events) = feed(&[(0, X), (15, X), (30, X)]);
    assert_eq!(kinds(&events), [EventKind::AlreadyOffline]);
    assert!(state.already_offline);
    let bracket = events[0].bracket.unwrap();
    assert_eq!(bracket.last_online, None);
    assert_eq!(bracket.first_offline, minutes(0));
}

#[test]
fn content_that_returns_reappears_and_a_new_takedown_keeps_the_first() {
    let (state, events) = feed(&[
        (0, O),
        (60, X),
        (75, X),
        (90, X),
        (2000, O),
        (2015, X),
        (2030, X),
        (2045, X),
    ]);
    assert_eq!(
        kinds(&events),
        [
            EventKind::FirstOnline,
            EventKind::Takedown,
            EventKind::Reappeared,
            EventKind::Takedown
        ]
    );
    assert_eq!(state.reappearances, 1);
    assert_eq!(
        state.first_takedown.unwrap().bracket.first_offline,
        minutes(60)
    );
    assert_eq!(state.takedown.unwrap().bracket.first_offline, minutes(2015));
    assert_eq!(
        state.takedown.unwrap().bracket.last_online,
        Some(minutes(2000))
    );
}

#[test]
fn a_new_hoster_on_an_online_check_is_an_event_and_the_record_stays() {
    let rules = Rules::default();
    let state = UrlState::new(subject(), t0());
    let (state, _) = advance(
        &state,
        &observe(minutes(0), O, Some("HostA")),
        minutes(0),
        &rules,
    );
    let (state, events) = advance(
        &state,
        &observe(minutes(15), O, Some("HostB")),
        minutes(15),
        &rules,
    );
    assert_eq!(kinds(&events), [EventKind::HosterChanged]);
    assert_eq!(events[0].hoster.as_deref(), Some("HostB"));
    assert_eq!(
        state.hoster_of_record.as_ref().unwrap().hoster.as_deref(),
        Some("HostA")
    );
    // An offline check attributed elsewhere (a parking page) is no change of hoster.
    let (_, events) = advance(
        &state,
        &observe(minutes(30), X, Some("Parking")),
        minutes(30),
        &rules,
    );
    assert!(events.is_empty());
}

#[test]
fn a_redelivered_observation_changes_nothing() {
    let rules = Rules::default();
    let state = UrlState::new(subject(), t0());
    let first = observe(minutes(0), O, Some("HostA"));
    let (state, events) = advance(&state, &first, minutes(0), &rules);
    assert_eq!(events.len(), 1);
    let (again, events) = advance(&state, &first, minutes(5), &rules);
    assert!(events.is_empty());
    assert_eq!(again, state);
}

#[test]
fn the_check_at_the_horizon_expires_the_url() {
    let rules = Rules::default();
    let end = rules.schedule.end(t0());
    let (state, _) = feed(&[(0, O)]);
    let (state, events) = advance(&state, &observe(end, O, Some("HostA")), end, &rules);
    assert_eq!(kinds(&events), [EventKind::Expired]);
    assert_eq!(state.phase, Phase::Expired);
    assert_eq!(state.next_check, None);
    let (after, events) = advance(
        &state,
        &observe(end + TimeDelta::days(1), X, None),
        end,
        &rules,
    );
    assert!(events.is_empty());
    assert_eq!(after, state);
}

#[test]
fn uptime_counts_time_after_online_checks() {
    let (state, _) = feed(&[(0, O), (60, X), (75, X), (90, X)]);
    assert_eq!(state.online_seconds, 3600);
    let uptime = state.uptime().unwrap();
    assert!((uptime - 60.0 / 90.0).abs() < 1e-9, "{uptime}");
}

// ---- properties over random observation sequences ----

#[derive(Debug, Clone)]
struct Step {
    duration_ms: u64,
    gap_s: i64,
    verdict: Verdict,
    hoster: u8,
    lag_s: i64,
    redeliver: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![1i64..120, 60i64..3_600, 600i64..172_800],
        prop_oneof![Just(O), Just(X), Just(I)],
        0u8..3,
        0i64..120,
        proptest::bool::weighted(0.1),
        0u64..30_000,
    )
        .prop_map(
            |(gap_s, verdict, hoster, lag_s, redeliver, duration_ms)| Step {
                duration_ms,
                gap_s,
                verdict,
                hoster,
                lag_s,
                redeliver,
            },
        )
}

fn small_rules() -> impl Strategy<Value = Rules> {
    (1u32..5, 0i64..7_200, 60i64..3_600, 600i64..200_000).prop_map(|(k, span, delay, limit)| {
        Rules {
            confirmation: Confirmation {
                checks: k,
                min_span: TimeDelta::seconds(span),
                recheck_delay: TimeDelta::seconds(delay),
                inconclusive_limit: TimeDelta::seconds(limit),
            },
            ..Rules::default()
        }
    })
}

/// The confirmation rule, restated from DESIGN.md over the raw history of the
/// current run, independently of `Run`.
fn rule_holds(run: &[(DateTime<Utc>, Verdict)], rule: &Confirmation) -> bool {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return false;
    };
    let span = last.0 - first.0;
    run.len() >= rule.checks as usize
        && run.iter().all(|(_, v)| *v != O)
        && span >= rule.min_span
        && (run.iter().any(|(_, v)| *v == X) || span >= rule.inconclusive_limit)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_over_random_sequences(rules in small_rules(), steps in proptest::collection::vec(step(), 1..60)) {
        let mut state = UrlState::new(subject(), t0());
        let mut at = t0();
        let mut last_obs: Option<Observation> = None;
        // Checks of the current non-online run, and the last online check.
        let mut run: Vec<(DateTime<Utc>, Verdict, u64)> = Vec::new();
        let mut last_online: Option<DateTime<Utc>> = None;
        let mut seen = std::collections::HashSet::new();
        let mut first_takedown: Option<Takedown> = None;
        let mut online_events = 0;
        let mut offline_events = 0;

        for s in steps {
            if s.redeliver && let Some(obs) = &last_obs {
                let now = obs.started_at + TimeDelta::seconds(s.lag_s + 1);
                let (again, events) = advance(&state, obs, now, &rules);
                prop_assert!(events.is_empty(), "a redelivery emitted {events:?}");
                prop_assert_eq!(&again, &state);
                continue;
            }
            at += TimeDelta::seconds(s.gap_s);
            let now = at + TimeDelta::seconds(s.lag_s);
            let hoster = ["A", "B", "C"][s.hoster as usize];
            let mut obs = observe(at, s.verdict, Some(hoster));
            obs.duration_ms = s.duration_ms;
            let before = state.clone();
            let (next, events) = advance(&state, &obs, now, &rules);

            if before.phase != Phase::Expired {
                if s.verdict == O { run.clear(); } else if before.phase != Phase::Offline { run.push((at, s.verdict, s.duration_ms)); }
            }
            for event in &events {
                prop_assert!(seen.insert((event.kind, event.at)), "duplicate event {event:?}");
                match event.kind {
                    EventKind::Takedown | EventKind::AlreadyOffline => {
                        offline_events += 1;
                        let history: Vec<_> = run.iter().map(|(t, v, _)| (*t, *v)).collect();
                        prop_assert!(rule_holds(&history, &rules.confirmation), "confirmed early: {run:?}");
                        let bracket = event.bracket.unwrap();
                        // From the start of the last online check to the answer of the first non-online one.
                        prop_assert_eq!(bracket.first_offline, run[0].0 + TimeDelta::milliseconds(run[0].2 as i64));
                        prop_assert_eq!(bracket.last_online, last_online);
                        if let Some(lo) = bracket.last_online {
                            prop_assert!(lo < bracket.first_offline);
                        }
                        prop_assert_eq!(event.kind == EventKind::AlreadyOffline, last_online.is_none());
                        run.clear();
                    }
                    EventKind::FirstOnline | EventKind::Reappeared => online_events += 1,
                    _ => {}
                }
            }
            // The bracket never moves after confirmation except by a new episode.
            if before.phase == Phase::Offline && next.phase == Phase::Offline {
                prop_assert_eq!(before.takedown, next.takedown);
            }
            if let Some(first) = first_takedown {
                prop_assert_eq!(next.first_takedown, Some(first));
            }
            first_takedown = next.first_takedown;
            // Online episodes and takedowns alternate.
            prop_assert!(offline_events <= online_events + 1);
            prop_assert!(online_events <= offline_events + 1);
            if let Some(check) = next.next_check {
                prop_assert!(check.at >= now, "next check {} before now {}", check.at, now);
                let soonest = (at + rules.confirmation.recheck_delay).min(rules.schedule.end(t0()));
                prop_assert!(check.at >= soonest, "next check {} sooner than {soonest}", check.at);
            } else {
                prop_assert_eq!(next.phase, Phase::Expired);
            }
            if s.verdict == O && before.phase != Phase::Expired {
                last_online = Some(at);
            }
            state = next;
            last_obs = Some(obs);
        }
        let first_online_count = seen.iter().filter(|(k, _)| *k == EventKind::FirstOnline).count();
        prop_assert!(first_online_count <= 1);
    }
}

#[test]
fn an_already_offline_url_served_later_gets_its_first_online_check() {
    let rules = Rules::default();
    let (state, _) = feed(&[(0, X), (15, X), (30, X)]);
    assert!(state.already_offline);
    let (state, events) = advance(
        &state,
        &observe(minutes(600), O, Some("HostZ")),
        minutes(600),
        &rules,
    );
    assert_eq!(
        kinds(&events),
        [EventKind::FirstOnline],
        "not a reappearance"
    );
    assert_eq!(state.reappearances, 0);
    assert_eq!(
        state.hoster_of_record.as_ref().unwrap().hoster.as_deref(),
        Some("HostZ")
    );
    assert_eq!(state.baseline_fingerprint.as_deref(), Some("image/jpeg"));
}

#[test]
fn hoster_changes_are_seen_on_reappearance_and_not_invented_without_attribution() {
    let rules = Rules::default();
    let (state, _) = feed(&[(0, O), (60, X), (75, X), (90, X)]);
    let (state, events) = advance(
        &state,
        &observe(minutes(2000), O, Some("HostB")),
        minutes(2000),
        &rules,
    );
    assert_eq!(
        kinds(&events),
        [EventKind::Reappeared, EventKind::HosterChanged]
    );
    assert_eq!(events[1].hoster.as_deref(), Some("HostB"));
    // An online check whose address is in no database is no change of hoster.
    let (state, events) = advance(
        &state,
        &observe(minutes(2100), O, None),
        minutes(2100),
        &rules,
    );
    assert!(events.is_empty(), "{events:?}");
    let (_, events) = advance(
        &state,
        &observe(minutes(2200), O, Some("HostB")),
        minutes(2200),
        &rules,
    );
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_check_that_never_contacted_the_host_is_ignored() {
    let rules = Rules::default();
    let (state, _) = feed(&[(0, O)]);
    let mut not_checked = observe(minutes(60), I, None);
    not_checked.outcome = Outcome::NotChecked;
    let (after, events) = advance(&state, &not_checked, minutes(60), &rules);
    assert!(events.is_empty());
    assert_eq!(after, state, "no run starts, no check is counted");
}
