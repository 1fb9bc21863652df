//! Notices, and reading them from a CSV or JSON Lines file, one line at a time.
//!
//! A notice file is processed line by line: a line that is not valid is
//! reported with its 1-based line number, the field and the reason, and every
//! other line still loads. Nothing is dropped silently: each non-blank line
//! ends up accepted, rejected or reported as a duplicate. [`NoticeParser`]
//! is fed the lines (the caller reads the file) and holds only what duplicate
//! detection needs, a few bytes per notice, so a file of any size is read in
//! bounded memory.
//!
//! Both formats:
//! - fields `url` and `notified_at` are required; `notice_id`, `category`,
//!   `reporter` and `hoster` (alias `claimed_hoster`) are optional, and an
//!   empty or all-blank optional value means none. Values are trimmed;
//! - no value may hold a control character (U+0000 to U+001F, U+007F to
//!   U+009F): a NUL or a line break inside a value is refused, naming the field;
//! - `notified_at` is an RFC 3339 time *with* an offset (`Z` or `+01:00`); a
//!   time without one is refused rather than guessed, and the instant is kept.
//!   It must lie in the [`TimeWindow`] of the moment the file is read: not
//!   before [`NoticeRules::earliest`], and not more than
//!   [`NoticeRules::max_future`] after now;
//! - one record per line, split on `\n` with an optional `\r` before it;
//!   blank lines are skipped; a UTF-8 byte order mark at the start is ignored;
//!   a line longer than [`MAX_LINE_LEN`] is refused without being parsed;
//! - a line with several problems is reported once, for the first problem in
//!   the order url, notified_at, notice_id, category, reporter, hoster;
//! - a later line with the same `notice_id` as an accepted one, or with the
//!   same normalised URL and the same `notified_at` instant, is a duplicate:
//!   reported with the line it repeats and not loaded again.
//!
//! CSV: the first non-blank line is the header and names the columns, in any
//! order and any letter case. A header without `url` or `notified_at`, with
//! one column twice, or with broken quoting makes the whole file fail
//! ([`NoticeFileError`]). Columns that are not notice fields are ignored, with
//! one warning. A row must have as many fields as the header. Quoting follows
//! RFC 4180 within a line: a value that starts with `"` (after blanks) is
//! quoted, ends at the next lone `"`, and holds `""` for a quote; only blanks
//! may follow it before the next comma. A quoted value cannot run across a
//! line break: no notice field needs one, and this way an unbalanced quote
//! damages its own line and not the rest. A quote that is not closed, or text
//! after a closing quote, rejects the line: either would silently change the
//! value. A quote inside a value that does not start with one is kept as it is.
//!
//! JSON Lines: one object per line. Fields that are not notice fields are
//! ignored, with one warning per field name. A value must be a string (or
//! null, for an optional field).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::url::{NormalizedUrl, mask_url};

/// The longest line (or CSV record) read, in bytes, without its line break.
/// A notice needs a few hundred bytes; this bounds what one bad line costs.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// How much of a bad value an error message quotes.
const QUOTE_LEN: usize = 120;

/// Unknown JSON field names warned about at most; further ones are ignored
/// silently, so that a file cannot grow the set without bound.
const MAX_UNKNOWN_KEYS: usize = 100;

/// One notice: a URL that a hosting provider was notified about, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NoticeRecord")]
pub struct Notice {
    pub url: NormalizedUrl,
    /// When the hoster was notified; time to takedown is measured from here.
    #[serde(serialize_with = "serialize_time")]
    pub notified_at: DateTime<Utc>,
    /// The sender's own identifier; unique within a file when given.
    pub notice_id: Option<String>,
    pub category: Option<String>,
    pub reporter: Option<String>,
    /// The hoster the notice was sent to. tdmon attributes the hoster itself;
    /// this is kept to compare.
    pub claimed_hoster: Option<String>,
}

fn serialize_time<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The wire form of a notice, checked by [`Notice`]'s `TryFrom` on the way in.
/// Every rule applies except the [`TimeWindow`], which needs the time of
/// intake: the intake applies it ([`TimeWindow::check`]).
#[derive(Debug, Deserialize)]
struct NoticeRecord {
    url: Option<String>,
    notified_at: Option<String>,
    notice_id: Option<String>,
    category: Option<String>,
    reporter: Option<String>,
    #[serde(alias = "hoster")]
    claimed_hoster: Option<String>,
}

impl TryFrom<NoticeRecord> for Notice {
    type Error = FieldError;

    fn try_from(record: NoticeRecord) -> Result<Self, Self::Error> {
        Fields {
            url: record.url.as_deref(),
            notified_at: record.notified_at.as_deref(),
            notice_id: record.notice_id.as_deref(),
            category: record.category.as_deref(),
            reporter: record.reporter.as_deref(),
            hoster: record.claimed_hoster.as_deref(),
        }
        .into_notice()
    }
}

/// A field of a notice that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

/// A `notified_at` that is not an RFC 3339 time with an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not an RFC 3339 time with offset ({detail})", quote(.text))]
pub struct TimeError {
    text: String,
    detail: String,
}

/// Parses a notice time: RFC 3339 with an offset, kept as the same instant in UTC.
pub fn parse_notified_at(text: &str) -> Result<DateTime<Utc>, TimeError> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| {
            let without_offset = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok());
            let detail = if without_offset {
                "it has no offset: add \"Z\" for UTC or one such as \"+01:00\"".to_owned()
            } else {
                e.to_string()
            };
            TimeError {
                text: text.to_owned(),
                detail,
            }
        })
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Which notice times are believable (`[notices]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticeRules {
    /// How far after now a notice time may lie: a sender's clock or time zone
    /// may be off a little, but a notice from the future is a mistake, and
    /// its URL would not be checked until then.
    #[serde(with = "crate::duration")]
    pub max_future: Duration,
    /// No notice is older than this: an earlier time is a mistake (a year
    /// typed wrong, a zero date), and would put a takedown decades late.
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub earliest: DateTime<Utc>,
}

fn deserialize_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_notified_at(&text).map_err(serde::de::Error::custom)
}

impl Default for NoticeRules {
    fn default() -> Self {
        Self {
            max_future: Duration::from_secs(24 * 60 * 60),
            earliest: DateTime::from_timestamp(946_684_800, 0).expect("2000-01-01 is a time"),
        }
    }
}

impl NoticeRules {
    /// The notice times accepted at `now`.
    pub fn window(&self, now: DateTime<Utc>) -> TimeWindow {
        // The last instant RFC 3339 can write, four-digit years.
        let last_writable = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z")
            .expect("a valid time")
            .with_timezone(&Utc);
        // Whole seconds, so that the bound a message names is the bound applied.
        let latest = chrono::TimeDelta::from_std(self.max_future)
            .ok()
            .and_then(|ahead| now.checked_add_signed(ahead))
            .map_or(last_writable, |latest| latest.min(last_writable))
            .trunc_subsecs(0);
        TimeWindow {
            earliest: self.earliest,
            latest,
            max_future: self.max_future,
        }
    }
}

/// The notice times accepted at one moment ([`NoticeRules::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
    max_future: Duration,
}

