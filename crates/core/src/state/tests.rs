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

/// How long every check of the unit tests takes: brackets end at answers.
const TOOK: TimeDelta = TimeDelta::seconds(2);

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
        answered_at: at + TOOK,
        duration_ms: 2000,
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

/// Feeds `(minute, verdict)` checks under `rules`; returns the final state and every event.
fn feed_with(rules: &Rules, checks: &[(i64, Verdict)]) -> (UrlState, Vec<Event>) {
    let mut state = UrlState::new(subject(), t0());
    let mut events = Vec::new();
    for (m, verdict) in checks {
        let (next, new) = advance(
            &state,
            &observe(minutes(*m), *verdict, Some("HostA")),
            minutes(*m),
            rules,
        );
        state = next;
        events.extend(new);
    }
    (state, events)
}

fn feed(checks: &[(i64, Verdict)]) -> (UrlState, Vec<Event>) {
    feed_with(&Rules::default(), checks)
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn event(events: &[Event], kind: EventKind) -> &Event {
    events
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {:?}", kinds(events)))
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
    let (state2, events2) = advance(
        &state,
        &observe(minutes(90), X, Some("HostA")),
        minutes(90),
        &Rules::default(),
    );
    assert_eq!(kinds(&events2), [EventKind::Takedown]);
    let takedown = &events2[0];
    let bracket = takedown.bracket.unwrap();
    assert_eq!(
        bracket.from,
        Some(minutes(30)),
        "the last online check's start"
    );
    assert_eq!(
        bracket.to,
        minutes(60) + TOOK,
        "the first offline check's answer"
    );
    assert_eq!(takedown.at, bracket.to, "dated at the late end");
    assert_eq!(takedown.evidence, Some(Evidence::Offline));
    assert_eq!(takedown.time_to_takedown_s, Some(3602.0));
    assert_eq!(takedown.hoster.as_deref(), Some("HostA"));
    assert_eq!(state2.phase, Phase::Offline);
    assert_eq!(state2.first_takedown().unwrap().confirmed_at, minutes(90));
    assert_eq!(state2.next_check.unwrap().purpose, Purpose::Reappearance);
    assert_eq!(
        state2.next_check.unwrap().at,
        minutes(90) + TimeDelta::days(1)
    );
}

#[test]
fn a_run_that_starts_inconclusive_ends_its_bracket_at_the_first_offline_verdict() {
    // A timeout (or a 5xx) while the content is still served, then 404s.
    let (state, events) = feed(&[(0, O), (60, I), (75, X), (90, X)]);
    let takedown = event(&events, EventKind::Takedown);
    assert_eq!(
        takedown.bracket.unwrap().to,
        minutes(75) + TOOK,
        "not the timeout's answer"
    );
    assert_eq!(takedown.evidence, Some(Evidence::Offline));
    assert_eq!(state.episodes[0].last_offline_at, minutes(90));
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

/// Inconclusive checks every `every` minutes from minute 60 up to `until`.
fn inconclusive_every(every: i64, until: i64) -> Vec<(i64, Verdict)> {
    let mut checks = vec![(0, O)];
    checks.extend((60..=until).step_by(every as usize).map(|m| (m, I)));
    checks
}

#[test]
fn a_watched_inconclusive_run_confirms_at_the_limit_and_says_so() {
    let limit = 24 * 60;
    let (_, events) = feed(&inconclusive_every(45, 60 + limit - 45));
    assert_eq!(kinds(&events), [EventKind::FirstOnline], "not yet");
    let (state, events) = feed(&inconclusive_every(45, 60 + limit));
    let takedown = event(&events, EventKind::Takedown);
    assert_eq!(takedown.evidence, Some(Evidence::InconclusiveOnly));
    assert_eq!(
        takedown.bracket.unwrap().to,
        minutes(60) + TOOK,
        "the first inconclusive check ends it"
    );
    let episode = &state.episodes[0];
    assert_eq!(episode.takedown.evidence, Evidence::InconclusiveOnly);
    assert_eq!(
        episode.last_offline_at,
        minutes(60 + limit),
        "the run's assumption covers it up to the confirming check"
    );
}

#[test]
fn a_gap_in_checking_is_never_counted_as_time_down() {
    // Two 503s a day apart with no check between: the host was not watched.
    let (state, events) = feed(&[(0, O), (60, I), (75, I), (90, I), (60 + 24 * 60, I)]);
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
    let run = state.run.unwrap();
    assert_eq!(
        run.watched.first.started,
        minutes(60 + 24 * 60),
        "a new stretch"
    );
    assert_eq!(run.watched.checks, 1);
    // The next check keeps the new stretch watched: within max_gap, with a
    // recheck delay to spare.
    let rule = Rules::default().confirmation;
    assert_eq!(
        state.next_check.unwrap().at,
        minutes(60 + 24 * 60) + rule.max_gap - rule.recheck_delay
    );
}

#[test]
fn checks_exactly_max_gap_apart_are_still_watched() {
    // Default max_gap: 4 x 15m = 60m. "No two consecutive checks more than
    // max_gap apart": a gap of exactly max_gap keeps the stretch, one minute
    // more breaks it.
    let limit = 24 * 60;
    let (_, events) = feed(&inconclusive_every(60, 60 + limit));
    let takedown = event(&events, EventKind::Takedown);
    assert_eq!(takedown.evidence, Some(Evidence::InconclusiveOnly));
    assert_eq!(takedown.bracket.unwrap().to, minutes(60) + TOOK);
    let (state, events) = feed(&inconclusive_every(61, 60 + 2 * limit));
    assert_eq!(kinds(&events), [EventKind::FirstOnline]);
    assert_eq!(state.run.unwrap().watched.checks, 1);
}

#[test]
fn an_inconclusive_run_with_k_checks_over_the_span_keeps_the_regular_pace() {
    // K = 3 checks spanning exactly min_span (30m): neither a recheck after
    // the delay nor a wait for the span, but the next regular slot (2h).
    let (state, _) = feed(&[(0, O), (60, I), (75, I), (90, I)]);
    assert_eq!(state.next_check.unwrap().at, minutes(120));
    assert_eq!(state.next_check.unwrap().purpose, Purpose::Confirm);
}

#[test]
fn offline_at_the_first_check_is_already_offline() {
    let (state, events) = feed(&[(0, X), (15, X), (30, X)]);
    assert_eq!(kinds(&events), [EventKind::AlreadyOffline]);
    assert!(state.already_offline);
    let bracket = events[0].bracket.unwrap();
    assert_eq!(bracket.from, None);
    assert_eq!(bracket.to, minutes(0) + TOOK);
    assert_eq!(events[0].at, bracket.to);
}

#[test]
fn already_offline_is_dated_at_its_first_offline_verdict() {
    let (_, events) = feed(&[(0, I), (15, X), (30, X)]);
    let already = event(&events, EventKind::AlreadyOffline);
    assert_eq!(
        already.at,
        minutes(15) + TOOK,
        "not the inconclusive first check"
    );
}

#[test]
fn content_that_returns_reappears_and_a_new_takedown_keeps_the_first() {
    let (state, events) = feed(&[
        (0, O),
        (60, X),
        (75, X),
        (90, X),
        (1500, I),
        (1530, X),
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
    assert_eq!(state.reappearances(), 1);
    assert_eq!(
        state.first_takedown().unwrap().bracket.to,
        minutes(60) + TOOK
    );
    let back = event(&events, EventKind::Reappeared);
    assert_eq!(
        back.bracket,
        Some(Bracket {
            from: Some(minutes(1530)),
            to: minutes(2000) + TOOK
        }),
        "from the last offline verdict to the online answer"
    );
    assert_eq!(back.at, minutes(2000) + TOOK);
    let current = state.current_episode().unwrap();
    assert_eq!(current.takedown.bracket.to, minutes(2015) + TOOK);
    assert_eq!(current.takedown.bracket.from, Some(minutes(2000)));
    assert_eq!(state.episode_start, minutes(2000), "the schedule restarts");
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
    let (state, _) = advance(
        &state,
        &observe(minutes(15), O, Some("HostA")),
        minutes(15),
        &rules,
    );
    // An online check nobody attributes moves nothing.
    let (state, _) = advance(&state, &observe(minutes(30), O, None), minutes(30), &rules);
    let (state, events) = advance(
        &state,
        &observe(minutes(60), O, Some("HostB")),
        minutes(60),
        &rules,
    );
    assert_eq!(kinds(&events), [EventKind::HosterChanged]);
    assert_eq!(events[0].hoster.as_deref(), Some("HostB"));
    assert_eq!(
        events[0].bracket,
        Some(Bracket {
            from: Some(minutes(15)),
            to: minutes(60) + TOOK
        }),
        "from the last check HostA served to HostB's answer"
    );
    assert_eq!(events[0].at, minutes(60) + TOOK);
    assert_eq!(
        state.hoster_of_record.as_ref().unwrap().hoster.as_deref(),
        Some("HostA")
    );
    // An offline check attributed elsewhere (a parking page) is no change of hoster.
    let (_, events) = advance(
        &state,
        &observe(minutes(90), X, Some("Parking")),
        minutes(90),
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
fn the_state_keeps_each_applied_checks_address_in_order_without_repeats() {
    let rules = Rules::default();
    let at_address =
        |m: i64, verdict: Verdict, hoster: Option<&str>, ip: Option<&str>| Observation {
            ip: ip.map(|ip| ip.parse().unwrap()),
            ..observe(minutes(m), verdict, hoster)
        };
    let not_checked = Observation {
        outcome: Outcome::NotChecked,
        ..at_address(6, O, Some("HostC"), Some("192.0.2.9"))
    };
    let checks = [
        at_address(0, O, Some("HostA"), Some("192.0.2.1")),
        at_address(1, O, Some("HostA"), Some("192.0.2.1")),
        // No address and no network: not listed, and no break in the repeats.
        at_address(2, X, None, None),
        at_address(3, O, Some("HostA"), Some("192.0.2.1")),
        at_address(4, X, Some("HostA"), Some("192.0.2.1")),
        at_address(5, O, Some("HostB"), None),
        // Ignored by the state: not newer than the last applied check.
        at_address(5, O, Some("HostD"), Some("192.0.2.8")),
        not_checked,
        at_address(7, O, Some("HostA"), Some("192.0.2.1")),
    ];
    let mut state = UrlState::new(subject(), t0());
    for check in &checks {
        state = advance(&state, check, check.started_at, &rules).0;
    }
    let listed = |i: usize| ObservedAddress::of(&checks[i]).unwrap();
    assert_eq!(
        state.addresses,
        vec![listed(0), listed(4), listed(5), listed(8)]
    );
    assert_eq!(state.checks, 7);
    // Stored as `[verdict, ip, asn, as_org]`, and read back the same.
    let json = serde_json::to_value(&state.addresses).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!(["online", "192.0.2.1", 5, "HostA"])
    );
    assert_eq!(json[2], serde_json::json!(["online", null, 5, "HostB"]));
    let back: Vec<ObservedAddress> = serde_json::from_value(json).unwrap();
    assert_eq!(back, state.addresses);
}

#[test]
fn the_check_at_the_horizon_expires_the_url() {
    let rules = Rules::default();
    let end = rules.schedule.end(t0());
    let (state, _) = feed(&[(0, O)]);
    let (state, events) = advance(&state, &observe(end, O, Some("HostA")), end, &rules);
    assert_eq!(kinds(&events), [EventKind::Expired]);
    assert_eq!(events[0].at, end, "dated at the check's start");
    assert_eq!(state.phase, Phase::Expired);
    assert_eq!(state.next_check, None);
    assert!(state.is_served(), "still online when monitoring ended");
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
fn uptime_counts_online_episodes_to_their_takedowns() {
    let (state, _) = feed(&[(0, O), (60, X), (75, X), (90, X)]);
    // Online from 0 to the takedown's late end (60m + 2s), observed 0 to 90m.
    assert_eq!(state.online_time(), TimeDelta::minutes(60) + TOOK);
    let uptime = state.uptime().unwrap();
    assert!((uptime - 3602.0 / 5400.0).abs() < 1e-12, "{uptime}");
    // Back at 200m (late end 200m + 2s) and still online at 300m.
    let (state, _) = feed(&[(0, O), (60, X), (75, X), (90, X), (200, O), (300, O)]);
    assert_eq!(
        state.online_time(),
        TimeDelta::minutes(60) + TOOK + (TimeDelta::minutes(100) - TOOK)
    );
    assert!(!state.is_served() || state.phase == Phase::Online);
    assert_eq!(
        feed(&[(0, X)]).0.uptime(),
        None,
        "one check observes no time"
    );
    let (never, _) = feed(&[(0, X), (15, X), (30, X), (60, X)]);
    assert_eq!(never.uptime(), Some(0.0));
}

#[test]
fn phases_have_their_names() {
    let names: Vec<&str> = [
        Phase::Pending,
        Phase::Unseen,
        Phase::Online,
        Phase::Offline,
        Phase::Expired,
    ]
    .map(Phase::as_str)
    .to_vec();
    assert_eq!(names, ["pending", "unseen", "online", "offline", "expired"]);
    for name in names {
        let json = format!("\"{name}\"");
        assert_eq!(serde_json::from_str::<Phase>(&json).unwrap().as_str(), name);
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
    assert_eq!(state.reappearances(), 0);
    assert!(state.is_served());
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
    assert_eq!(events[1].bracket.unwrap().from, Some(minutes(0)));
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
    assert_eq!(state.checks, 1);
    assert_eq!(after, state, "no run starts, no check is counted");
}

#[test]
fn every_applied_check_is_counted_once() {
    let rules = Rules::default();
    let (state, _) = feed(&[(0, O), (60, I), (75, X), (90, X), (200, O)]);
    assert_eq!(state.checks, 5);
    let redelivered = observe(minutes(200), O, Some("HostA"));
    assert_eq!(
        advance(&state, &redelivered, minutes(201), &rules).0.checks,
        5
    );
}

#[test]
fn seconds_keep_the_microsecond_and_any_duration() {
    assert_eq!(seconds(TimeDelta::microseconds(3_600_000_001)), 3600.000001);
    assert_eq!(seconds(-TimeDelta::microseconds(1_500_000)), -1.5);
    // Past about 292,000 years a duration has no microsecond count (an
    // i64 overflows): the whole milliseconds still give the seconds.
    let huge = TimeDelta::days(400_000 * 365) + TimeDelta::milliseconds(1_500);
    assert_eq!(huge.num_microseconds(), None);
    assert_eq!(seconds(huge), 400_000.0 * 365.0 * 86_400.0 + 1.5);
}

// ---- properties over random histories with a known truth ----

/// What the simulated content really did: served by hoster A until `moved`
/// (then by B), removed at `down`, served again from `back`.
#[derive(Debug, Clone)]
struct Truth {
    down: Option<DateTime<Utc>>,
    back: Option<DateTime<Utc>>,
    moved: Option<DateTime<Utc>>,
}

impl Truth {
    fn served(&self, moment: DateTime<Utc>) -> bool {
        match (self.down, self.back) {
            (Some(down), Some(back)) => moment < down || moment >= back,
            (Some(down), None) => moment < down,
            _ => true,
        }
    }

    fn hoster(&self, moment: DateTime<Utc>) -> &'static str {
        match self.moved {
            Some(moved) if moment >= moved => "B",
            _ => "A",
        }
    }
}

/// One check of a generated history: when it starts after the previous one,
/// how long it takes, where in that time the server decided its answer, and
/// whether the answer is noise (a timeout or a 5xx).
#[derive(Debug, Clone)]
struct Probe {
    gap_ms: i64,
    took_ms: i64,
    decided: f64,
    noise: bool,
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        prop_oneof![1i64..120_000, 60_000i64..3_600_000, 600_000i64..172_800_000],
        0i64..30_000,
        0.0f64..=1.0,
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(gap_ms, took_ms, decided, noise)| Probe {
            gap_ms,
            took_ms,
            decided,
            noise,
        })
}

fn truth() -> impl Strategy<Value = Truth> {
    let moment = || proptest::option::weighted(0.7, 1i64..400 * 3_600_000);
    (moment(), moment(), moment()).prop_map(|(down, back_after, moved)| {
        let at = |ms: i64| t0() + TimeDelta::milliseconds(ms);
        Truth {
            down: down.map(at),
            back: down.zip(back_after).map(|(d, b)| at(d + b)),
            moved: moved.map(at),
        }
    })
}

fn rules() -> impl Strategy<Value = Rules> {
    (1u32..5, 0u64..7_200, 60u64..3_600, 600u64..200_000, 2u32..6).prop_map(
        |(checks, span, delay, limit, gap)| {
            let config = crate::schedule::ConfirmationConfig {
                checks,
                min_span: std::time::Duration::from_secs(span),
                recheck_delay: std::time::Duration::from_secs(delay),
                inconclusive_limit: std::time::Duration::from_secs(limit),
                max_gap_factor: gap,
            };
            Rules {
                confirmation: Confirmation::try_from(config).unwrap(),
                ..Rules::default()
            }
        },
    )
}

/// The confirmation rule restated over the raw history of a run:
/// `(start, verdict)` of each of its checks.
fn rule_holds(run: &[(DateTime<Utc>, Verdict)], rule: &Confirmation) -> bool {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return false;
    };
    if run.len() < rule.checks as usize || last.0 - first.0 < rule.min_span {
        return false;
    }
    if run.iter().any(|(_, v)| *v == X) {
        return true;
    }
    // The watched suffix: back from the last check while gaps stay small.
    let mut watched = 1;
    while watched < run.len()
        && run[run.len() - watched].0 - run[run.len() - watched - 1].0 <= rule.max_gap
    {
        watched += 1;
    }
    let from = run[run.len() - watched].0;
    watched >= rule.checks as usize && last.0 - from >= rule.inconclusive_limit
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The truth is a history (served, removed, back, moved to another
    /// hoster); checks sample it at random times, take random time, and may
    /// answer noise anywhere, except that noise while the content is served
    /// is never watched for half the inconclusive limit (past the limit, the
    /// rule is entitled to call it a takedown; across a gap in checking it
    /// may go on). Then every bracket holds its true
    /// moment, every confirmation follows the rule, and a URL never removed
    /// is never taken down.
    #[test]
    fn brackets_hold_the_truth(rules in rules(), truth in truth(), probes in proptest::collection::vec(probe(), 1..80)) {
        let notified_at = t0();
        let mut state = UrlState::new(subject(), notified_at);
        let mut started = notified_at;
        let mut run: Vec<(DateTime<Utc>, Verdict)> = Vec::new();
        // Starts of the checks since the last non-inconclusive answer.
        let mut noise_since: Option<DateTime<Utc>> = None;
        let mut inconclusive_before_down = Vec::new();
        let limit = rules.confirmation.inconclusive_limit;
        for probe in probes {
            started += TimeDelta::milliseconds(probe.gap_ms);
            if TimeDelta::milliseconds(probe.gap_ms) > rules.confirmation.max_gap {
                // Noise across a gap in checking is not watched noise: the
                // server may answer noise again for a while.
                noise_since = None;
            }
            let answered = started + TimeDelta::milliseconds(probe.took_ms);
            let decided = started + TimeDelta::milliseconds((probe.took_ms as f64 * probe.decided) as i64);
            let served = truth.served(decided);
            let noisy = probe.noise
                && !(served && noise_since.is_some_and(|since| started - since >= limit / 2));
            let verdict = match (served, noisy) {
                (_, true) => I,
                (true, false) => O,
                (false, false) => X,
            };
            if verdict == I {
                noise_since.get_or_insert(started);
                if truth.down.is_none_or(|down| decided < down) {
                    inconclusive_before_down.push(started);
                }
            } else {
                noise_since = None;
            }
            let hoster = served.then(|| truth.hoster(decided));
            let mut obs = observe(started, verdict, hoster.or(Some("Parking")));
            obs.answered_at = answered;
            let before = state.clone();
            let (next, events) = advance(&state, &obs, answered, &rules);
            if before.phase != Phase::Expired {
                if verdict == O {
                    run.clear();
                } else if before.phase != Phase::Offline {
                    run.push((started, verdict));
                }
            }
            for event in &events {
                if let Some(bracket) = event.bracket {
                    prop_assert_eq!(event.at, bracket.to, "dated at the late end");
                    if let Some(from) = bracket.from {
                        prop_assert!(from < bracket.to);
                    }
                }
                match event.kind {
                    EventKind::Takedown | EventKind::AlreadyOffline => {
                        prop_assert!(truth.down.is_some(), "a URL never removed was taken down: {event:?}");
                        prop_assert!(rule_holds(&run, &rules.confirmation), "confirmed early: {run:?}");
                        prop_assert_eq!(event.kind == EventKind::AlreadyOffline, before.first_online_at.is_none());
                        let bracket = event.bracket.unwrap();
                        let down = truth.down.unwrap();
                        let holds = bracket.holds(down, notified_at)
                            || truth.back.is_some_and(|back| bracket.from.is_some_and(|from| from >= back));
                        match event.evidence {
                            Some(Evidence::Offline) => {
                                // The first takedown holds the removal; a later one
                                // (after a reappearance) is a removal the truth
                                // does not script, which cannot happen here.
                                prop_assert!(holds, "bracket {bracket:?} misses {down}");
                            }
                            Some(Evidence::InconclusiveOnly) => {
                                let from = run.iter().rev().find(|(t, _)| *t <= bracket.to).map(|(t, _)| *t);
                                let noise_first = from.is_some_and(|f| inconclusive_before_down.contains(&f));
                                prop_assert!(holds || noise_first, "bracket {bracket:?} misses {down}");
                            }
                            None => prop_assert!(false, "a takedown without evidence"),
                        }
                        run.clear();
                    }
                    EventKind::Reappeared => {
                        let back = truth.back;
                        prop_assert!(back.is_some(), "content that never came back reappeared");
                        let bracket = event.bracket.unwrap();
                        prop_assert!(bracket.holds(back.unwrap(), notified_at), "{bracket:?} misses {back:?}");
                    }
                    EventKind::HosterChanged => {
                        let moved = truth.moved;
                        prop_assert!(moved.is_some(), "a hoster change that never happened");
                        let bracket = event.bracket.unwrap();
                        prop_assert!(bracket.holds(moved.unwrap(), notified_at), "{bracket:?} misses {moved:?}");
                    }
                    EventKind::FirstOnline | EventKind::Expired => {
                        prop_assert_eq!(event.bracket, None);
                        prop_assert_eq!(event.at, started);
                    }
                }
            }
            // The first takedown never moves once made.
            if let Some(first) = before.first_takedown() {
                prop_assert_eq!(next.first_takedown(), Some(first));
            }
            if let Some(check) = next.next_check {
                prop_assert!(check.at >= answered, "next check before now");
                let soonest = (started + rules.confirmation.recheck_delay).min(rules.schedule.end(t0()));
                prop_assert!(check.at >= soonest, "next check {} sooner than {soonest}", check.at);
            } else {
                prop_assert_eq!(next.phase, Phase::Expired);
            }
            state = next;
        }
        if let (Some(takedown), Some(down)) = (state.first_takedown(), truth.down)
            && takedown.evidence == Evidence::Offline
        {
            prop_assert!(takedown.bracket.holds(down, notified_at), "the stored bracket misses the truth");
        }
        if let Some(uptime) = state.uptime() {
            prop_assert!((0.0..=1.0).contains(&uptime), "uptime {uptime}");
        }
    }

    /// Redelivered and out-of-order observations change nothing.
    #[test]
    fn stale_observations_change_nothing(rules in rules(), probes in proptest::collection::vec(probe(), 2..30)) {
        let mut state = UrlState::new(subject(), t0());
        let mut started = t0();
        let mut applied = Vec::new();
        for probe in probes {
            started += TimeDelta::milliseconds(probe.gap_ms);
            let verdict = if probe.noise { I } else if probe.decided < 0.5 { O } else { X };
            let obs = observe(started, verdict, Some("A"));
            state = advance(&state, &obs, started, &rules).0;
            applied.push(obs);
        }
        for old in &applied {
            let (again, events) = advance(&state, old, started, &rules);
            prop_assert!(events.is_empty());
            prop_assert_eq!(&again, &state);
        }
    }
}
