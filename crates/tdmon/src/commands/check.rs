//! `tdmon check [URL ...] [--input FILE] [--format jsonl|table]`: checks each
//! URL once, with the worker's pipeline and limits, and prints one observation
//! per URL: JSON Lines (the message format, default) or a table, in input
//! order. The worker settings and verdict overrides come from the layered
//! configuration (`--config FILE`, `TDMON_*`, `--set`), its `[worker]` and
//! `[verdicts]` tables.
//!
//! Input: URLs from the arguments, then from `--input FILE` (`-` for standard
//! input), one per line; blank lines and lines whose first non-blank character
//! is `#` are skipped. Each URL is normalised (`tdmon_core::url`); one that is
//! not valid gets an error line on stderr naming it (and its line), and the
//! rest are checked. A URL given twice is checked once.
//!
//! The worker's limits hold: many URLs of one host are checked at its polite
//! rate, each waiting for its turn without losing any of its own timeout. On
//! a terminal, a progress line on stderr shows the URLs checked, the verdicts
//! so far and an estimate of the time left; a summary line on stderr ends
//! every run (checked, by verdict, not checked, elapsed).
//!
//! A check whose limits would hold it more than [`JOB_LIFETIME`] (a host's
//! long `Retry-After`, a long queue for one address) is reported `not_checked`
//! rather than waited for.
//!
//! Exit codes:
//! - 0: every URL was checked (whatever the verdicts);
//! - 1: some input was rejected (reported on stderr); the rest was checked;
//! - 2: usage error (no URL given, unreadable input file);
//! - 3: runtime failure (the checker could not be built, stdout failed).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use tdmon_core::message::SchemaV1;
use tdmon_core::url::{NormalizedUrl, mask_url};
use tdmon_core::{CheckJob, Observation, Outcome, Purpose, Verdict, VerdictMap};
use tdmon_worker::{Checker, WorkerSettings};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Exit;
use crate::cli::{CheckArgs, CheckFormat};

/// How long a check may wait for its limits before it is given up.
pub(crate) const JOB_LIFETIME: Duration = Duration::from_secs(600);

/// One line of input, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub(crate) origin: String,
    pub(crate) text: String,
    /// False when the line was not UTF-8 (`text` is then a lossy copy).
    pub(crate) utf8: bool,
}

pub(crate) fn run(
    args: CheckArgs,
    worker: WorkerSettings,
    verdicts: VerdictMap,
) -> anyhow::Result<Exit> {
    let inputs = match gather("tdmon check", "URL", &args.urls, args.input.as_deref()) {
        Ok(inputs) => inputs,
        Err(exit) => return Ok(exit),
    };

    let (urls, rejected) = normalise(&inputs);
    for (input, error) in &rejected {
        eprintln!(
            "tdmon check: {}: {:?}: {error}",
            input.origin,
            mask_url(&input.text)
        );
    }
    let concurrency = args
        .concurrency
        .map_or_else(|| worker.max_in_flight(), |n| n.get());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(check_all(urls, worker, verdicts, concurrency, args.format))?;
    Ok(if rejected.is_empty() {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

/// The inputs of a command that takes values (`what`: "URL", "address") as
/// arguments and, one per line, from `--input FILE`; or, after saying what
/// is wrong, the usage exit status (no value at all, an unreadable file).
pub(crate) fn gather(
    command: &str,
    what: &str,
    arguments: &[String],
    file: Option<&Path>,
) -> Result<Vec<Input>, Exit> {
    let mut inputs: Vec<Input> = arguments
        .iter()
        .enumerate()
        .map(|(i, text)| Input {
            origin: format!("argument {}", i + 1),
            text: text.clone(),
            utf8: true,
        })
        .collect();
    if let Some(path) = file {
        match read_input(path) {
            Ok(lines) => inputs.extend(lines),
            Err(e) => {
                eprintln!("{command}: {e:#}");
                return Err(Exit::Usage);
            }
        }
    }
    if inputs.is_empty() {
        eprintln!("{command}: no {what} given (pass them as arguments or --input FILE)");
        return Err(Exit::Usage);
    }
    Ok(inputs)
}

/// Reads the lines of a file (or standard input for `-`), skipping blank
/// lines and `#` comments.
fn read_input(path: &Path) -> anyhow::Result<Vec<Input>> {
    let name = path.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot read {name}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut inputs = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        let text = String::from_utf8_lossy(&line);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        inputs.push(Input {
            origin: format!("{name}:{}", i + 1),
            text: trimmed.to_owned(),
            utf8: std::str::from_utf8(&line).is_ok(),
        });
    }
    Ok(inputs)
}

/// The valid, distinct URLs in input order, and the rejected inputs with why.
fn normalise(inputs: &[Input]) -> (Vec<NormalizedUrl>, Vec<(Input, String)>) {
    let mut seen = HashSet::new();
    let mut urls = Vec::new();
    let mut rejected = Vec::new();
    for input in inputs {
        if !input.utf8 {
            rejected.push((input.clone(), "not valid UTF-8".to_owned()));
            continue;
        }
        match NormalizedUrl::parse(&input.text) {
            Ok(url) => {
                if seen.insert(url.as_str().to_owned()) {
                    urls.push(url);
                }
            }
            Err(e) => rejected.push((input.clone(), e.to_string())),
        }
    }
    (urls, rejected)
}

/// What the checks of one run found: verdicts of the URLs checked, and the
/// URLs not checked (their limits outlasted the job).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    online: usize,
    offline: usize,
    inconclusive: usize,
    not_checked: usize,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, verdict: Verdict) {
        let count = match (outcome, verdict) {
            (Outcome::NotChecked, _) => &mut self.not_checked,
            (_, Verdict::Online) => &mut self.online,
            (_, Verdict::Offline) => &mut self.offline,
            (_, Verdict::Inconclusive) => &mut self.inconclusive,
        };
        *count += 1;
    }

    fn checked(&self) -> usize {
        self.online + self.offline + self.inconclusive
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} online, {} offline, {} inconclusive",
            self.online, self.offline, self.inconclusive
        )?;
        if self.not_checked > 0 {
            write!(f, "; {} not checked", self.not_checked)?;
        }
        Ok(())
    }
}

