//! The HTTP and HTTPS servers: a minimal HTTP/1.1 server (keep-alive, GET and
//! HEAD, request bodies discarded) written by hand because the scripted
//! behaviours need control over the socket: a black hole never answers, a slow
//! drip writes one byte at a time, a huge body is streamed so that a client
//! that stops reading makes the server stop sending. Every byte written to a
//! socket is counted (TLS records included) and attributed to the request
//! whose response it belongs to.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Shared;
use crate::scenario::{ContentKind, Scheme};
use crate::timeline::{HttpAction, address_at, http_at};
use crate::truth::RequestRecord;

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// The largest request body read (and discarded).
const MAX_REQUEST_BODY: u64 = 1024 * 1024;
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write that makes no progress this long ends the connection.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// How long a black hole holds a connection open at most.
const BLACK_HOLE_HOLD: Duration = Duration::from_secs(600);
/// Chunk size of a streamed huge body.
const CHUNK: usize = 16 * 1024;
/// The send buffer of every listener (inherited by accepted sockets): small,
/// so that a client that stops reading stops the server early.
pub(crate) const SEND_BUFFER: u32 = 64 * 1024;

/// Binds a listener with the small send buffer.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    scheme: Scheme,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = cancel.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "simnet http: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = connection(stream, peer, scheme, tls, shared) => {}
                () = cancel.cancelled() => {}
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    scheme: Scheme,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    shared.counters.connection(local);
    let _ = stream.set_nodelay(true);
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: stream,
        sent: sent.clone(),
    };
    let conn = Conn {
        local,
        peer,
        scheme,
        sent,
        shared,
    };
    match tls {
        None => conn.serve(counted).await,
        Some(acceptor) => match tokio::time::timeout(WRITE_STALL, acceptor.accept(counted)).await {
            Ok(Ok(tls_stream)) => conn.serve(tls_stream).await,
            Ok(Err(error)) => tracing::debug!(%error, %peer, "simnet https: handshake failed"),
            Err(_) => tracing::debug!(%peer, "simnet https: handshake timed out"),
        },
    }
}

/// A TCP stream that counts the bytes the kernel accepted for sending.
struct Counted {
    inner: TcpStream,
    sent: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A parsed request head.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    host: String,
    keep_alive: bool,
    content_length: u64,
}

/// What to answer.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
    url: Option<String>,
    drip: Option<Duration>,
    /// A real pause before the response is written.
    delay: Option<Duration>,
    black_hole: bool,
}

#[derive(Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// This many bytes of filler, streamed.
    Stream(u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Stream(n) => *n,
        }
    }
}

struct Conn {
    local: SocketAddr,
    peer: SocketAddr,
    scheme: Scheme,
    sent: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl Conn {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            let head = match read_head(&mut io, &mut buf).await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(status) => {
                    let response = simple(status, reason(status));
                    if write_response(&mut io, &response, false).await.is_ok() {
                        linger_close(&mut io).await;
                    }
                    return;
                }
            };
            if head.content_length > MAX_REQUEST_BODY
                || discard(&mut io, &mut buf, head.content_length)
                    .await
                    .is_err()
            {
                return;
            }
            let t = self.shared.clock.elapsed();
            let response = self.respond(&head, t);
            let before = self.sent.load(Ordering::Relaxed);
            let seq = self.shared.counters.request(RequestRecord {
                at: Utc::now(),
                instant: Instant::now(),
                sim_elapsed: t,
                local: self.local,
                peer: self.peer,
                scheme: self.scheme,
                method: head.method.clone(),
                host: head.host.clone(),
                path: head.path.clone(),
                url: response.url.clone(),
                status: None,
                bytes_sent: 0,
                completed: false,
            });
            if response.black_hole {
                // Never answer; hold the connection until the client gives up
                // (or for BLACK_HOLE_HOLD, so a client that never does cannot
                // pin a task forever).
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(BLACK_HOLE_HOLD, async {
                    while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                return;
            }
            if let Some(pause) = response.delay {
                tokio::time::sleep(pause).await;
            }
            let head_only = head.method.eq_ignore_ascii_case("HEAD");
            let result = write_response(&mut io, &response, head_only).await;
            let bytes = self.sent.load(Ordering::Relaxed) - before;
            self.shared.counters.finish(
                seq,
                response.url.as_deref(),
                Some(response.status),
                bytes,
                result.is_ok(),
            );
            if result.is_err() || !head.keep_alive {
                let _ = io.shutdown().await;
                return;
            }
        }
    }

