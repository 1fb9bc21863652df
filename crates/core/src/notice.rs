//! Notices, and loading them from a CSV or JSON Lines file's bytes.
//!
//! A notice file is processed line by line: a line that is not valid is
//! reported with its 1-based line number, the field and the reason, and every
//! other line still loads. Nothing is dropped silently: each non-blank line
//! ends up accepted, rejected or reported as a duplicate.
//!
//! Both formats:
//! - fields `url` and `notified_at` are required; `notice_id`, `category`,
//!   `reporter` and `hoster` (alias `claimed_hoster`) are optional, and an
//!   empty or all-blank optional value means none. Values are trimmed;
//! - `notified_at` is an RFC 3339 time *with* an offset (`Z` or `+01:00`); a
//!   time without one is refused rather than guessed, and the instant is kept;
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
//! order and any letter case. A header without `url` or `notified_at`, or with
//! one column twice, makes the whole file fail ([`NoticeFileError`]). Columns
//! that are not notice fields are ignored, with one warning. A row must have
//! as many fields as the header. Quoting follows RFC 4180 within a line, but a
//! quoted field cannot run across a line break: no notice field needs one, and
//! this way an unbalanced quote damages its own line and not the rest.
//!
//! JSON Lines: one object per line. Fields that are not notice fields are
//! ignored, with one warning per field name. A value must be a string (or
//! null, for an optional field).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{Cursor, SeekFrom};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::url::{NormalizedUrl, UrlError};

