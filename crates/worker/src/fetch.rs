//! One HTTP request of a check, with strict limits: a connect timeout and a
//! bound on the whole request, no redirect followed by the client (the check
//! judges each one), no proxy, no connection reuse, a bounded number of
//! header fields, headers only unless a body prefix (at most 16 KiB) is asked
//! for, which is read into memory to fingerprint and then dropped. No body is
//! ever written anywhere.
//!
//! TLS is rustls with the `ring` provider. A failed handshake can be retried
//! without certificate verification (`accept_invalid_certs_as_alive`) to learn
//! whether the content is still served behind a bad certificate.
//!
//! The client connects only to the addresses the check admitted for the
//! request's host ([`Admitted`]); it never resolves a name itself.
//!
//! Failures are told apart from the error chain: connection refused or reset,
//! connect timeout, total timeout, TLS failure, a host with no admitted
//! address, and anything else (the peer spoke no valid HTTP) as a protocol
//! error.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{self, HeaderMap};
use tdmon_core::Outcome;
use tdmon_core::message::DnsOutcome;
use tokio::time::Instant;
use url::Url;

use crate::config::WorkerSettings;
use crate::resolve::{Admitted, AdmittedOnly, NoAdmittedAddress};

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot read the trust roots in {path}")]
    RootCerts {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable PEM certificate")]
    RootCertsPem {
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// What a response said, headers only (and the prefix's fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) content_length: Option<u64>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) retry_after: Option<String>,
    /// The address actually connected to.
    pub(crate) remote: Option<SocketAddr>,
    /// The body prefix read, when one was asked for and the status was 2xx.
    pub(crate) prefix: Option<Vec<u8>>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) outcome: Outcome,
    /// The TLS error text, when the handshake failed.
    pub(crate) tls_error: Option<String>,
    /// The whole error chain, for the log.
    pub(crate) detail: String,
}

/// A request's result; `tls_error` is set when the verified handshake failed,
/// also when the unverified retry then got a response.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) result: Result<Head, Failure>,
    pub(crate) tls_error: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    strict: reqwest::Client,
    /// Only with `accept_invalid_certs_as_alive`.
    lenient: Option<reqwest::Client>,
    body_prefix: usize,
}

fn install_crypto_provider() {
    // reqwest is built without a provider of its own (aws-lc-rs needs cmake);
    // it uses the process default, which is ring unless the embedding
    // program installed another first. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn load_roots(paths: &[std::path::PathBuf]) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let mut roots = Vec::new();
    for path in paths {
        let pem = std::fs::read(path).map_err(|source| ClientError::RootCerts {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            ClientError::RootCertsPem {
                path: path.clone(),
                source,
            }
        })?;
        roots.extend(certs);
    }
    Ok(roots)
}

impl Fetcher {
    pub(crate) fn new(settings: &WorkerSettings) -> Result<Self, ClientError> {
        install_crypto_provider();
        let roots = load_roots(&settings.extra_root_certs)?;
        let resolve = Arc::new(AdmittedOnly);
        let build = |lenient: bool| {
            reqwest::Client::builder()
                .user_agent(settings.user_agent.clone())
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
                .no_proxy()
                .connect_timeout(settings.connect_timeout)
                .timeout(settings.total_timeout)
                // Every check gets a fresh connection, to the address its own
                // lookup chose: a pooled one could outlive a move.
                .pool_max_idle_per_host(0)
                .http1_max_headers(settings.max_header_fields)
                .http2_max_header_list_size(64 * 1024)
                .dns_resolver(resolve.clone())
                .tls_certs_merge(roots.clone())
                .tls_danger_accept_invalid_certs(lenient)
                .build()
                .map_err(ClientError::Build)
        };
        Ok(Self {
            strict: build(false)?,
            lenient: if settings.accept_invalid_certs_as_alive {
                Some(build(true)?)
            } else {
                None
            },
            body_prefix: settings.body_prefix,
        })
    }

