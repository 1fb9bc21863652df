//! The evidence behind one URL's figures: every observation, every event with
//! its bracket, and how each figure the URL feeds was derived. Plain text,
//! printed by `tdmon explain` and embedded in the HTML report.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use tdmon_core::hoster::HosterMap;
use tdmon_core::message::Bracket;
use tdmon_core::norm::{NormResult, Norms};
use tdmon_core::state::{UrlState, seconds};
use tdmon_core::{Event, Evidence, Observation, ObservedAddress};

use crate::facts::{Attributed, UrlFacts};
use crate::format::{duration, optional};

/// The timeline and derivations of one URL. `events` are its stored events;
/// without them, the brackets come from the state's episodes alone.
pub fn explain(
    state: &UrlState,
    observations: &[Observation],
    events: &[Event],
    hosters: &HosterMap,
    norms: &Norms,
) -> String {
    let facts = UrlFacts::of(state, hosters, norms);
    let notified = state.subject.notified_at;
    let mut out = String::new();
    let _ = writeln!(out, "URL {} (id {})", facts.url, facts.url_id);
    let _ = writeln!(
        out,
        "notice {} at {}; phase {}; {} checks applied",
        optional(facts.notice_id.as_deref()),
        stamp(notified),
        state.phase.as_str(),
        state.checks
    );
    let a = &facts.attribution;
    let _ = writeln!(
        out,
        "hoster of record (mapping in force): {}; AS{} {}; address {}{}; registrable domain {}",
        optional(a.hoster.as_deref()),
        optional(a.asn),
        optional(a.as_org.as_deref()),
        optional(a.ip),
        if a.cdn {
            " (a CDN: flagged, not blamed)"
        } else {
            ""
        },
        facts.domain
    );

    let _ = writeln!(out, "\nobservations ({}):", observations.len());
    let _ = writeln!(
        out,
        "  {:<26} {:>10} {:<20} {:<13} {:<16} {:>8} hoster",
        "started", "+notice", "outcome", "verdict", "address", "ASN"
    );
    for o in observations {
        let mapped = ObservedAddress::of(o)
            .map(|observed| Attributed::of(&observed, hosters))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<26} {:>10} {:<20} {:<13} {:<16} {:>8} {}{}",
            stamp(o.started_at),
            duration(seconds(o.started_at - notified)),
            o.outcome.as_str(),
            o.verdict.as_str(),
            optional(o.ip),
            optional(o.asn),
            optional(mapped.hoster.as_deref()),
            if mapped.cdn { " (CDN)" } else { "" }
        );
    }

    let _ = writeln!(out, "\nevents:");
    if events.is_empty() {
        for (i, episode) in state.episodes.iter().enumerate() {
            let kind = if i == 0 && state.already_offline {
                "already_offline"
            } else {
                "takedown"
            };
            let _ = writeln!(
                out,
                "  {kind:<16} {}{}",
                bracket(&episode.takedown.bracket, notified),
                evidence(Some(episode.takedown.evidence))
            );
            if let Some(back) = &episode.ended {
                let _ = writeln!(out, "  {:<16} {}", "reappeared", bracket(back, notified));
            }
        }
    }
    for event in events {
        let _ = writeln!(
            out,
            "  {:<16} at {}{}{}",
            event.kind.as_str(),
            stamp(event.at),
            event
                .bracket
                .map(|b| format!("; {}", bracket(&b, notified)))
                .unwrap_or_default(),
            evidence(event.evidence)
        );
    }

    let _ = writeln!(out, "\nfigures this URL feeds:");
    if facts.already_offline {
        let _ = writeln!(
            out,
            "  already offline at its first check: counted apart, out of every norm and of the time to takedown"
        );
    }
    for (norm, result) in norms.iter().zip(&facts.norms) {
        let deadline = notified + norm.duration();
        let why = match result {
            _ if facts.already_offline => "not counted (already offline)".to_owned(),
            NormResult::Met => format!(
                "met: a takedown's late end is at or before the deadline {} and a check still saw the content gone at or after it",
                stamp(deadline)
            ),
            NormResult::Missed => format!(
                "missed: checks saw the content served before and after the deadline {} with no takedown between",
                stamp(deadline)
            ),
            NormResult::Undetermined => format!(
                "undetermined: the deadline {} falls inside a bracket or after the latest check; never guessed",
                stamp(deadline)
            ),
        };
        let _ = writeln!(out, "  norm {norm}: {why}");
    }
    match facts.survival {
        Some(s) if s.removed => {
            let _ = writeln!(
                out,
                "  time to takedown: {} (the late end of the first takedown's bracket), an event in the Kaplan-Meier estimate{}",
                duration(seconds(s.time)),
                evidence(facts.evidence)
            );
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "  time to takedown: censored at {} (the latest check): at risk until then, never counted as removed",
                duration(seconds(s.time))
            );
        }
        None => {
            let _ = writeln!(out, "  time to takedown: not in the estimate");
        }
    }
    let _ = writeln!(
        out,
        "  still online: {}; reappearances: {}{}",
        if facts.still_online { "yes" } else { "no" },
        facts.reappearances,
        facts
            .time_to_reappearance
            .map(|t| format!(" (first {} after the takedown)", duration(seconds(t))))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  uptime: online {} of {} observed{}",
        duration(seconds(facts.online_time)),
        duration(seconds(facts.observed_time)),
        state
            .uptime()
            .map(|u| format!(" = {:.1}%", u * 100.0))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  distinct addresses: {}; ASNs: {}; hoster changes: {}",
        facts.addresses.len(),
        facts.asns.len(),
        facts.hoster_changes
    );
    out
}

fn bracket(b: &Bracket, notified: DateTime<Utc>) -> String {
    format!(
        "bracket ({}, {}] = ({}, {}] after the notice",
        b.from.map_or("notice".to_owned(), stamp),
        stamp(b.to),
        b.from
            .map_or("0s".to_owned(), |from| duration(seconds(from - notified))),
        duration(seconds(b.to - notified))
    )
}

fn evidence(evidence: Option<Evidence>) -> &'static str {
    match evidence {
        Some(Evidence::InconclusiveOnly) => {
            " [inconclusive_only: no check proved it gone; dated at the first check of the watched run]"
        }
        _ => "",
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
