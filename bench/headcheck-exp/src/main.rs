//! Headers-only HTTP/1 GET checks of a list of loopback URLs
//! (`http://127.x.y.z:PORT/path`, IP literals only), N at a time, in one of
//! two ways:
//!
//! - `hyper`: hyper's low-level connection API (`client::conn::http1`), the
//!   layer reqwest builds on, without reqwest's pool and request plumbing;
//! - `raw`: a hand-written request and a fixed-size head buffer on a plain
//!   tokio `TcpStream` (no parsing beyond the status code).
//!
//! Optional socket receive buffer (`SO_RCVBUF`, set before connecting) and
//! read buffer size. Every check is bounded by a 20 s timeout.
//!
//!   headcheck-exp hyper|raw URLS_FILE CONCURRENCY RCVBUF READBUF   (0 = default)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
struct Options {
    raw: bool,
    rcvbuf: u32,
    readbuf: usize,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 || !matches!(args[1].as_str(), "hyper" | "raw") {
        eprintln!("usage: headcheck-exp hyper|raw URLS_FILE CONCURRENCY RCVBUF READBUF");
        std::process::exit(2);
    }
    let options = Options {
        raw: args[1] == "raw",
        rcvbuf: args[4].parse().expect("RCVBUF"),
        readbuf: args[5].parse().expect("READBUF"),
    };
    let text = std::fs::read_to_string(&args[2]).expect("URLS_FILE");
    let concurrency: usize = args[3].parse().expect("CONCURRENCY");
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut tally = |result: Result<Result<u16, String>, tokio::task::JoinError>| match result {
        Ok(Ok(_)) => ok += 1,
        _ => failed += 1,
    };
    for url in text.lines().filter(|l| !l.trim().is_empty()) {
        let slot = slots.clone().acquire_owned().await.expect("semaphore");
        let url = url.trim().to_owned();
        tasks.spawn(async move {
            let _slot = slot;
            tokio::time::timeout(LIMIT, check(&url, options))
                .await
                .map_err(|_| "timeout".to_owned())?
        });
        while let Some(result) = tasks.try_join_next() {
            tally(result);
        }
    }
    while let Some(result) = tasks.join_next().await {
        tally(result);
    }
    eprintln!("checked {ok}, failed {failed}");
}

async fn check(url: &str, options: Options) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or("not http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority.parse().map_err(|_| "not IP:port")?;
    if !addr.ip().is_loopback() {
        return Err("loopback only".into());
    }
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if options.rcvbuf > 0 {
        socket
            .set_recv_buffer_size(options.rcvbuf)
            .map_err(|e| e.to_string())?;
    }
    let mut stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    if options.raw {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: headcheck-exp\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::with_capacity(if options.readbuf > 0 {
            options.readbuf
        } else {
            4096
        });
        loop {
            let n = stream
                .read_buf(&mut head)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 || head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() == head.capacity()
            {
                break;
            }
        }
        let status = head.get(9..12).and_then(|s| std::str::from_utf8(s).ok());
        return status
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "no status line".into());
    }
    let mut builder = hyper::client::conn::http1::Builder::new();
    if options.readbuf > 0 {
        builder.read_buf_exact_size(Some(options.readbuf));
    }
    let (mut sender, connection) = builder
        .handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", authority)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    // Headers only: drop the response and the connection without reading the body.
    connection.abort();
    Ok(response?.status().as_u16())
}
