//! One HTTP request of a check, with strict limits: a connect timeout per
//! address and a bound on the whole request, no redirect followed (the check
//! judges each one), no proxy, a bounded number of header fields, headers
//! only unless a body prefix (at most 16 KiB) is asked for, which is read
//! into memory to fingerprint and then dropped. No body is ever written
//! anywhere.
//!
//! The request is HTTP/1.1 on hyper's connection API over a socket of our
//! own (docs/ARCHITECTURE.md, "The fetch"): reqwest, used before, exposes
//! neither the socket's receive buffer nor its pool's key, and both matter
//! here.
//!
//! - **The least content on the wire.** The socket's receive buffer is set
//!   small (`worker.receive_buffer`, 16 KiB) before connecting, so a hoster
//!   sends little more than that before a headers-only check closes the
//!   connection.
//! - **Reuse that keeps the measurement exact.** After a response whose body
//!   is small enough to read to its end (no more than the receive buffer lets
//!   in anyway), its connection is kept idle for `worker.reuse_idle`, keyed
//!   by the address and port it is connected to and the TLS name and mode it
//!   was opened with. A check takes an idle connection only to an address its
//!   own fresh DNS answer admitted, so a reused connection never serves a URL
//!   that has moved. A request that fails on a reused connection is sent
//!   again on a new one: a keep-alive the server dropped is never an outcome.
//!
//! The client connects only to the addresses the check admitted for the
//! request's host ([`Admitted`]); it never resolves a name itself.
//!
//! TLS is rustls with the `ring` provider and the platform's verifier (plus
//! `extra_root_certs`). A failed handshake can be retried without
//! certificate verification (`accept_invalid_certs_as_alive`) to learn
//! whether the content is still served behind a bad certificate.
//!
//! Failures are told apart from the error chain: connection refused or reset,
//! connect timeout, total timeout, TLS failure, a host with no admitted
//! address, and anything else (the peer spoke no valid HTTP) as a protocol
//! error.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tdmon_core::Outcome;
use tdmon_core::message::DnsOutcome;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use url::Url;

use crate::config::WorkerSettings;
use crate::resolve::{Admitted, NoAdmittedAddress};

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
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
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
    /// The response came over a connection an earlier request had opened.
    pub(crate) reused: bool,
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

impl Failure {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            tls_error: None,
            detail: detail.into(),
        }
    }
}

/// A request's result; `tls_error` is set when the verified handshake failed,
/// also when the unverified retry then got a response.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) result: Result<Head, Failure>,
    pub(crate) tls_error: Option<String>,
}

/// How a connection was secured: part of what an idle one is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Security {
    Plain,
    /// TLS for this server name; `verified` is false for the lenient retry.
    Tls {
        name: String,
        verified: bool,
    },
}

/// What an idle connection is kept under: it serves only a request to the
/// same address and port, secured the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    remote: SocketAddr,
    security: Security,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

/// Idle connections by what they may serve, bounded three ways: their idle
/// time ([`Fetcher::evict`], every second), [`IDLE_PER_ADDRESS`] per key, and
/// [`MAX_IDLE`] in all. Checks of one host in flight at once each open a
/// connection; keeping every one of them would hold thousands of sockets
/// open on both sides for nothing.
#[derive(Debug, Default)]
struct Pool {
    by_key: HashMap<PoolKey, Vec<Idle>>,
    idle: usize,
}

/// Idle connections kept per address (and TLS name): one check at a time per
/// address is the polite rate, two leave room for a burst.
const IDLE_PER_ADDRESS: usize = 2;
/// Idle connections kept in all.
const MAX_IDLE: usize = 512;

#[derive(Clone)]
pub(crate) struct Fetcher {
    user_agent: HeaderValue,
    connect_timeout: Duration,
    max_header_fields: usize,
    body_prefix: usize,
    receive_buffer: Option<u32>,
    /// Zero: every request on a new connection.
    reuse_idle: Duration,
    strict: TlsConnector,
    /// Only with `accept_invalid_certs_as_alive`.
    lenient: Option<TlsConnector>,
    idle: Arc<Mutex<Pool>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("receive_buffer", &self.receive_buffer)
            .field("reuse_idle", &self.reuse_idle)
            .field("lenient", &self.lenient.is_some())
            .finish_non_exhaustive()
    }
}

