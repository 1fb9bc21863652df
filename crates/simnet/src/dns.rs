//! The authoritative DNS server for the scenario's zone. Its answers are
//! computed per query from the simulated time, so a removal, a move or an
//! outage shows up at the scripted moment. TTLs are 1 s, negative answers
//! included, so a client's cache does not hide changes for long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::Shared;
use crate::timeline::{DnsAction, dns_at};
use crate::truth::DnsRecord;

/// The TTL of every record, positive and negative.
pub const TTL: u32 = 1;

/// Answers queries for the zone from the scenario and the clock.
#[derive(Debug)]
pub(crate) struct DnsHandler {
    pub shared: Arc<Shared>,
}

/// What to send for one query.
#[derive(Debug)]
enum Reply {
    Records(ResponseCode, Vec<Record>),
    NoData,
    NxDomain,
    Error(ResponseCode),
    Drop,
}

impl Reply {
    fn label(&self) -> &'static str {
        match self {
            Reply::Records(..) => "answer",
            Reply::NoData => "nodata",
            Reply::NxDomain => "nxdomain",
            Reply::Error(ResponseCode::ServFail) => "servfail",
            Reply::Error(ResponseCode::Refused) => "refused",
            Reply::Error(_) => "error",
            Reply::Drop => "dropped",
        }
    }
}

impl DnsHandler {
    fn decide(&self, qname: &Name, qtype: RecordType, t: Duration) -> Reply {
        let shared = &self.shared;
        let name = qname.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let zone = &shared.zone;
        if name == *zone {
            return match qtype {
                RecordType::SOA => Reply::Records(ResponseCode::NoError, vec![self.soa()]),
                _ => Reply::NoData,
            };
        }
        if !name.ends_with(&format!(".{zone}")) {
            return Reply::Error(ResponseCode::Refused);
        }
        let Some(&url_index) = shared.hosts.get(&name).and_then(|urls| urls.first()) else {
            // A name above a host (an empty non-terminal) exists without records.
            let suffix = format!(".{name}");
            return if shared.hosts.keys().any(|h| h.ends_with(&suffix)) {
                Reply::NoData
            } else {
                Reply::NxDomain
            };
        };
        let url = &shared.scenario.urls[url_index];
        match dns_at(&shared.scenario, url, t) {
            DnsAction::Answer(ip) => match qtype {
                RecordType::A | RecordType::ANY => Reply::Records(
                    ResponseCode::NoError,
                    vec![Record::from_rdata(qname.clone(), TTL, RData::A(A(ip)))],
                ),
                _ => Reply::NoData,
            },
            DnsAction::NxDomain => Reply::NxDomain,
            DnsAction::ServFail => Reply::Error(ResponseCode::ServFail),
            DnsAction::Drop => Reply::Drop,
        }
    }

    fn soa(&self) -> Record {
        let zone =
            Name::from_ascii(format!("{}.", self.shared.zone)).unwrap_or_else(|_| Name::root());
        let mname = Name::from_ascii("ns").and_then(|n| n.append_domain(&zone));
        let rname = Name::from_ascii("hostmaster").and_then(|n| n.append_domain(&zone));
        let soa = SOA::new(
            mname.unwrap_or_else(|_| zone.clone()),
            rname.unwrap_or_else(|_| zone.clone()),
            1,
            60,
            60,
            3600,
            TTL,
        );
        Record::from_rdata(zone, TTL, RData::SOA(soa))
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = false;

        let query = match request.request_info() {
            Ok(info)
                if request.metadata.op_code == OpCode::Query
                    && request.metadata.message_type == MessageType::Query =>
            {
                Some(info.query.original().clone())
            }
            _ => None,
        };
        let t = self.shared.clock.elapsed();
        let reply = match &query {
            Some(q) => self.decide(q.name(), q.query_type(), t),
            None => Reply::Error(ResponseCode::FormErr),
        };
        if let Some(q) = &query {
            self.shared.counters.dns(DnsRecord {
                at: Utc::now(),
                sim_elapsed: t,
                name: q
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
                query_type: q.query_type().to_string(),
                result: reply.label(),
            });
        }

        let (code, answers, soa) = match reply {
            Reply::Drop => {
                // No response at all: the client's query times out.
                return ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                });
            }
            Reply::Records(code, records) => (code, records, Vec::new()),
            Reply::NoData => (ResponseCode::NoError, Vec::new(), vec![self.soa()]),
            Reply::NxDomain => (ResponseCode::NXDomain, Vec::new(), vec![self.soa()]),
            Reply::Error(code) => (code, Vec::new(), Vec::new()),
        };
        metadata.response_code = code;
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "simnet dns: cannot send a response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Binds UDP and TCP on the same loopback port and starts serving. Port 0
/// lets the system choose (tried again if TCP finds it taken); any other port
/// is bound once, or the start fails.
pub(crate) async fn start(
    handler: DnsHandler,
    port: u16,
) -> std::io::Result<(hickory_server::Server<DnsHandler>, SocketAddr)> {
    let attempts = if port == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await?;
        let addr = udp.local_addr()?;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => {
                let mut server = hickory_server::Server::new(handler);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 32);
                return Ok((server, addr));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port for the DNS server")))
}
