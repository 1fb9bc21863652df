//! tdmon's report: per-hoster (or per-ASN, or per-registrable-domain) figures
//! of how fast notified content is taken down, read from either store page
//! by page, with the hoster mapping in force applied to the stored addresses
//! and ASNs. docs/REPORT.md describes every figure and column;
//! docs/MEASUREMENT.md the rules behind them.
//!
//! ```text
//! figures(&Store, &Inputs) -> Report        (the library call, e.g. for GET /hosters)
//! render::{html, csv, json, table}(&Report) -> String
//! explain(&UrlState, &[Observation], &[Event], &HosterMap, &Norms) -> String
//! ```

pub mod explain;
pub mod facts;
pub mod figures;
pub mod format;
pub mod km;
pub mod render;

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tdmon_core::UrlId;
use tdmon_core::hoster::HosterMap;
use tdmon_core::norm::Norms;
use tdmon_core::state::UrlState;
use tdmon_store::{Store, StoreError};
use tokio::task::{JoinError, JoinHandle};

pub use crate::explain::explain;
pub use crate::facts::UrlFacts;
pub use crate::figures::{GroupBy, Month, RankKey, Row};

/// URL ids read from the store per page: a range of ids, so that a page
/// needs nothing of the one before it and several are read at once.
const PAGE: i64 = 1000;
/// Pages read while the current one is computed. On PostgreSQL each is a
/// server process of its own, and the server's work is most of the time.
const READ_AHEAD: usize = 3;
/// URLs listed with their evidence in one report at most, whatever the
/// number of groups: the HTML file stays at tens of MiB.
pub const MAX_LISTED_URLS: usize = 5_000;

/// Notices whose time lies in `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= at) && self.to.is_none_or(|to| at < to)
    }
}

/// What a report is made of.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub hosters: &'a HosterMap,
    pub norms: &'a Norms,
    pub period: Period,
    pub by: GroupBy,
    pub rank_by: RankKey,
    /// Keep up to this many URLs per group, with their evidence, for the
    /// HTML report's per-group sections (0: none).
    pub urls_per_group: usize,
    /// How the configuration in force is described in the methodology.
    pub methodology: Methodology,
}

/// The methodology section, generated from the configuration in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Methodology {
    pub version: String,
    /// (setting, value) in display order, grouped by section name.
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

/// One URL listed in a group's section, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlLine {
    pub facts: UrlFacts,
    pub evidence: String,
}

