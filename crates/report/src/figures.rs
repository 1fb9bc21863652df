//! From URL facts to rows of figures: one accumulator per group (hoster, ASN
//! or registrable domain), one for the totals and one per month. Pure; the
//! accumulators keep one survival sample per URL, never observations.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{Datelike, TimeDelta};
use foldhash::fast::RandomState;
use serde::Serialize;
use tdmon_core::Evidence;
use tdmon_core::norm::NormResult;
use tdmon_core::state::seconds;
use tdmon_core::survival::{KaplanMeier, Survival};

use crate::facts::UrlFacts;
use crate::km::{self, TimeEstimate};

/// The group of CDN-fronted URLs when grouping by hoster or ASN: the CDN
/// answers for the content but does not host it, so it is not blamed.
pub const CDN_FRONTED: &str = "(CDN-fronted)";
/// The group of URLs no check could attribute.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// What the rows are per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    #[default]
    Hoster,
    Asn,
    Domain,
}

impl GroupBy {
    /// The group of a URL.
    pub fn key(self, facts: &UrlFacts) -> String {
        let a = &facts.attribution;
        match self {
            GroupBy::Hoster | GroupBy::Asn if a.cdn => CDN_FRONTED.to_owned(),
            GroupBy::Hoster => a.hoster.clone().unwrap_or_else(|| UNATTRIBUTED.to_owned()),
            GroupBy::Asn => match (a.asn, &a.as_org) {
                (Some(asn), Some(org)) => format!("AS{asn} {org}"),
                (Some(asn), None) => format!("AS{asn}"),
                (None, _) => UNATTRIBUTED.to_owned(),
            },
            GroupBy::Domain => facts.domain.clone(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Hoster => "hoster",
            GroupBy::Asn => "asn",
            GroupBy::Domain => "domain",
        }
    }
}

/// How the ranking orders the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankKey {
    /// The share not removed within the norm of this index (of those
    /// decidable), highest first; ties by notices, most first.
    NotWithin(usize),
    /// Notices, most first.
    Notices,
    /// The Kaplan-Meier median time to takedown, slowest first (none reached
    /// counts as slowest); ties by notices.
    Median,
}

impl Default for RankKey {
    fn default() -> Self {
        RankKey::NotWithin(0)
    }
}

impl FromStr for RankKey {
    type Err = String;

    /// `not_within` (the first norm), `not_within:N` (the N-th, from 1),
    /// `notices`, `median`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "not_within" => Ok(RankKey::NotWithin(0)),
            "notices" => Ok(RankKey::Notices),
            "median" => Ok(RankKey::Median),
            _ => text
                .strip_prefix("not_within:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(|n| RankKey::NotWithin(n - 1))
                .ok_or_else(|| {
                    format!("{text:?}: expected not_within, not_within:N, notices or median")
                }),
        }
    }
}

impl fmt::Display for RankKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RankKey::NotWithin(i) => write!(f, "not_within:{}", i + 1),
            RankKey::Notices => f.write_str("notices"),
            RankKey::Median => f.write_str("median"),
        }
    }
}

/// How one group fares against one norm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormFigure {
    pub norm: String,
    pub met: u64,
    pub missed: u64,
    pub undetermined: u64,
    /// `met / (met + missed)`; `None` when nothing is decidable.
    pub share_met: Option<f64>,
}

/// The Kaplan-Meier curve of a group, for charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    /// (seconds, share still online just after).
    pub steps: Vec<(f64, f64)>,
    /// Censoring times (seconds), one mark per distinct time.
    pub censored: Vec<f64>,
}

/// The figures of one group (or of all URLs: the totals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    /// Its place in the ranking, from 1; `None` for the CDN-fronted and
    /// unattributed groups, which name no hoster.
    pub rank: Option<usize>,
    pub notices: u64,
    /// Share of all notices in the period.
    pub share: f64,
    /// Already offline at the first check: counted apart, out of the norms
    /// and the time to takedown.
    pub already_offline: u64,
    pub norms: Vec<NormFigure>,
    /// Confirmed takedowns (first episode; already-offline URLs excluded).
    pub removed: u64,
    /// Of them, confirmed by inconclusive checks alone.
    pub removed_inconclusive_only: u64,
    pub median: TimeEstimate,
    pub p90: TimeEstimate,
    /// Served at the latest conclusive check.
    pub still_online: u64,
    /// URLs whose content came back after a takedown ...
    pub reappeared: u64,
    /// ... as a share of those removed ...
    pub reappeared_share: Option<f64>,
    /// ... and the median time from takedown to first reappearance (seconds).
    pub median_time_to_reappearance_s: Option<f64>,
    /// Online time over observed time, summed over the group's URLs.
    pub uptime: Option<f64>,
    pub distinct_addresses: u64,
    pub distinct_asns: u64,
    /// URLs whose attribution of record is a CDN or reverse proxy.
    pub cdn_fronted: u64,
    /// Changes of hoster seen on online checks.
    pub hoster_changes: u64,
    #[serde(skip)]
    pub curve: Curve,
}

