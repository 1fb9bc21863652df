//! `tdmon report` and `tdmon explain`: the ranking report from the store,
//! and the evidence behind one URL's figures (crates/report does the work).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tdmon_core::outcome::Outcome;
use tdmon_core::state::UrlState;
use tdmon_core::url::mask_url;
use tdmon_report::{GroupBy, Inputs, Methodology, Period, RankKey, Report};
use tdmon_store::Store;
use toml::Value;

use crate::cli::{ExplainArgs, ReportArgs, ReportBy, ReportOutput};
use crate::config::Config;
use crate::{Exit, UsageError};

pub(crate) fn run(args: ReportArgs, config: &Config) -> anyhow::Result<Exit> {
    let period = Period {
        from: args.from.as_deref().map(|d| time(d, false)).transpose()?,
        to: args.to.as_deref().map(|d| time(d, true)).transpose()?,
    };
    let rank_by: RankKey = args.rank_by.parse().map_err(UsageError)?;
    if let RankKey::NotWithin(norm) = rank_by
        && norm >= config.measurement.norms.iter().count()
    {
        return Err(
            UsageError(format!("--rank-by {}: there is no such norm", args.rank_by)).into(),
        );
    }
    let by = match args.by {
        ReportBy::Hoster => GroupBy::Hoster,
        ReportBy::Asn => GroupBy::Asn,
        ReportBy::Domain => GroupBy::Domain,
    };
    let url = store_url(args.db.as_deref(), config);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let store = super::run::open(&url, config).await?;
        let inputs = Inputs {
            hosters: config.worker.hoster_map(),
            norms: &config.measurement.norms,
            period,
            by,
            rank_by,
            urls_per_group: if args.format == ReportOutput::Html {
                args.urls_per_group
            } else {
                0
            },
            methodology: methodology(config, &store),
        };
        let report = tdmon_report::figures(&store, &inputs).await;
        store.close().await;
        anyhow::Ok(report?)
    })?;
    match &args.out {
        Some(dir) => {
            for path in write(&report, args.format, dir)? {
                println!("{}", path.display());
            }
        }
        None => print!("{}", render(&report, args.format)),
    }
    Ok(Exit::Success)
}

/// Writes the report into `dir` in `format`; returns the files written.
pub(crate) fn write(
    report: &Report,
    format: ReportOutput,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = vec![(
        dir.join(match format {
            ReportOutput::Html => "report.html",
            ReportOutput::Csv => "report.csv",
            ReportOutput::Json => "report.json",
            ReportOutput::Table => "report.txt",
        }),
        render(report, format),
    )];
    if format == ReportOutput::Csv {
        files.push((
            dir.join("monthly.csv"),
            tdmon_report::render::monthly_csv(report),
        ));
    }
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

fn render(report: &Report, format: ReportOutput) -> String {
    use tdmon_report::render;
    match format {
        ReportOutput::Html => render::html(report),
        ReportOutput::Csv => render::csv(report),
        ReportOutput::Json => render::json(report) + "\n",
        ReportOutput::Table => render::table(report),
    }
}

pub(crate) fn explain(args: ExplainArgs, config: &Config) -> anyhow::Result<Exit> {
    let url = store_url(args.db.as_deref(), config);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = super::run::open(&url, config).await?;
        let found = find(&store, &args.target).await;
        let mut texts = Vec::new();
        for state in found.as_deref().unwrap_or_default() {
            let id = state.subject.url_id;
            let observations = store.observations(id).await?;
            let events = store.events(id).await?;
            texts.push(tdmon_report::explain(
                state,
                &observations,
                &events,
                config.worker.hoster_map(),
                &config.measurement.norms,
            ));
        }
        store.close().await;
        if found?.is_empty() {
            return Err(UsageError(format!(
                "no monitored URL, notice id or URL id {:?} in {}",
                mask_url(&args.target),
                store.url()
            ))
            .into());
        }
        print!("{}", texts.join("\n"));
        Ok(Exit::Success)
    })
}

