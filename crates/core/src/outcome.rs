//! What a check found (the fine-grained [`Outcome`]) and what it means for the
//! measurement (the [`Verdict`]), with the default mapping of docs/MEASUREMENT.md and an
//! override per outcome from the configuration.
//!
//! A dead URL is a value here, never an error: `Err` is reserved for tdmon's own
//! failures (config, broker, database).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the notified content was served by a check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The content is served.
    Online,
    /// The content is gone: the check proves it.
    Offline,
    /// The check could not tell (timeouts, 5xx, bot blocks, ...).
    Inconclusive,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Online => "online",
            Verdict::Offline => "offline",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cause a check ended with. The HTTP status itself travels in the
/// observation; the outcome names its class so that verdicts can be mapped
/// per class in the configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx whose content matches the baseline's kind.
    Served,
    /// 2xx, but the fingerprint shows the content was replaced (e.g. an image
    /// URL now answering text/html).
    ContentReplaced,
    /// The redirect chain ends on another resource (home page, landing page).
    RedirectElsewhere,
    /// More redirects than the configured bound.
    TooManyRedirects,
    /// 404 Not Found.
    HttpNotFound,
    /// 410 Gone.
    HttpGone,
    /// 451 Unavailable For Legal Reasons.
    HttpLegalReasons,
    /// 401 Unauthorized.
    HttpUnauthorized,
    /// 403 Forbidden: a bot block and a suspended account look alike.
    HttpForbidden,
    /// 429 Too Many Requests.
    HttpRateLimited,
    /// Any other 4xx.
    HttpClientError,
    /// 5xx.
    HttpServerError,
    /// A status outside 2xx-5xx, or a 3xx without a usable Location.
    HttpUnexpected,
    /// The name does not exist (authoritative NXDOMAIN).
    DnsNxdomain,
    /// The name exists but has no A/AAAA records.
    DnsNoRecords,
    /// The resolver answered SERVFAIL (or another server-side failure).
    DnsServfail,
    /// No DNS answer within the DNS timeout.
    DnsTimeout,
    /// Every resolved address was refused by the target policy; nothing was contacted.
    RefusedByPolicy,
    /// The TCP connection was refused or reset.
    ConnectRefused,
    /// The TCP connection did not complete within the connect timeout.
    ConnectTimeout,
    /// The TLS handshake failed (bad certificate, protocol error).
    TlsFailure,
    /// The peer spoke no valid HTTP, or its headers exceeded the size bound.
    ProtocolError,
    /// The whole check exceeded its total timeout (black hole, slow drip).
    Timeout,
    /// The host was not contacted: tdmon's own limits, or the host's earlier
    /// `Retry-After`, outlasted the job. It says nothing about the content, and
    /// the state machine ignores it.
    NotChecked,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 24] = [
        Outcome::Served,
        Outcome::ContentReplaced,
        Outcome::RedirectElsewhere,
        Outcome::TooManyRedirects,
        Outcome::HttpNotFound,
        Outcome::HttpGone,
        Outcome::HttpLegalReasons,
        Outcome::HttpUnauthorized,
        Outcome::HttpForbidden,
        Outcome::HttpRateLimited,
        Outcome::HttpClientError,
        Outcome::HttpServerError,
        Outcome::HttpUnexpected,
        Outcome::DnsNxdomain,
        Outcome::DnsNoRecords,
        Outcome::DnsServfail,
        Outcome::DnsTimeout,
        Outcome::RefusedByPolicy,
        Outcome::ConnectRefused,
        Outcome::ConnectTimeout,
        Outcome::TlsFailure,
        Outcome::ProtocolError,
        Outcome::Timeout,
        Outcome::NotChecked,
    ];

    /// The outcome for a final (non-redirect) HTTP status whose content has not
    /// been judged yet: 2xx maps to `Served`, the caller downgrades it to
    /// `ContentReplaced` when the fingerprint says so.
    pub const fn from_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Served,
            401 => Outcome::HttpUnauthorized,
            403 => Outcome::HttpForbidden,
            404 => Outcome::HttpNotFound,
            410 => Outcome::HttpGone,
            429 => Outcome::HttpRateLimited,
            451 => Outcome::HttpLegalReasons,
            400..=499 => Outcome::HttpClientError,
            500..=599 => Outcome::HttpServerError,
            _ => Outcome::HttpUnexpected,
        }
    }

    /// The verdict docs/MEASUREMENT.md assigns by default.
    pub const fn default_verdict(self) -> Verdict {
        use Outcome::*;
        match self {
            Served => Verdict::Online,
            ContentReplaced | RedirectElsewhere | HttpNotFound | HttpGone | HttpLegalReasons
            | DnsNxdomain | DnsNoRecords => Verdict::Offline,
            TooManyRedirects | HttpUnauthorized | HttpForbidden | HttpRateLimited
            | HttpClientError | HttpServerError | HttpUnexpected | DnsServfail | DnsTimeout
            | RefusedByPolicy | ConnectRefused | ConnectTimeout | TlsFailure | ProtocolError
            | Timeout | NotChecked => Verdict::Inconclusive,
        }
    }

    /// The snake_case name used in messages and in the configuration.
    pub fn as_str(self) -> &'static str {
        use Outcome::*;
        match self {
            Served => "served",
            ContentReplaced => "content_replaced",
            RedirectElsewhere => "redirect_elsewhere",
            TooManyRedirects => "too_many_redirects",
            HttpNotFound => "http_not_found",
            HttpGone => "http_gone",
            HttpLegalReasons => "http_legal_reasons",
            HttpUnauthorized => "http_unauthorized",
            HttpForbidden => "http_forbidden",
            HttpRateLimited => "http_rate_limited",
            HttpClientError => "http_client_error",
            HttpServerError => "http_server_error",
            HttpUnexpected => "http_unexpected",
            DnsNxdomain => "dns_nxdomain",
            DnsNoRecords => "dns_no_records",
            DnsServfail => "dns_servfail",
            DnsTimeout => "dns_timeout",
            RefusedByPolicy => "refused_by_policy",
            ConnectRefused => "connect_refused",
            ConnectTimeout => "connect_timeout",
            TlsFailure => "tls_failure",
            ProtocolError => "protocol_error",
            Timeout => "timeout",
            NotChecked => "not_checked",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome {s:?}"))
    }
}