/// A response body no longer than this is read to its end so that its
/// connection can serve another request; a longer one closes the connection.
/// The receive buffer lets about this much in whatever the client reads.
const DRAIN_LIMIT: u64 = 16 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_roots(paths: &[std::path::PathBuf]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let mut roots = Vec::new();
    for path in paths {
        let pem = std::fs::read(path).map_err(|source| ClientError::RootCerts {
            path: path.clone(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ClientError::RootCertsPem {
                path: path.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(ClientError::RootCertsPem {
                path: path.clone(),
                source: rustls::pki_types::pem::Error::NoItemsFound,
            });
        }
        roots.extend(certs);
    }
    Ok(roots)
}

fn tls_connector(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<TlsConnector, ClientError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Fetcher {
    pub(crate) fn new(settings: &WorkerSettings) -> Result<Self, ClientError> {
        let roots = load_roots(&settings.extra_root_certs)?;
        let verified = rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider())
            .map_err(ClientError::Tls)?;
        Ok(Self {
            user_agent: HeaderValue::from_str(&settings.user_agent)
                .unwrap_or_else(|_| HeaderValue::from_static("tdmon")),
            connect_timeout: settings.connect_timeout,
            max_header_fields: settings.max_header_fields,
            body_prefix: settings.body_prefix,
            receive_buffer: settings.receive_buffer,
            reuse_idle: settings.reuse_idle,
            strict: tls_connector(Arc::new(verified))?,
            lenient: if settings.accept_invalid_certs_as_alive {
                Some(tls_connector(Arc::new(AnyCertificate(provider())))?)
            } else {
                None
            },
            idle: Arc::default(),
        })
    }

    /// GETs `url` once, connecting only to `admitted` (the addresses of its
    /// host), and ending by `deadline`.
    pub(crate) async fn get(&self, url: &Url, admitted: &Admitted, deadline: Instant) -> Fetched {
        let result = self.get_with(url, admitted, true, deadline).await;
        match (result, &self.lenient) {
            (Err(failure), Some(_)) if failure.outcome == Outcome::TlsFailure => {
                let tls_error = failure.tls_error.clone();
                let retry = self.get_with(url, admitted, false, deadline).await;
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

    /// Drops idle connections past their idle time, or closed by the server.
    pub(crate) fn evict(&self) {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = 0;
        pool.by_key.retain(|_, conns| {
            conns.retain(|c| c.since.elapsed() < self.reuse_idle && !c.sender.is_closed());
            kept += conns.len();
            !conns.is_empty()
        });
        pool.idle = kept;
    }

    /// Keeps `sender` for a later request to `key`, within the bounds.
    fn keep_idle(&self, key: PoolKey, sender: SendRequest<Empty<Bytes>>) {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.idle >= MAX_IDLE {
            return;
        }
        let conns = pool.by_key.entry(key).or_default();
        if conns.len() >= IDLE_PER_ADDRESS {
            return;
        }
        conns.push(Idle {
            sender,
            since: Instant::now(),
        });
        pool.idle += 1;
    }

    /// Whether idle connections are kept at all (`reuse_idle` above zero).
    pub(crate) fn reuses(&self) -> bool {
        !self.reuse_idle.is_zero()
    }

    async fn get_with(
        &self,
        url: &Url,
        admitted: &Admitted,
        verified: bool,
        deadline: Instant,
    ) -> Result<Head, Failure> {
        let host = url.host_str().unwrap_or_default();
        let Some(addresses) = admitted.addresses_of(host) else {
            let refused = NoAdmittedAddress {
                host: host.to_owned(),
            };
            return Err(Failure::new(Outcome::RefusedByPolicy, refused.to_string()));
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let security = match url.scheme() {
            "https" => Security::Tls {
                name: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                verified,
            },
            _ => Security::Plain,
        };
        let request = self.request(url)?;

        if let Some((sender, key)) = self.take_idle(&addresses, port, &security) {
            // A keep-alive the server has just closed fails here: that says
            // nothing of the URL, so it goes to a new connection.
            if let Ok(head) = self
                .exchange(sender, key, request.clone(), true, deadline)
                .await
            {
                return Ok(head);
            }
        }
        let (sender, key) = self.connect(&addresses, port, security, deadline).await?;
        self.exchange(sender, key, request, false, deadline).await
    }

    fn request(&self, url: &Url) -> Result<Request<Empty<Bytes>>, Failure> {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Request::get(target)
            .header(header::HOST, authority)
            .header(header::USER_AGENT, self.user_agent.clone())
            .header(header::ACCEPT, "*/*")
            .body(Empty::new())
            .map_err(|e| Failure::new(Outcome::HttpUnexpected, e.to_string()))
    }

    /// An idle connection to one of `addresses` (in the answer's order), if
    /// one is still open.
    fn take_idle(
        &self,
        addresses: &[IpAddr],
        port: u16,
        security: &Security,
    ) -> Option<(SendRequest<Empty<Bytes>>, PoolKey)> {
        if self.reuse_idle.is_zero() {
            return None;
        }
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for &ip in addresses {
            let key = PoolKey {
                remote: SocketAddr::new(ip, port),
                security: security.clone(),
            };
            let Some(conns) = pool.by_key.get_mut(&key) else {
                continue;
            };
            let mut taken = 0;
            let mut found = None;
            while let Some(conn) = conns.pop() {
                taken += 1;
                if conn.since.elapsed() < self.reuse_idle && conn.sender.is_ready() {
                    found = Some(conn.sender);
                    break;
                }
            }
            pool.idle -= taken;
            if let Some(sender) = found {
                return Some((sender, key));
            }
        }
        None
    }

    /// A new connection to the first of `addresses` that accepts one, each
    /// tried for at most the connect timeout.
    async fn connect(
        &self,
        addresses: &[IpAddr],
        port: u16,
        security: Security,
        deadline: Instant,
    ) -> Result<(SendRequest<Empty<Bytes>>, PoolKey), Failure> {
        let mut last = None;
        for &ip in addresses {
            let remote = SocketAddr::new(ip, port);
            let connect_by = deadline.min(Instant::now() + self.connect_timeout);
            let key = PoolKey {
                remote,
                security: security.clone(),
            };
            let attempt = async {
                let stream = self.tcp(remote).await?;
                match &key.security {
                    Security::Plain => self.handshake(stream).await,
                    Security::Tls { name, verified } => {
                        let server = ServerName::try_from(name.clone())
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                        let tls = if *verified {
                            &self.strict
                        } else {
                            self.lenient.as_ref().unwrap_or(&self.strict)
                        };
                        let stream = tls.connect(server, stream).await?;
                        self.handshake(stream).await
                    }
                }
            };
            match timeout_at(connect_by, attempt).await {
                Ok(Ok(sender)) => return Ok((sender, key)),
                Ok(Err(error)) => {
                    let failure = io_failure(&error);
                    // A TLS failure is the server's answer: another address
                    // of the same host would not be asked.
                    if failure.outcome == Outcome::TlsFailure {
                        return Err(failure);
                    }
                    last = Some(failure);
                }
                Err(_) if connect_by == deadline => {
                    return Err(Failure::new(
                        Outcome::Timeout,
                        format!("no connection to {remote} within the check's time"),
                    ));
                }
                Err(_) => {
                    last = Some(Failure::new(
                        Outcome::ConnectTimeout,
                        format!("connecting to {remote} timed out"),
                    ));
                }
            }
        }
        Err(last
            .unwrap_or_else(|| Failure::new(Outcome::ConnectRefused, "no address to connect to")))
    }

    async fn tcp(&self, remote: SocketAddr) -> io::Result<TcpStream> {
        let socket = match remote {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // Before connecting: the window advertised in the handshake is what
        // bounds what the server sends before it learns of our close.
        if let Some(size) = self.receive_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.set_nodelay(true)?;
        socket.connect(remote).await
    }

    async fn handshake<T>(&self, stream: T) -> io::Result<SendRequest<Empty<Bytes>>>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .max_headers(self.max_header_fields)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        // The connection's IO runs beside the check; it ends when the sender
        // is dropped (or the peer closes), closing the socket.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `request` and reads the head (and the prefix); keeps the
    /// connection for reuse when its body could be read to the end cheaply.
    async fn exchange(
        &self,
        mut sender: SendRequest<Empty<Bytes>>,
        key: PoolKey,
        request: Request<Empty<Bytes>>,
        reused: bool,
        deadline: Instant,
    ) -> Result<Head, Failure> {
        let sent = async {
            sender.ready().await?;
            sender.send_request(request).await
        };
        let response = match timeout_at(deadline, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(hyper_failure(&e)),
            Err(_) => {
                return Err(Failure::new(
                    Outcome::Timeout,
                    "no response within the check's time",
                ));
            }
        };
        let mut head = head_of(&response, key.remote, reused);
        let (parts, mut body) = response.into_parts();
        if self.body_prefix > 0 && parts.status.is_success() {
            let (prefix, complete) = timeout_at(deadline, read_prefix(&mut body, self.body_prefix))
                .await
                .unwrap_or_default();
            head.prefix = prefix;
            if !complete {
                return Ok(head);
            }
        }
        if self.reusable(&parts.headers)
            && timeout_at(deadline, drain(&mut body))
                .await
                .unwrap_or(false)
        {
            drop(body);
            self.keep_idle(key, sender);
        }
        // Otherwise the body and the sender are dropped unread, and the
        // connection closes.
        Ok(head)
    }

    /// Whether the rest of a body is short enough to read for the sake of
    /// its connection (a known length, at most [`DRAIN_LIMIT`] in all).
    fn reusable(&self, headers: &HeaderMap) -> bool {
        if self.reuse_idle.is_zero() {
            return false;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let closing = headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        !closing && length.is_some_and(|length| length <= DRAIN_LIMIT)
    }
}

fn head_of(response: &Response<Incoming>, remote: SocketAddr, reused: bool) -> Head {
    let headers = response.headers();
    let text = |name: header::HeaderName| header_text(headers, name);
    Head {
        status: response.status().as_u16(),
        content_type: text(header::CONTENT_TYPE),
        content_length: text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        etag: text(header::ETAG),
        last_modified: text(header::LAST_MODIFIED),
        location: text(header::LOCATION),
        retry_after: text(header::RETRY_AFTER),
        remote: Some(remote),
        prefix: None,
        reused,
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Reads at most `cap` bytes of the body into memory; also says whether the
/// body ended there. `None` when the body failed before the prefix was
/// complete (a partial prefix would fingerprint differently every time).
async fn read_prefix(body: &mut Incoming, cap: usize) -> (Option<Vec<u8>>, bool) {
    let mut prefix = Vec::with_capacity(cap);
    while prefix.len() < cap {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    let take = chunk.len().min(cap - prefix.len());
                    prefix.extend_from_slice(&chunk[..take]);
                    if take < chunk.len() {
                        return (Some(prefix), false);
                    }
                }
            }
            None => return (Some(prefix), true),
            Some(Err(e)) => {
                tracing::debug!(error = %chain(&e), "body prefix incomplete");
                return (None, false);
            }
        }
    }
    (Some(prefix), body.is_end_stream())
}

/// Reads the rest of a (short) body and drops it; true when it ended cleanly.
async fn drain(body: &mut Incoming) -> bool {
    loop {
        match body.frame().await {
            Some(Ok(_)) => {}
            Some(Err(_)) => return false,
            None => return true,
        }
    }
}

/// The lenient retry's verifier: any certificate, with the handshake's
/// signatures still checked (the content behind a bad certificate is only
/// looked at, never trusted).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// What a failed connection (TCP or TLS) means.
fn io_failure(error: &io::Error) -> Failure {
    classify(error, Outcome::ConnectRefused)
}

/// What a request that got no response means.
fn hyper_failure(error: &hyper::Error) -> Failure {
    classify(error, Outcome::ProtocolError)
}

/// Walks the error chain: a TLS error, a refused or reset connection, else
/// `otherwise`.
fn classify(error: &(dyn StdError + 'static), otherwise: Outcome) -> Failure {
    let detail = chain(error);
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Failure {
                outcome: Outcome::TlsFailure,
                tls_error: Some(tls.to_string()),
                detail,
            };
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ) {
                return Failure::new(Outcome::ConnectRefused, detail);
            }
            // An io::Error's `source()` skips the error it wraps (often
            // another io::Error around a rustls::Error): descend into it.
            source = io.get_ref().map(|inner| inner as &(dyn StdError + 'static));
            continue;
        }
        source = e.source();
    }
    Failure::new(otherwise, detail)
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
