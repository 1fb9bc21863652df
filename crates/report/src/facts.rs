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
use tdmon_core::{Evidence, Observation, Verdict};

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
    /// `observation`'s address, ASN and organisation, mapped now.
    pub fn of(observation: &Observation, hosters: &HosterMap) -> Self {
        Self {
            ip: observation.ip,
            asn: observation.asn,
            as_org: observation.as_org.clone(),
            hoster: hosters.hoster(
                observation.ip,
                observation.asn,
                observation.as_org.as_deref(),
            ),
            cdn: hosters.is_cdn(observation.asn),
        }
    }

    fn is_known(&self) -> bool {
        self.ip.is_some() || self.asn.is_some()
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
    /// The facts of `state`, with its stored observations (in `started_at` order).
    pub fn of(
        state: &UrlState,
        observations: &[Observation],
        hosters: &HosterMap,
        norms: &Norms,
    ) -> Self {
        let attributed: Vec<(Verdict, Attributed)> = observations
            .iter()
            .map(|o| (o.verdict, Attributed::of(o, hosters)))
            .filter(|(_, a)| a.is_known())
            .collect();
        let online = || {
            attributed
                .iter()
                .filter(|(verdict, _)| *verdict == Verdict::Online)
        };
        let attribution = online()
            .chain(attributed.iter())
            .map(|(_, a)| a.clone())
            .next()
            .unwrap_or_default();
        let online_hosters: Vec<&Option<String>> = online().map(|(_, a)| &a.hoster).collect();
        let hoster_changes = online_hosters.windows(2).filter(|w| w[0] != w[1]).count();
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
            addresses: observations.iter().filter_map(|o| o.ip).collect(),
            asns: observations.iter().filter_map(|o| o.asn).collect(),
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