impl Row {
    /// The share not removed within the norm of index `norm`, of those decidable.
    pub fn not_within(&self, norm: usize) -> Option<f64> {
        self.norms.get(norm)?.share_met.map(|met| 1.0 - met)
    }
}

/// One month of notices (UTC, by notice time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    pub notices: u64,
    /// Met the first norm, of those decidable.
    pub share_within_first_norm: Option<f64>,
    pub median_s: Option<f64>,
}

/// Accumulates the URLs of one group.
#[derive(Debug, Default)]
pub struct Accumulator {
    notices: u64,
    already_offline: u64,
    norms: Vec<[u64; 3]>,
    samples: Vec<Survival>,
    removed_inconclusive_only: u64,
    still_online: u64,
    reappeared: u64,
    reappearance: Vec<TimeDelta>,
    online: TimeDelta,
    observed: TimeDelta,
    addresses: HashSet<IpAddr, RandomState>,
    asns: HashSet<u32, RandomState>,
    cdn_fronted: u64,
    hoster_changes: u64,
}

impl Accumulator {
    pub fn add(&mut self, facts: &UrlFacts) {
        self.add_counts(facts, facts.norms.len());
        self.addresses.extend(facts.addresses.iter().copied());
        self.asns.extend(facts.asns.iter().copied());
    }

    /// What a month of the trend needs: the first norm only, and no distinct
    /// addresses or ASNs.
    fn add_to_trend(&mut self, facts: &UrlFacts) {
        self.add_counts(facts, 1);
    }

    /// Everything but the distinct addresses and ASNs, for the first `norms`.
    fn add_counts(&mut self, facts: &UrlFacts, norms: usize) {
        let norms = &facts.norms[..norms.min(facts.norms.len())];
        self.notices += 1;
        self.already_offline += u64::from(facts.already_offline);
        if self.norms.len() < norms.len() {
            self.norms.resize(norms.len(), [0; 3]);
        }
        if !facts.already_offline {
            for (counts, result) in self.norms.iter_mut().zip(norms) {
                counts[match result {
                    NormResult::Met => 0,
                    NormResult::Missed => 1,
                    NormResult::Undetermined => 2,
                }] += 1;
            }
        }
        self.samples.extend(facts.survival);
        self.removed_inconclusive_only +=
            u64::from(facts.removed() && facts.evidence == Some(Evidence::InconclusiveOnly));
        self.still_online += u64::from(facts.still_online);
        self.reappeared += u64::from(facts.reappearances > 0);
        self.reappearance.extend(facts.time_to_reappearance);
        self.online += facts.online_time;
        self.observed += facts.observed_time;
        self.cdn_fronted += u64::from(facts.attribution.cdn);
        self.hoster_changes += u64::from(facts.hoster_changes);
    }