impl TimeWindow {
    /// Whether a notice time lies in the window, and if not, why.
    pub fn check(&self, time: DateTime<Utc>) -> Result<(), String> {
        if time < self.earliest {
            return Err(format!(
                "{} is before {}, the earliest notice time accepted (notices.earliest)",
                format_time(time),
                format_time(self.earliest)
            ));
        }
        if time > self.latest {
            return Err(format!(
                "{} is in the future: later than {}, {} from now (notices.max_future)",
                format_time(time),
                format_time(self.latest),
                crate::duration::format(self.max_future)
            ));
        }
        Ok(())
    }
}

/// A notice field as text, before it is checked.
#[derive(Debug, Default)]
struct Fields<'a> {
    url: Option<&'a str>,
    notified_at: Option<&'a str>,
    notice_id: Option<&'a str>,
    category: Option<&'a str>,
    reporter: Option<&'a str>,
    hoster: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn into_notice(self) -> Result<Notice, FieldError> {
        let url = match self.url.map(str::trim) {
            None => return Err(field_error(Field::Url, "missing")),
            Some("") => return Err(field_error(Field::Url, "empty")),
            // A password is never echoed into a report or a log.
            Some(text) => NormalizedUrl::parse(text)
                .map_err(|e| field_error(Field::Url, format!("{}: {e}", quote(&mask_url(text)))))?,
        };
        let notified_at = match self.notified_at.map(str::trim) {
            None => return Err(field_error(Field::NotifiedAt, "missing")),
            Some("") => return Err(field_error(Field::NotifiedAt, "empty")),
            Some(text) => parse_notified_at(text)
                .map_err(|e| field_error(Field::NotifiedAt, e.to_string()))?,
        };
        let optional = |field: Field, value: Option<&str>| {
            let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            match value.char_indices().find(|(_, c)| c.is_control()) {
                Some((offset, c)) => Err(field_error(
                    field,
                    format!(
                        "contains control character U+{:04X} at byte {offset}",
                        u32::from(c)
                    ),
                )),
                None => Ok(Some(value.to_owned())),
            }
        };
        Ok(Notice {
            url,
            notified_at,
            notice_id: optional(Field::NoticeId, self.notice_id)?,
            category: optional(Field::Category, self.category)?,
            reporter: optional(Field::Reporter, self.reporter)?,
            claimed_hoster: optional(Field::Hoster, self.hoster)?,
        })
    }

    fn set(&mut self, field: Field, value: Option<&'a str>) {
        let slot = match field {
            Field::Url => &mut self.url,
            Field::NotifiedAt => &mut self.notified_at,
            Field::NoticeId => &mut self.notice_id,
            Field::Category => &mut self.category,
            Field::Reporter => &mut self.reporter,
            Field::Hoster => &mut self.hoster,
        };
        *slot = value;
    }
}

/// The notice fields a file may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Url,
    NotifiedAt,
    NoticeId,
    Category,
    Reporter,
    Hoster,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Url,
        Field::NotifiedAt,
        Field::NoticeId,
        Field::Category,
        Field::Reporter,
        Field::Hoster,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Url => "url",
            Field::NotifiedAt => "notified_at",
            Field::NoticeId => "notice_id",
            Field::Category => "category",
            Field::Reporter => "reporter",
            Field::Hoster => "hoster",
        }
    }

    /// The field a column or key names; `claimed_hoster` is `hoster`.
    fn from_name(name: &str) -> Option<Field> {
        match name {
            "claimed_hoster" => Some(Field::Hoster),
            _ => Field::ALL.into_iter().find(|f| f.name() == name),
        }
    }
}

fn field_error(field: Field, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.name(),
        reason: reason.into(),
    }
}

/// `text` in quotes, cut short when long.
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_LEN {
        return format!("{text:?}");
    }
    let mut end = QUOTE_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}

/// The two notice file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeFormat {
    Csv,
    Jsonl,
}

impl NoticeFormat {
    /// The format a file name extension stands for: `csv`, or `jsonl` and
    /// `ndjson`, in any letter case, without the dot.
    pub fn from_extension(extension: &str) -> Option<NoticeFormat> {
        match extension.to_ascii_lowercase().as_str() {
            "csv" => Some(NoticeFormat::Csv),
            "jsonl" | "ndjson" => Some(NoticeFormat::Jsonl),
            _ => None,
        }
    }
}

/// A line of a notice file that was not loaded because it is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based, counting every line of the file.
    pub line: u64,
    /// The notice field at fault, when one is.
    pub field: Option<&'static str>,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "line {}: {field}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

impl std::error::Error for LineError {}

/// What makes a notice a duplicate of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateKey {
    NoticeId(String),
    UrlAndTime {
        url: NormalizedUrl,
        notified_at: DateTime<Utc>,
    },
}

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DuplicateKey::NoticeId(id) => write!(f, "notice_id {}", quote(id)),
            DuplicateKey::UrlAndTime { url, notified_at } => write!(
                f,
                "url {} notified at {}",
                quote(url.as_str()),
                format_time(*notified_at)
            ),
        }
    }
}

/// Serialized as its text, e.g. `notice_id "N-17"`.
impl Serialize for DuplicateKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A valid line that repeats an accepted notice; it is not loaded again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub line: u64,
    /// The line of the accepted notice it repeats.
    pub duplicate_of: u64,
    pub key: DuplicateKey,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: duplicate of line {} (same {})",
            self.line, self.duplicate_of, self.key
        )
    }
}

/// Something worth knowing about a file that rejects no line, such as a column
/// that is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The line where it was first seen.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: warning: {}", self.line, self.message)
    }
}

/// A problem that stops a whole file from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoticeFileError {
    #[error(
        "the file has no header row; the first line must name the columns, e.g. url,notified_at"
    )]
    Empty,
    #[error(
        "line {line}: the header has no {column:?} column (it needs url and notified_at; \
         optional: notice_id, category, reporter, hoster)"
    )]
    MissingColumn { line: u64, column: &'static str },
    #[error("line {line}: the header has the {column:?} column more than once")]
    DuplicateColumn { line: u64, column: &'static str },
    #[error("line {line}: the header is {len} bytes long, over the {MAX_LINE_LEN}-byte limit")]
    HeaderTooLong { line: u64, len: usize },
    #[error("line {line}: the header is not valid UTF-8")]
    HeaderNotUtf8 { line: u64 },
    #[error("line {line}: the header's {reason}")]
    HeaderQuoting { line: u64, reason: String },
    #[error("line {line}: a notice file has at most {} lines", u32::MAX)]
    TooManyLines { line: u64 },
}

impl NoticeFileError {
    /// The line at fault, if one is.
    pub fn line(&self) -> Option<u64> {
        match self {
            NoticeFileError::Empty => None,
            NoticeFileError::MissingColumn { line, .. }
            | NoticeFileError::DuplicateColumn { line, .. }
            | NoticeFileError::HeaderTooLong { line, .. }
            | NoticeFileError::HeaderNotUtf8 { line }
            | NoticeFileError::HeaderQuoting { line, .. }
            | NoticeFileError::TooManyLines { line } => Some(*line),
        }
    }
}

/// What one line of a notice file came to. A line gives at most one notice,
/// rejection or duplicate, and may add warnings after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A valid notice, to be loaded.
    Notice {
        line: u64,
        notice: Notice,
    },
    Rejected(LineError),
    Duplicate(Duplicate),
    Warning(Warning),
}

/// Parses a notice file fed to it one line at a time, in order: see the
/// module documentation for the rules.
#[derive(Debug)]
pub struct NoticeParser {
    format: NoticeFormat,
    window: TimeWindow,
    /// CSV: the notice field of each column, once the header is read.
    columns: Option<Vec<Option<Field>>>,
    seen: SeenKeys,
    /// JSON Lines: the unknown field names warned about.
    unknown_keys: BTreeSet<String>,
}

