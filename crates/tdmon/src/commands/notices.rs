//! Notice files: `tdmon notices validate FILE`, and the reading that `tdmon
//! notify` and `tdmon run --notices` share with it.
//!
//! The format comes from `--input-format`, else from the extension (`.csv`;
//! `.jsonl` or `.ndjson`); another extension without `--input-format` is a
//! usage error. The file is read one line at a time ([`NoticeFile`]), so any
//! size is read in bounded memory: only duplicate detection grows with the
//! file, by about 24 bytes per notice (see `tdmon_core::notice`).
//!
//! `validate` reports to stdout. As text, one line per rejected line,
//! duplicate and warning, in line order, as they are found, then a summary
//! line (`notices.csv: 97 accepted, 3 rejected, 1 duplicate`). As JSON, one
//! document `{"file", "accepted", "rejected": [{"line", "field", "reason"}],
//! "duplicates": [{"line", "duplicate_of", "key"}], "warnings": [{"line",
//! "message"}], "error"}`, where `error` is null unless the header made the
//! whole file unreadable; it holds every problem until the end.
//!
//! Exit status (the mapping every command shares, see `main.rs`): 0 when
//! every line loads; 1 when a line was rejected, a line duplicates an earlier
//! one, or the header is unusable. Duplicates count: a file that repeats a
//! notice is not clean, even though loading it loses nothing. Warnings
//! (ignored columns or fields) alone do not. 2 when the format is unknown or
//! the file cannot be opened, 3 when reading it fails midway.
//!
//! The parsing and every rule live in `tdmon_core::notice`; this is IO and
//! formatting only.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tdmon_core::notice::{
    Duplicate, Entry, LineError, MAX_LINE_LEN, NoticeFileError, NoticeFormat, NoticeParser,
    NoticeRules, Warning,
};

use crate::cli::{InputFormat, NoticesCommand, ReportFormat, ValidateArgs};
use crate::config::Config;
use crate::{Exit, UsageError};

pub(crate) fn run(command: NoticesCommand, config: &Config) -> anyhow::Result<Exit> {
    match command {
        NoticesCommand::Validate(args) => validate(&args, &config.notices, Utc::now()),
    }
}

fn validate(args: &ValidateArgs, rules: &NoticeRules, now: DateTime<Utc>) -> anyhow::Result<Exit> {
    let file = NoticeFile::open(&args.file, args.input_format, rules, now)?;
    let mut report = Report::new(args.file.display().to_string());
    let stdout = std::io::stdout();
    for entry in file {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => match error.downcast::<NoticeFileError>() {
                Ok(unreadable) => {
                    report.error = Some(unreadable.to_string());
                    break;
                }
                Err(error) => return Err(error),
            },
        };
        if args.format == ReportFormat::Text
            && let Some(line) = problem_line(&entry)
        {
            writeln!(stdout.lock(), "{line}").context("cannot write to standard output")?;
        }
        report.add(entry, args.format == ReportFormat::Json);
    }
    let output = match args.format {
        ReportFormat::Text => report.summary(),
        ReportFormat::Json => serde_json::to_string_pretty(&report)?,
    };
    writeln!(stdout.lock(), "{output}").context("cannot write to standard output")?;
    Ok(if report.is_clean() {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

/// How a problem is printed, one line; `None` for a notice.
pub(crate) fn problem_line(entry: &Entry) -> Option<String> {
    match entry {
        Entry::Notice { .. } => None,
        Entry::Rejected(error) => Some(error.to_string()),
        Entry::Duplicate(duplicate) => Some(duplicate.to_string()),
        Entry::Warning(warning) => Some(warning.to_string()),
    }
}

/// A notice file read line by line through a [`NoticeParser`]: an iterator
/// over what its lines came to. A header that makes the whole file unusable
/// ends it with a [`NoticeFileError`] in the error's chain.
#[derive(Debug)]
pub(crate) struct NoticeFile {
    path: PathBuf,
    reader: BufReader<File>,
    parser: Option<NoticeParser>,
    /// The current line, at most [`MAX_LINE_LEN`] + 1 bytes of it.
    line: Vec<u8>,
    number: u64,
    /// What the last line came to, in reverse order.
    pending: Vec<Entry>,
}

impl NoticeFile {
    /// Opens a notice file in the format `flag` names, else the one its
    /// extension names; accepts notice times `rules` allow at `now`.
    pub(crate) fn open(
        path: &Path,
        flag: Option<InputFormat>,
        rules: &NoticeRules,
        now: DateTime<Utc>,
    ) -> anyhow::Result<NoticeFile> {
        let format = format_of(path, flag).ok_or_else(|| {
            UsageError(format!(
                "cannot tell the format of {} from its extension (.csv, .jsonl or .ndjson); \
                 pass --input-format csv or --input-format jsonl",
                path.display()
            ))
        })?;
        let opened = File::open(path).and_then(|file| {
            if file.metadata()?.is_dir() {
                return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
            }
            Ok(file)
        });
        let file = opened
            .map_err(|e| UsageError(format!("cannot open notice file {}: {e}", path.display())))?;
        Ok(NoticeFile {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 * 1024, file),
            parser: Some(NoticeParser::new(format, rules.window(now))),
            line: Vec::with_capacity(MAX_LINE_LEN + 1),
            number: 0,
            pending: Vec::new(),
        })
    }

    /// Reads the next line into `self.line`, without its `\n`, keeping at
    /// most [`MAX_LINE_LEN`] + 1 bytes (room for a `\r`) however long it
    /// is. `None` at the end of the file.
    fn read_line(&mut self) -> std::io::Result<Option<LineRead>> {
        self.line.clear();
        let mut len = 0;
        let mut last = None;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() && last.is_none() {
                return Ok(None);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            let room = (MAX_LINE_LEN + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            len += chunk.len();
            last = chunk.last().copied().or(last).or(Some(b'\n'));
            let ended = newline.is_some() || available.is_empty();
            let used = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(used);
            if ended {
                return Ok(Some(if len == self.line.len() {
                    LineRead::Whole
                } else {
                    LineRead::CutShort {
                        len: len - usize::from(last == Some(b'\r')),
                    }
                }));
            }
        }
    }

    /// Parses lines until one comes to something, or the file ends.
    fn fill(&mut self) -> anyhow::Result<()> {
        let not_loaded = |path: &Path| format!("{}: not loaded", path.display());
        while self.pending.is_empty() && self.parser.is_some() {
            let read = self
                .read_line()
                .with_context(|| format!("cannot read notice file {}", self.path.display()))?;
            let Some(read) = read else {
                let parser = self.parser.take().expect("checked by the loop");
                return parser.finish().with_context(|| not_loaded(&self.path));
            };
            let parser = self.parser.as_mut().expect("checked by the loop");
            self.number += 1;
            let parsed = match read {
                LineRead::Whole => parser.line(self.number, &self.line, &mut self.pending),
                LineRead::CutShort { len } => parser.too_long(self.number, len, &mut self.pending),
            };
            if let Err(error) = parsed {
                self.parser = None;
                return Err(anyhow::Error::new(error).context(not_loaded(&self.path)));
            }
        }
        self.pending.reverse();
        Ok(())
    }
}

/// How much of a line [`NoticeFile::read_line`] kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    Whole,
    /// Cut short: `len` bytes long, without a final `\r`.
    CutShort {
        len: usize,
    },
}

impl Iterator for NoticeFile {
    type Item = anyhow::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty()
            && let Err(error) = self.fill()
        {
            return Some(Err(error));
        }
        self.pending.pop().map(Ok)
    }
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

/// The report, in the shape of the JSON output.
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    accepted: u64,
    /// Held (and the duplicates and warnings) only for the JSON output;
    /// the text output prints them as they come.
    rejected: Vec<LineError>,
    duplicates: Vec<Duplicate>,
    warnings: Vec<Warning>,
    /// Why the whole file could not be loaded.
    error: Option<String>,
    #[serde(skip)]
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    rejected: u64,
    duplicates: u64,
    warnings: u64,
}