    /// The URL a request with an IP literal as its Host addresses: the
    /// scenario URL with this path whose host is served, at time `t`, from
    /// the address the request came in on (the first in scenario order when
    /// several hosts on one address share the path). Lets clients that do not
    /// use the network's DNS (`http://127.30.0.5:PORT/path`) reach the URLs.
    fn route_by_address(&self, host: &str, path: &str, t: Duration) -> Option<usize> {
        host.parse::<IpAddr>().ok()?;
        let shared = &self.shared;
        shared.by_path.get(path)?.iter().copied().find(|&i| {
            IpAddr::V4(address_at(&shared.scenario, &shared.scenario.urls[i], t)) == self.local.ip()
        })
    }

    fn respond(&self, head: &Head, t: Duration) -> Response {
        let shared = &self.shared;
        let path = head.path.split('?').next().unwrap_or("/");
        let route = shared
            .routes
            .get(&(head.host.clone(), path.to_owned()))
            .copied()
            .or_else(|| self.route_by_address(&head.host, path, t));
        let Some(index) = route else {
            let key = (head.host.clone(), path.to_owned());
            if let Some(&index) = shared.canonical.get(&key) {
                // The target of a canonical redirect serves the same content.
                let url = shared.urls[index].clone();
                let mut response = content(shared.scenario.urls[index].kind, &url);
                response.url = Some(url);
                return response;
            }
            if path == "/" && shared.hosts.contains_key(&head.host) {
                return ok(
                    "text/html; charset=utf-8",
                    home_page(&head.host).into_bytes(),
                );
            }
            return simple(404, "Not Found");
        };
        let spec = &shared.scenario.urls[index];
        let url = shared.urls[index].clone();
        if spec.scheme != self.scheme {
            // Like a real site: the other scheme redirects to the canonical URL.
            let mut response = simple(301, "Moved Permanently");
            response.headers.push(("Location", url.clone()));
            response.url = Some(url);
            return response;
        }
        let mut response = match http_at(spec, t) {
            HttpAction::Serve => content(spec.kind, &url),
            HttpAction::SlowDrip(pause) => Response {
                drip: Some(pause),
                ..content(spec.kind, &url)
            },
            HttpAction::Delay(pause) => Response {
                delay: Some(pause),
                ..content(spec.kind, &url)
            },
            HttpAction::Huge(size) => Response {
                status: 200,
                headers: vec![("Content-Type", content_type(spec.kind).to_owned())],
                body: Body::Stream(size),
                url: None,
                drip: None,
                delay: None,
                black_hole: false,
            },
            HttpAction::Status(status) => simple(status, reason(status)),
            HttpAction::Placeholder => ok(
                "text/html; charset=utf-8",
                b"<!doctype html><html><body><p>This content has been removed.</p></body></html>"
                    .to_vec(),
            ),
            HttpAction::RedirectHome(status) => {
                let mut response = simple(status, reason(status));
                let port = match self.scheme {
                    Scheme::Http => shared.http_port,
                    Scheme::Https => shared.https_port,
                };
                let home = format!("{}://{}:{}/", self.scheme.as_str(), head.host, port);
                response.headers.push(("Location", home));
                response
            }
            HttpAction::RedirectTo(status) => {
                let mut response = simple(status, reason(status));
                if let Some((scheme, host, path)) = shared.scenario.redirect_target(spec) {
                    let port = match scheme {
                        Scheme::Http => shared.http_port,
                        Scheme::Https => shared.https_port,
                    };
                    let location = format!("{}://{host}:{port}{path}", scheme.as_str());
                    response.headers.push(("Location", location));
                }
                response
            }
            HttpAction::RateLimited(retry_after) => {
                let mut response = simple(429, "Too Many Requests");
                response
                    .headers
                    .push(("Retry-After", retry_after.to_string()));
                response
            }
            HttpAction::BlackHole => Response {
                black_hole: true,
                ..simple(200, "OK")
            },
        };
        response.url = Some(url);
        response
    }
}

fn content_type(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::Html => "text/html; charset=utf-8",
        ContentKind::Image => "image/png",
    }
}

/// The notified content: a small page or a small PNG-looking image, the same
/// bytes on every request.
fn content(kind: ContentKind, url: &str) -> Response {
    let body = match kind {
        ContentKind::Html => format!(
            "<!doctype html><html><head><title>Simulated content</title></head>\
             <body><p>Simulated notified content at {url}</p></body></html>"
        )
        .into_bytes(),
        ContentKind::Image => {
            let mut body = b"\x89PNG\r\n\x1a\n".to_vec();
            let seed = url
                .bytes()
                .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b.into()));
            body.extend(
                (0..1024u32)
                    .map(|i| (seed.wrapping_add(i.wrapping_mul(2_654_435_761)) >> 24) as u8),
            );
            body
        }
    };
    let etag = format!(
        "\"sim-{:08x}\"",
        body.iter()
            .fold(0u32, |a, b| a.rotate_left(5) ^ u32::from(*b))
    );
    let mut response = ok(content_type(kind), body);
    response.headers.push(("ETag", etag));
    response
        .headers
        .push(("Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT".to_owned()));
    response
}