impl NoticeParser {
    /// A parser for a file in `format`, accepting notice times in `window`.
    pub fn new(format: NoticeFormat, window: TimeWindow) -> Self {
        NoticeParser {
            format,
            window,
            columns: None,
            seen: SeenKeys::default(),
            unknown_keys: BTreeSet::new(),
        }
    }

    /// Parses line `number` (1-based, every line of the file counted), given
    /// without its `\n`, and appends what it came to to `out`. Fails only when
    /// the file cannot be read on (a CSV header that is not usable).
    pub fn line(
        &mut self,
        number: u64,
        line: &[u8],
        out: &mut Vec<Entry>,
    ) -> Result<(), NoticeFileError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = match number {
            1 => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
            _ => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if line.len() > MAX_LINE_LEN {
            return self.too_long(number, line.len(), out);
        }
        let line_number =
            u32::try_from(number).map_err(|_| NoticeFileError::TooManyLines { line: number })?;
        let start = out.len();
        let parsed = match (self.format, &self.columns) {
            (NoticeFormat::Csv, None) => {
                self.columns = Some(parse_header(number, line, out)?);
                return Ok(());
            }
            (NoticeFormat::Csv, Some(columns)) => csv_notice(columns, line),
            (NoticeFormat::Jsonl, _) => self.jsonl_notice(number, line, out),
        };
        let mut warnings = out.split_off(start);
        match parsed.and_then(|notice| {
            self.window
                .check(notice.notified_at)
                .map(|()| notice)
                .map_err(|reason| (Some(Field::NotifiedAt.name()), reason))
        }) {
            Ok(notice) => out.push(self.seen.admit(number, line_number, notice)),
            Err((field, reason)) => out.push(Entry::Rejected(LineError {
                line: number,
                field,
                reason,
            })),
        }
        // A line's own verdict comes before what it taught about the file.
        out.append(&mut warnings);
        Ok(())
    }

    /// Reports line `number`, `len` bytes long without its line break, as
    /// too long (for a reader that did not keep it whole).
    pub fn too_long(
        &mut self,
        number: u64,
        len: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), NoticeFileError> {
        if self.format == NoticeFormat::Csv && self.columns.is_none() {
            return Err(NoticeFileError::HeaderTooLong { line: number, len });
        }
        out.push(Entry::Rejected(LineError {
            line: number,
            field: None,
            reason: format!("the line is {len} bytes long, over the {MAX_LINE_LEN}-byte limit"),
        }));
        Ok(())
    }

    /// Ends the file: a CSV file needs a header.
    pub fn finish(self) -> Result<(), NoticeFileError> {
        match (self.format, self.columns) {
            (NoticeFormat::Csv, None) => Err(NoticeFileError::Empty),
            _ => Ok(()),
        }
    }

    /// The notice of one JSON line; warnings about unknown fields go to `out`.
    fn jsonl_notice(
        &mut self,
        number: u64,
        line: &[u8],
        out: &mut Vec<Entry>,
    ) -> Result<Notice, (Option<&'static str>, String)> {
        let text = std::str::from_utf8(line).map_err(|e| (None, not_utf8_reason(line, &e)))?;
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(other) => {
                let reason = format!("expected a JSON object, found {}", json_kind(&other));
                return Err((None, reason));
            }
            Err(e) => return Err((None, format!("not valid JSON: {}", json_error(&e)))),
        };
        for key in object.keys() {
            if Field::from_name(key).is_none()
                && self.unknown_keys.len() < MAX_UNKNOWN_KEYS
                && self.unknown_keys.insert(key.clone())
            {
                out.push(Entry::Warning(Warning {
                    line: number,
                    message: format!("field {} is not a notice field; ignored", quote(key)),
                }));
            }
        }
        notice_from_object(&object).map_err(|e| (Some(e.field), e.reason))
    }
}

/// The notice in one CSV row, or the field at fault and why.
fn csv_notice(
    columns: &[Option<Field>],
    line: &[u8],
) -> Result<Notice, (Option<&'static str>, String)> {
    let record = split_csv_line(line).map_err(|e| {
        let field = columns.get(e.column).copied().flatten();
        let reason = match field {
            Some(_) => e.problem.to_owned(),
            None => format!("column {}: {}", e.column + 1, e.problem),
        };
        (field.map(Field::name), reason)
    })?;
    if record.len() < columns.len() {
        let field = columns[record.len()..].iter().flatten().next();
        let reason = format!(
            "missing value: the row has {} fields, the header {}",
            record.len(),
            columns.len()
        );
        return Err((field.map(|f| f.name()), reason));
    }
    if record.len() > columns.len() {
        let reason = format!(
            "the row has {} fields, the header only {}",
            record.len(),
            columns.len()
        );
        return Err((None, reason));
    }
    // Checked in the order errors are reported in, whatever the column order.
    let mut known: Vec<(Field, &[u8])> = columns
        .iter()
        .zip(record.iter())
        .filter_map(|(column, value)| column.map(|field| (field, value.as_ref())))
        .collect();
    known.sort_by_key(|&(field, _)| field);
    let mut fields = Fields::default();
    for (field, value) in known {
        let text = std::str::from_utf8(value)
            .map_err(|e| (Some(field.name()), not_utf8_reason(value, &e)))?;
        fields.set(field, Some(text));
    }
    fields.into_notice().map_err(|e| (Some(e.field), e.reason))
}

fn notice_from_object(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<Notice, FieldError> {
    let given = |key: &str| object.get(key).filter(|value| !value.is_null());
    if given("hoster").is_some() && given("claimed_hoster").is_some() {
        return Err(field_error(
            Field::Hoster,
            "both \"hoster\" and \"claimed_hoster\" given; give one",
        ));
    }
    let mut fields = Fields::default();
    for field in Field::ALL {
        let value = match field {
            Field::Hoster => given("hoster").or_else(|| given("claimed_hoster")),
            _ => given(field.name()),
        };
        let text = match value {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text.as_str()),
            Some(other) => {
                let reason = format!("expected a string, found {}", json_kind(other));
                return Err(field_error(field, reason));
            }
        };
        fields.set(field, text);
    }
    fields.into_notice()
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// serde_json's message with the position within the line, not "line 1".
fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&position) {
        Some(message) => format!("{message} at column {}", error.column()),
        None => text,
    }
}

fn not_utf8_reason(bytes: &[u8], error: &std::str::Utf8Error) -> String {
    let at = error.valid_up_to();
    format!(
        "not valid UTF-8 (byte 0x{:02X} at offset {at})",
        bytes.get(at).copied().unwrap_or_default()
    )
}

/// A CSV line whose quoting would change a value; `column` is 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuotingError {
    column: usize,
    problem: &'static str,
}

