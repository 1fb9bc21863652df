//! What one URL contributes to the report: its stored state, read again
//! through the hoster mapping in force and the norms. Pure.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tdmon_core::hoster::HosterMap;
use tdmon_core::norm::{NormResult, Norms};
use tdmon_core::state::UrlState;
use tdmon_core::survival::Survival;
use tdmon_core::{Evidence, ObservedAddress, Verdict};

/// The URL's attribution at report time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Attributed {
    pub ip: Option<IpAddr>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// After the merges and overrides in force.
    pub hoster: Option<String>,
    pub cdn: bool,
}

impl Attributed {
    /// `observed`'s address, ASN and organisation, mapped now.
    pub fn of(observed: &ObservedAddress, hosters: &HosterMap) -> Self {
        Self {
            ip: observed.ip,
            asn: observed.asn,
            as_org: observed.as_org.clone(),
            hoster: hosters
                .hoster(observed.ip, observed.asn, observed.as_org.as_deref())
                .map(str::to_owned),
            cdn: hosters.is_cdn(observed.asn),
        }
    }
}

/// Everything the figures need of one URL.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlFacts {
    pub url_id: i64,
    /// Credentials masked.
    pub url: String,
    pub notice_id: Option<String>,
    pub notified_at: DateTime<Utc>,
    /// The registrable domain of the URL's host (the host itself for an
    /// address or a name the public suffix list does not know).
    pub domain: String,
    /// The attribution of record: the first online check's, or, for a URL
    /// never seen online, the first attributed check's.
    pub attribution: Attributed,
    pub addresses: BTreeSet<IpAddr>,
    pub asns: BTreeSet<u32>,
    /// Changes of the mapped hoster between consecutive attributed online checks.
    pub hoster_changes: u32,
    pub already_offline: bool,
    /// Per norm, in the order of the norms.
    pub norms: Vec<NormResult>,
    /// The time to takedown (or censoring) for Kaplan-Meier; `None` for a URL
    /// already offline or never checked.
    pub survival: Option<Survival>,
    pub evidence: Option<Evidence>,
    pub still_online: bool,
    pub reappearances: usize,
    /// From the first takedown's late end to the first reappearance's late end.
    pub time_to_reappearance: Option<TimeDelta>,
    pub online_time: TimeDelta,
    pub observed_time: TimeDelta,
    pub checks: u32,
}

impl UrlFacts {
    /// The facts of `state`, its addresses mapped by `hosters`.
    pub fn of(state: &UrlState, hosters: &HosterMap, norms: &Norms) -> Self {
        let observed = &state.addresses;
        let is_online = |o: &&ObservedAddress| o.verdict == Verdict::Online;
        let attribution = observed
            .iter()
            .find(is_online)
            .or(observed.first())
            .map(|o| Attributed::of(o, hosters))
            .unwrap_or_default();
        let mut online_hosters = observed
            .iter()
            .filter(is_online)
            .map(|o| hosters.hoster(o.ip, o.asn, o.as_org.as_deref()));
        let hoster_changes = match online_hosters.next() {
            Some(first) => online_hosters
                .scan(first, |previous, hoster| {
                    Some(std::mem::replace(previous, hoster) != hoster)
                })
                .filter(|changed| *changed)
                .count(),
            None => 0,
        };
        let first = state.first_takedown();
        let time_to_reappearance = state
            .episodes
            .iter()
            .skip(usize::from(state.already_offline))
            .find_map(|episode| {
                episode
                    .ended
                    .map(|back| back.to - episode.takedown.bracket.to)
            });
        Self {
            url_id: state.subject.url_id,
            url: tdmon_core::url::mask_url(&state.subject.url).into_owned(),
            notice_id: state.subject.notice_id.clone(),
            notified_at: state.subject.notified_at,
            domain: registrable_domain(&state.subject.url),
            attribution,
            addresses: observed.iter().filter_map(|o| o.ip).collect(),
            asns: observed.iter().filter_map(|o| o.asn).collect(),
            hoster_changes: u32::try_from(hoster_changes).unwrap_or(u32::MAX),
            already_offline: state.already_offline,
            norms: norms.iter().map(|norm| norm.judge(state)).collect(),
            survival: (!state.already_offline).then(|| survival(state)).flatten(),
            evidence: first.map(|t| t.evidence),
            still_online: state.is_served(),
            reappearances: state.reappearances(),
            time_to_reappearance,
            online_time: state.online_time(),
            observed_time: match (state.first_check_at, state.last_check_at) {
                (Some(first), Some(last)) => last - first,
                _ => TimeDelta::zero(),
            },
            checks: state.checks,
        }
    }

    /// Removed by a confirmed takedown (not already offline).
    pub fn removed(&self) -> bool {
        self.survival.is_some_and(|s| s.removed)
    }
}