/// The outcome-to-verdict mapping: docs/MEASUREMENT.md's defaults with configured overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerdictMap {
    overrides: BTreeMap<Outcome, Verdict>,
}

impl VerdictMap {
    pub fn with_overrides(overrides: BTreeMap<Outcome, Verdict>) -> Self {
        Self { overrides }
    }

    pub fn verdict(&self, outcome: Outcome) -> Verdict {
        self.overrides
            .get(&outcome)
            .copied()
            .unwrap_or_else(|| outcome.default_verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
        assert!("http_teapot".parse::<Outcome>().is_err());
    }

    #[test]
    fn default_mapping_follows_design() {
        let map = VerdictMap::default();
        assert_eq!(map.verdict(Outcome::Served), Verdict::Online);
        for offline in [404, 410, 451] {
            assert_eq!(
                map.verdict(Outcome::from_status(offline)),
                Verdict::Offline,
                "{offline}"
            );
        }
        for inconclusive in [401, 403, 429, 500, 502, 503] {
            assert_eq!(
                map.verdict(Outcome::from_status(inconclusive)),
                Verdict::Inconclusive,
                "{inconclusive}"
            );
        }
        assert_eq!(map.verdict(Outcome::DnsNxdomain), Verdict::Offline);
        assert_eq!(map.verdict(Outcome::DnsServfail), Verdict::Inconclusive);
        assert_eq!(map.verdict(Outcome::Timeout), Verdict::Inconclusive);
        assert_eq!(map.verdict(Outcome::RedirectElsewhere), Verdict::Offline);
        assert_eq!(map.verdict(Outcome::ContentReplaced), Verdict::Offline);
    }

    #[test]
    fn overrides_win_over_defaults() {
        let map = VerdictMap::with_overrides(BTreeMap::from([(
            Outcome::HttpForbidden,
            Verdict::Offline,
        )]));
        assert_eq!(map.verdict(Outcome::HttpForbidden), Verdict::Offline);
        assert_eq!(
            map.verdict(Outcome::HttpUnauthorized),
            Verdict::Inconclusive
        );
    }
}
