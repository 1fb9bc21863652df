//! The API of the dispatcher and the embedded monitor:
//!
//! - `POST /notices`: a body in the notice file formats (`text/csv`, or JSON
//!   Lines as `application/x-ndjson`), or a JSON array of notice objects
//!   (`application/json`). Every line goes through the file intake's parser
//!   (`tdmon_core::notice`): the same fields, limits, time window and
//!   duplicate rules. Valid notices are stored; the answer lists, by line,
//!   the URL ids added, the notices already stored, the lines rejected and
//!   the duplicates. A JSON array's "line" is the element's position from 1.
//! - `GET /urls/{id}`: a monitored URL's state, events and observations.
//! - `GET /hosters`: the current figures per hoster, as `tdmon report
//!   --format json` gives them over every notice, computed at most once a
//!   minute (a report reads the whole store; a dashboard polling it must not).
//!
//! All need `Authorization: Bearer <http.token>`: the answers name notified
//! URLs, as sensitive as the notices. Without a configured token the API
//! answers 403.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tdmon_core::UrlId;
use tdmon_core::hoster::HosterMap;
use tdmon_core::norm::Norms;
use tdmon_core::notice::{
    Duplicate, Entry, LineError, Notice, NoticeFileError, NoticeFormat, NoticeParser, NoticeRules,
    TimeWindow, Warning,
};
use tdmon_report::{GroupBy, Inputs, Methodology, Period, RankKey, ReportError};
use tdmon_store::{DuplicateReason, Store};

use crate::Shared;
use crate::auth::Token;

/// Notices stored per transaction, as the file intake does.
const NOTICE_BATCH: usize = 1_000;

/// How long the figures of `GET /hosters` are served before they are
/// computed again.
pub const FIGURES_MAX_AGE: Duration = Duration::from_secs(60);

/// Figures, and when they were computed.
type Computed = (Instant, Arc<serde_json::Value>);

/// The API's state: the store, the notice rules, and the hoster mapping and
/// norms the figures are computed with.
#[derive(Debug, Clone)]
pub struct Api {
    store: Store,
    rules: NoticeRules,
    hosters: Arc<HosterMap>,
    norms: Arc<Norms>,
    /// The last figures and when they were computed; one computation at a
    /// time, the others wait for it.
    figures: Arc<tokio::sync::Mutex<Option<Computed>>>,
    pub(crate) token: Option<Token>,
}

impl Api {
    pub fn new(store: Store, rules: NoticeRules, hosters: HosterMap, norms: Norms) -> Self {
        Self {
            store,
            rules,
            hosters: Arc::new(hosters),
            norms: Arc::new(norms),
            figures: Arc::default(),
            token: None,
        }
    }

    /// The figures per hoster, computed again when older than
    /// [`FIGURES_MAX_AGE`].
    async fn hoster_figures(&self) -> Result<Arc<serde_json::Value>, ReportError> {
        let mut cached = self.figures.lock().await;
        if let Some((at, figures)) = cached.as_ref()
            && at.elapsed() < FIGURES_MAX_AGE
        {
            return Ok(figures.clone());
        }
        let inputs = Inputs {
            hosters: &self.hosters,
            norms: &self.norms,
            period: Period::default(),
            by: GroupBy::Hoster,
            rank_by: RankKey::default(),
            urls_per_group: 0,
            methodology: Methodology::default(),
        };
        let report = tdmon_report::figures(&self.store, &inputs).await?;
        let figures = Arc::new(json!({
            "generated_at": report.generated_at,
            "max_age_seconds": FIGURES_MAX_AGE.as_secs(),
            "norms": report.norms,
            "rank_by": report.rank_by,
            "first_notice": report.first_notice,
            "last_notice": report.last_notice,
            "rows": report.rows,
            "totals": report.totals,
        }));
        *cached = Some((Instant::now(), figures.clone()));
        Ok(figures)
    }
}

/// What a body's lines came to, before storing.
#[derive(Debug, Default)]
struct Parsed {
    /// `(line, notice)` of every valid notice.
    notices: Vec<(u64, Notice)>,
    rejected: Vec<LineError>,
    duplicates: Vec<Duplicate>,
    warnings: Vec<Warning>,
}

/// Why a body cannot be read at all.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    File(#[from] NoticeFileError),
    #[error("the body is not a JSON array of notice objects: {0}")]
    NotAnArray(String),
}

/// The body's format from its `Content-Type`.
fn format_of(headers: &HeaderMap) -> Option<BodyFormat> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Some(BodyFormat::Lines(NoticeFormat::Csv)),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            Some(BodyFormat::Lines(NoticeFormat::Jsonl))
        }
        "application/json" => Some(BodyFormat::JsonArray),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    /// A notice file, line by line.
    Lines(NoticeFormat),
    /// One JSON array; each element is parsed as a JSON Lines line.
    JsonArray,
}

