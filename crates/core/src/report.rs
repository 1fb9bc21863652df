//! Per-hoster figures from URL states: notices, share, removals judged
//! against each norm, the Kaplan-Meier median time to takedown, still online,
//! already offline and reappeared. Pure: the caller loads the states.
//!
//! URLs already offline at their first check are counted apart and left out
//! of the norms and the time to takedown: the hoster cannot be credited with
//! a removal that happened before monitoring could see it.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde::Serialize;

use crate::norm::{Norm, NormResult, Norms};
use crate::state::UrlState;
use crate::survival::{KaplanMeier, Survival};

/// The hoster name of URLs without attribution.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// How the URLs of one hoster fare against one norm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NormCounts {
    pub met: usize,
    pub missed: usize,
    pub undetermined: usize,
}

/// The figures of one hoster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HosterRow {
    pub hoster: String,
    pub asn: Option<u32>,
    pub notices: usize,
    /// Share of all notices.
    pub share: f64,
    /// Confirmed takedowns (first episode), already-offline URLs excluded.
    pub removed: usize,
    /// Per norm, in the order of the norms.
    pub norms: Vec<(String, NormCounts)>,
    /// Kaplan-Meier median time to takedown, in seconds (to the microsecond);
    /// `None` while fewer than half are estimated removed.
    pub median_time_to_takedown_s: Option<f64>,
    /// Served at the last conclusive check (expired ones included).
    pub still_online: usize,
    pub already_offline: usize,
    pub reappeared: usize,
}

/// Per-hoster rows, most notices first.
pub fn by_hoster(states: &[UrlState], norms: &Norms) -> Vec<HosterRow> {
    let mut groups: BTreeMap<String, Vec<&UrlState>> = BTreeMap::new();
    for state in states {
        let hoster = state
            .hoster_of_record
            .as_ref()
            .and_then(|h| h.hoster.clone())
            .unwrap_or_else(|| UNATTRIBUTED.to_owned());
        groups.entry(hoster).or_default().push(state);
    }
    let total = states.len().max(1) as f64;
    let mut rows: Vec<HosterRow> = groups
        .into_iter()
        .map(|(hoster, group)| row(hoster, &group, norms, total))
        .collect();
    rows.sort_by(|a, b| {
        b.notices
            .cmp(&a.notices)
            .then_with(|| a.hoster.cmp(&b.hoster))
    });
    rows
}

fn row(hoster: String, group: &[&UrlState], norms: &Norms, total: f64) -> HosterRow {
    let monitored: Vec<&&UrlState> = group.iter().filter(|s| !s.already_offline).collect();
    let samples: Vec<Survival> = monitored.iter().filter_map(|s| survival(s)).collect();
    HosterRow {
        asn: group
            .iter()
            .find_map(|s| s.hoster_of_record.as_ref().and_then(|h| h.asn)),
        notices: group.len(),
        share: group.len() as f64 / total,
        removed: monitored
            .iter()
            .filter(|s| s.first_takedown().is_some())
            .count(),
        norms: norms
            .iter()
            .map(|norm| (norm.to_string(), count(norm, &monitored)))
            .collect(),
        median_time_to_takedown_s: KaplanMeier::estimate(&samples)
            .median()
            .map(crate::state::seconds),
        still_online: group.iter().filter(|s| s.is_served()).count(),
        already_offline: group.len() - monitored.len(),
        reappeared: group.iter().filter(|s| s.reappearances() > 0).count(),
        hoster,
    }
}

/// Removed at the late end of the first takedown's bracket, or censored at
/// the last check.
fn survival(state: &UrlState) -> Option<Survival> {
    let notified_at = state.subject.notified_at;
    match state.first_takedown() {
        Some(takedown) => Some(Survival {
            time: takedown.bracket.to - notified_at,
            removed: true,
        }),
        None => state.last_check_at.map(|last| Survival {
            time: (last - notified_at).max(TimeDelta::zero()),
            removed: false,
        }),
    }
}

