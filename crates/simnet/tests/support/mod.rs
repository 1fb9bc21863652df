//! Test clients for the simulated network: a hickory resolver pointed at its
//! DNS server and a raw HTTP/1.1 client over a plain TCP stream. Both talk to
//! loopback addresses only.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a lookup ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Addrs(Vec<IpAddr>),
    NxDomain,
    NoRecords,
    ServFail,
    Timeout,
    Other(String),
}

/// A resolver that asks only the network's DNS server, once, without cache.
pub fn resolver(dns: SocketAddr) -> TokioResolver {
    resolver_over(dns, false)
}

/// The same over UDP (`tcp == false`) or TCP only.
pub fn resolver_over(dns: SocketAddr, tcp: bool) -> TokioResolver {
    let mut server = if tcp {
        NameServerConfig::tcp(dns.ip())
    } else {
        NameServerConfig::udp(dns.ip())
    };
    for connection in &mut server.connections {
        connection.port = dns.port();
    }
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.timeout = Duration::from_millis(400);
    options.attempts = 1;
    options.cache_size = 0;
    builder.build().expect("resolver builds")
}

pub async fn lookup(dns: SocketAddr, name: &str) -> Lookup {
    let resolver = resolver(dns);
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.lookup_ip(fqdn.as_str()).await {
        Ok(ips) => Lookup::Addrs(ips.iter().collect()),
        Err(NetError::Dns(DnsError::NoRecordsFound(no))) => match no.response_code {
            ResponseCode::NXDomain => Lookup::NxDomain,
            ResponseCode::ServFail => Lookup::ServFail,
            _ => Lookup::NoRecords,
        },
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => Lookup::ServFail,
        Err(NetError::Timeout) => Lookup::Timeout,
        Err(other) => Lookup::Other(format!("{other:?}")),
    }
}

/// The single address a name resolves to.
pub async fn addr_of(dns: SocketAddr, name: &str) -> IpAddr {
    match lookup(dns, name).await {
        Lookup::Addrs(addrs) if addrs.len() == 1 => addrs[0],
        other => panic!("{name} did not resolve to one address: {other:?}"),
    }
}

/// A response as read by [`get`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `http://host:port/path` into (host, port, path).
pub fn split_url(url: &str) -> (String, u16, String) {
    let rest = url.strip_prefix("http://").expect("plain http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = authority.rsplit_once(':').expect("URL with port");
    (
        host.to_owned(),
        port.parse().expect("port"),
        path.to_owned(),
    )
}

/// Resolves the URL's host with the network's DNS and sends one GET with
/// `Connection: close`; reads the whole response (bounded by a timeout).
pub async fn get(dns: SocketAddr, url: &str) -> Response {
    let (host, port, path) = split_url(url);
    let ip = addr_of(dns, &host).await;
    get_at(SocketAddr::new(ip, port), &host, &path).await
}

pub async fn get_at(addr: SocketAddr, host: &str, path: &str) -> Response {
    assert!(
        addr.ip().is_loopback(),
        "tests only talk to loopback: {addr}"
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 5 s")
        .expect("read");
    parse_response(&bytes)
}

pub fn parse_response(bytes: &[u8]) -> Response {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete head");
    let head = std::str::from_utf8(&bytes[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

/// Waits (up to 5 s) until `check` holds.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}