/// Parses a request body as the file intake parses a file.
fn parse_body(format: BodyFormat, body: &[u8], window: TimeWindow) -> Result<Parsed, BodyError> {
    let mut entries = Vec::new();
    match format {
        BodyFormat::Lines(format) => {
            let mut parser = NoticeParser::new(format, window);
            for (number, line) in (1..).zip(body.split(|&b| b == b'\n')) {
                parser.line(number, line, &mut entries)?;
            }
            parser.finish()?;
        }
        BodyFormat::JsonArray => {
            let items: Vec<serde_json::Value> =
                serde_json::from_slice(body).map_err(|e| BodyError::NotAnArray(e.to_string()))?;
            let mut parser = NoticeParser::new(NoticeFormat::Jsonl, window);
            for (number, item) in (1..).zip(&items) {
                let line = serde_json::to_vec(item).expect("a JSON value serializes");
                parser.line(number, &line, &mut entries)?;
            }
        }
    }
    let mut parsed = Parsed::default();
    for entry in entries {
        match entry {
            Entry::Notice { line, notice } => parsed.notices.push((line, notice)),
            Entry::Rejected(error) => parsed.rejected.push(error),
            Entry::Duplicate(duplicate) => parsed.duplicates.push(duplicate),
            Entry::Warning(warning) => parsed.warnings.push(warning),
        }
    }
    Ok(parsed)
}

/// The answer to `POST /notices`.
#[derive(Debug, Default, Serialize)]
struct NoticesAnswer {
    /// One per stored notice: its line and its URL's id.
    added: Vec<AddedUrl>,
    /// Notices stored before (by an earlier request or file).
    already_stored: Vec<AlreadyStored>,
    rejected: Vec<LineError>,
    duplicates: Vec<Duplicate>,
    warnings: Vec<Warning>,
}

#[derive(Debug, Serialize)]
struct AddedUrl {
    line: u64,
    url_id: UrlId,
}

#[derive(Debug, Serialize)]
struct AlreadyStored {
    line: u64,
    reason: String,
}

/// Refuses a request without the token: 404 where there is no API, 403
/// when no token is configured, 401 when the request lacks it.
fn authorize(api: Option<&Api>, headers: &HeaderMap) -> Result<Api, Box<Response>> {
    let Some(api) = api else {
        return Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            "this process has no API",
        )));
    };
    let Some(token) = &api.token else {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "the API is disabled: set http.token to enable it",
        )));
    };
    if !token.admits(headers) {
        let mut refused = problem(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <http.token>)",
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Err(Box::new(refused));
    }
    Ok(api.clone())
}

