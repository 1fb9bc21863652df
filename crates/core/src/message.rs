//! The messages that travel between the roles (docs/MESSAGES.md): every one
//! is JSON with `"schema": 1`. A message with another schema number fails to
//! parse instead of being misread.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::outcome::{Outcome, Verdict};

/// The schema version every message carries.
pub const SCHEMA: u32 = 1;

/// `"schema": 1`, checked on the way in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaV1;

impl Serialize for SchemaV1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA)
    }
}

impl JsonSchema for SchemaV1 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SchemaVersion".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The message schema version; this build reads and writes 1.",
            "type": "integer",
            "const": SCHEMA,
        })
    }
}

impl<'de> Deserialize<'de> for SchemaV1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            SCHEMA => Ok(SchemaV1),
            other => Err(serde::de::Error::custom(format!(
                "unsupported schema {other}, this build reads schema {SCHEMA}"
            ))),
        }
    }
}

/// Identifies one monitored notice-URL in the store.
pub type UrlId = i64;

/// Why a check was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The first check after the notice.
    Baseline,
    /// A check on the regular schedule.
    Scheduled,
    /// A recheck to confirm (or refute) a non-online run.
    Confirm,
    /// A sparse recheck after a takedown, looking for the content's return.
    Reappearance,
}

/// One check to do, published by the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckJob {
    pub schema: SchemaV1,
    pub job_id: Uuid,
    pub url_id: UrlId,
    pub url: String,
    pub purpose: Purpose,
    pub due_at: DateTime<Utc>,
    /// A worker that receives the job later than this drops it: a stale check
    /// would date a takedown wrongly.
    pub expires_at: DateTime<Utc>,
    /// The fingerprint of the URL's first online check, so that the worker can
    /// tell content that was replaced (an image now answering HTML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
}

/// How name resolution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DnsOutcome {
    Ok,
    Nxdomain,
    Servfail,
    Timeout,
    NoRecords,
    RefusedByPolicy,
}

/// The DNS part of an observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsResult {
    pub outcome: DnsOutcome,
    /// Every address the name resolved to, policy-refused ones included.
    #[serde(default)]
    pub answers: Vec<IpAddr>,
}

/// One hop of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RedirectHop {
    pub url: String,
    pub status: u16,
}

/// The HTTP part of an observation: headers only, never a body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HttpResult {
    /// The status of the final response.
    pub status: u16,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The `Location` of the final response, if it was a redirect not followed.
    pub location: Option<String>,
    /// Every redirect followed, in order; empty when the first response was final.
    #[serde(default)]
    pub redirects: Vec<RedirectHop>,
    /// The final response came over a connection an earlier request to the
    /// same address had opened (worker.reuse_idle); false for a new one.
    #[serde(default)]
    pub connection_reused: bool,
}

/// Who an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attribution {
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// The hoster after ASN merges and CIDR overrides.
    pub hoster: Option<String>,
    /// The address belongs to a known CDN or reverse proxy: flagged, not blamed.
    #[serde(default)]
    pub cdn: bool,
}

/// What the report reads of one check that reached an address or named a
/// network: its verdict and the address with its network as observed. The
/// hoster is mapped again when the report is made, so it is not carried.
/// Kept in the URL's state (`UrlState::addresses`) as a JSON array
/// `[verdict, ip, asn, as_org]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObservedAddress {
    pub verdict: Verdict,
    pub ip: Option<IpAddr>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

impl ObservedAddress {
    /// `observation`'s address and network; `None` when it has neither an
    /// address nor an ASN.
    pub fn of(observation: &Observation) -> Option<Self> {
        (observation.ip.is_some() || observation.asn.is_some()).then(|| Self {
            verdict: observation.verdict,
            ip: observation.ip,
            asn: observation.asn,
            as_org: observation.as_org.clone(),
        })
    }
}

impl Serialize for ObservedAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.verdict, self.ip, self.asn, &self.as_org).serialize(serializer)
    }
}

/// What one check of one URL saw, published by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observation {
    pub schema: SchemaV1,
    pub job_id: Uuid,
    pub url_id: UrlId,
    pub url: String,
    /// The worker's name, for tracing a figure back to where it was measured.
    pub worker: String,
    /// When the check started: the earliest moment the answer can describe.
    pub started_at: DateTime<Utc>,
    /// When the check had its answer (or gave up): the latest moment the
    /// answer can describe. The server decided what to answer in between.
    pub answered_at: DateTime<Utc>,
    /// `answered_at - started_at`, in whole milliseconds, for people.
    pub duration_ms: u64,
    pub dns: DnsResult,
    /// The address actually connected to; `None` when no connection was made.
    pub ip: Option<IpAddr>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    pub hoster: Option<String>,
    #[serde(default)]
    pub cdn: bool,
    pub http: Option<HttpResult>,
    pub tls_error: Option<String>,
    /// A short digest of the content's kind (and of a body prefix when one was
    /// read); the body itself is never kept.
    pub fingerprint: Option<String>,
    pub outcome: Outcome,
    pub verdict: Verdict,
}