/// The last line of every run, on stderr.
fn summary(tally: &Tally, elapsed: Duration) -> String {
    format!(
        "tdmon check: {} checked in {}: {tally}",
        tally.checked(),
        clock_time(elapsed)
    )
}

/// "4.2s" under a minute, else "1h02m05s" or "2m05s".
fn clock_time(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, _) => format!("{:.1}s", elapsed.as_secs_f64()),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// A progress line on stderr when it is a terminal: URLs checked, the
/// verdicts so far, the time taken and the time left at the recent rate.
fn progress_line(urls: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(urls as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} ({msg}) {elapsed}, ETA {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Checks every URL, at most `concurrency` at once, and prints the
/// observations in input order (holding at most `concurrency` back).
async fn check_all(
    urls: Vec<NormalizedUrl>,
    worker: WorkerSettings,
    verdicts: VerdictMap,
    concurrency: usize,
    format: CheckFormat,
) -> anyhow::Result<()> {
    let checker = Checker::new(worker, verdicts).context("cannot set up the checker")?;
    let started = Instant::now();
    let progress = progress_line(urls.len());
    let mut tally = Tally::default();

    let stdout = std::io::stdout();
    let mut table = Vec::new();
    let mut tasks = JoinSet::new();
    let mut done: BTreeMap<usize, Observation> = BTreeMap::new();
    let (mut next_start, mut next_print) = (0, 0);
    while next_print < urls.len() {
        while next_start < urls.len() && next_start < next_print + concurrency {
            let job = job(&urls[next_start], next_start);
            let checker = checker.clone();
            let index = next_start;
            tasks.spawn(async move { (index, checker.check(&job).await) });
            next_start += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (index, observation) = joined.context("a check panicked")?;
        tally.add(observation.outcome, observation.verdict);
        progress.set_message(tally.to_string());
        progress.inc(1);
        done.insert(index, observation);
        while let Some(observation) = done.remove(&next_print) {
            match format {
                CheckFormat::Jsonl => {
                    let line = serde_json::to_string(&observation)?;
                    progress
                        .suspend(|| writeln!(stdout.lock(), "{line}"))
                        .context("cannot write to standard output")?;
                }
                CheckFormat::Table => table.push(observation),
            }
            next_print += 1;
        }
    }
    progress.finish_and_clear();
    if format == CheckFormat::Table {
        write_table(&mut stdout.lock(), &table).context("cannot write to standard output")?;
    }
    stdout
        .lock()
        .flush()
        .context("cannot write to standard output")?;
    eprintln!("{}", summary(&tally, started.elapsed()));
    Ok(())
}

fn job(url: &NormalizedUrl, index: usize) -> CheckJob {
    let now = Utc::now();
    CheckJob {
        schema: SchemaV1,
        job_id: Uuid::now_v7(),
        url_id: i64::try_from(index + 1).unwrap_or(i64::MAX),
        url: url.as_str().to_owned(),
        purpose: Purpose::Baseline,
        due_at: now,
        expires_at: now + JOB_LIFETIME,
        baseline: None,
    }
}

/// One row per observation: verdict, outcome, status, address, ASN, hoster,
/// duration and URL, in aligned columns.
fn write_table(out: &mut impl Write, observations: &[Observation]) -> std::io::Result<()> {
    let header = [
        "VERDICT", "OUTCOME", "STATUS", "IP", "ASN", "HOSTER", "MS", "URL",
    ];
    let rows: Vec<[String; 8]> = observations
        .iter()
        .map(|o| {
            let dash = || "-".to_owned();
            [
                o.verdict.to_string(),
                o.outcome.to_string(),
                o.http.as_ref().map_or_else(dash, |h| h.status.to_string()),
                o.ip.map_or_else(dash, |ip| ip.to_string()),
                o.asn.map_or_else(dash, |asn| format!("AS{asn}")),
                match (&o.hoster, o.cdn) {
                    (Some(h), true) => format!("{h} (CDN)"),
                    (Some(h), false) => h.clone(),
                    (None, _) => dash(),
                },
                o.duration_ms.to_string(),
                o.url.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    (*cell).to_owned()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Input {
        Input {
            origin: "test".into(),
            text: text.into(),
            utf8: true,
        }
    }

    #[test]
    fn invalid_and_duplicate_urls_are_sorted_out() {
        let inputs = [
            input("http://a.example/x"),
            input("ftp://a.example/x"),
            input("HTTP://A.example:80/x"),
            input("not a url"),
            input("https://b.example/"),
        ];
        let (urls, rejected) = normalise(&inputs);
        let urls: Vec<&str> = urls.iter().map(NormalizedUrl::as_str).collect();
        assert_eq!(urls, ["http://a.example/x", "https://b.example/"]);
        let bad: Vec<&str> = rejected.iter().map(|(i, _)| i.text.as_str()).collect();
        assert_eq!(bad, ["ftp://a.example/x", "not a url"]);
    }

    #[test]
    fn the_summary_counts_verdicts_and_what_was_not_checked() {
        let mut tally = Tally::default();
        for (outcome, verdict) in [
            (Outcome::Served, Verdict::Online),
            (Outcome::Served, Verdict::Online),
            (Outcome::HttpNotFound, Verdict::Offline),
            (Outcome::Timeout, Verdict::Inconclusive),
            (Outcome::NotChecked, Verdict::Inconclusive),
        ] {
            tally.add(outcome, verdict);
        }
        assert_eq!(
            summary(&tally, Duration::from_millis(4_250)),
            "tdmon check: 4 checked in 4.2s: 2 online, 1 offline, 1 inconclusive; 1 not checked"
        );
        let clean = Tally {
            online: 2000,
            ..Tally::default()
        };
        assert_eq!(
            summary(&clean, Duration::from_secs(2_005)),
            "tdmon check: 2000 checked in 33m25s: 2000 online, 0 offline, 0 inconclusive"
        );
        assert_eq!(clock_time(Duration::from_secs(3_725)), "1h02m05s");
    }

    #[test]
    fn input_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("urls.txt");
        std::fs::write(
            &path,
            "# notices\n\nhttp://a.example/x\n  # indented comment\n  http://b.example/y  \n",
        )
        .unwrap();
        let inputs = read_input(&path).unwrap();
        let seen: Vec<(String, String)> = inputs
            .into_iter()
            .map(|i| (i.origin.rsplit(':').next().unwrap().to_owned(), i.text))
            .collect();
        assert_eq!(
            seen,
            [
                ("3".to_owned(), "http://a.example/x".to_owned()),
                ("5".to_owned(), "http://b.example/y".to_owned())
            ]
        );
        assert!(read_input(&dir.path().join("missing.txt")).is_err());
    }
}