impl Report {
    fn new(file: String) -> Self {
        Report {
            file,
            accepted: 0,
            rejected: Vec::new(),
            duplicates: Vec::new(),
            warnings: Vec::new(),
            error: None,
            counts: Counts::default(),
        }
    }

    fn add(&mut self, entry: Entry, keep: bool) {
        match entry {
            Entry::Notice { .. } => self.accepted += 1,
            Entry::Rejected(error) => {
                self.counts.rejected += 1;
                if keep {
                    self.rejected.push(error);
                }
            }
            Entry::Duplicate(duplicate) => {
                self.counts.duplicates += 1;
                if keep {
                    self.duplicates.push(duplicate);
                }
            }
            Entry::Warning(warning) => {
                self.counts.warnings += 1;
                if keep {
                    self.warnings.push(warning);
                }
            }
        }
    }

    fn is_clean(&self) -> bool {
        self.error.is_none() && self.counts.rejected == 0 && self.counts.duplicates == 0
    }

    fn summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!("{}: not loaded: {error}", self.file);
        }
        let mut out = format!(
            "{}: {} accepted, {} rejected, {}",
            self.file,
            self.accepted,
            self.counts.rejected,
            plural(self.counts.duplicates, "duplicate")
        );
        if self.counts.warnings > 0 {
            let _ = write!(out, ", {}", plural(self.counts.warnings, "warning"));
        }
        out
    }
}

pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_across_buffer_ends_and_long_ones_cut_short() {
        // Lines of many lengths, so that line ends fall everywhere in the
        // reader's buffer; CRLF endings; a line far over the limit; no final
        // line break.
        let mut text = String::from("url,notified_at,notice_id\r\n");
        for i in 0..5000 {
            let padding = "x".repeat(i % 97);
            text.push_str(&format!(
                "http://a.example/{i}/{padding},2024-01-01T00:00:00Z,N-{i}\r\n"
            ));
        }
        let long = format!(
            "http://a.example/{},2024-01-01T00:00:00Z,L",
            "y".repeat(3 * MAX_LINE_LEN)
        );
        text.push_str(&long);
        text.push_str("\r\nhttp://b.example/,2024-01-01T00:00:00Z,last");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notices.csv");
        std::fs::write(&path, &text).unwrap();

        let file = NoticeFile::open(&path, None, &NoticeRules::default(), Utc::now()).unwrap();
        let entries: Vec<Entry> = file.collect::<anyhow::Result<_>>().unwrap();
        let mut ids = Vec::new();
        let mut rejected = Vec::new();
        for entry in entries {
            match entry {
                Entry::Notice { line, notice } => ids.push((line, notice.notice_id.unwrap())),
                Entry::Rejected(error) => rejected.push(error.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ids.len(), 5001);
        assert_eq!(ids[4999], (5001, "N-4999".to_owned()));
        assert_eq!(ids[5000], (5003, "last".to_owned()));
        assert_eq!(
            rejected,
            [format!(
                "line 5002: the line is {} bytes long, over the {MAX_LINE_LEN}-byte limit",
                long.len()
            )]
        );
    }
}