fn home_page(host: &str) -> String {
    format!(
        "<!doctype html><html><head><title>{host}</title></head>\
         <body><h1>Welcome to {host}</h1></body></html>"
    )
}

fn ok(content_type: &str, body: Vec<u8>) -> Response {
    Response {
        status: 200,
        headers: vec![("Content-Type", content_type.to_owned())],
        body: Body::Bytes(body),
        url: None,
        drip: None,
        delay: None,
        black_hole: false,
    }
}

fn simple(status: u16, text: &str) -> Response {
    let body = format!("<!doctype html><html><body><h1>{status} {text}</h1></body></html>");
    Response {
        status,
        ..ok("text/html; charset=utf-8", body.into_bytes())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Reads one request head. `Ok(None)`: the client closed (or idled out)
/// between requests. `Err(status)`: a malformed or oversized head.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<Head>, u16> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = parse_head(&buf[..end]).ok_or(400u16)?;
            buf.drain(..end + 4);
            return Ok(Some(head));
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(IDLE_TIMEOUT, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Closes our side, then reads (and drops) what the client still sends for
/// a moment, so that unread input does not turn the close into a reset that
/// destroys the response before the client reads it.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left: usize = 256 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?;
    let version = request_line.next()?;
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut host = String::new();
    let mut connection = String::new();
    let mut content_length = 0;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("host") {
            host = value.to_owned();
        } else if name.eq_ignore_ascii_case("connection") {
            connection = value.to_ascii_lowercase();
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        }
    }
    // An absolute-form target carries the authority itself.
    let path = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if host.is_empty() {
            host = authority.to_owned();
        }
        if path.is_empty() { "/" } else { path }
    } else {
        target
    };
    let host = strip_port(&host).trim_end_matches('.').to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    Some(Head {
        method,
        path: path.to_owned(),
        host,
        keep_alive,
        content_length,
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

/// Reads and drops a request body of `len` bytes (part may be in `buf`).
async fn discard<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let in_buf = (buf.len() as u64).min(len) as usize;
    buf.drain(..in_buf);
    let mut left = len - in_buf as u64;
    let mut chunk = [0u8; 4096];
    while left > 0 {
        let want = (left as usize).min(chunk.len());
        let n = tokio::time::timeout(IDLE_TIMEOUT, io.read(&mut chunk[..want]))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

async fn write_all_timed<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(WRITE_STALL, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    response: &Response,
    head_only: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: tdmon-simnet\r\nDate: {}\r\nCache-Control: no-store\r\n",
        response.status,
        reason(response.status),
        Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", response.body.len()));

    if let Some(pause) = response.drip {
        let mut bytes = head.into_bytes();
        if let (Body::Bytes(body), false) = (&response.body, head_only) {
            bytes.extend_from_slice(body);
        }
        for (i, byte) in bytes.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            write_all_timed(io, std::slice::from_ref(byte)).await?;
        }
        return Ok(());
    }

    match (&response.body, head_only) {
        (_, true) => write_all_timed(io, head.as_bytes()).await,
        (Body::Bytes(body), false) => {
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            write_all_timed(io, &bytes).await
        }
        (Body::Stream(size), false) => {
            write_all_timed(io, head.as_bytes()).await?;
            let filler = [b'x'; CHUNK];
            let mut left = *size;
            while left > 0 {
                let n = (left as usize).min(CHUNK);
                write_all_timed(io, &filler[..n]).await?;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let head =
            parse_head(b"GET /a/b?x=1 HTTP/1.1\r\nHost: A.Sim.Test:8080\r\nContent-Length: 3")
                .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/a/b?x=1");
        assert_eq!(head.host, "a.sim.test");
        assert!(head.keep_alive);
        assert_eq!(head.content_length, 3);

        let head = parse_head(b"GET http://b.sim.test:80/p HTTP/1.0").unwrap();
        assert_eq!(
            (head.host.as_str(), head.path.as_str()),
            ("b.sim.test", "/p")
        );
        assert!(!head.keep_alive);

        let head = parse_head(b"HEAD / HTTP/1.1\r\nHost: c\r\nConnection: close").unwrap();
        assert!(!head.keep_alive);

        assert!(parse_head(b"GARBAGE").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno colon here").is_none());
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