    /// GETs `url` once, connecting only to `admitted` (the addresses of its
    /// host), and ending by `deadline`.
    pub(crate) async fn get(&self, url: &Url, admitted: &Admitted, deadline: Instant) -> Fetched {
        let attempt = |client| admitted.scope(self.get_with(client, url, deadline));
        let result = attempt(&self.strict).await;
        match (result, &self.lenient) {
            (Err(failure), Some(lenient)) if failure.outcome == Outcome::TlsFailure => {
                let tls_error = failure.tls_error.clone();
                let retry = attempt(lenient).await;
                Fetched {
                    // If the retry fails too, the first failure tells more.
                    result: retry.or(Err(failure)),
                    tls_error,
                }
            }
            (result, _) => {
                let tls_error = result.as_ref().err().and_then(|f| f.tls_error.clone());
                Fetched { result, tls_error }
            }
        }
    }

    async fn get_with(
        &self,
        client: &reqwest::Client,
        url: &Url,
        deadline: Instant,
    ) -> Result<Head, Failure> {
        let response = client
            .get(url.clone())
            .header(header::ACCEPT, "*/*")
            .timeout(deadline.saturating_duration_since(Instant::now()))
            .send()
            .await
            .map_err(|e| failure(&e))?;
        let headers = response.headers();
        let text = |name: header::HeaderName| header_text(headers, name);
        let mut head = Head {
            status: response.status().as_u16(),
            content_type: text(header::CONTENT_TYPE),
            content_length: text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
            location: text(header::LOCATION),
            retry_after: text(header::RETRY_AFTER),
            remote: response.remote_addr(),
            prefix: None,
        };
        if self.body_prefix > 0 && response.status().is_success() {
            head.prefix = read_prefix(response, self.body_prefix).await;
        }
        // Otherwise the response (and its connection) is dropped unread.
        Ok(head)
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Reads at most `cap` bytes of the body into memory. `None` when the body
/// failed before the prefix was complete (a partial prefix would fingerprint
/// differently every time).
async fn read_prefix(mut response: reqwest::Response, cap: usize) -> Option<Vec<u8>> {
    let mut prefix = Vec::with_capacity(cap);
    while prefix.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(cap - prefix.len());
                prefix.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "body prefix incomplete");
                return None;
            }
        }
    }
    Some(prefix)
}

/// The error and its sources, "a: b: c".
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// What a failed request means.
pub(crate) fn failure(error: &reqwest::Error) -> Failure {
    let detail = chain(error);
    let make = |outcome, tls_error| Failure {
        outcome,
        tls_error,
        detail: detail.clone(),
    };
    let mut reset = false;
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<NoAdmittedAddress>() {
            return make(Outcome::RefusedByPolicy, None);
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return make(Outcome::TlsFailure, Some(tls.to_string()));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ) {
                reset = true;
            }
            // An io::Error's `source()` skips the error it wraps (often
            // another io::Error around a rustls::Error): descend into it.
            source = io.get_ref().map(|inner| inner as &(dyn StdError + 'static));
            continue;
        }
        source = e.source();
    }
    if error.is_timeout() {
        return make(
            if error.is_connect() {
                Outcome::ConnectTimeout
            } else {
                Outcome::Timeout
            },
            None,
        );
    }
    if reset || error.is_connect() {
        return make(Outcome::ConnectRefused, None);
    }
    make(Outcome::ProtocolError, None)
}

/// The outcome of a lookup that found no address.
pub(crate) fn dns_failure_outcome(outcome: DnsOutcome) -> Outcome {
    match outcome {
        DnsOutcome::Nxdomain => Outcome::DnsNxdomain,
        DnsOutcome::NoRecords => Outcome::DnsNoRecords,
        DnsOutcome::Timeout => Outcome::DnsTimeout,
        DnsOutcome::RefusedByPolicy => Outcome::RefusedByPolicy,
        DnsOutcome::Servfail | DnsOutcome::Ok => Outcome::DnsServfail,
    }
}
