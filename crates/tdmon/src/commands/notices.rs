//! `tdmon notices validate FILE`: parses a notice file as the dispatcher would
//! load it, and reports every line that would not load.
//!
//! The format comes from `--input-format`, else from the extension (`.csv`;
//! `.jsonl` or `.ndjson`); another extension without `--input-format` is a
//! usage error. The report goes to stdout: as text, a summary line
//! (`notices.csv: 97 accepted, 3 rejected, 1 duplicate`) and then one line per
//! rejected line, duplicate and warning, in line order; as JSON, one document
//! `{"file", "accepted", "rejected": [{"line", "field", "reason"}],
//! "duplicates": [{"line", "duplicate_of", "key"}], "warnings": [{"line",
//! "message"}], "error"}`, where `error` is null unless the header made the
//! whole file unreadable.
//!
//! Exit status: 0 when every line loads; 1 when a line was rejected, a line
//! duplicates an earlier one, or the header is unusable. Duplicates count: a
//! file that repeats a notice is not clean, even though loading it loses
//! nothing. Warnings (ignored columns or fields) alone do not. 2 for a usage
//! problem, 3 when the file cannot be read.
//!
//! The parsing and every rule live in `tdmon_core::notice`; this is IO and
//! formatting only.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use tdmon_core::notice::{self, Duplicate, LineError, NoticeFormat, NoticeLoad, Warning};

use crate::Exit;
use crate::cli::{InputFormat, NoticesCommand, ReportFormat, ValidateArgs};

pub(crate) fn run(command: NoticesCommand) -> anyhow::Result<Exit> {
    match command {
        NoticesCommand::Validate(args) => validate(&args),
    }
}

fn validate(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let Some(format) = input_format(args) else {
        eprintln!(
            "tdmon: cannot tell the format of {} from its extension (.csv, .jsonl or .ndjson); \
             pass --input-format csv or --input-format jsonl",
            args.file.display()
        );
        return Ok(Exit::Usage);
    };
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read notice file {}", args.file.display()))?;
    let result = notice::parse(format, &bytes);

    let file = args.file.display().to_string();
    let report = match &result {
        Ok(load) => Report::new(file, load),
        Err(error) => Report::unreadable(file, error.to_string()),
    };
    let output = match args.format {
        ReportFormat::Text => report.text(),
        ReportFormat::Json => {
            let mut json = serde_json::to_string_pretty(&report)?;
            json.push('\n');
            json
        }
    };
    print!("{output}");

    let clean = result.as_ref().is_ok_and(NoticeLoad::is_clean);
    Ok(if clean {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

fn input_format(args: &ValidateArgs) -> Option<NoticeFormat> {
    format_of(&args.file, args.input_format)
}

fn format_of(file: &Path, flag: Option<InputFormat>) -> Option<NoticeFormat> {
    match flag {
        Some(InputFormat::Csv) => Some(NoticeFormat::Csv),
        Some(InputFormat::Jsonl) => Some(NoticeFormat::Jsonl),
        None => file
            .extension()
            .and_then(|ext| ext.to_str())
            .and_then(NoticeFormat::from_extension),
    }
}

/// Loads a notice file for `tdmon notify` and `tdmon run`: every problem is
/// reported on stderr, as `validate` would print it, and the valid notices
/// are returned. An unusable file (format, header) is an error.
pub(crate) fn load_reporting(file: &Path, flag: Option<InputFormat>) -> anyhow::Result<NoticeLoad> {
    let format = format_of(file, flag).with_context(|| {
        format!(
            "cannot tell the format of {} from its extension (.csv, .jsonl or .ndjson); \
             pass --input-format csv or --input-format jsonl",
            file.display()
        )
    })?;
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read notice file {}", file.display()))?;
    let load =
        notice::parse(format, &bytes).with_context(|| format!("{}: not loaded", file.display()))?;
    if !load.is_clean() || !load.warnings.is_empty() {
        eprint!("{}", Report::new(file.display().to_string(), &load).text());
    }
    Ok(load)
}

/// The report, in the shape of the JSON output.
#[derive(Debug, Serialize)]
struct Report<'a> {
    file: String,
    accepted: usize,
    rejected: &'a [LineError],
    duplicates: &'a [Duplicate],
    warnings: &'a [Warning],
    /// Why the whole file could not be loaded.
    error: Option<String>,
}

impl<'a> Report<'a> {
    fn new(file: String, load: &'a NoticeLoad) -> Self {
        Report {
            file,
            accepted: load.accepted.len(),
            rejected: &load.rejected,
            duplicates: &load.duplicates,
            warnings: &load.warnings,
            error: None,
        }
    }

    fn unreadable(file: String, error: String) -> Self {
        Report {
            file,
            accepted: 0,
            rejected: &[],
            duplicates: &[],
            warnings: &[],
            error: Some(error),
        }
    }

    fn text(&self) -> String {
        if let Some(error) = &self.error {
            return format!("{}: not loaded: {error}\n", self.file);
        }
        let mut out = format!(
            "{}: {} accepted, {} rejected, {}",
            self.file,
            self.accepted,
            self.rejected.len(),
            plural(self.duplicates.len(), "duplicate")
        );
        if !self.warnings.is_empty() {
            let _ = write!(out, ", {}", plural(self.warnings.len(), "warning"));
        }
        out.push('\n');

        let mut lines: Vec<(u64, String)> = self
            .rejected
            .iter()
            .map(|e| (e.line, e.to_string()))
            .chain(self.duplicates.iter().map(|d| (d.line, d.to_string())))
            .chain(
                self.warnings
                    .iter()
                    .map(|w| (w.line, format!("line {}: warning: {}", w.line, w.message))),
            )
            .collect();
        // Stable: on one line, a warning (about the header or a field name)
        // comes after the line's own verdict.
        lines.sort_by_key(|(line, _)| *line);
        for (_, line) in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