/// Splits one CSV line, which holds no `\n`, into its fields (RFC 4180
/// quoting, see the module documentation). A field is borrowed from the line
/// unless it held a doubled quote.
fn split_csv_line(line: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, QuotingError> {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let column = fields.len();
        let start = rest.iter().take_while(|b| is_blank(b)).count();
        if rest.get(start) != Some(&b'"') {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            fields.push(Cow::Borrowed(&rest[..end]));
            match rest.get(end) {
                Some(_) => rest = &rest[end + 1..],
                None => return Ok(fields),
            }
            continue;
        }
        // A quoted value: up to the next quote that is not doubled.
        let body = &rest[start + 1..];
        let mut value: Cow<'_, [u8]> = Cow::Borrowed(&[]);
        let mut at = 0;
        let after = loop {
            let Some(quote) = body[at..].iter().position(|&b| b == b'"') else {
                return Err(QuotingError {
                    column,
                    problem: "the quoted value is not closed (a quoted value cannot span lines)",
                });
            };
            let end = at + quote;
            if body.get(end + 1) == Some(&b'"') {
                value.to_mut().extend_from_slice(&body[at..=end]);
                at = end + 2;
                continue;
            }
            match &mut value {
                Cow::Borrowed(_) => value = Cow::Borrowed(&body[..end]),
                Cow::Owned(owned) => owned.extend_from_slice(&body[at..end]),
            }
            break &body[end + 1..];
        };
        fields.push(value);
        let blanks = after.iter().take_while(|b| is_blank(b)).count();
        match after.get(blanks) {
            None => return Ok(fields),
            Some(b',') => rest = &after[blanks + 1..],
            Some(_) => {
                return Err(QuotingError {
                    column,
                    problem: "text after the closing quote; inside a quoted value, \
                              write a quote as \"\"",
                });
            }
        }
    }
}

/// The notice field each header column holds, `None` for an ignored column;
/// a warning for ignored columns goes to `out`.
fn parse_header(
    number: u64,
    line: &[u8],
    out: &mut Vec<Entry>,
) -> Result<Vec<Option<Field>>, NoticeFileError> {
    let record = split_csv_line(line).map_err(|e| NoticeFileError::HeaderQuoting {
        line: number,
        reason: format!("column {}: {}", e.column + 1, e.problem),
    })?;
    let mut columns = Vec::with_capacity(record.len());
    let mut unknown = Vec::new();
    for name in &record {
        let name = std::str::from_utf8(name)
            .map_err(|_| NoticeFileError::HeaderNotUtf8 { line: number })?
            .trim()
            .to_ascii_lowercase();
        let field = Field::from_name(&name);
        match field {
            Some(field) if columns.contains(&Some(field)) => {
                return Err(NoticeFileError::DuplicateColumn {
                    line: number,
                    column: field.name(),
                });
            }
            Some(_) => {}
            None => unknown.push(quote(&name)),
        }
        columns.push(field);
    }
    for required in [Field::Url, Field::NotifiedAt] {
        if !columns.contains(&Some(required)) {
            return Err(NoticeFileError::MissingColumn {
                line: number,
                column: required.name(),
            });
        }
    }
    if !unknown.is_empty() {
        let (noun, verb) = if unknown.len() == 1 {
            ("column", "is")
        } else {
            ("columns", "are")
        };
        out.push(Entry::Warning(Warning {
            line: number,
            message: format!(
                "{noun} {} {verb} not a notice field; ignored",
                unknown.join(", ")
            ),
        }));
    }
    Ok(columns)
}

/// The keys of the notices accepted so far, each as a 64-bit hash with the
/// line it was first seen on: 12 bytes a key, two keys for a notice with a
/// `notice_id`, so a million notices take about 24 MB where the notices
/// themselves would take hundreds. Two different keys share a hash with a
/// probability of about n²/2⁶⁵ (10⁻⁷ for two million keys); the later one
/// would then be reported, visibly, as a duplicate of a line it does not
/// repeat. The hash is seeded per process, so no file can aim at it.
#[derive(Debug, Default)]
struct SeenKeys {
    hasher: RandomState,
    /// Keys merged so far, sorted by hash, and the line of each.
    hashes: Vec<u64>,
    lines: Vec<u32>,
    /// Keys since the last merge.
    recent: HashMap<u64, u32>,
}

/// Keys gathered before they are merged into the sorted ones: at least this
/// many, and at least 1/32 of those, so that merging costs O(n log n) in all.
const MERGE_AT: usize = 1 << 16;

impl SeenKeys {
    /// `notice` as an entry: a duplicate of an earlier line, or a new notice
    /// whose keys are remembered.
    fn admit(&mut self, number: u64, line: u32, notice: Notice) -> Entry {
        let id = notice
            .notice_id
            .as_deref()
            .map(|id| self.hasher.hash_one((0_u8, id)));
        let url_and_time = self.hasher.hash_one((
            1_u8,
            notice.url.as_str(),
            notice.notified_at.timestamp(),
            notice.notified_at.timestamp_subsec_nanos(),
        ));
        let by_id = id.and_then(|hash| self.first_line(hash)).map(|first| {
            let id = notice.notice_id.clone().unwrap_or_default();
            (first, DuplicateKey::NoticeId(id))
        });
        let duplicate = by_id.or_else(|| {
            let first = self.first_line(url_and_time)?;
            let key = DuplicateKey::UrlAndTime {
                url: notice.url.clone(),
                notified_at: notice.notified_at,
            };
            Some((first, key))
        });
        if let Some((duplicate_of, key)) = duplicate {
            return Entry::Duplicate(Duplicate {
                line: number,
                duplicate_of,
                key,
            });
        }
        for hash in id.into_iter().chain([url_and_time]) {
            self.recent.insert(hash, line);
        }
        if self.recent.len() >= MERGE_AT.max(self.hashes.len() / 32) {
            self.merge();
        }
        Entry::Notice {
            line: number,
            notice,
        }
    }

    fn first_line(&self, hash: u64) -> Option<u64> {
        let line = match self.recent.get(&hash) {
            Some(&line) => line,
            None => self.lines[self.hashes.binary_search(&hash).ok()?],
        };
        Some(line.into())
    }