fn count(norm: Norm, states: &[&&UrlState]) -> NormCounts {
    let mut counts = NormCounts::default();
    for state in states {
        match norm.judge(state) {
            NormResult::Met => counts.met += 1,
            NormResult::Missed => counts.missed += 1,
            NormResult::Undetermined => counts.undetermined += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::message::{DnsOutcome, DnsResult, Observation, SchemaV1};
    use crate::outcome::{Outcome, Verdict};
    use crate::state::{Rules, Subject, advance};

    fn t0() -> DateTime<Utc> {
        "2026-06-01T08:00:00Z".parse().unwrap()
    }

    /// A URL checked at the given hours with the given verdicts.
    fn url(id: i64, hoster: &str, checks: &[(i64, Verdict)]) -> UrlState {
        let rules = Rules::default();
        let subject = Subject {
            url_id: id,
            url: format!("http://u{id}.test/"),
            notice_id: None,
            notified_at: t0(),
        };
        let mut state = UrlState::new(subject, t0());
        for (minutes, verdict) in checks {
            let at = t0() + TimeDelta::minutes(*minutes);
            let observation = Observation {
                schema: SchemaV1,
                job_id: Uuid::new_v4(),
                url_id: id,
                url: String::new(),
                worker: "t".into(),
                started_at: at,
                answered_at: at + TimeDelta::milliseconds(1),
                duration_ms: 1,
                dns: DnsResult {
                    outcome: DnsOutcome::Ok,
                    answers: vec![],
                },
                ip: None,
                asn: Some(64500),
                as_org: None,
                hoster: Some(hoster.into()),
                cdn: false,
                http: None,
                tls_error: None,
                fingerprint: None,
                outcome: if *verdict == Verdict::Online {
                    Outcome::Served
                } else {
                    Outcome::HttpNotFound
                },
                verdict: *verdict,
            };
            state = advance(&state, &observation, at, &rules).0;
        }
        state
    }

    use Verdict::{Offline as X, Online as O};

    #[test]
    fn rows_count_norms_medians_and_apart_cases() {
        let states = vec![
            // Removed at 2h, still gone at 26h: meets 24h.
            url(1, "A", &[(0, O), (120, X), (135, X), (150, X), (1560, X)]),
            // Still online at 30h: misses 24h, censored.
            url(2, "A", &[(0, O), (1800, O)]),
            // Already offline: apart.
            url(3, "A", &[(0, X), (15, X), (30, X)]),
            url(4, "B", &[(0, O)]),
        ];
        let rows = by_hoster(&states, &Norms::default());
        assert_eq!(rows[0].hoster, "A");
        assert_eq!(rows[0].notices, 3);
        assert!((rows[0].share - 0.75).abs() < 1e-12);
        assert_eq!(rows[0].removed, 1);
        assert_eq!(rows[0].already_offline, 1);
        assert_eq!(rows[0].still_online, 1);
        let (name, day) = &rows[0].norms[0];
        assert_eq!(name, "24h");
        assert_eq!(
            *day,
            NormCounts {
                met: 1,
                missed: 1,
                undetermined: 0
            }
        );
        // One of two removed at 2h, the other censored at 30h: S(2h) = 0.5.
        assert_eq!(rows[0].median_time_to_takedown_s, Some(7200.001));
        assert_eq!(rows[1].hoster, "B");
        assert_eq!(rows[1].norms[0].1.undetermined, 1);
        assert_eq!(rows[1].median_time_to_takedown_s, None);
    }

    #[test]
    fn a_url_online_to_the_end_of_monitoring_is_still_online() {
        let end = 90 * 24 * 60;
        let states = vec![url(1, "A", &[(0, O), (end, O)])];
        assert_eq!(states[0].phase, crate::state::Phase::Expired);
        assert_eq!(by_hoster(&states, &Norms::default())[0].still_online, 1);
    }
}