/// The longest line (or CSV record) read, in bytes, without its line break.
/// A notice needs a few hundred bytes; this bounds what one bad line costs.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// How much of a bad value an error message quotes.
const QUOTE_LEN: usize = 120;

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
            Some(text) => NormalizedUrl::parse(text).map_err(|e| {
                let reason = match e {
                    // A password is never echoed into a report or a log.
                    UrlError::Credentials => e.to_string(),
                    _ => format!("{}: {e}", quote(text)),
                };
                field_error(Field::Url, reason)
            })?,
        };
        let notified_at = match self.notified_at.map(str::trim) {
            None => return Err(field_error(Field::NotifiedAt, "missing")),
            Some("") => return Err(field_error(Field::NotifiedAt, "empty")),
            Some(text) => parse_notified_at(text)
                .map_err(|e| field_error(Field::NotifiedAt, e.to_string()))?,
        };
        let optional = |value: Option<&str>| {
            value
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(Notice {
            url,
            notified_at,
            notice_id: optional(self.notice_id),
            category: optional(self.category),
            reporter: optional(self.reporter),
            claimed_hoster: optional(self.hoster),
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
                notified_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
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
        write!(f, "line {}: {}", self.line, self.message)
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
}

impl NoticeFileError {
    /// The line at fault, if one is.
    pub fn line(&self) -> Option<u64> {
        match self {
            NoticeFileError::Empty => None,
            NoticeFileError::MissingColumn { line, .. }
            | NoticeFileError::DuplicateColumn { line, .. }
            | NoticeFileError::HeaderTooLong { line, .. }
            | NoticeFileError::HeaderNotUtf8 { line } => Some(*line),
        }
    }
}

/// What loading a notice file found, every list in line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeLoad {
    /// The notices loaded, with their line numbers.
    pub accepted: Vec<(u64, Notice)>,
    /// Lines not loaded, one entry per line.
    pub rejected: Vec<LineError>,
    /// Valid lines that repeat an accepted notice.
    pub duplicates: Vec<Duplicate>,
    pub warnings: Vec<Warning>,
}

impl NoticeLoad {
    /// Every line loaded: nothing rejected and no duplicates. Warnings do not
    /// make a file unclean.
    pub fn is_clean(&self) -> bool {
        self.rejected.is_empty() && self.duplicates.is_empty()
    }

    fn reject(&mut self, line: u64, field: Option<&'static str>, reason: impl Into<String>) {
        self.rejected.push(LineError {
            line,
            field,
            reason: reason.into(),
        });
    }
}

/// Parses a notice file in `format`.
pub fn parse(format: NoticeFormat, bytes: &[u8]) -> Result<NoticeLoad, NoticeFileError> {
    match format {
        NoticeFormat::Csv => parse_csv(bytes),
        NoticeFormat::Jsonl => Ok(parse_jsonl(bytes)),
    }
}

/// Parses a CSV notice file: see the module documentation. Fails only when
/// the header makes the whole file unreadable; a bad line is reported in the
/// result.
pub fn parse_csv(bytes: &[u8]) -> Result<NoticeLoad, NoticeFileError> {
    let mut load = NoticeLoad::default();
    let mut dedup = Dedup::default();
    let mut lines = lines(bytes).filter(|(_, line)| !is_blank(line));

    let Some((header_line, header)) = lines.next() else {
        return Err(NoticeFileError::Empty);
    };
    if header.len() > MAX_LINE_LEN {
        return Err(NoticeFileError::HeaderTooLong {
            line: header_line,
            len: header.len(),
        });
    }
    let mut csv_lines = CsvLines::new();
    let columns = parse_header(header_line, csv_lines.split(header), &mut load)?;

    for (number, line) in lines {
        if line.len() > MAX_LINE_LEN {
            load.reject(number, None, too_long(line.len()));
            continue;
        }
        match csv_notice(&columns, csv_lines.split(line)) {
            Ok(notice) => dedup.add(&mut load, number, notice),
            Err((field, reason)) => load.reject(number, field, reason),
        }
    }
    Ok(load)
}

/// The notice in one CSV row, or the field at fault and why.
fn csv_notice(
    columns: &[Option<Field>],
    record: &csv::ByteRecord,
) -> Result<Notice, (Option<&'static str>, String)> {
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
        .filter_map(|(column, value)| column.map(|field| (field, value)))
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

/// Parses a JSON Lines notice file: see the module documentation.
pub fn parse_jsonl(bytes: &[u8]) -> NoticeLoad {
    let mut load = NoticeLoad::default();
    let mut dedup = Dedup::default();
    let mut unknown_keys = BTreeSet::new();

    for (number, line) in lines(bytes) {
        if is_blank(line) {
            continue;
        }
        if line.len() > MAX_LINE_LEN {
            load.reject(number, None, too_long(line.len()));
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(e) => {
                load.reject(number, None, not_utf8_reason(line, &e));
                continue;
            }
        };
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(other) => {
                let reason = format!("expected a JSON object, found {}", json_kind(&other));
                load.reject(number, None, reason);
                continue;
            }
            Err(e) => {
                load.reject(number, None, format!("not valid JSON: {}", json_error(&e)));
                continue;
            }
        };

        for key in object.keys() {
            if Field::from_name(key).is_none() && unknown_keys.insert(key.clone()) {
                load.warnings.push(Warning {
                    line: number,
                    message: format!("field {} is not a notice field; ignored", quote(key)),
                });
            }
        }
        match notice_from_object(&object) {
            Ok(notice) => dedup.add(&mut load, number, notice),
            Err(e) => load.reject(number, Some(e.field), e.reason),
        }
    }
    load
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

/// The lines of a file with their 1-based numbers, without `\n` or `\r\n`,
/// and without a UTF-8 byte order mark at the start.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    (!bytes.is_empty())
        .then(|| bytes.split(|&b| b == b'\n'))
        .into_iter()
        .flatten()
        .zip(1..)
        .map(|(line, number)| (number, line.strip_suffix(b"\r").unwrap_or(line)))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn too_long(len: usize) -> String {
    format!("the line is {len} bytes long, over the {MAX_LINE_LEN}-byte limit")
}

fn not_utf8_reason(bytes: &[u8], error: &std::str::Utf8Error) -> String {
    let at = error.valid_up_to();
    format!(
        "not valid UTF-8 (byte 0x{:02X} at offset {at})",
        bytes.get(at).copied().unwrap_or_default()
    )
}

/// Splits CSV lines into fields, one line at a time, so that a line break
/// never ends up inside a field and an unbalanced quote runs only to the end
/// of its own line. One reader serves every line: building a reader costs far
/// more than parsing a short line.
struct CsvLines<'a> {
    reader: csv::Reader<Cursor<&'a [u8]>>,
    record: csv::ByteRecord,
}

impl<'a> CsvLines<'a> {
    fn new() -> Self {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(Cursor::new(&b""[..]));
        // Set, so that no header row is ever read from the input.
        reader.set_byte_headers(csv::ByteRecord::new());
        CsvLines {
            reader,
            record: csv::ByteRecord::new(),
        }
    }

    /// The fields of `line`, which holds no `\n`.
    fn split(&mut self, line: &'a [u8]) -> &csv::ByteRecord {
        *self.reader.get_mut() = Cursor::new(line);
        // Seeking resets the parser and drops what it had buffered. Neither
        // that nor reading can fail on a byte slice: there is no IO, no UTF-8
        // check, and records of any length are allowed. On a failure all the
        // same, the line has no fields, and is rejected for that.
        let read = self
            .reader
            .seek_raw(SeekFrom::Start(0), csv::Position::new())
            .and_then(|()| self.reader.read_byte_record(&mut self.record));
        if !matches!(read, Ok(true)) {
            self.record.clear();
        }
        &self.record
    }
}

/// The notice field each header column holds, `None` for an ignored column.
fn parse_header(
    number: u64,
    record: &csv::ByteRecord,
    load: &mut NoticeLoad,
) -> Result<Vec<Option<Field>>, NoticeFileError> {
    let mut columns = Vec::with_capacity(record.len());
    let mut unknown = Vec::new();
    for name in record.iter() {
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
        load.warnings.push(Warning {
            line: number,
            message: format!(
                "{noun} {} {verb} not a notice field; ignored",
                unknown.join(", ")
            ),
        });
    }
    Ok(columns)
}

/// The notices accepted so far, by the keys that make a later one a duplicate.
#[derive(Debug, Default)]
struct Dedup {
    by_id: HashMap<String, u64>,
    by_url_and_time: HashMap<(NormalizedUrl, DateTime<Utc>), u64>,
}

impl Dedup {
    fn add(&mut self, load: &mut NoticeLoad, line: u64, notice: Notice) {
        if let Some(id) = &notice.notice_id
            && let Some(&first) = self.by_id.get(id)
        {
            load.duplicates.push(Duplicate {
                line,
                duplicate_of: first,
                key: DuplicateKey::NoticeId(id.clone()),
            });
            return;
        }
        let url_and_time = (notice.url.clone(), notice.notified_at);
        if let Some(&first) = self.by_url_and_time.get(&url_and_time) {
            load.duplicates.push(Duplicate {
                line,
                duplicate_of: first,
                key: DuplicateKey::UrlAndTime {
                    url: url_and_time.0,
                    notified_at: url_and_time.1,
                },
            });
            return;
        }
        if let Some(id) = &notice.notice_id {
            self.by_id.insert(id.clone(), line);
        }
        self.by_url_and_time.insert(url_and_time, line);
        load.accepted.push((line, notice));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
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
                "line 5: url: contains credentials (a user name or password), which a notice must not carry",
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
                "line 1: field \"note\" is not a notice field; ignored",
                "line 2: field \"tags\" is not a notice field; ignored",
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
