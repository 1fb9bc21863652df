//! The report's renderings: HTML (one self-contained file), CSV, JSON and a
//! plain-text table.

mod html;
mod svg;

pub use html::html;

use std::fmt::Write as _;

use crate::format::{duration, optional, percent};
use crate::{Report, Row};

/// The report as one JSON document (every figure; the columns of
/// docs/REPORT.md).
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report serializes")
}

/// The columns of the rows' CSV, for these norms.
pub fn csv_header(norms: &[String]) -> Vec<String> {
    let mut header: Vec<String> = [
        "key",
        "rank",
        "notices",
        "share",
        "already_offline",
        "removed",
        "removed_inconclusive_only",
    ]
    .map(str::to_owned)
    .to_vec();
    for norm in norms {
        for column in ["met", "missed", "undetermined", "share_met"] {
            header.push(format!("{column}_{norm}"));
        }
    }
    header.extend(
        [
            "median_s",
            "median_at_risk",
            "median_ci_low_s",
            "median_ci_high_s",
            "p90_s",
            "p90_at_risk",
            "p90_ci_low_s",
            "p90_ci_high_s",
            "still_online",
            "reappeared",
            "reappeared_share",
            "median_time_to_reappearance_s",
            "uptime",
            "distinct_addresses",
            "distinct_asns",
            "cdn_fronted",
            "hoster_changes",
        ]
        .map(str::to_owned),
    );
    header
}

/// One row per group, then the totals (key `total`, no rank).
pub fn csv(report: &Report) -> String {
    let mut out = csv_line(&csv_header(&report.norms));
    for row in report.rows.iter().chain([&report.totals]) {
        out.push_str(&csv_line(&csv_fields(row)));
    }
    out
}

/// The monthly trend: `month,notices,share_within_first_norm,median_s`.
pub fn monthly_csv(report: &Report) -> String {
    let mut out = String::from("month,notices,share_within_first_norm,median_s\n");
    for m in &report.monthly {
        out.push_str(&csv_line(&[
            m.month.clone(),
            m.notices.to_string(),
            number(m.share_within_first_norm),
            number(m.median_s),
        ]));
    }
    out
}

fn csv_fields(row: &Row) -> Vec<String> {
    let mut fields = vec![
        row.key.clone(),
        number(row.rank),
        row.notices.to_string(),
        row.share.to_string(),
        row.already_offline.to_string(),
        row.removed.to_string(),
        row.removed_inconclusive_only.to_string(),
    ];
    for norm in &row.norms {
        fields.extend([
            norm.met.to_string(),
            norm.missed.to_string(),
            norm.undetermined.to_string(),
            number(norm.share_met),
        ]);
    }
    for estimate in [&row.median, &row.p90] {
        fields.extend([
            number(estimate.seconds),
            number(estimate.at_risk),
            number(estimate.ci_low_s),
            number(estimate.ci_high_s),
        ]);
    }
    fields.extend([
        row.still_online.to_string(),
        row.reappeared.to_string(),
        number(row.reappeared_share),
        number(row.median_time_to_reappearance_s),
        number(row.uptime),
        row.distinct_addresses.to_string(),
        row.distinct_asns.to_string(),
        row.cdn_fronted.to_string(),
        row.hoster_changes.to_string(),
    ]);
    fields
}

/// An absent value is an empty field.
fn number(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// A table for a terminal: the ranking and the totals.
pub fn table(report: &Report) -> String {
    let first = report.norms.first().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4} {:<28} {:>7} {:>6} {:>8} {:>9} {:>7} {:>11} {:>10} {:>7} {:>8} {:>10}",
        "rank",
        report.by.as_str(),
        "notices",
        "share",
        "already",
        format!("in {first}"),
        "undet.",
        "median TTD",
        "p90 TTD",
        "online",
        "reapp.",
        "uptime"
    );
    for row in report.rows.iter().chain([&report.totals]) {
        let norm = row.norms.first();
        let _ = writeln!(
            out,
            "{:>4} {:<28} {:>7} {:>6} {:>8} {:>9} {:>7} {:>11} {:>10} {:>7} {:>8} {:>10}",
            optional(row.rank),
            truncate(&row.key, 28),
            row.notices,
            percent(Some(row.share)),
            row.already_offline,
            percent(norm.and_then(|n| n.share_met)),
            norm.map_or(0, |n| n.undetermined),
            row.median.seconds.map_or("-".to_owned(), duration),
            row.p90.seconds.map_or("-".to_owned(), duration),
            row.still_online,
            row.reappeared,
            percent(row.uptime),
        );
    }
    let _ = writeln!(
        out,
        "in {first}: share of decidable URLs removed within {first} and not back before it; \
         TTD: Kaplan-Meier time to takedown, URLs still online censored; ranked by {}",
        report.rank_by
    );
    out
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        text.chars().take(width - 1).collect::<String>() + "…"
    }
}