impl Observation {
    /// An address was there to attribute (the one connected to, or a DNS
    /// answer), but no database or override named its network: counted and
    /// shown, because such a check is missing from every hoster's figures.
    pub fn is_unattributed(&self) -> bool {
        self.outcome != Outcome::NotChecked
            && self.asn.is_none()
            && self.hoster.is_none()
            && (self.ip.is_some() || !self.dns.answers.is_empty())
    }

    /// The attribution carried by this observation, if it has any.
    pub fn attribution(&self) -> Option<Attribution> {
        (self.asn.is_some() || self.hoster.is_some()).then(|| Attribution {
            asn: self.asn,
            as_org: self.as_org.clone(),
            hoster: self.hoster.clone(),
            cdn: self.cdn,
        })
    }
}

/// What a state change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    FirstOnline,
    AlreadyOffline,
    Takedown,
    Reappeared,
    HosterChanged,
    Expired,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::FirstOnline => "first_online",
            EventKind::AlreadyOffline => "already_offline",
            EventKind::Takedown => "takedown",
            EventKind::Reappeared => "reappeared",
            EventKind::HosterChanged => "hoster_changed",
            EventKind::Expired => "expired",
        }
    }
}

/// The interval that holds the true moment of a change of state: from the
/// start of the last check that saw the old state (excluded) to the answer of
/// the first check that saw the new one (included). A check's answer describes
/// some moment between its start and its answer, so the change happened in
/// between, however long either check took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Bracket {
    /// `None` when no check saw the old state: a URL offline at its first
    /// check, which was (presumably) served when the notice was sent.
    pub from: Option<DateTime<Utc>>,
    /// The answer of the first check that saw the new state: the time the
    /// event is dated at.
    pub to: DateTime<Utc>,
}

impl Bracket {
    /// Whether `moment` lies in (from, to]; a bracket without `from` starts
    /// at `notified_at`.
    pub fn holds(&self, moment: DateTime<Utc>, notified_at: DateTime<Utc>) -> bool {
        self.from.unwrap_or(notified_at) < moment && moment <= self.to
    }
}

/// What confirmed a takedown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// At least one check of the run proved the content gone (an offline
    /// verdict); the bracket ends at the first such check.
    Offline,
    /// Only inconclusive checks, watched for longer than the inconclusive
    /// limit; the bracket ends at the first check of that watched stretch,
    /// which is an assumption, not a proof.
    InconclusiveOnly,
}

impl Evidence {
    pub const fn as_str(self) -> &'static str {
        match self {
            Evidence::Offline => "offline",
            Evidence::InconclusiveOnly => "inconclusive_only",
        }
    }
}

/// A state change of a monitored URL, published by the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub schema: SchemaV1,
    pub kind: EventKind,
    pub url_id: UrlId,
    pub url: String,
    pub notice_id: Option<String>,
    pub notified_at: DateTime<Utc>,
    /// When the change happened at the latest: the late end of its bracket;
    /// for `first_online` and `expired`, the start of the check that saw it.
    pub at: DateTime<Utc>,
    /// Takedown, already_offline, reappeared and hoster_changed.
    pub bracket: Option<Bracket>,
    /// What confirmed a takedown or already_offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// `at - notified_at`, in seconds (to the microsecond); takedown and
    /// already_offline only.
    pub time_to_takedown_s: Option<f64>,
    pub hoster: Option<String>,
    pub asn: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bracket_holds_what_lies_after_its_start_up_to_its_end() {
        let at = |s: i64| DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(s);
        let bracket = Bracket {
            from: Some(at(10)),
            to: at(20),
        };
        assert!(!bracket.holds(at(10), at(0)));
        assert!(bracket.holds(at(11), at(0)));
        assert!(bracket.holds(at(20), at(0)));
        assert!(!bracket.holds(at(21), at(0)));
        let never_online = Bracket {
            from: None,
            ..bracket
        };
        assert!(never_online.holds(at(5), at(0)));
        assert!(!never_online.holds(at(0), at(0)));
    }

    #[test]
    fn schema_number_is_written_and_enforced() {
        let job = CheckJob {
            schema: SchemaV1,
            job_id: Uuid::nil(),
            url_id: 7,
            url: "http://example.test/a".into(),
            purpose: Purpose::Baseline,
            due_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::UNIX_EPOCH,
            baseline: None,
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["purpose"], "baseline");
        let back: CheckJob = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, job);

        let mut v2 = json;
        v2["schema"] = 2.into();
        let err = serde_json::from_value::<CheckJob>(v2).unwrap_err();
        assert!(err.to_string().contains("unsupported schema 2"), "{err}");
    }
}