/// The report: rows ranked, totals, monthly trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub period: Period,
    pub by: GroupBy,
    pub norms: Vec<String>,
    pub rank_by: String,
    /// Notice times actually covered: the earliest and latest in the period.
    pub first_notice: Option<DateTime<Utc>>,
    pub last_notice: Option<DateTime<Utc>>,
    pub rows: Vec<Row>,
    pub totals: Row,
    pub monthly: Vec<Month>,
    pub methodology: Methodology,
    /// Per group key, the listed URLs (HTML only) and how many were left out.
    #[serde(skip)]
    pub urls: BTreeMap<String, (Vec<UrlLine>, u64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the store for the report")]
pub struct ReportError(#[from] pub StoreError);

/// The report of the notices in `inputs.period`, read from `store` one page
/// of URL states at a time: a state carries all the report reads of a URL.
pub async fn figures(store: &Store, inputs: &Inputs<'_>) -> Result<Report, ReportError> {
    let norms: Vec<String> = inputs.norms.iter().map(|n| n.to_string()).collect();
    let mut tally = figures::Tally::new(inputs.by);
    let mut urls: BTreeMap<String, (Vec<UrlLine>, u64)> = BTreeMap::new();
    let (mut first_notice, mut last_notice) = (None, None);
    let mut total_listed = 0;
    // The evidence of listed URLs is written on other tasks, a batch at a time.
    let explainer = Explainer {
        store: store.clone(),
        hosters: Arc::new(inputs.hosters.clone()),
        norms: Arc::new(inputs.norms.clone()),
    };
    let (mut to_explain, mut explaining) = (Vec::new(), Vec::new());
    // The next pages are read (and their JSON decoded) on other tasks while
    // this one computes the figures of the current page, in id order.
    let mut pages = pages(store.url_ids().await?);
    let mut reading: VecDeque<_> = pages
        .by_ref()
        .take(READ_AHEAD + 1)
        .map(|ids| read_page(store, ids))
        .collect();
    while let Some(next) = reading.pop_front() {
        let page = joined(next.await)?;
        if let Some(ids) = pages.next() {
            reading.push_back(read_page(store, ids));
        }
        for state in &page {
            let at = state.subject.notified_at;
            if !inputs.period.contains(at) {
                continue;
            }
            first_notice = Some(first_notice.map_or(at, |f: DateTime<Utc>| f.min(at)));
            last_notice = Some(last_notice.map_or(at, |l: DateTime<Utc>| l.max(at)));
            let facts = UrlFacts::of(state, inputs.hosters, inputs.norms);
            tally.add(&facts);
            if inputs.urls_per_group > 0 {
                let (listed, left_out) = urls.entry(inputs.by.key(&facts)).or_default();
                if listed.len() < inputs.urls_per_group && total_listed < MAX_LISTED_URLS {
                    total_listed += 1;
                    to_explain.push(state.clone());
                    if to_explain.len() == EXPLAIN_BATCH {
                        explaining.push(explainer.explain(std::mem::take(&mut to_explain)));
                    }
                    listed.push(UrlLine {
                        facts,
                        evidence: String::new(),
                    });
                } else {
                    *left_out += 1;
                }
            }
        }
    }
    if !to_explain.is_empty() {
        explaining.push(explainer.explain(to_explain));
    }
    let mut evidence = BTreeMap::new();
    for batch in explaining {
        evidence.extend(joined(batch.await)?);
    }
    for line in urls.values_mut().flat_map(|(listed, _)| listed) {
        line.evidence = evidence.remove(&line.facts.url_id).unwrap_or_default();
    }
    let (rows, totals, monthly) = tally.finish(&norms, &inputs.rank_by);
    Ok(Report {
        generated_at: Utc::now(),
        period: inputs.period,
        by: inputs.by,
        norms,
        rank_by: inputs.rank_by.to_string(),
        first_notice,
        last_notice,
        rows,
        totals,
        monthly,
        methodology: inputs.methodology.clone(),
        urls,
    })
}

/// The pages of `ids`, in order.
fn pages(ids: Option<RangeInclusive<UrlId>>) -> impl Iterator<Item = RangeInclusive<UrlId>> {
    ids.into_iter().flat_map(|ids| {
        let last = *ids.end();
        ids.step_by(PAGE as usize)
            .map(move |first| first..=first.saturating_add(PAGE - 1).min(last))
    })
}

/// Starts reading the page of URLs whose id is in `ids`.
fn read_page(
    store: &Store,
    ids: RangeInclusive<UrlId>,
) -> JoinHandle<Result<Vec<UrlState>, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.states_in(ids).await })
}

/// A task's result; its panic goes on in the caller.
fn joined<T>(result: Result<T, JoinError>) -> T {
    result.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// URLs whose evidence is written by one task.
const EXPLAIN_BATCH: usize = 500;

/// Writes the evidence of listed URLs. It lists every observation, so their
/// observations are read in full: a few thousand URLs at most, a batch per
/// query, while the pass over all URLs goes on.
struct Explainer {
    store: Store,
    hosters: Arc<HosterMap>,
    norms: Arc<Norms>,
}

impl Explainer {
    /// The evidence of each of `states` (in id order), by URL id.
    fn explain(
        &self,
        states: Vec<UrlState>,
    ) -> JoinHandle<Result<Vec<(UrlId, String)>, StoreError>> {
        let (store, hosters, norms) =
            (self.store.clone(), self.hosters.clone(), self.norms.clone());
        tokio::spawn(async move {
            let ids: Vec<UrlId> = states.iter().map(|s| s.subject.url_id).collect();
            let observations = store.observations_of(&ids).await?;
            let mut rest = observations.as_slice();
            Ok(states
                .iter()
                .map(|state| {
                    let id = state.subject.url_id;
                    let own = rest.iter().take_while(|o| o.url_id == id).count();
                    let (mine, after) = rest.split_at(own);
                    rest = after;
                    (id, explain(state, mine, &[], &hosters, &norms))
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_ids_once_in_order() {
        let all: Vec<_> = pages(Some(7..=2_006)).collect();
        assert_eq!(all, [7..=1_006, 1_007..=2_006]);
        let all: Vec<_> = pages(Some(1..=2_001)).collect();
        assert_eq!(all, [1..=1_000, 1_001..=2_000, 2_001..=2_001]);
        assert_eq!(pages(Some(5..=5)).collect::<Vec<_>>(), [5..=5]);
        assert_eq!(pages(None).count(), 0);
    }
}