    /// The row, with `total` notices in the period and these norm names.
    pub fn finish(mut self, key: String, total: u64, norms: &[String]) -> Row {
        let km = KaplanMeier::estimate(&self.samples);
        let (median, p90) = (
            km::quantile(&km, tdmon_core::survival::Percentile::MEDIAN),
            km::quantile(&km, tdmon_core::survival::Percentile::P90),
        );
        let mut censored: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| !s.removed)
            .map(|s| seconds(s.time))
            .collect();
        censored.sort_by(f64::total_cmp);
        censored.dedup();
        let removed = self.samples.iter().filter(|s| s.removed).count() as u64;
        self.norms.resize(norms.len(), [0; 3]);
        self.reappearance.sort();
        Row {
            rank: None,
            notices: self.notices,
            share: ratio(self.notices, total).unwrap_or(0.0),
            already_offline: self.already_offline,
            norms: norms
                .iter()
                .zip(&self.norms)
                .map(|(norm, [met, missed, undetermined])| NormFigure {
                    norm: norm.clone(),
                    met: *met,
                    missed: *missed,
                    undetermined: *undetermined,
                    share_met: ratio(*met, met + missed),
                })
                .collect(),
            removed,
            removed_inconclusive_only: self.removed_inconclusive_only,
            median,
            p90,
            still_online: self.still_online,
            reappeared: self.reappeared,
            reappeared_share: ratio(self.reappeared, removed),
            median_time_to_reappearance_s: median_of(&self.reappearance).map(seconds),
            uptime: (self.observed > TimeDelta::zero())
                .then(|| seconds(self.online) / seconds(self.observed)),
            distinct_addresses: self.addresses.len() as u64,
            distinct_asns: self.asns.len() as u64,
            cdn_fronted: self.cdn_fronted,
            hoster_changes: self.hoster_changes,
            curve: Curve {
                steps: km
                    .steps()
                    .iter()
                    .map(|s| (seconds(s.time), s.share))
                    .collect(),
                censored,
            },
            key,
        }
    }

    /// The month's figures.
    fn month(self, month: String) -> Month {
        let row = self.finish(month.clone(), 0, &["first".to_owned()]);
        Month {
            month,
            notices: row.notices,
            share_within_first_norm: row.norms[0].share_met,
            median_s: row.median.seconds,
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The middle value (the lower of the two middle ones for an even count:
/// a time that was observed).
fn median_of(sorted: &[TimeDelta]) -> Option<TimeDelta> {
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// Every accumulator of a report.
#[derive(Debug)]
pub struct Tally {
    by: GroupBy,
    groups: BTreeMap<String, Accumulator>,
    totals: Accumulator,
    /// By (year, month) of the notice.
    months: BTreeMap<(i32, u32), Accumulator>,
}

impl Tally {
    pub fn new(by: GroupBy) -> Self {
        Self {
            by,
            groups: BTreeMap::new(),
            totals: Accumulator::default(),
            months: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, facts: &UrlFacts) {
        self.groups
            .entry(self.by.key(facts))
            .or_default()
            .add(facts);
        self.totals.add(facts);
        let month = (facts.notified_at.year(), facts.notified_at.month());
        self.months.entry(month).or_default().add_to_trend(facts);
    }

    /// Rows ranked by `key`, the totals, and the monthly trend.
    pub fn finish(self, norms: &[String], key: &RankKey) -> (Vec<Row>, Row, Vec<Month>) {
        let total = self.totals.notices;
        let mut rows: Vec<Row> = self
            .groups
            .into_iter()
            .map(|(group, acc)| acc.finish(group, total, norms))
            .collect();
        rank(&mut rows, key);
        let totals = self.totals.finish("total".to_owned(), total, norms);
        let months = self
            .months
            .into_iter()
            .map(|((year, month), acc)| acc.month(format!("{year:04}-{month:02}")))
            .collect();
        (rows, totals, months)
    }
}

/// Orders the rows by `key` (worst first) and numbers those that name a
/// hoster, ASN or domain; the CDN-fronted and unattributed rows come last,
/// unranked.
pub fn rank(rows: &mut [Row], key: &RankKey) {
    let unranked = |row: &Row| row.key == CDN_FRONTED || row.key == UNATTRIBUTED;
    let worse = |row: &Row| -> f64 {
        match key {
            // Nothing decidable: after every decidable row.
            RankKey::NotWithin(norm) => row.not_within(*norm).unwrap_or(-1.0),
            RankKey::Notices => row.notices as f64,
            RankKey::Median => row.median.seconds.unwrap_or(f64::INFINITY),
        }
    };
    rows.sort_by(|a, b| {
        unranked(a)
            .cmp(&unranked(b))
            .then_with(|| worse(b).total_cmp(&worse(a)))
            .then_with(|| b.notices.cmp(&a.notices))
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut place = 0;
    for row in rows.iter_mut() {
        if !unranked(row) {
            place += 1;
            row.rank = Some(place);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, notices: u64, met: u64, missed: u64) -> Row {
        let acc = Accumulator {
            notices,
            norms: vec![[met, missed, notices - met - missed]],
            ..Accumulator::default()
        };
        acc.finish(key.to_owned(), 100, &["24h".to_owned()])
    }

    #[test]
    fn ranking_is_worst_first_then_by_notices_and_names_no_cdn() {
        let mut rows = vec![
            row("Fast", 10, 9, 1),
            row(CDN_FRONTED, 50, 0, 50),
            row("Slow big", 20, 2, 8),
            row("Slow small", 5, 1, 4),
            row("Undecided", 7, 0, 0),
        ];
        rank(&mut rows, &RankKey::default());
        let order: Vec<(&str, Option<usize>)> =
            rows.iter().map(|r| (r.key.as_str(), r.rank)).collect();
        assert_eq!(
            order,
            [
                ("Slow big", Some(1)),
                ("Slow small", Some(2)),
                ("Fast", Some(3)),
                ("Undecided", Some(4)),
                (CDN_FRONTED, None),
            ]
        );
        rank(&mut rows, &RankKey::Notices);
        assert_eq!(rows[0].key, "Slow big");
    }

    #[test]
    fn rank_keys_parse_and_print() {
        for text in ["not_within:1", "not_within:3", "notices", "median"] {
            assert_eq!(text.parse::<RankKey>().unwrap().to_string(), text);
        }
        assert_eq!("not_within".parse(), Ok(RankKey::NotWithin(0)));
        assert!("not_within:0".parse::<RankKey>().is_err());
        assert!("speed".parse::<RankKey>().is_err());
    }

    #[test]
    fn shares_of_nothing_are_none_not_zero() {
        let r = row("Undecided", 7, 0, 0);
        assert_eq!(r.norms[0].share_met, None);
        assert_eq!(r.not_within(0), None);
        assert_eq!(r.reappeared_share, None);
        assert_eq!(r.uptime, None);
        assert_eq!(median_of(&[]), None);
        let times = [TimeDelta::seconds(1), TimeDelta::seconds(2)];
        assert_eq!(median_of(&times), Some(TimeDelta::seconds(1)));
    }
}