    /// Merges the recent keys into the sorted ones, in place from the back.
    fn merge(&mut self) {
        let mut recent: Vec<(u64, u32)> = self.recent.drain().collect();
        recent.sort_unstable();
        let old = self.hashes.len();
        self.hashes.reserve_exact(recent.len());
        self.lines.reserve_exact(recent.len());
        self.hashes.resize(old + recent.len(), 0);
        self.lines.resize(old + recent.len(), 0);
        let (mut from, mut to) = (old, self.hashes.len());
        while let Some(&(hash, line)) = recent.last() {
            to -= 1;
            if from > 0 && self.hashes[from - 1] > hash {
                from -= 1;
                self.hashes[to] = self.hashes[from];
                self.lines[to] = self.lines[from];
            } else {
                recent.pop();
                self.hashes[to] = hash;
                self.lines[to] = line;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// Everything a file came to, every list in line order.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct NoticeLoad {
        accepted: Vec<(u64, Notice)>,
        rejected: Vec<LineError>,
        duplicates: Vec<Duplicate>,
        warnings: Vec<Warning>,
    }

    impl NoticeLoad {
        fn is_clean(&self) -> bool {
            self.rejected.is_empty() && self.duplicates.is_empty()
        }
    }

    /// When the test files are read.
    fn now() -> DateTime<Utc> {
        utc(2026, 1, 1, 0, 0, 0)
    }

    fn parse(format: NoticeFormat, bytes: &[u8]) -> Result<NoticeLoad, NoticeFileError> {
        let mut parser = NoticeParser::new(format, NoticeRules::default().window(now()));
        let mut entries = Vec::new();
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if !bytes.is_empty() {
            for (line, number) in bytes.split(|&b| b == b'\n').zip(1..) {
                parser.line(number, line, &mut entries)?;
            }
        }
        parser.finish()?;
        let mut load = NoticeLoad::default();
        for entry in entries {
            match entry {
                Entry::Notice { line, notice } => load.accepted.push((line, notice)),
                Entry::Rejected(e) => load.rejected.push(e),
                Entry::Duplicate(d) => load.duplicates.push(d),
                Entry::Warning(w) => load.warnings.push(w),
            }
        }
        Ok(load)
    }

    fn parse_csv(bytes: &[u8]) -> Result<NoticeLoad, NoticeFileError> {
        parse(NoticeFormat::Csv, bytes)
    }

    fn parse_jsonl(bytes: &[u8]) -> NoticeLoad {
        parse(NoticeFormat::Jsonl, bytes).expect("JSON Lines has no header")
    }

    fn csv(text: &str) -> NoticeLoad {
        parse_csv(text.as_bytes()).expect("the header is valid")
    }

    fn rejected(load: &NoticeLoad) -> Vec<String> {
        load.rejected.iter().map(ToString::to_string).collect()
    }

    fn accepted_lines(load: &NoticeLoad) -> Vec<u64> {
        load.accepted.iter().map(|(line, _)| *line).collect()
    }

    #[test]
    fn a_clean_csv_loads_every_field() {
        let load = csv("url,notified_at,notice_id,category,reporter,hoster\n\
             https://Example.com/a#x,2024-03-01T10:00:00+01:00,N-1,csam,hotline-nl,Example BV\n\
             http://b.example/,2024-03-01T09:00:00Z,,,,\n");
        assert!(load.is_clean(), "{load:?}");
        assert!(load.warnings.is_empty());
        assert_eq!(accepted_lines(&load), [2, 3]);
        let (_, first) = &load.accepted[0];
        assert_eq!(first.url.as_str(), "https://example.com/a");
        assert_eq!(first.notified_at, utc(2024, 3, 1, 9, 0, 0));
        assert_eq!(first.notice_id.as_deref(), Some("N-1"));
        assert_eq!(first.category.as_deref(), Some("csam"));
        assert_eq!(first.reporter.as_deref(), Some("hotline-nl"));
        assert_eq!(first.claimed_hoster.as_deref(), Some("Example BV"));
        let (_, second) = &load.accepted[1];
        assert_eq!(second.notice_id, None);
        assert_eq!(second.category, None);
        assert_eq!(second.reporter, None);
        assert_eq!(second.claimed_hoster, None);
    }

    #[test]
    fn columns_in_any_order_and_case() {
        let load = csv(" Hoster ,NOTIFIED_AT,url\nAcme,2024-01-02T03:04:05Z,http://a.example/x\n");
        assert!(load.is_clean(), "{load:?}");
        let notice = &load.accepted[0].1;
        assert_eq!(notice.url.as_str(), "http://a.example/x");
        assert_eq!(notice.notified_at, utc(2024, 1, 2, 3, 4, 5));
        assert_eq!(notice.claimed_hoster.as_deref(), Some("Acme"));
    }

    #[test]
    fn crlf_line_endings_and_a_byte_order_mark() {
        let load = csv("\u{feff}url,notified_at,notice_id\r\n\
             http://a.example/,2024-01-01T00:00:00Z,A\r\n\
             \r\n\
             http://b.example/,2024-01-01T00:00:00Z,B\r\n");
        assert!(load.is_clean(), "{load:?}");
        assert_eq!(accepted_lines(&load), [2, 4]);
        assert_eq!(load.accepted[1].1.notice_id.as_deref(), Some("B"));
    }

    #[test]
    fn a_quoted_field_may_hold_commas_and_quotes() {
        let load = csv("url,notified_at,reporter\n\
             \"https://a.example/x?a=1,2\",2024-01-01T00:00:00Z,\"Hotline, \"\"NL\"\"\"\n");
        assert!(load.is_clean(), "{load:?}");
        let notice = &load.accepted[0].1;
        assert_eq!(notice.url.as_str(), "https://a.example/x?a=1,2");
        assert_eq!(notice.reporter.as_deref(), Some("Hotline, \"NL\""));
    }

    #[test]
    fn a_header_only_file_loads_nothing_and_is_clean() {
        for text in [
            "url,notified_at\n",
            "url,notified_at",
            "url,notified_at\r\n\r\n",
        ] {
            let load = csv(text);
            assert!(load.accepted.is_empty());
            assert!(load.is_clean());
        }
    }

    #[test]
    fn header_problems_fail_the_file() {
        assert_eq!(parse_csv(b""), Err(NoticeFileError::Empty));
        assert_eq!(parse_csv(b"\n \n"), Err(NoticeFileError::Empty));
        assert_eq!(
            parse_csv(b"url,time\nhttp://a.example/,2024-01-01T00:00:00Z\n"),
            Err(NoticeFileError::MissingColumn {
                line: 1,
                column: "notified_at"
            })
        );
        // A file without a header: its first row is taken as one and named.
        let error = parse_csv(b"\nhttp://a.example/,2024-01-01T00:00:00Z\n").unwrap_err();
        assert_eq!(error.line(), Some(2));
        assert!(
            error
                .to_string()
                .starts_with("line 2: the header has no \"url\" column"),
            "{error}"
        );
        assert_eq!(
            parse_csv(b"url,notified_at,hoster,claimed_hoster\n"),
            Err(NoticeFileError::DuplicateColumn {
                line: 1,
                column: "hoster"
            })
        );
        assert_eq!(
            parse_csv(b"url,notified_at,\xff\n"),
            Err(NoticeFileError::HeaderNotUtf8 { line: 1 })
        );
        let long_header = format!("url,notified_at,{}\n", "x".repeat(MAX_LINE_LEN));
        assert!(matches!(
            parse_csv(long_header.as_bytes()),
            Err(NoticeFileError::HeaderTooLong { line: 1, .. })
        ));
    }

    #[test]
    fn unknown_columns_are_ignored_with_one_warning() {
        let load = csv("url,notes,notified_at,Priority\n\
             http://a.example/,x,2024-01-01T00:00:00Z,1\n\
             http://b.example/,y,2024-01-01T00:00:00Z,2\n");
        assert!(load.is_clean());
        assert_eq!(load.accepted.len(), 2);
        assert_eq!(
            load.warnings,
            [Warning {
                line: 1,
                message: "columns \"notes\", \"priority\" are not a notice field; ignored".into()
            }]
        );
    }

    #[test]
    fn claimed_hoster_is_accepted_as_a_column_name() {
        let load =
            csv("url,notified_at,claimed_hoster\nhttp://a.example/,2024-01-01T00:00:00Z,Acme\n");
        assert!(load.warnings.is_empty());
        assert_eq!(load.accepted[0].1.claimed_hoster.as_deref(), Some("Acme"));
    }

    #[test]
    fn an_invalid_url_names_line_field_and_reason() {
        let load = csv("url,notified_at\n\
             http://ok.example/,2024-01-01T00:00:00Z\n\
             ftp://files.example/x,2024-01-01T00:00:00Z\n\
             ,2024-01-01T00:00:00Z\n\
             https://user:secret@a.example/,2024-01-01T00:00:00Z\n");
        assert_eq!(accepted_lines(&load), [2]);
        assert_eq!(
            rejected(&load),
            [
                "line 3: url: \"ftp://files.example/x\": scheme \"ftp\" is not http or https",
                "line 4: url: empty",
                "line 5: url: \"https://user:***@a.example/\": contains credentials (a user name or password), which a notice must not carry",
            ]
        );
        assert!(!rejected(&load)[2].contains("secret"));
    }

    #[test]
    fn bad_and_missing_times_are_rejected() {
        let load = csv("notified_at,url\n\
             2024-13-01T00:00:00Z,http://a.example/\n\
             2024-01-01T00:00:00,http://b.example/\n\
             ,http://c.example/\n\
             yesterday,http://d.example/\n\
             2024-06-01T12:00:00-04:00,http://e.example/\n");
        assert_eq!(
            rejected(&load),
            [
                "line 2: notified_at: \"2024-13-01T00:00:00Z\" is not an RFC 3339 time with offset (input is out of range)",
                "line 3: notified_at: \"2024-01-01T00:00:00\" is not an RFC 3339 time with offset (it has no offset: add \"Z\" for UTC or one such as \"+01:00\")",
                "line 4: notified_at: empty",
                "line 5: notified_at: \"yesterday\" is not an RFC 3339 time with offset (premature end of input)",
            ]
        );
        // The instant is kept, whatever offset it was written with.
        assert_eq!(load.accepted[0].1.notified_at, utc(2024, 6, 1, 16, 0, 0));
    }

    #[test]
    fn rows_with_the_wrong_number_of_fields() {
        let load = csv("url,notified_at,notice_id,category\n\
             http://a.example/,2024-01-01T00:00:00Z\n\
             http://b.example/\n\
             http://c.example/,2024-01-01T00:00:00Z,C,x,extra\n\
             http://d.example/,2024-01-01T00:00:00Z,D,\n");
        assert_eq!(accepted_lines(&load), [5]);
        assert_eq!(
            rejected(&load),
            [
                "line 2: notice_id: missing value: the row has 2 fields, the header 4",
                "line 3: notified_at: missing value: the row has 1 fields, the header 4",
                "line 4: the row has 5 fields, the header only 4",
            ]
        );
    }

    #[test]
    fn non_utf8_bytes_are_a_line_error() {
        let mut bytes = b"url,notified_at,reporter\n".to_vec();
        bytes.extend_from_slice(b"http://a.example/,2024-01-01T00:00:00Z,caf\xe9\n");
        bytes.extend_from_slice(b"http://b\xff.example/,2024-01-01T00:00:00Z,x\n");
        bytes.extend_from_slice(b"http://c.example/,2024-01-01T00:00:00Z,ok\n");
        let load = parse_csv(&bytes).unwrap();
        assert_eq!(accepted_lines(&load), [4]);
        assert_eq!(
            rejected(&load),
            [
                "line 2: reporter: not valid UTF-8 (byte 0xE9 at offset 3)",
                "line 3: url: not valid UTF-8 (byte 0xFF at offset 8)",
            ]
        );
    }

    #[test]
    fn an_over_long_line_is_rejected_and_the_rest_loads() {
        let huge = format!(
            "http://a.example/{},2024-01-01T00:00:00Z",
            "a".repeat(1 << 20)
        );
        let text = format!(
            "url,notified_at\nhttp://before.example/,2024-01-01T00:00:00Z\n{huge}\n\
             http://after.example/,2024-01-01T00:00:00Z\n"
        );
        let load = csv(&text);
        assert_eq!(accepted_lines(&load), [2, 4]);
        assert_eq!(
            rejected(&load),
            [format!(
                "line 3: the line is {} bytes long, over the 65536-byte limit",
                huge.len()
            )]
        );

        // Exactly at the limit is a line like any other (its URL is too long).
        let at_limit = format!("http://a.example/{}", "a".repeat(MAX_LINE_LEN - 38));
        let line = format!("{at_limit},2024-01-01T00:00:00Z");
        assert_eq!(line.len(), MAX_LINE_LEN);
        let load = csv(&format!("url,notified_at\n{line}\n"));
        assert_eq!(load.rejected[0].field, Some("url"));
        assert!(load.rejected[0].reason.contains("over the 2048-byte limit"));
    }

    #[test]
    fn an_unbalanced_quote_damages_only_its_own_line() {
        let load = csv("url,notified_at\n\
             \"http://a.example/,2024-01-01T00:00:00Z\n\
             http://b.example/,2024-01-01T00:00:00Z\n");
        assert_eq!(accepted_lines(&load), [3]);
        assert_eq!(load.rejected.len(), 1);
        assert_eq!(load.rejected[0].line, 2);
    }

    #[test]
    fn control_characters_are_refused_in_every_text_field() {
        let load = csv("url,notified_at,notice_id,category,reporter,hoster\n\
             http://a.example/,2024-01-01T00:00:00Z,N\x001,,,\n\
             http://b.example/,2024-01-01T00:00:00Z,N-2,c\x1bat,,\n\
             http://c.example/,2024-01-01T00:00:00Z,N-3,,hot\x7fline,\n\
             http://d.example/,2024-01-01T00:00:00Z,N-4,,,Acme\u{90}\n\
             http://e\x00.example/,2024-01-01T00:00:00Z,N-5,,,\n\
             \"http://f.example/\",2024-01-01T00:00:00Z,\" N-6\t\",,,\n");
        assert_eq!(accepted_lines(&load), [7], "surrounding blanks are trimmed");
        assert_eq!(
            rejected(&load),
            [
                "line 2: notice_id: contains control character U+0000 at byte 1",
                "line 3: category: contains control character U+001B at byte 1",
                "line 4: reporter: contains control character U+007F at byte 3",
                "line 5: hoster: contains control character U+0090 at byte 4",
                "line 6: url: \"http://e\\0.example/\": contains control character 0x00 at byte 8",
            ]
        );

        let jsonl = parse_jsonl(
            br#"{"url":"http://a.example/","notified_at":"2024-01-01T00:00:00Z","notice_id":"N\u0000"}"#,
        );
        assert_eq!(
            rejected(&jsonl),
            ["line 1: notice_id: contains control character U+0000 at byte 1"]
        );
        let error = serde_json::from_str::<Notice>(
            r#"{"url":"http://a.example/","notified_at":"2024-01-01T00:00:00Z","reporter":"a\nb"}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("reporter: contains control"),
            "{error}"
        );
    }

    #[test]
    fn notice_times_must_lie_between_the_floor_and_now_plus_the_skew() {
        // Read at 2026-01-01T00:00:00Z with the defaults: from 2000-01-01,
        // up to one day ahead.
        let load = csv("url,notified_at\n\
             http://a.example/,2026-01-02T00:00:00Z\n\
             http://b.example/,2026-01-02T00:00:00.000001Z\n\
             http://c.example/,2999-01-01T00:00:00Z\n\
             http://d.example/,9999-12-31T23:00:00Z\n\
             http://e.example/,9999-12-31T23:00:00-02:00\n\
             http://f.example/,0001-01-01T00:00:00Z\n\
             http://g.example/,1999-12-31T23:59:59Z\n\
             http://h.example/,2000-01-01T01:00:00+01:00\n");
        assert_eq!(accepted_lines(&load), [2, 9]);
        let future =
            "is in the future: later than 2026-01-02T00:00:00Z, 24h from now (notices.max_future)";
        assert_eq!(
            rejected(&load),
            [
                format!("line 3: notified_at: 2026-01-02T00:00:00.000001Z {future}"),
                format!("line 4: notified_at: 2999-01-01T00:00:00Z {future}"),
                format!("line 5: notified_at: 9999-12-31T23:00:00Z {future}"),
                format!("line 6: notified_at: +10000-01-01T01:00:00Z {future}"),
                "line 7: notified_at: 0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z, \
                 the earliest notice time accepted (notices.earliest)"
                    .to_owned(),
                "line 8: notified_at: 1999-12-31T23:59:59Z is before 2000-01-01T00:00:00Z, \
                 the earliest notice time accepted (notices.earliest)"
                    .to_owned(),
            ]
        );

        // Both bounds are settings.
        let rules = NoticeRules {
            max_future: Duration::ZERO,
            earliest: utc(1990, 1, 1, 0, 0, 0),
        };
        let window = rules.window(now());
        assert_eq!(window.check(utc(1995, 1, 1, 0, 0, 0)), Ok(()));
        assert_eq!(window.check(now()), Ok(()));
        assert!(window.check(now() + chrono::TimeDelta::seconds(1)).is_err());
        // Even a huge skew never admits a time RFC 3339 cannot write.
        let rules = NoticeRules {
            max_future: Duration::from_secs(u64::MAX),
            ..NoticeRules::default()
        };
        let late = DateTime::parse_from_rfc3339("9999-12-31T23:00:00-02:00").unwrap();
        assert!(rules.window(now()).check(late.with_timezone(&Utc)).is_err());
    }

    #[test]
    fn the_time_rules_read_and_show_as_written() {
        let rules: NoticeRules =
            toml::from_str("max_future = \"2h\"\nearliest = \"2010-06-01T00:00:00+02:00\"\n")
                .unwrap();
        assert_eq!(rules.max_future, Duration::from_secs(7200));
        assert_eq!(rules.earliest, utc(2010, 5, 31, 22, 0, 0));
        let shown = toml::to_string(&NoticeRules::default()).unwrap();
        assert_eq!(
            shown,
            "max_future = \"24h\"\nearliest = \"2000-01-01T00:00:00Z\"\n"
        );
        assert!(toml::from_str::<NoticeRules>("earliest = \"2010-06-01\"\n").is_err());
    }

    #[test]
    fn broken_quoting_rejects_the_line_instead_of_changing_a_value() {
        let load = csv("url,notified_at,notice_id,reporter\n\
             http://a.example/,2024-01-01T00:00:00Z,\"Q1,x\n\
             http://b.example/,2024-01-01T00:00:00Z,\"Q3\"junk,x\n\
             http://c.example/,2024-01-01T00:00:00Z,N-4,\"x\" \"y\"\n\
             http://d.example/,2024-01-01T00:00:00Z, \"N-5\" ,\"say \"\"hi\"\"\"\n\
             http://e.example/,2024-01-01T00:00:00Z,N\"6,\"\"\n\
             http://f.example/,2024-01-01T00:00:00Z,N-7,\"a,\"\"b\"\n\
             http://g.example/,2024-01-01T00:00:00Z,N-8,\"a\"\"\n");
        assert_eq!(
            rejected(&load),
            [
                "line 2: notice_id: the quoted value is not closed (a quoted value cannot span lines)",
                "line 3: notice_id: text after the closing quote; inside a quoted value, write a quote as \"\"",
                "line 4: reporter: text after the closing quote; inside a quoted value, write a quote as \"\"",
                "line 8: reporter: the quoted value is not closed (a quoted value cannot span lines)",
            ]
        );
        assert_eq!(accepted_lines(&load), [5, 6, 7]);
        let quoted = &load.accepted[0].1;
        assert_eq!(quoted.notice_id.as_deref(), Some("N-5"));
        assert_eq!(quoted.reporter.as_deref(), Some("say \"hi\""));
        // A quote inside a value that does not start with one is a character.
        let literal = &load.accepted[1].1;
        assert_eq!(literal.notice_id.as_deref(), Some("N\"6"));
        assert_eq!(literal.reporter, None);
        assert_eq!(load.accepted[2].1.reporter.as_deref(), Some("a,\"b"));

        // In a column that is not a notice field, the column is named.
        let load = csv("url,notified_at,notes\nhttp://a.example/,2024-01-01T00:00:00Z,\"x\n");
        assert_eq!(
            rejected(&load),
            ["line 2: column 3: the quoted value is not closed (a quoted value cannot span lines)"]
        );
        assert_eq!(
            parse_csv(b"url,\"notified_at\"x\n")
                .unwrap_err()
                .to_string(),
            "line 1: the header's column 2: text after the closing quote; inside a quoted value, \
             write a quote as \"\""
        );
    }

    #[test]
    fn duplicates_are_found_across_merges_of_the_key_index() {
        let mut text = String::from("url,notified_at,notice_id\n");
        let count = 3 * MERGE_AT;
        for i in 0..count {
            text.push_str(&format!(
                "http://h{i}.example/,2024-01-01T00:00:00Z,N-{i}\n"
            ));
        }
        // The first and the last notice again, by id and by URL and time.
        text.push_str("http://other.example/,2024-01-01T00:00:00Z,N-0\n");
        let last = count - 1;
        text.push_str(&format!("http://h{last}.example/,2024-01-01T00:00:00Z,\n"));
        text.push_str("http://h1.example/,2024-01-01T00:00:01Z,N-new\n");
        let load = csv(&text);
        assert_eq!(load.accepted.len(), count + 1);
        let duplicates: Vec<(u64, u64)> = load
            .duplicates
            .iter()
            .map(|d| (d.line, d.duplicate_of))
            .collect();
        let first_line = count as u64 + 2;
        assert_eq!(
            duplicates,
            [(first_line, 2), (first_line + 1, count as u64 + 1)]
        );
    }

    #[test]
    fn duplicates_name_the_line_they_repeat() {
        let load = csv("url,notified_at,notice_id\n\
             http://a.example/,2024-01-01T00:00:00Z,N-1\n\
             http://b.example/,2024-01-02T00:00:00Z,N-1\n\
             HTTP://A.example:80/#top,2024-01-01T01:00:00+01:00,\n\
             http://a.example/,2024-01-01T00:00:01Z,\n\
             bad,2024-01-01T00:00:00Z,N-2\n\
             http://c.example/,2024-01-01T00:00:00Z,N-2\n");
        assert_eq!(accepted_lines(&load), [2, 5, 7]);
        let duplicates: Vec<String> = load.duplicates.iter().map(ToString::to_string).collect();
        assert_eq!(
            duplicates,
            [
                "line 3: duplicate of line 2 (same notice_id \"N-1\")",
                "line 4: duplicate of line 2 (same url \"http://a.example/\" notified at 2024-01-01T00:00:00Z)",
            ]
        );
        // A rejected line claims no notice_id.
        assert_eq!(load.rejected.len(), 1);
        assert!(!load.is_clean());
    }

    #[test]
    fn jsonl_loads_valid_objects() {
        let text = "{\"url\":\"https://A.example/x\",\"notified_at\":\"2024-01-01T00:00:00Z\",\"notice_id\":\"J-1\",\"claimed_hoster\":\"Acme\"}\n\
             \n\
             {\"notified_at\":\"2024-01-01T02:00:00+02:00\",\"url\":\"https://b.example/\",\"hoster\":\"Beta\",\"category\":\"\",\"reporter\":null}\r\n";
        let load = parse_jsonl(text.as_bytes());
        assert!(load.is_clean(), "{load:?}");
        assert_eq!(accepted_lines(&load), [1, 3]);
        assert_eq!(load.accepted[0].1.url.as_str(), "https://a.example/x");
        assert_eq!(load.accepted[0].1.claimed_hoster.as_deref(), Some("Acme"));
        let second = &load.accepted[1].1;
        assert_eq!(second.notified_at, utc(2024, 1, 1, 0, 0, 0));
        assert_eq!(second.claimed_hoster.as_deref(), Some("Beta"));
        assert_eq!(second.category, None);
        assert_eq!(second.reporter, None);
    }

    #[test]
    fn jsonl_bad_lines_are_reported_and_the_rest_loads() {
        let mut bytes = Vec::new();
        let mut add = |line: &[u8]| {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        };
        add(br#"{"url":"http://ok.example/","notified_at":"2024-01-01T00:00:00Z"}"#);
        add(br#"{"url":"http://a.example/","notified_at":"#);
        add(br#"["http://a.example/","2024-01-01T00:00:00Z"]"#);
        add(br#""just a string""#);
        add(br#"{"url":42,"notified_at":"2024-01-01T00:00:00Z"}"#);
        add(br#"{"url":"http://b.example/","notified_at":"2024-01-01T00:00:00Z","notice_id":7}"#);
        add(br#"{"url":"http://c.example/"}"#);
        add(br#"{"url":"http://d.example/","notified_at":null}"#);
        add(b"{\"url\":\"http://e.example/\xff\",\"notified_at\":\"2024-01-01T00:00:00Z\"}");
        add(br#"{"url":"http://f.example/","notified_at":"2024-01-01T00:00:00Z","hoster":"A","claimed_hoster":"B"}"#);
        add(br#"{"url":"mailto:x@example.com","notified_at":"2024-01-01T00:00:00Z","hoster":null,"claimed_hoster":"C"}"#);
        add(format!(
            r#"{{"url":"http://g.example/{}","notified_at":"2024-01-01T00:00:00Z"}}"#,
            "g".repeat(MAX_LINE_LEN)
        )
        .as_bytes());
        add(br#"{"url":"http://last.example/","notified_at":"2024-01-01T00:00:00Z"}"#);
        let load = parse_jsonl(&bytes);
        assert_eq!(accepted_lines(&load), [1, 13]);
        let lines: Vec<u64> = load.rejected.iter().map(|e| e.line).collect();
        assert_eq!(lines, (2..=12).collect::<Vec<_>>());
        let reasons = rejected(&load);
        assert_eq!(
            reasons[0],
            "line 2: not valid JSON: EOF while parsing a value at column 41"
        );
        assert_eq!(reasons[1], "line 3: expected a JSON object, found an array");
        assert_eq!(reasons[2], "line 4: expected a JSON object, found a string");
        assert_eq!(reasons[3], "line 5: url: expected a string, found a number");
        assert_eq!(
            reasons[4],
            "line 6: notice_id: expected a string, found a number"
        );
        assert_eq!(reasons[5], "line 7: notified_at: missing");
        assert_eq!(reasons[6], "line 8: notified_at: missing");
        assert_eq!(
            reasons[7],
            "line 9: not valid UTF-8 (byte 0xFF at offset 25)"
        );
        assert_eq!(
            reasons[8],
            "line 10: hoster: both \"hoster\" and \"claimed_hoster\" given; give one"
        );
        assert_eq!(
            reasons[9],
            "line 11: url: \"mailto:x@example.com\": scheme \"mailto\" is not http or https"
        );
        assert!(
            reasons[10].starts_with("line 12: the line is "),
            "{}",
            reasons[10]
        );
    }

    #[test]
    fn jsonl_unknown_fields_warn_once_each_and_duplicates_are_caught() {
        let text = r#"{"url":"http://a.example/","notified_at":"2024-01-01T00:00:00Z","note":"x"}
{"url":"http://b.example/","notified_at":"2024-01-01T00:00:00Z","note":"y","tags":[]}
{"url":"http://a.example","notified_at":"2024-01-01T00:00:00.000Z"}
"#;
        let load = parse_jsonl(text.as_bytes());
        assert_eq!(accepted_lines(&load), [1, 2]);
        let warnings: Vec<String> = load.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "line 1: warning: field \"note\" is not a notice field; ignored",
                "line 2: warning: field \"tags\" is not a notice field; ignored",
            ]
        );
        assert_eq!(load.duplicates.len(), 1);
        assert_eq!(load.duplicates[0].line, 3);
        assert_eq!(load.duplicates[0].duplicate_of, 1);
    }

    #[test]
    fn an_empty_jsonl_file_is_clean_and_empty() {
        for text in ["", "\n", "  \r\n\n"] {
            let load = parse_jsonl(text.as_bytes());
            assert_eq!(load, NoticeLoad::default());
        }
    }

    #[test]
    fn long_bad_values_are_quoted_short() {
        let value = format!("nonsense{}", "x".repeat(1000));
        let load = csv(&format!("url,notified_at\nhttp://a.example/,{value}\n"));
        let reason = &load.rejected[0].reason;
        assert!(reason.len() < 300, "{reason}");
        assert!(reason.contains("(1008 bytes)"), "{reason}");
    }

    #[test]
    fn notices_round_trip_through_serde() {
        let notice = Notice {
            url: NormalizedUrl::parse("https://a.example/x").unwrap(),
            notified_at: utc(2024, 1, 1, 12, 0, 0),
            notice_id: Some("N-1".into()),
            category: None,
            reporter: Some("hotline".into()),
            claimed_hoster: Some("Acme".into()),
        };
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "url": "https://a.example/x",
                "notified_at": "2024-01-01T12:00:00Z",
                "notice_id": "N-1",
                "category": null,
                "reporter": "hotline",
                "claimed_hoster": "Acme",
            })
        );
        assert_eq!(serde_json::from_value::<Notice>(json).unwrap(), notice);
    }

    #[test]
    fn deserializing_a_notice_applies_the_same_rules() {
        let notice: Notice = serde_json::from_str(
            r#"{"url":"HTTP://A.example:80/#f","notified_at":"2024-01-01T01:00:00+01:00","hoster":"Acme","category":" "}"#,
        )
        .unwrap();
        assert_eq!(notice.url.as_str(), "http://a.example/");
        assert_eq!(notice.notified_at, utc(2024, 1, 1, 0, 0, 0));
        assert_eq!(notice.claimed_hoster.as_deref(), Some("Acme"));
        assert_eq!(notice.category, None);

        let error = serde_json::from_str::<Notice>(
            r#"{"url":"http://a.example/","notified_at":"2024-01-01T00:00:00"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("notified_at: "), "{error}");
        let error = serde_json::from_str::<Notice>(r#"{"notified_at":"2024-01-01T00:00:00Z"}"#)
            .unwrap_err();
        assert!(error.to_string().starts_with("url: missing"), "{error}");
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(NoticeFormat::from_extension("csv"), Some(NoticeFormat::Csv));
        assert_eq!(NoticeFormat::from_extension("CSV"), Some(NoticeFormat::Csv));
        assert_eq!(
            NoticeFormat::from_extension("jsonl"),
            Some(NoticeFormat::Jsonl)
        );
        assert_eq!(
            NoticeFormat::from_extension("ndjson"),
            Some(NoticeFormat::Jsonl)
        );
        assert_eq!(NoticeFormat::from_extension("json"), None);
        assert_eq!(NoticeFormat::from_extension("txt"), None);
    }
}
