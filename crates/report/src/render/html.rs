//! The HTML report: one self-contained file (inline CSS and SVG, no script,
//! no external asset; a Content-Security-Policy forbids loading anything),
//! laid out to print on A4.

use std::fmt::Write as _;

use super::svg::{compliance_chart, escape, survival_chart, trend_chart};
use crate::Report;
use crate::figures::Row;
use crate::format::{duration, optional, percent};

/// Curves drawn in the Kaplan-Meier chart besides the overall one.
const TOP_CURVES: usize = 6;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1300px;color:#111;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}
#ranking td{white-space:nowrap}#ranking table{font-size:11.5px}.wide{overflow-x:auto}
th,td{border:1px solid #ccc;padding:2px 4px;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.k,th.k{text-align:left}
.chart{width:100%;max-width:760px;height:auto;display:block;margin:.5em 0}
.summary{display:flex;flex-wrap:wrap;gap:1em}.summary div{border:1px solid #ccc;padding:.5em 1em;min-width:9em}
.summary b{display:block;font-size:1.4em}
.note{color:#555;font-size:12px}
pre{font-size:11px;background:#f7f7f7;padding:.5em;overflow-x:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:0 1em}dt{font-weight:600}dd{margin:0}
@page{size:A4 landscape;margin:12mm}
@media print{body{font-size:10px}#ranking table{font-size:8px}body{margin:0;max-width:none}section,table,svg{break-inside:avoid}details{display:none}a{color:inherit;text-decoration:none}}
";

pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let title = format!("Takedown report per {}", report.by.as_str());
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>{title}</h1><p class=\"note\">Notices {}; generated {} by tdmon {}.</p>",
        period_text(report),
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        escape(&report.methodology.version)
    );
    summary(&mut out, report);
    ranking(&mut out, report);
    charts(&mut out, report);
    groups(&mut out, report);
    methodology(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

fn period_text(report: &Report) -> String {
    let day = |d: Option<chrono::DateTime<chrono::Utc>>| {
        d.map_or("…".to_owned(), |d| d.format("%Y-%m-%d %H:%M").to_string())
    };
    format!(
        "from {} to {} (requested: {} to {}, end excluded)",
        day(report.first_notice),
        day(report.last_notice),
        day(report.period.from),
        day(report.period.to)
    )
}

fn summary(out: &mut String, report: &Report) {
    let t = &report.totals;
    let first = t.norms.first();
    let cards = [
        ("notices", t.notices.to_string()),
        (
            "already offline at the first check",
            t.already_offline.to_string(),
        ),
        (
            &*format!(
                "removed within {}",
                first.map_or(String::new(), |n| n.norm.clone())
            ),
            percent(first.and_then(|n| n.share_met)),
        ),
        (
            "median time to takedown",
            t.median.seconds.map_or("-".to_owned(), duration),
        ),
        ("still online", t.still_online.to_string()),
        ("reappeared", t.reappeared.to_string()),
    ]
    .map(|(label, value)| format!("<div><b>{value}</b>{}</div>", escape(label)));
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Summary</h2><div class=\"summary\">{}</div>\
         <p>{} {}s are ranked; {} URLs were CDN-fronted (flagged, not blamed on the CDN).</p></section>",
        cards.join(""),
        report.rows.iter().filter(|r| r.rank.is_some()).count(),
        report.by.as_str(),
        t.cdn_fronted
    );
}

fn ranking(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section id=\"ranking\"><h2>Ranking</h2><p class=\"note\">Ordered by {} (worst first), \
         then by notices. <i>Within</i> a norm: the share met of the URLs the checks can \
         decide, then (met/missed/undetermined); undetermined URLs are counted apart. Times \
         are Kaplan-Meier estimates from the notice: the time, (the number at risk), and \
         [its 95% confidence interval].</p><div class=\"wide\"><table><thead><tr><th>#</th><th class=\"k\">{}</th>\
         <th>notices</th><th>share</th><th>already offline</th>",
        escape(&report.rank_by),
        report.by.as_str()
    );
    for norm in &report.norms {
        let _ = write!(out, "<th>within {}</th>", escape(norm));
    }
    out.push_str(
        "<th>median</th><th>p90</th><th>still online</th>\
         <th>reappeared<br>(share, median)</th><th>uptime</th><th>addresses / ASNs</th>\
         <th>CDN-<br>fronted</th><th>hoster<br>changes</th></tr></thead><tbody>",
    );
    for (i, row) in report.rows.iter().enumerate() {
        row_cells(out, row, Some(&format!("g{i}")));
    }
    row_cells(out, &report.totals, None);
    out.push_str("</tbody></table></div></section>");
}

fn row_cells(out: &mut String, row: &Row, link: Option<&str>) {
    let name = match link {
        Some(id) => format!("<a href=\"#{id}\">{}</a>", escape(&row.key)),
        None => format!("<b>{}</b>", escape(&row.key)),
    };
    let _ = write!(
        out,
        "<tr><td>{}</td><td class=\"k\">{name}</td><td>{}</td><td>{}</td><td>{}</td>",
        optional(row.rank),
        row.notices,
        percent(Some(row.share)),
        row.already_offline
    );
    for norm in &row.norms {
        let _ = write!(
            out,
            "<td>{} ({}/{}/{})</td>",
            percent(norm.share_met),
            norm.met,
            norm.missed,
            norm.undetermined
        );
    }
    let estimate = |e: &crate::km::TimeEstimate| match e.seconds {
        Some(s) => format!(
            "{} ({})<br>[{}, {}]",
            duration(s),
            optional(e.at_risk),
            e.ci_low_s.map_or("-".to_owned(), duration),
            e.ci_high_s.map_or("open".to_owned(), duration)
        ),
        None => "not reached".to_owned(),
    };
    let _ = write!(
        out,
        "<td>{}</td><td>{}</td><td>{}</td><td>{} ({}, {})</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>",
        estimate(&row.median),
        estimate(&row.p90),
        row.still_online,
        row.reappeared,
        percent(row.reappeared_share),
        row.median_time_to_reappearance_s
            .map_or("-".to_owned(), duration),
        percent(row.uptime),
        row.distinct_addresses,
        row.distinct_asns,
        row.cdn_fronted,
        row.hoster_changes
    );
}

fn charts(out: &mut String, report: &Report) {
    let mut series: Vec<(&str, &crate::figures::Curve)> =
        vec![("all notices", &report.totals.curve)];
    let mut by_size: Vec<&Row> = report.rows.iter().collect();
    by_size.sort_by(|a, b| b.notices.cmp(&a.notices).then_with(|| a.key.cmp(&b.key)));
    series.extend(
        by_size
            .iter()
            .take(TOP_CURVES)
            .map(|r| (r.key.as_str(), &r.curve)),
    );
    let first = report.norms.first().cloned().unwrap_or_default();
    let bars: Vec<(&str, &crate::figures::NormFigure)> = report
        .rows
        .iter()
        .chain([&report.totals])
        .filter_map(|r| r.norms.first().map(|n| (r.key.as_str(), n)))
        .collect();
    let _ = write!(
        out,
        "<section id=\"survival\"><h2>Time to takedown</h2><p class=\"note\">Kaplan-Meier \
         estimate of the share still online after the notice, overall and for the {} largest \
         groups. A tick marks a URL still online when last checked (censored): it counts as \
         at risk until then and never as removed. URLs already offline at their first check are \
         left out.</p>{}</section>\
         <section id=\"compliance\"><h2>Norm compliance ({})</h2><p class=\"note\">Per group, the \
         monitored URLs that met the {} norm (offline at the deadline), missed it (served at the \
         deadline), or are undetermined (the checks cannot tell).</p>{}</section>\
         <section id=\"trend\"><h2>Monthly trend</h2>{}<table><tr><th class=\"k\">month</th>\
         <th>notices</th><th>within {}</th><th>median time to takedown</th></tr>",
        TOP_CURVES,
        survival_chart(&series),
        escape(&first),
        escape(&first),
        compliance_chart(&bars),
        trend_chart(&report.monthly),
        escape(&first)
    );
    for m in &report.monthly {
        let _ = write!(
            out,
            "<tr><td class=\"k\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&m.month),
            m.notices,
            percent(m.share_within_first_norm),
            m.median_s.map_or("-".to_owned(), duration)
        );
    }
    out.push_str("</table></section>");
}

fn groups(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section id=\"groups\"><h2>Per {}</h2>",
        report.by.as_str()
    );
    for (i, row) in report.rows.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"g{i}\"><h3>{}{}</h3><p>{} notices, {} already offline, {} removed \
             ({} by inconclusive checks alone), {} still online, {} reappeared.</p>",
            row.rank.map(|r| format!("#{r} ")).unwrap_or_default(),
            escape(&row.key),
            row.notices,
            row.already_offline,
            row.removed,
            row.removed_inconclusive_only,
            row.still_online,
            row.reappeared
        );
        let Some((urls, left_out)) = report
            .urls
            .get(&row.key)
            .filter(|(urls, _)| !urls.is_empty())
        else {
            out.push_str("</section>");
            continue;
        };
        out.push_str("<table><tr><th class=\"k\">URL</th><th class=\"k\">notice</th>");
        for norm in &report.norms {
            let _ = write!(out, "<th>{}</th>", escape(norm));
        }
        out.push_str(
            "<th>time to takedown</th><th>reappeared</th><th class=\"k\">evidence</th></tr>",
        );
        for line in urls {
            let f = &line.facts;
            let _ = write!(
                out,
                "<tr><td class=\"k\">{}</td><td class=\"k\">{}</td>",
                escape(&f.url),
                escape(f.notice_id.as_deref().unwrap_or("-"))
            );
            for result in &f.norms {
                let text = if f.already_offline {
                    "apart"
                } else {
                    match result {
                        tdmon_core::norm::NormResult::Met => "met",
                        tdmon_core::norm::NormResult::Missed => "missed",
                        tdmon_core::norm::NormResult::Undetermined => "undetermined",
                    }
                };
                let _ = write!(out, "<td>{text}</td>");
            }
            let ttd = match f.survival {
                Some(s) if s.removed => duration(tdmon_core::state::seconds(s.time)),
                Some(s) => format!(
                    "online at {} (censored)",
                    duration(tdmon_core::state::seconds(s.time))
                ),
                None if f.already_offline => "already offline".to_owned(),
                None => "-".to_owned(),
            };
            let _ = write!(
                out,
                "<td>{ttd}</td><td>{}</td><td class=\"k\"><a href=\"#u{}\">evidence</a></td></tr>",
                f.reappearances, f.url_id
            );
        }
        out.push_str("</table>");
        if *left_out > 0 {
            let _ = write!(
                out,
                "<p class=\"note\">{left_out} more URLs are not listed; `tdmon explain URL` shows any of them.</p>"
            );
        }
        for line in urls {
            let _ = write!(
                out,
                "<details id=\"u{}\"><summary>evidence of {} (also: <code>tdmon explain {}</code>)</summary><pre>{}</pre></details>",
                line.facts.url_id,
                escape(&line.facts.url),
                line.facts.url_id,
                escape(&line.evidence)
            );
        }
        out.push_str("</section>");
    }
    out.push_str("</section>");
}