/// The states whose URL id, notice id or URL is `target`, read page by page.
async fn find(store: &Store, target: &str) -> anyhow::Result<Vec<UrlState>> {
    if let Ok(id) = target.parse::<i64>() {
        let states = store.states(&[id]).await?;
        if !states.is_empty() {
            return Ok(states);
        }
    }
    let normalised = tdmon_core::url::NormalizedUrl::parse(target)
        .ok()
        .map(String::from);
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = store.states_after(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = Some(last.subject.url_id);
        let full = page.len() == 1000;
        found.extend(page.into_iter().filter(|s| {
            s.subject.notice_id.as_deref() == Some(target)
                || s.subject.url == target
                || normalised.as_deref() == Some(s.subject.url.as_str())
        }));
        if !full {
            return Ok(found);
        }
    }
}

fn store_url(db: Option<&Path>, config: &Config) -> String {
    match db {
        Some(path) => format!("sqlite://{}", path.display()),
        None => config.store.url.clone(),
    }
}

/// `YYYY-MM-DD` (midnight UTC; for the end of a period, the next midnight, so
/// that the day is included) or an RFC 3339 time.
fn time(text: &str, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(if end {
            midnight + TimeDelta::days(1)
        } else {
            midnight
        });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            UsageError(format!(
                "{text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
            .into()
        })
}

/// The methodology section: the settings in force that the figures depend on.
pub(crate) fn methodology(config: &Config, store: &Store) -> Methodology {
    let mut sections = Vec::new();
    for (name, key) in [
        ("Schedule (offsets from the notice time)", "schedule"),
        ("Confirmation of a takedown", "confirmation"),
    ] {
        if let Some(Value::Table(table)) = config.effective.get(key) {
            sections.push((
                name.to_owned(),
                table
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect(),
            ));
        }
    }
    sections.push((
        "Norms".to_owned(),
        config
            .measurement
            .norms
            .iter()
            .map(|n| (n.to_string(), "offline at the deadline".to_owned()))
            .collect(),
    ));
    let overridden = config.effective.get("verdicts").and_then(Value::as_table);
    sections.push((
        "Verdict mapping (outcome: verdict)".to_owned(),
        Outcome::ALL
            .iter()
            .map(|o| {
                let configured = overridden.is_some_and(|t| t.contains_key(o.as_str()));
                (
                    o.as_str().to_owned(),
                    format!(
                        "{}{}",
                        config.measurement.verdicts.verdict(*o).as_str(),
                        if configured { " (configured)" } else { "" }
                    ),
                )
            })
            .collect(),
    ));
    let hosters = config.worker.hoster_map();
    let mut attribution = vec![(
        "ASN database".to_owned(),
        config.worker.asn_db().map_or_else(
            || "none (only the CIDR overrides attribute)".to_owned(),
            asn_db_text,
        ),
    )];
    for (hoster, asns) in hosters.merges() {
        let list: Vec<String> = asns.iter().map(|a| format!("AS{a}")).collect();
        attribution.push((format!("merge: {hoster}"), list.join(", ")));
    }
    for (net, hoster) in hosters.overrides() {
        attribution.push((format!("override: {net}"), hoster.clone()));
    }
    let cdns: Vec<String> = hosters.cdn_asns().map(|a| format!("AS{a}")).collect();
    attribution.push((
        "CDN and reverse-proxy ASNs (flagged, not blamed)".to_owned(),
        cdns.join(", "),
    ));
    sections.push((
        "Attribution (applied when the report is made)".to_owned(),
        attribution,
    ));
    sections.push((
        "Source".to_owned(),
        vec![("store".to_owned(), store.url().to_owned())],
    ));
    Methodology {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sections,
    }
}

fn asn_db_text(path: &Path) -> String {
    match tdmon_worker::attribute::AsnDb::open(path) {
        Ok(db) => format!(
            "{} ({}, layout {}, built {})",
            path.display(),
            db.database_type(),
            db.layout().name,
            DateTime::from_timestamp(i64::try_from(db.build_epoch()).unwrap_or(0), 0)
                .map_or("?".to_owned(), |t| t.format("%Y-%m-%d").to_string())
        ),
        Err(e) => format!("{} (cannot be read now: {e})", path.display()),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