/// Removed at the late end of the first takedown's bracket, or censored at
/// the latest check.
pub fn survival(state: &UrlState) -> Option<Survival> {
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

/// The registrable domain (eTLD+1) of a URL's host, by the public suffix
/// list; the host itself when it is an address or the list knows no suffix.
pub fn registrable_domain(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return String::new();
    };
    match parsed.host() {
        Some(url::Host::Domain(host)) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            psl::domain_str(&host).unwrap_or(&host).to_owned()
        }
        Some(host) => host.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdmon_core::state::Subject;

    fn seen(verdict: Verdict, ip: &str, asn: Option<u32>, org: &str) -> ObservedAddress {
        ObservedAddress {
            verdict,
            ip: Some(ip.parse().unwrap()),
            asn,
            as_org: Some(org.to_owned()),
        }
    }

    /// AS 64501 and 64502 are one hoster, 198.51.100.0/24 a reseller's, and
    /// AS 13335 a CDN.
    fn hosters() -> HosterMap {
        HosterMap::new(
            [(64501, "Alpha".into()), (64502, "Alpha".into())],
            [("198.51.100.0/24".parse().unwrap(), "Reseller".into())],
            [13335],
        )
        .unwrap()
    }

    fn facts_of(observed: &[ObservedAddress], hosters: &HosterMap) -> UrlFacts {
        let at = "2026-03-02T10:00:00Z".parse().unwrap();
        let subject = Subject {
            url_id: 7,
            url: "http://files.example.com/a.jpg".into(),
            notice_id: None,
            notified_at: at,
        };
        let mut state = UrlState::new(subject, at);
        state.addresses = observed.to_vec();
        UrlFacts::of(&state, hosters, &Norms::default())
    }

    #[test]
    fn the_hoster_of_record_is_the_first_online_one_and_changes_are_counted_when_online() {
        let hosters = hosters();
        let observed = [
            seen(Verdict::Inconclusive, "192.0.2.1", Some(64999), "First Org"),
            seen(Verdict::Online, "203.0.113.1", Some(64501), "Alpha One"),
            // The same hoster through the merge: no change.
            seen(Verdict::Online, "203.0.113.2", Some(64502), "Alpha Two"),
            // Offline in between: not a change, whoever answered.
            seen(Verdict::Offline, "192.0.2.9", Some(64888), "Elsewhere"),
            seen(Verdict::Online, "198.51.100.7", Some(64501), "Alpha One"),
            seen(Verdict::Online, "203.0.113.1", Some(64501), "Alpha One"),
        ];
        let facts = facts_of(&observed, &hosters);
        assert_eq!(facts.attribution.hoster.as_deref(), Some("Alpha"));
        assert_eq!(facts.attribution.as_org.as_deref(), Some("Alpha One"));
        assert_eq!(facts.hoster_changes, 2, "Alpha to Reseller and back");
        assert_eq!(facts.addresses.len(), 5);
        assert_eq!(facts.asns.len(), 4);

        let never_online = facts_of(&observed[3..4], &hosters);
        assert_eq!(
            never_online.attribution.hoster.as_deref(),
            Some("Elsewhere"),
            "never online: the first attributed check's"
        );
        assert_eq!(never_online.hoster_changes, 0);
        let cdn = facts_of(
            &[seen(Verdict::Online, "192.0.2.3", Some(13335), "CDN Inc")],
            &hosters,
        );
        assert!(cdn.attribution.cdn);
        assert_eq!(facts_of(&[], &hosters).attribution, Attributed::default());
    }

    proptest::proptest! {
        /// The state leaves out a check that repeats the one before it: the
        /// facts of any history are those of the history without repeats.
        #[test]
        fn repeats_change_no_fact(picks in proptest::collection::vec((0usize..3, 0usize..4), 0..40)) {
            let hosters = hosters();
            let places = [
                ("203.0.113.1", Some(64501), "Alpha One"),
                ("203.0.113.2", Some(64502), "Alpha Two"),
                ("198.51.100.7", Some(64501), "Alpha One"),
                ("192.0.2.3", Some(13335), "CDN Inc"),
            ];
            let verdicts = [Verdict::Online, Verdict::Offline, Verdict::Inconclusive];
            let full: Vec<ObservedAddress> = picks
                .iter()
                .map(|&(v, p)| seen(verdicts[v], places[p].0, places[p].1, places[p].2))
                .collect();
            let mut without_repeats = full.clone();
            without_repeats.dedup();
            proptest::prop_assert_eq!(
                facts_of(&full, &hosters),
                facts_of(&without_repeats, &hosters)
            );
        }
    }

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("https://a.b.example.co.uk/x"),
            "example.co.uk"
        );
        assert_eq!(
            registrable_domain("http://user.github.io/"),
            "user.github.io"
        );
        assert_eq!(
            registrable_domain("http://WWW.Example.COM./"),
            "example.com"
        );
        assert_eq!(registrable_domain("http://127.0.0.1:8080/"), "127.0.0.1");
        assert_eq!(registrable_domain("http://[::1]/"), "[::1]");
    }
}