fn methodology(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section id=\"methodology\"><h2>Methodology</h2><p>Every listed URL was checked on \
         the schedule below from its notice time. A check's outcome maps to a verdict (online, \
         offline, inconclusive); a takedown is confirmed by the confirmation rule and dated by \
         its bracket, from the start of the last check that saw the content to the answer of \
         the first that proved it gone. A URL meets a norm only when it was offline at the \
         deadline: taken down within it and not back before it; when the brackets cannot \
         decide, it is undetermined and counted apart, never guessed. Times to takedown are \
         Kaplan-Meier estimates: URLs still online when last checked are censored. Confidence \
         intervals are Brookmeyer-Crowley intervals from Greenwood's variance on the log-log \
         scale. URLs already offline at their first check are counted apart. The hoster of a \
         URL is the one that served its first online check, mapped now by the merges and \
         overrides below, so a corrected mapping re-ranks all history. URLs behind a CDN or \
         reverse proxy are flagged and not blamed on it. Uptime is online time over the time \
         between the first and the latest check.</p><p>Period: {}. tdmon {}.</p>",
        period_text(report),
        escape(&report.methodology.version)
    );
    for (section, settings) in &report.methodology.sections {
        let _ = write!(out, "<h3>{}</h3><dl>", escape(section));
        for (key, value) in settings {
            let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(key), escape(value));
        }
        out.push_str("</dl>");
    }
    out.push_str("</section>");
}
