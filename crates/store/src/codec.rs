//! Conversions between tdmon's types and the plain column values both
//! backends store: enums as their snake_case names, nested parts as JSON,
//! unsigned numbers as signed 64-bit integers, addresses as text. Times are
//! handled by each backend (see `sqlite.rs` and `postgres.rs`); both keep
//! microseconds, so every time goes through [`micros`] before it is used.

use std::net::IpAddr;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tdmon_core::message::{DnsResult, HttpResult, RedirectHop, SchemaV1};
use tdmon_core::{Observation, Outcome, Verdict};
use uuid::Uuid;

use crate::StoreError;

/// `time` truncated to the microsecond, the precision both backends keep.
pub(crate) fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(time)
}

/// The snake_case name serde gives a unit enum variant.
pub(crate) fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        // Only unit variants of snake_case enums are passed here.
        other => unreachable!("not a unit enum variant: {other:?}"),
    }
}

/// Parses a name written by [`name_of`].
pub(crate) fn parse_name<T: DeserializeOwned>(what: &str, name: &str) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|e| StoreError::corrupt(what, format!("{name:?}: {e}")))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    // Our types serialize to JSON without fail: no maps with non-string keys.
    serde_json::to_value(value).expect("tdmon types serialize to JSON")
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::corrupt(what, e))
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(what: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what, format!("negative value {value}")))
}

/// One observation as column values, times aside (`started_at` and
/// `answered_at` are converted by the backend).
#[derive(Debug, Clone)]
pub(crate) struct ObservationColumns {
    pub job_id: Uuid,
    pub url_id: i64,
    pub url: String,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub answered_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub dns_outcome: String,
    pub dns_answers: Value,
    pub ip: Option<String>,
    pub asn: Option<i64>,
    pub as_org: Option<String>,
    pub hoster: Option<String>,
    pub cdn: bool,
    pub http_status: Option<i32>,
    pub content_type: Option<String>,
    pub content_length: Option<i64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub location: Option<String>,
    pub redirects: Option<Value>,
    pub connection_reused: bool,
    pub tls_error: Option<String>,
    pub fingerprint: Option<String>,
    pub outcome: String,
    pub verdict: String,
}

impl ObservationColumns {
    pub fn new(obs: &Observation) -> Self {
        let http = obs.http.as_ref();
        Self {
            job_id: obs.job_id,
            url_id: obs.url_id,
            url: obs.url.clone(),
            worker: obs.worker.clone(),
            started_at: micros(obs.started_at),
            answered_at: micros(obs.answered_at),
            duration_ms: to_i64(obs.duration_ms),
            dns_outcome: name_of(&obs.dns.outcome),
            dns_answers: to_json(&obs.dns.answers),
            ip: obs.ip.map(|ip| ip.to_string()),
            asn: obs.asn.map(i64::from),
            as_org: obs.as_org.clone(),
            hoster: obs.hoster.clone(),
            cdn: obs.cdn,
            http_status: http.map(|h| i32::from(h.status)),
            content_type: http.and_then(|h| h.content_type.clone()),
            content_length: http.and_then(|h| h.content_length).map(to_i64),
            etag: http.and_then(|h| h.etag.clone()),
            last_modified: http.and_then(|h| h.last_modified.clone()),
            location: http.and_then(|h| h.location.clone()),
            redirects: http.map(|h| to_json(&h.redirects)),
            connection_reused: http.is_some_and(|h| h.connection_reused),
            tls_error: obs.tls_error.clone(),
            fingerprint: obs.fingerprint.clone(),
            outcome: obs.outcome.as_str().to_owned(),
            verdict: obs.verdict.as_str().to_owned(),
        }
    }

    pub fn into_observation(self) -> Result<Observation, StoreError> {
        let what = format!("observation {}", self.job_id);
        let http = match self.http_status {
            None => None,
            Some(status) => Some(HttpResult {
                status: u16::try_from(status)
                    .map_err(|_| StoreError::corrupt(&*what, format!("HTTP status {status}")))?,
                content_type: self.content_type,
                content_length: self.content_length.map(|n| to_u64(&what, n)).transpose()?,
                etag: self.etag,
                last_modified: self.last_modified,
                location: self.location,
                redirects: match self.redirects {
                    Some(value) => from_json::<Vec<RedirectHop>>(&what, value)?,
                    None => Vec::new(),
                },
                connection_reused: self.connection_reused,
            }),
        };
        let ip = self
            .ip
            .map(|ip| ip.parse::<IpAddr>())
            .transpose()
            .map_err(|e| StoreError::corrupt(&*what, e))?;
        let asn = self
            .asn
            .map(u32::try_from)
            .transpose()
            .map_err(|e| StoreError::corrupt(&*what, e))?;
        Ok(Observation {
            schema: SchemaV1,
            job_id: self.job_id,
            url_id: self.url_id,
            url: self.url,
            worker: self.worker,
            started_at: self.started_at,
            answered_at: self.answered_at,
            duration_ms: to_u64(&what, self.duration_ms)?,
            dns: DnsResult {
                outcome: parse_name(&what, &self.dns_outcome)?,
                answers: from_json(&what, self.dns_answers)?,
            },
            ip,
            asn,
            as_org: self.as_org,
            hoster: self.hoster,
            cdn: self.cdn,
            http,
            tls_error: self.tls_error,
            fingerprint: self.fingerprint,
            outcome: self
                .outcome
                .parse::<Outcome>()
                .map_err(|e| StoreError::corrupt(&*what, e))?,
            verdict: parse_name::<Verdict>(&what, &self.verdict)?,
        })
    }
}

/// Splits `items` into chunks that keep a statement under both backends'
/// limits on bind parameters (SQLite: 32766, PostgreSQL: 65535).
pub(crate) fn chunks_for<T>(items: &[T], binds_per_item: usize) -> std::slice::Chunks<'_, T> {
    const MAX_BINDS: usize = 30_000;
    items.chunks((MAX_BINDS / binds_per_item.max(1)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdmon_core::Purpose;
    use tdmon_core::message::DnsOutcome;
    use tdmon_core::state::Phase;

    #[test]
    fn names_round_trip() {
        assert_eq!(name_of(&Purpose::Reappearance), "reappearance");
        assert_eq!(name_of(&Phase::Offline), "offline");
        assert_eq!(name_of(&DnsOutcome::NoRecords), "no_records");
        let back: Purpose = parse_name("purpose", "confirm").unwrap();
        assert_eq!(back, Purpose::Confirm);
        let err = parse_name::<Phase>("phase of URL 3", "gone").unwrap_err();
        assert!(err.to_string().contains("phase of URL 3"), "{err}");
    }

    #[test]
    fn micros_truncates() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