fn problem(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

pub(crate) async fn post_notices(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = match authorize(shared.parts.api.as_ref(), &headers) {
        Ok(api) => api,
        Err(refused) => return *refused,
    };
    let Some(format) = format_of(&headers) else {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be text/csv, application/x-ndjson or application/json",
        );
    };
    let now = Utc::now();
    let parsed = match parse_body(format, &body, api.rules.window(now)) {
        Ok(parsed) => parsed,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match store(&api.store, parsed, now).await {
        Ok(answer) => {
            tdmon_metrics::count_notices("http", "added", answer.added.len() as u64);
            let duplicates = answer.duplicates.len() + answer.already_stored.len();
            tdmon_metrics::count_notices("http", "duplicate", duplicates as u64);
            tdmon_metrics::count_notices("http", "rejected", answer.rejected.len() as u64);
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err((answer, e)) => {
            tracing::error!(error = %tdmon_core::error_chain(&e), "storing notices from the API failed");
            let error = format!(
                "cannot store the notices: {}; those listed as added are stored, and \
                 sending the request again reports them as already stored",
                tdmon_core::error_chain(&e)
            );
            let mut body = serde_json::to_value(&answer).expect("the answer serializes");
            body["error"] = error.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Stores the valid notices, [`NOTICE_BATCH`] per transaction. On a store
/// failure, what was stored so far comes back with the error.
async fn store(
    store: &Store,
    parsed: Parsed,
    now: DateTime<Utc>,
) -> Result<NoticesAnswer, (NoticesAnswer, tdmon_store::StoreError)> {
    let mut answer = NoticesAnswer {
        rejected: parsed.rejected,
        duplicates: parsed.duplicates,
        warnings: parsed.warnings,
        ..NoticesAnswer::default()
    };
    for chunk in parsed.notices.chunks(NOTICE_BATCH) {
        let notices: Vec<Notice> = chunk.iter().map(|(_, notice)| notice.clone()).collect();
        let added = match store.add_notices(&notices, now).await {
            Ok(added) => added,
            Err(e) => return Err((answer, e)),
        };
        let mut not_added = vec![false; chunk.len()];
        for (index, reason) in &added.duplicates {
            not_added[*index] = true;
            let line = chunk[*index].0;
            match reason {
                DuplicateReason::InInput { first, key } => answer.duplicates.push(Duplicate {
                    line,
                    duplicate_of: chunk[*first].0,
                    key: key.clone(),
                }),
                DuplicateReason::Stored { .. } => answer.already_stored.push(AlreadyStored {
                    line,
                    reason: reason.to_string(),
                }),
            }
        }
        // The store gives the new URL ids in the order of their notices.
        let lines = chunk
            .iter()
            .zip(not_added)
            .filter(|(_, skipped)| !skipped)
            .map(|((line, _), _)| *line);
        answer.added.extend(
            lines
                .zip(added.added)
                .map(|(line, url_id)| AddedUrl { line, url_id }),
        );
    }
    Ok(answer)
}

pub(crate) async fn get_url(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<UrlId>,
) -> Response {
    let api = match authorize(shared.parts.api.as_ref(), &headers) {
        Ok(api) => api,
        Err(refused) => return *refused,
    };
    let read = async {
        let Some(state) = api.store.states(&[id]).await?.into_iter().next() else {
            return Ok(None);
        };
        let events = api.store.events(id).await?;
        let observations = api.store.observations(id).await?;
        Ok::<_, tdmon_store::StoreError>(Some(json!({
            "url_id": id,
            "state": state,
            "events": events,
            "observations": observations,
        })))
    };
    match read.await {
        Ok(Some(body)) => (StatusCode::OK, Json(body)).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "no monitored URL has this id"),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot read the store: {}", tdmon_core::error_chain(&e)),
        ),
    }
}

pub(crate) async fn get_hosters(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let api = match authorize(shared.parts.api.as_ref(), &headers) {
        Ok(api) => api,
        Err(refused) => return *refused,
    };
    match api.hoster_figures().await {
        Ok(figures) => (StatusCode::OK, Json(figures.as_ref().clone())).into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "cannot compute the figures: {}",
                tdmon_core::error_chain(&e)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> TimeWindow {
        NoticeRules::default().window(Utc::now())
    }

    #[test]
    fn a_csv_body_is_read_as_a_file_is() {
        let at = Utc::now().to_rfc3339();
        let body = format!(
            "url,notified_at\r\nhttp://a.example/1,{at}\r\nnot a url,{at}\r\nhttp://a.example/1,{at}\r\n"
        );
        let parsed = parse_body(
            BodyFormat::Lines(NoticeFormat::Csv),
            body.as_bytes(),
            window(),
        )
        .unwrap();
        assert_eq!(parsed.notices.len(), 1);
        assert_eq!(parsed.notices[0].0, 2);
        assert_eq!(parsed.rejected.len(), 1);
        assert_eq!(parsed.rejected[0].line, 3);
        assert_eq!(parsed.duplicates.len(), 1);
        assert_eq!(parsed.duplicates[0].duplicate_of, 2);

        let headerless = parse_body(BodyFormat::Lines(NoticeFormat::Csv), b"", window());
        assert!(matches!(
            headerless,
            Err(BodyError::File(NoticeFileError::Empty))
        ));
    }

    #[test]
    fn a_json_array_counts_lines_by_element() {
        let at = Utc::now().to_rfc3339();
        let body = format!(
            r#"[{{"url":"http://a.example/1","notified_at":"{at}"}},{{"url":"http://a.example/2"}},{{"url":"ftp://x/","notified_at":"{at}","extra":1}}]"#
        );
        let parsed = parse_body(BodyFormat::JsonArray, body.as_bytes(), window()).unwrap();
        assert_eq!(parsed.notices.len(), 1);
        let lines: Vec<_> = parsed.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3]);
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(matches!(
            parse_body(BodyFormat::JsonArray, b"{}", window()),
            Err(BodyError::NotAnArray(_))
        ));
    }

    #[test]
    fn the_content_type_names_the_format() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            (
                "text/csv; charset=utf-8",
                Some(BodyFormat::Lines(NoticeFormat::Csv)),
            ),
            (
                "application/x-ndjson",
                Some(BodyFormat::Lines(NoticeFormat::Jsonl)),
            ),
            ("Application/JSON", Some(BodyFormat::JsonArray)),
            ("text/plain", None),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(format_of(&headers), expected, "{value}");
        }
    }
}
