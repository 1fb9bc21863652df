//! The check pipeline against the simulated network (and, for what the
//! network cannot script, small servers of our own), all on 127.0.0.0/8.
//! The target policy admits only the simulated hosters' prefixes (inside
//! 127.10.0.0/16), never 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tdmon_core::message::{DnsOutcome, Purpose, SchemaV1};
use tdmon_core::{CheckJob, Observation, Outcome, Verdict, VerdictMap};
use tdmon_simnet::{Behaviour, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
use tdmon_worker::{Checker, WorkerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

const ALPHA: &str = "127.10.1.0/24";
const BETA: &str = "127.10.2.0/24";
/// A hoster outside the allow-list of most tests.
const OUTSIDE: &str = "127.20.0.0/24";

fn hosters() -> Scenario {
    Scenario::new(1.0)
        .hoster(Hoster::new("Alpha", 64501, "Alpha Hosting B.V.", ALPHA, 2))
        .hoster(Hoster::new("Beta", 64502, "Beta Networks", BETA, 1))
}

async fn start(scenario: Scenario) -> SimNet {
    SimNet::start(scenario, SimNetOptions::default())
        .await
        .expect("the simulated network starts")
}

/// A worker configuration for `net`: its DNS server, its prefixes allowed,
/// its ASN database, short timeouts and loose per-address limits.
fn config(net: &SimNet) -> WorkerConfig {
    let mut config = WorkerConfig {
        name: "test-worker".into(),
        contact: "mailto:test@hotline.test".into(),
        connect_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(3),
        ..WorkerConfig::default()
    };
    config.resolver.nameservers = vec![net.dns_addr().to_string()];
    config.resolver.timeout = Duration::from_millis(400);
    config.resolver.attempts = 1;
    config.policy.allow = net
        .allowed_cidrs()
        .iter()
        .filter(|cidr| cidr.to_string() != OUTSIDE)
        .map(ToString::to_string)
        .collect();
    config.limits.per_ip_interval = Duration::from_millis(1);
    config.limits.per_ip_burst = 100;
    config.limits.per_ip_concurrency = 16;
    config.attribution.asn_db = Some(net.asn_db_path().to_owned());
    config
}

fn checker(config: WorkerConfig) -> Checker {
    Checker::new(
        config.validate().expect("valid config"),
        VerdictMap::default(),
    )
    .expect("the checker builds")
}

fn job(url: &str) -> CheckJob {
    job_expiring(url, Duration::from_secs(60))
}

fn job_expiring(url: &str, within: Duration) -> CheckJob {
    let now = Utc::now();
    CheckJob {
        schema: SchemaV1,
        job_id: Uuid::new_v4(),
        url_id: 1,
        url: url.to_owned(),
        purpose: Purpose::Scheduled,
        due_at: now,
        expires_at: now + chrono::Duration::from_std(within).unwrap(),
        baseline: None,
    }
}

fn url(net: &SimNet, host: &str, path: &str) -> String {
    net.url(host, path).expect("a scenario URL")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn in_prefix(addr: Option<IpAddr>, prefix: &str) -> bool {
    let net: ipnet::IpNet = prefix.parse().unwrap();
    addr.is_some_and(|a| net.contains(&a))
}

/// A hand-written HTTP server on `ip`: answers each request with
/// `respond(host, path)` (a whole response, head and body) and records the
/// request paths.
struct Scripted {
    addr: SocketAddr,
    /// Path and whole request head of each request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Scripted {
    async fn start(
        ip: IpAddr,
        port: u16,
        respond: impl Fn(&str, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                    let host = text
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("host: ")
                                .or_else(|| l.strip_prefix("Host: "))
                        })
                        .unwrap_or("")
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push((path.clone(), text.clone()));
                    let _ = stream.write_all(&respond(&host, &path)).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Scripted {
            addr,
            seen: requests,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn heads(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, h)| h.clone())
            .collect()
    }
}

fn response(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Scripted\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn assert_outcome(obs: &Observation, outcome: Outcome, verdict: Verdict) {
    assert_eq!(
        (obs.outcome, obs.verdict),
        (outcome, verdict),
        "{}",
        serde_json::to_string_pretty(obs).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_content_is_online_and_attributed() {
    let net = start(
        hosters()
            .url(UrlSpec::new("a.alpha", "/page.html", "Alpha"))
            .url(UrlSpec::new("b.beta", "/pic.png", "Beta").image()),
    )
    .await;
    let mut cfg = config(&net);
    cfg.attribution.merge = vec![tdmon_worker::config::MergeConfig {
        hoster: "Beta Group".into(),
        asns: vec![64502],
    }];
    let checker = checker(cfg);

    let page = url(&net, "a.alpha", "/page.html");
    let obs = checker.check(&job(&page)).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    assert_eq!(obs.worker, "test-worker");
    assert_eq!(obs.dns.outcome, DnsOutcome::Ok);
    assert!(in_prefix(obs.ip, ALPHA), "{:?}", obs.ip);
    assert_eq!(obs.dns.answers, vec![obs.ip.unwrap()]);
    assert_eq!(obs.asn, Some(64501));
    assert_eq!(obs.as_org.as_deref(), Some("Alpha Hosting B.V."));
    assert_eq!(obs.hoster.as_deref(), Some("Alpha Hosting B.V."));
    let http = obs.http.as_ref().unwrap();
    assert_eq!(http.status, 200);
    assert!(
        http.content_type
            .as_deref()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(http.redirects.is_empty());
    assert_eq!(obs.fingerprint.as_deref(), Some("html"));
    assert!(obs.tls_error.is_none());

    let pic = url(&net, "b.beta", "/pic.png");
    let obs = checker.check(&job(&pic)).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    assert_eq!(obs.fingerprint.as_deref(), Some("image"));
    assert_eq!(obs.hoster.as_deref(), Some("Beta Group"), "merged");

    // The server saw our User-Agent... and a GET, once per check.
    let requests = net.counters().requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.method == "GET"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_content_is_offline_by_status() {
    let mut scenario = hosters();
    for status in [404, 410, 451, 403, 401, 418, 503, 500] {
        scenario = scenario.url(
            UrlSpec::new("gone.alpha", &format!("/{status}"), "Alpha")
                .behaviour(Behaviour::AlreadyRemoved { status }),
        );
    }
    let net = start(scenario).await;
    let checker = checker(config(&net));
    for (status, outcome, verdict) in [
        (404, Outcome::HttpNotFound, Verdict::Offline),
        (410, Outcome::HttpGone, Verdict::Offline),
        (451, Outcome::HttpLegalReasons, Verdict::Offline),
        (403, Outcome::HttpForbidden, Verdict::Inconclusive),
        (401, Outcome::HttpUnauthorized, Verdict::Inconclusive),
        (418, Outcome::HttpClientError, Verdict::Inconclusive),
        (503, Outcome::HttpServerError, Verdict::Inconclusive),
        (500, Outcome::HttpServerError, Verdict::Inconclusive),
    ] {
        let obs = checker
            .check(&job(&url(&net, "gone.alpha", &format!("/{status}"))))
            .await;
        assert_outcome(&obs, outcome, verdict);
        assert_eq!(obs.http.as_ref().unwrap().status, status);
        assert!(in_prefix(obs.ip, ALPHA));
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failures_are_told_apart() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("x.alpha", "/a", "Alpha")
                    .behaviour(Behaviour::DnsRemoval { at: Duration::ZERO }),
            )
            .url(
                UrlSpec::new("sf.alpha", "/a", "Alpha").behaviour(Behaviour::DnsServfail {
                    from: Duration::ZERO,
                    until: None,
                }),
            )
            .url(
                UrlSpec::new("hole.alpha", "/a", "Alpha").behaviour(Behaviour::DnsNoAnswer {
                    from: Duration::ZERO,
                    until: None,
                }),
            ),
    )
    .await;
    let checker = checker(config(&net));
    let zone = net.zone().to_owned();
    let port = net.http_port();

    let nx = checker.check(&job(&url(&net, "x.alpha", "/a"))).await;
    assert_outcome(&nx, Outcome::DnsNxdomain, Verdict::Offline);
    assert_eq!(nx.dns.outcome, DnsOutcome::Nxdomain);
    assert!(nx.dns.answers.is_empty() && nx.ip.is_none() && nx.http.is_none());

    let unknown = checker
        .check(&job(&format!("http://nobody.{zone}:{port}/a")))
        .await;
    assert_outcome(&unknown, Outcome::DnsNxdomain, Verdict::Offline);

    // "alpha.<zone>" has names below it but no address itself: NODATA.
    let nodata = checker
        .check(&job(&format!("http://alpha.{zone}:{port}/a")))
        .await;
    assert_outcome(&nodata, Outcome::DnsNoRecords, Verdict::Offline);
    assert_eq!(nodata.dns.outcome, DnsOutcome::NoRecords);

    let servfail = checker.check(&job(&url(&net, "sf.alpha", "/a"))).await;
    assert_outcome(&servfail, Outcome::DnsServfail, Verdict::Inconclusive);
    assert_eq!(servfail.dns.outcome, DnsOutcome::Servfail);

    let started = Instant::now();
    let silent = checker.check(&job(&url(&net, "hole.alpha", "/a"))).await;
    assert_outcome(&silent, Outcome::DnsTimeout, Verdict::Inconclusive);
    assert_eq!(silent.dns.outcome, DnsOutcome::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    assert!(
        net.counters().requests().is_empty(),
        "no HTTP request was made"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_content_and_redirects_home_are_offline() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("soft.alpha", "/img.png", "Alpha")
                    .image()
                    .behaviour(Behaviour::SoftRemoval { at: Duration::ZERO }),
            )
            .url(UrlSpec::new("home.alpha", "/pic.png", "Alpha").behaviour(
                Behaviour::RedirectHome {
                    at: Duration::ZERO,
                    status: 302,
                },
            )),
    )
    .await;
    let mut cfg = config(&net);
    cfg.body_prefix = 4096;
    let checker = checker(cfg);

    let soft = url(&net, "soft.alpha", "/img.png");
    let replaced = checker
        .check_against(&job(&soft), Some("image:0011223344556677"))
        .await;
    assert_outcome(&replaced, Outcome::ContentReplaced, Verdict::Offline);
    let print = replaced.fingerprint.as_deref().unwrap();
    assert!(print.starts_with("html:") && print.len() == 21, "{print}");
    // Without a baseline nothing says it was a file: served.
    let unjudged = checker.check(&job(&soft)).await;
    assert_outcome(&unjudged, Outcome::Served, Verdict::Online);
    assert_eq!(
        unjudged.fingerprint, replaced.fingerprint,
        "stable fingerprint"
    );

    let home = url(&net, "home.alpha", "/pic.png");
    let obs = checker.check(&job(&home)).await;
    assert_outcome(&obs, Outcome::RedirectElsewhere, Verdict::Offline);
    let http = obs.http.as_ref().unwrap();
    assert_eq!(http.status, 302);
    assert!(http.location.as_deref().unwrap().ends_with('/'), "{http:?}");
    assert!(http.redirects.is_empty());
    // The home page was not requested.
    let paths: Vec<String> = net
        .counters()
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(!paths.contains(&"/".to_owned()), "{paths:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_needs_a_trusted_certificate_or_the_lenient_retry() {
    let net =
        start(hosters().url(UrlSpec::new("tls.alpha", "/a.png", "Alpha").https().image())).await;
    let secure = url(&net, "tls.alpha", "/a.png");
    assert!(secure.starts_with("https://"));

    // Without the network's CA: a TLS failure, with the error recorded.
    let untrusting = checker(config(&net));
    let obs = untrusting.check(&job(&secure)).await;
    assert_outcome(&obs, Outcome::TlsFailure, Verdict::Inconclusive);
    assert!(
        obs.tls_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{obs:?}"
    );
    assert!(obs.http.is_none());

    // Retried without verification: alive with a bad certificate.
    let mut lenient = config(&net);
    lenient.accept_invalid_certs_as_alive = true;
    let obs = checker(lenient).check(&job(&secure)).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    assert!(obs.tls_error.is_some());
    assert!(in_prefix(obs.ip, ALPHA));

    // With the CA as an extra root: verified, no TLS error. The http:// URL
    // redirects to https:// (scheme and port change only): followed.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, net.ca_cert_pem()).unwrap();
    let mut trusting = config(&net);
    trusting.extra_root_certs = vec![ca];
    let trusting = checker(trusting);
    let obs = trusting.check(&job(&secure)).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    assert_eq!(obs.tls_error, None);

    let plain = secure.replace("https://", "http://").replace(
        &format!(":{}", net.https_port()),
        &format!(":{}", net.http_port()),
    );
    let obs = trusting.check(&job(&plain)).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    let http = obs.http.as_ref().unwrap();
    assert_eq!(http.redirects.len(), 1, "{http:?}");
    assert_eq!(http.redirects[0].status, 301);
    assert_eq!(http.redirects[0].url, plain);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holes_and_slow_drips_are_bounded_by_the_timeout() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("bh.alpha", "/a", "Alpha").behaviour(Behaviour::BlackHole {
                    from: Duration::ZERO,
                }),
            )
            .url(
                UrlSpec::new("drip.beta", "/a", "Beta").behaviour(Behaviour::SlowDrip {
                    pause: Duration::from_millis(200),
                }),
            ),
    )
    .await;
    let mut cfg = config(&net);
    cfg.total_timeout = Duration::from_secs(1);
    let checker = checker(cfg);
    for host in ["bh.alpha", "drip.beta"] {
        let started = Instant::now();
        let obs = checker.check(&job(&url(&net, host, "/a"))).await;
        let took = started.elapsed();
        assert_outcome(&obs, Outcome::Timeout, Verdict::Inconclusive);
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{host}: {took:?}"
        );
        assert!(obs.duration_ms >= 900, "{}", obs.duration_ms);
        assert!(obs.asn.is_some(), "attributed to the address tried");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_are_not_downloaded() {
    const SIZE: u64 = 1 << 30;
    let net = start(
        hosters().url(
            UrlSpec::new("huge.alpha", "/big.png", "Alpha")
                .image()
                .behaviour(Behaviour::HugeBody { size: SIZE }),
        ),
    )
    .await;
    let big = url(&net, "huge.alpha", "/big.png");
    for prefix in [0, 16 * 1024] {
        let mut cfg = config(&net);
        cfg.body_prefix = prefix;
        let obs = checker(cfg).check(&job(&big)).await;
        assert_outcome(&obs, Outcome::Served, Verdict::Online);
        if prefix > 0 {
            assert!(obs.fingerprint.as_deref().unwrap().starts_with("image:"));
        }
    }
    // Let the server notice the closed connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = net.counters().requests_for(&big);
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(!r.completed, "the body was not read to its end");
        // Socket buffers absorb a few MiB on loopback; a gigabyte is not sent.
        assert!(r.bytes_sent < 32 << 20, "{} bytes sent", r.bytes_sent);
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refuses_special_addresses_before_connecting() {
    // Listeners that must never see a connection.
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_port = local.local_addr().unwrap().port();
    let net = start(
        hosters()
            .hoster(Hoster::new("Outside", 64599, "Outside Ltd", OUTSIDE, 1))
            .url(UrlSpec::new("out.outside", "/a", "Outside")),
    )
    .await;
    let mut cfg = config(&net);
    // A connection attempt would take this long to give up; a refusal is instant.
    cfg.connect_timeout = Duration::from_secs(5);
    let checker = checker(cfg);
    let outside = url(&net, "out.outside", "/a");
    for target in [
        "http://10.1.2.3/a".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{local_port}/a"),
        format!("http://127.0.0.1:{local_port}/a"),
        format!("http://[::ffff:127.0.0.1]:{local_port}/a"),
        outside.clone(),
    ] {
        let started = Instant::now();
        let obs = checker.check(&job(&target)).await;
        assert_outcome(&obs, Outcome::RefusedByPolicy, Verdict::Inconclusive);
        assert_eq!(obs.dns.outcome, DnsOutcome::RefusedByPolicy, "{target}");
        assert_eq!(obs.ip, None, "{target}: nothing connected");
        assert!(obs.http.is_none());
        // Refused on the spot: no connection attempt (which to 10/8 would
        // hang until the connect timeout).
        assert!(started.elapsed() < Duration::from_millis(500), "{target}");
    }
    // The name resolved (the answers are recorded) but was not contacted.
    let obs = checker.check(&job(&outside)).await;
    assert_eq!(obs.dns.answers, vec![ip("127.20.0.1")]);
    assert_eq!(obs.asn, Some(64599), "attributed to the resolved address");
    assert!(net.counters().requests().is_empty());
    assert!(net.counters().connections().is_empty());
    let accepted = tokio::time::timeout(Duration::from_millis(200), local.accept()).await;
    assert!(accepted.is_err(), "127.0.0.1 was contacted");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_chains_follow_cosmetic_hops_and_check_each_address() {
    let net = start(
        hosters()
            .hoster(Hoster::new("Outside", 64599, "Outside Ltd", OUTSIDE, 1))
            .url(UrlSpec::new("chain.alpha", "/x", "Alpha").server(0))
            .url(UrlSpec::new("www.chain.alpha", "/x", "Alpha").server(0))
            .url(UrlSpec::new("leak.alpha", "/x", "Alpha").server(0))
            .url(UrlSpec::new("www.leak.alpha", "/x", "Outside")),
    )
    .await;
    let zone = net.zone().to_owned();
    // Our own server, on the simulated Alpha address but another port, so
    // that the simulated DNS leads to it.
    let alpha = ip("127.10.1.1");
    let port = {
        let probe = std::net::TcpListener::bind((alpha, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let script = Scripted::start(alpha, port, {
        let zone = zone.clone();
        move |host, path| {
            let at = |h: &str, p: &str| format!("http://{h}.{zone}:{port}{p}");
            match (host.trim_end_matches(&format!(".{zone}")), path) {
                ("chain.alpha", "/dir") => response(301, &[("Location", "/dir/".into())], b""),
                ("chain.alpha", "/dir/") => {
                    response(308, &[("Location", at("www.chain.alpha", "/dir/"))], b"")
                }
                ("www.chain.alpha", "/dir/") => {
                    response(200, &[("Content-Type", "image/jpeg".into())], b"\xff\xd8")
                }
                ("chain.alpha", "/loop") => response(301, &[("Location", "/loop/".into())], b""),
                ("chain.alpha", "/loop/") => response(301, &[("Location", "/loop".into())], b""),
                ("chain.alpha", "/other") => {
                    response(302, &[("Location", "/elsewhere.html".into())], b"")
                }
                ("chain.alpha", "/nowhere") => response(302, &[], b""),
                ("leak.alpha", "/dir") => {
                    response(301, &[("Location", at("www.leak.alpha", "/dir"))], b"")
                }
                _ => response(404, &[], b""),
            }
        }
    })
    .await;
    let at = |h: &str, p: &str| format!("http://{h}.{zone}:{port}{p}");
    let mut cfg = config(&net);
    cfg.max_redirects = 3;
    let checker = checker(cfg);

    let obs = checker.check(&job(&at("chain.alpha", "/dir"))).await;
    assert_outcome(&obs, Outcome::Served, Verdict::Online);
    let http = obs.http.as_ref().unwrap();
    let hops: Vec<(String, u16)> = http
        .redirects
        .iter()
        .map(|h| (h.url.clone(), h.status))
        .collect();
    assert_eq!(
        hops,
        vec![
            (at("chain.alpha", "/dir"), 301),
            (at("chain.alpha", "/dir/"), 308)
        ]
    );
    assert_eq!(http.status, 200);
    assert_eq!(obs.fingerprint.as_deref(), Some("image"));
    assert_eq!(obs.ip, Some(alpha));

    let obs = checker.check(&job(&at("chain.alpha", "/loop"))).await;
    assert_outcome(&obs, Outcome::TooManyRedirects, Verdict::Inconclusive);
    assert_eq!(obs.http.as_ref().unwrap().redirects.len(), 3);

    let obs = checker.check(&job(&at("chain.alpha", "/other"))).await;
    assert_outcome(&obs, Outcome::RedirectElsewhere, Verdict::Offline);
    assert_eq!(
        obs.http.as_ref().unwrap().location.as_deref(),
        Some(at("chain.alpha", "/elsewhere.html").as_str())
    );

    let obs = checker.check(&job(&at("chain.alpha", "/nowhere"))).await;
    assert_outcome(&obs, Outcome::HttpUnexpected, Verdict::Inconclusive);

    // A cosmetic redirect to a name that resolves outside the allow-list:
    // followed, but the new address is refused before any connection.
    let obs = checker.check(&job(&at("leak.alpha", "/dir"))).await;
    assert_outcome(&obs, Outcome::RefusedByPolicy, Verdict::Inconclusive);
    assert_eq!(obs.dns.answers, vec![ip("127.20.0.1")]);
    assert_eq!(obs.http.as_ref().unwrap().redirects.len(), 1);

    let paths = script.requests();
    assert!(!paths.contains(&"/elsewhere.html".to_owned()), "{paths:?}");
    // Every request identifies us, is a GET and carries no body.
    let agent = format!(
        "user-agent: tdmon/{} (+mailto:test@hotline.test)",
        env!("CARGO_PKG_VERSION")
    );
    for head in script.heads() {
        assert!(head.starts_with("GET "), "{head}");
        assert!(head.to_ascii_lowercase().contains(&agent), "{head}");
    }
    assert!(
        net.counters().connections().is_empty(),
        "nothing reached the outside hoster"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_told_apart() {
    let net = start(hosters()).await;
    let mut cfg = config(&net);
    cfg.total_timeout = Duration::from_secs(2);
    cfg.max_header_fields = 20;
    let checker = checker(cfg);

    // Nothing listens on this port: refused.
    let closed = std::net::TcpListener::bind("127.10.1.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let obs = checker
        .check(&job(&format!("http://127.10.1.1:{closed_port}/a")))
        .await;
    assert_outcome(&obs, Outcome::ConnectRefused, Verdict::Inconclusive);
    assert_eq!(
        obs.dns.answers,
        vec![ip("127.10.1.1")],
        "an IP literal skips DNS"
    );
    assert_eq!(obs.asn, Some(64501));

    // A server that speaks no HTTP, and one that sends too many header fields.
    let garbage =
        Scripted::start(ip("127.10.2.1"), 0, |_, _| b"SSH-2.0-nope\r\n\r\n".to_vec()).await;
    let obs = checker
        .check(&job(&format!("http://{}/", garbage.addr)))
        .await;
    assert_outcome(&obs, Outcome::ProtocolError, Verdict::Inconclusive);

    let noisy = Scripted::start(ip("127.10.2.1"), 0, |_, _| {
        let headers: Vec<(&str, String)> = (0..50).map(|i| ("X-Noise", i.to_string())).collect();
        response(200, &headers, b"")
    })
    .await;
    let obs = checker
        .check(&job(&format!("http://{}/", noisy.addr)))
        .await;
    assert_outcome(&obs, Outcome::ProtocolError, Verdict::Inconclusive);
    assert!(
        net.counters().dns_queries().is_empty(),
        "IP literals never hit DNS"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_hosts_are_backed_off_until_retry_after() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("busy.alpha", "/a", "Alpha")
                    .server(0)
                    .behaviour(Behaviour::RateLimited {
                        from: Duration::ZERO,
                        until: Duration::from_secs(36_000),
                        retry_after: Duration::from_secs(30),
                    }),
            )
            .url(UrlSpec::new("calm.alpha", "/b", "Alpha").server(0)),
    )
    .await;
    let checker = checker(config(&net));
    let busy = url(&net, "busy.alpha", "/a");
    let obs = checker.check(&job(&busy)).await;
    assert_outcome(&obs, Outcome::HttpRateLimited, Verdict::Inconclusive);
    assert_eq!(obs.http.as_ref().unwrap().status, 429);

    // The address asked for 30 s; a job expiring sooner is not sent at all,
    // whichever URL on that address it is for.
    let started = Instant::now();
    for target in [busy.clone(), url(&net, "calm.alpha", "/b")] {
        let obs = checker
            .check(&job_expiring(&target, Duration::from_secs(5)))
            .await;
        assert_outcome(&obs, Outcome::NotChecked, Verdict::Inconclusive);
        assert!(obs.http.is_none(), "not contacted");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused without waiting"
    );
    assert_eq!(net.counters().requests().len(), 1);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_rate_is_held() {
    let mut scenario = hosters();
    for i in 0..8 {
        scenario = scenario.url(UrlSpec::new("many.alpha", &format!("/{i}"), "Alpha").server(0));
    }
    let net = start(scenario).await;
    let mut cfg = config(&net);
    cfg.limits.per_ip_interval = Duration::from_millis(250);
    cfg.limits.per_ip_burst = 1;
    let checker = checker(cfg);
    let started = Instant::now();
    let checks = (0..8).map(|i| {
        let checker = checker.clone();
        let target = url(&net, "many.alpha", &format!("/{i}"));
        async move { checker.check(&job(&target)).await }
    });
    let observations = futures_join_all(checks).await;
    assert!(observations.iter().all(|o| o.outcome == Outcome::Served));
    // 8 requests, one per 250 ms: at least 1.75 s, at most 4 in any second.
    assert!(
        started.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        started.elapsed()
    );
    let counters = net.counters();
    assert_eq!(
        counters.requests_per_address().get(&ip("127.10.1.1")),
        Some(&8)
    );
    assert!(counters.max_requests_per_second(ip("127.10.1.1")) <= 5);
    net.shutdown().await;
}

/// Runs futures concurrently on the current task set.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("check task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_address_is_followed_and_attributed() {
    let net = SimNet::start(
        hosters().url(
            UrlSpec::new("mover.alpha", "/a", "Alpha").moves_to("Beta", Duration::from_secs(3600)),
        ),
        SimNetOptions::manual_clock(),
    )
    .await
    .unwrap();
    let mut cfg = config(&net);
    cfg.resolver.max_ttl = Duration::from_millis(1);
    let checker = checker(cfg);
    let mover = url(&net, "mover.alpha", "/a");
    let before = checker.check(&job(&mover)).await;
    assert_outcome(&before, Outcome::Served, Verdict::Online);
    assert!(in_prefix(before.ip, ALPHA));
    assert_eq!(before.asn, Some(64501));

    net.advance(Duration::from_secs(2 * 3600));
    // The old answer may live in the cache for the record's TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = checker.check(&job(&mover)).await;
    assert_outcome(&after, Outcome::Served, Verdict::Online);
    assert!(in_prefix(after.ip, BETA), "{:?}", after.ip);
    assert_eq!(after.asn, Some(64502));
    assert_eq!(after.hoster.as_deref(), Some("Beta Networks"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_jobs_and_bad_urls_contact_nobody() {
    let net = start(hosters().url(UrlSpec::new("a.alpha", "/a", "Alpha"))).await;
    let checker = checker(config(&net));
    let late = job_expiring(&url(&net, "a.alpha", "/a"), Duration::ZERO);
    let obs = checker.check(&late).await;
    assert_outcome(&obs, Outcome::NotChecked, Verdict::Inconclusive);
    for bad in [
        "ftp://a.alpha/x",
        "not a url",
        "http://",
        "mailto:abuse@alpha.test",
    ] {
        let obs = checker.check(&job(bad)).await;
        assert_outcome(&obs, Outcome::HttpUnexpected, Verdict::Inconclusive);
    }
    assert!(net.counters().requests().is_empty());
    assert!(net.counters().dns_queries().is_empty());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_overrides_come_from_the_map() {
    let net = start(hosters().url(
        UrlSpec::new("f.alpha", "/a", "Alpha").behaviour(Behaviour::AlreadyRemoved { status: 403 }),
    ))
    .await;
    let map = VerdictMap::with_overrides([(Outcome::HttpForbidden, Verdict::Offline)].into());
    let checker = Checker::new(config(&net).validate().unwrap(), map).unwrap();
    let obs = checker.check(&job(&url(&net, "f.alpha", "/a"))).await;
    assert_outcome(&obs, Outcome::HttpForbidden, Verdict::Offline);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_accept_queue_times_the_connect_out() {
    // A listener that never accepts, its queue filled: the kernel drops
    // further SYNs, so a connection neither completes nor is refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.10.3.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let config = WorkerConfig {
        connect_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(3),
        policy: tdmon_worker::config::PolicyConfig {
            allow: vec!["127.10.3.0/24".into()],
        },
        resolver: tdmon_worker::config::ResolverConfig {
            // Never asked: the URL's host is an address.
            nameservers: vec!["127.0.0.1:9".into()],
            ..Default::default()
        },
        ..WorkerConfig::default()
    };
    let started = Instant::now();
    let obs = checker(config)
        .check(&job(&format!("http://{addr}/a")))
        .await;
    assert_outcome(&obs, Outcome::ConnectTimeout, Verdict::Inconclusive);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop((fillers, listener));
}

fn offline_config() -> WorkerConfig {
    WorkerConfig {
        resolver: tdmon_worker::config::ResolverConfig {
            nameservers: vec!["127.0.0.1:9".into()],
            ..Default::default()
        },
        ..WorkerConfig::default()
    }
}

#[test]
fn the_checker_needs_a_runtime_and_stops_its_evictor_when_dropped() {
    let settings = offline_config().validate().unwrap();
    let err = Checker::new(settings.clone(), VerdictMap::default()).unwrap_err();
    assert!(matches!(err, tdmon_worker::BuildError::NoRuntime), "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let checker = Checker::new(settings, VerdictMap::default()).unwrap();
        let clone = checker.clone();
        assert_eq!(metrics.num_alive_tasks(), before + 1, "the evictor runs");
        drop(checker);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), before + 1, "a clone keeps it");
        drop(clone);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            before,
            "stopped with the last clone"
        );
    });
}

#[test]
fn a_missing_asn_database_or_root_file_fails_the_build() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let mut config = offline_config();
    config.attribution.asn_db = Some("/nonexistent/asn.mmdb".into());
    let err = Checker::new(config.validate().unwrap(), VerdictMap::default()).unwrap_err();
    assert!(matches!(err, tdmon_worker::BuildError::AsnDb(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/asn.mmdb"), "{err}");

    let mut config = offline_config();
    config.extra_root_certs = vec!["/nonexistent/ca.pem".into()];
    let err = Checker::new(config.validate().unwrap(), VerdictMap::default()).unwrap_err();
    assert!(matches!(err, tdmon_worker::BuildError::Client(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_retry_after_is_waited_out_before_the_next_request() {
    let net = start(
        hosters().url(UrlSpec::new("busy.alpha", "/a", "Alpha").behaviour(
            Behaviour::RateLimited {
                from: Duration::ZERO,
                until: Duration::from_secs(36_000),
                retry_after: Duration::from_secs(1),
            },
        )),
    )
    .await;
    let checker = checker(config(&net));
    let busy = url(&net, "busy.alpha", "/a");
    let first = checker.check(&job(&busy)).await;
    assert_outcome(&first, Outcome::HttpRateLimited, Verdict::Inconclusive);
    let second = checker.check(&job(&busy)).await;
    assert_outcome(&second, Outcome::HttpRateLimited, Verdict::Inconclusive);
    assert!(second.http.is_some(), "contacted after the wait");
    let requests = net.counters().requests_for(&busy);
    assert_eq!(requests.len(), 2);
    let gap = requests[1].instant.duration_since(requests[0].instant);
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    net.shutdown().await;
}

/// The DNS queries the simulated server saw after the first `skip`, as
/// (name without the zone, query type), sorted.
fn queries_since(net: &SimNet, skip: usize) -> Vec<(String, String)> {
    let zone = format!(".{}", net.zone());
    let mut queries: Vec<(String, String)> = net.counters().dns_queries()[skip..]
        .iter()
        .map(|q| {
            let name = q.name.to_ascii_lowercase();
            let name = name.trim_end_matches('.').trim_end_matches(&zone);
            (name.to_owned(), q.query_type.clone())
        })
        .collect();
    queries.sort();
    queries
}

/// One lookup of `names`: an A and an AAAA query each (hickory asks both
/// for one lookup), sorted.
fn one_lookup_of(names: &[&str]) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = names
        .iter()
        .flat_map(|n| {
            [
                ((*n).to_owned(), "A".to_owned()),
                ((*n).to_owned(), "AAAA".to_owned()),
            ]
        })
        .collect();
    queries.sort();
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_is_looked_up_once_per_check_and_connected_from_that_answer() {
    let net = start(
        hosters()
            .url(UrlSpec::new("a.alpha", "/a", "Alpha"))
            .url(UrlSpec::new("tls.alpha", "/t.png", "Alpha").https().image())
            .url(
                UrlSpec::new("canon.beta", "/c", "Beta").behaviour(Behaviour::RedirectTo {
                    at: Duration::ZERO,
                    host: Some("www.canon.beta".into()),
                    path: "/c".into(),
                    scheme: None,
                    status: 301,
                }),
            ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, net.ca_cert_pem()).unwrap();
    let mut cfg = config(&net);
    cfg.extra_root_certs = vec![ca];
    // No cache: every lookup the check makes reaches the server.
    cfg.resolver.cache_size = 0;
    let checker = checker(cfg);
    let secure = url(&net, "tls.alpha", "/t.png");
    let plain = secure.replace("https://", "http://").replace(
        &format!(":{}", net.https_port()),
        &format!(":{}", net.http_port()),
    );

    // A plain check; a redirect to another scheme on the same host (one
    // lookup for both hops); a redirect to another host (one lookup each).
    for (target, hops, hosts) in [
        (url(&net, "a.alpha", "/a"), 0, vec!["a.alpha"]),
        (plain, 1, vec!["tls.alpha"]),
        (
            url(&net, "canon.beta", "/c"),
            1,
            vec!["canon.beta", "www.canon.beta"],
        ),
    ] {
        let before = net.counters().dns_queries().len();
        let obs = checker.check(&job(&target)).await;
        assert_outcome(&obs, Outcome::Served, Verdict::Online);
        assert_eq!(obs.http.as_ref().unwrap().redirects.len(), hops, "{target}");
        assert_eq!(
            queries_since(&net, before),
            one_lookup_of(&hosts),
            "{target}"
        );
        let used = obs.ip.expect("connected");
        assert!(obs.dns.answers.contains(&used), "{target}: {obs:?}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_moves_while_the_check_waits_is_connected_from_the_checks_own_answer() {
    let net = SimNet::start(
        hosters()
            .url(UrlSpec::new("first.alpha", "/a", "Alpha").server(0))
            .url(
                UrlSpec::new("mover.alpha", "/a", "Alpha")
                    .server(0)
                    .moves_to("Beta", Duration::from_secs(3600)),
            ),
        SimNetOptions::manual_clock(),
    )
    .await
    .unwrap();
    let mut cfg = config(&net);
    // The mover's check waits for the address's turn, longer than its
    // answer lives in the cache (1 s).
    cfg.limits.per_ip_interval = Duration::from_millis(2500);
    cfg.limits.per_ip_burst = 1;
    let checker = checker(cfg);
    let first = checker.check(&job(&url(&net, "first.alpha", "/a"))).await;
    assert_outcome(&first, Outcome::Served, Verdict::Online);

    let before = net.counters().dns_queries().len();
    let mover = url(&net, "mover.alpha", "/a");
    let check = tokio::spawn({
        let checker = checker.clone();
        async move { checker.check(&job(&mover)).await }
    });
    // Once the check has its answer, the name moves to Beta.
    let asked = async {
        while !queries_since(&net, before)
            .iter()
            .any(|(name, _)| name == "mover.alpha")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), asked)
        .await
        .expect("the check looked the name up");
    net.advance(Duration::from_secs(2 * 3600));
    let obs = check.await.unwrap();
    assert_eq!(obs.dns.answers, vec![ip("127.10.1.1")], "{obs:?}");
    assert_eq!(
        obs.ip,
        Some(ip("127.10.1.1")),
        "connected from its own answer"
    );
    assert_eq!(obs.asn, Some(64501));
    assert_eq!(queries_since(&net, before), one_lookup_of(&["mover.alpha"]));
    assert!(
        !net.counters()
            .requests_per_address()
            .contains_key(&ip("127.10.2.1")),
        "nothing went to the new address"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_queue_for_one_address_checks_every_url_at_the_polite_rate() {
    // `tdmon check` on 2,000 URLs of one host, scaled down: 200 URLs, one
    // request per 50 ms (bursts of 2, 2 at once), 64 checks in flight, so a
    // check waits up to 3 s for its turn, three times its total timeout.
    const URLS: usize = 200;
    const IN_FLIGHT: usize = 64;
    let mut scenario = hosters();
    for i in 0..URLS {
        scenario = scenario.url(UrlSpec::new("many.alpha", &format!("/{i}"), "Alpha").server(0));
    }
    let net = start(scenario).await;
    let mut cfg = config(&net);
    cfg.total_timeout = Duration::from_secs(1);
    cfg.limits.per_ip_interval = Duration::from_millis(50);
    cfg.limits.per_ip_burst = 2;
    cfg.limits.per_ip_concurrency = 2;
    cfg.limits.max_in_flight = IN_FLIGHT;
    let checker = checker(cfg);

    let started = Instant::now();
    let mut pending = (0..URLS).map(|i| url(&net, "many.alpha", &format!("/{i}")));
    let mut checks = tokio::task::JoinSet::new();
    let mut outcomes = Vec::new();
    loop {
        while checks.len() < IN_FLIGHT
            && let Some(target) = pending.next()
        {
            let checker = checker.clone();
            checks.spawn(async move { checker.check(&job(&target)).await.outcome });
        }
        match checks.join_next().await {
            Some(outcome) => outcomes.push(outcome.unwrap()),
            None => break,
        }
    }
    let took = started.elapsed();
    let served = outcomes.iter().filter(|o| **o == Outcome::Served).count();
    assert_eq!(served, URLS, "{outcomes:?}");
    let alpha = ip("127.10.1.1");
    let counters = net.counters();
    assert_eq!(
        counters.requests_per_address().get(&alpha),
        Some(&(URLS as u64))
    );
    // The polite rate: a burst of 2, then one per 50 ms.
    assert!(
        took >= Duration::from_millis(50 * (URLS as u64 - 2)),
        "{took:?}"
    );
    // 2 + 20 per second; the server reads each request a little after its
    // admission, which can pull one more into a one-second window.
    assert!(counters.max_requests_per_second(alpha) <= 23);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_address_turn_is_not_charged_to_the_total_timeout() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("slow.alpha", "/1", "Alpha")
                    .server(0)
                    .behaviour(Behaviour::Delay {
                        pause: Duration::from_millis(600),
                    }),
            )
            .url(
                UrlSpec::new("slow.alpha", "/2", "Alpha")
                    .server(0)
                    .behaviour(Behaviour::Delay {
                        pause: Duration::from_millis(600),
                    }),
            ),
    )
    .await;
    let mut cfg = config(&net);
    cfg.total_timeout = Duration::from_secs(2);
    cfg.limits.per_ip_interval = Duration::from_millis(1800);
    cfg.limits.per_ip_burst = 1;
    let checker = checker(cfg);
    // Both start at once: the second waits 1.8 s for its turn, then needs
    // 0.6 s of its 2 s.
    let checks = ["/1", "/2"].map(|path| {
        let checker = checker.clone();
        let target = url(&net, "slow.alpha", path);
        async move { checker.check(&job(&target)).await }
    });
    let observations = futures_join_all(checks).await;
    for obs in &observations {
        assert_outcome(obs, Outcome::Served, Verdict::Online);
    }
    let requests = net.counters().requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].instant.duration_since(requests[0].instant);
    assert!(gap >= Duration::from_millis(1700), "{gap:?}");
    // The check began before its wait (its lookup came first).
    let waited = observations.iter().max_by_key(|o| o.duration_ms).unwrap();
    assert!(waited.duration_ms >= 2300, "{}", waited.duration_ms);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_expires_while_waiting_for_its_turn_is_not_checked_and_spends_no_turn() {
    let net = start(
        hosters()
            .url(UrlSpec::new("q.alpha", "/1", "Alpha").server(0))
            .url(UrlSpec::new("q.alpha", "/2", "Alpha").server(0))
            .url(UrlSpec::new("q.alpha", "/3", "Alpha").server(0)),
    )
    .await;
    let mut cfg = config(&net);
    cfg.total_timeout = Duration::from_secs(1);
    cfg.limits.per_ip_interval = Duration::from_millis(1500);
    cfg.limits.per_ip_burst = 1;
    cfg.limits.per_ip_concurrency = 1;
    let checker = checker(cfg);
    let first = checker.check(&job(&url(&net, "q.alpha", "/1"))).await;
    assert_outcome(&first, Outcome::Served, Verdict::Online);
    // Its turn would come after its expiry: not checked, at once.
    let started = Instant::now();
    let late = checker
        .check(&job_expiring(
            &url(&net, "q.alpha", "/2"),
            Duration::from_millis(800),
        ))
        .await;
    assert_outcome(&late, Outcome::NotChecked, Verdict::Inconclusive);
    assert!(late.http.is_none());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // The next one gets the turn the expired one did not take.
    let next = checker.check(&job(&url(&net, "q.alpha", "/3"))).await;
    assert_outcome(&next, Outcome::Served, Verdict::Online);
    let requests = net.counters().requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/1", "/3"]);
    let gap = requests[1].instant.duration_since(requests[0].instant);
    assert!(gap < Duration::from_millis(2500), "{gap:?}");
    net.shutdown().await;
}

/// An ASN database rotated the way an operator does it (a new file moved
/// into place) while checks run: no check fails or goes unattributed, and the
/// checks that start after the new file was read carry its ASN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_asn_database_attributes_later_checks_and_fails_none() {
    let net = start(hosters().url(UrlSpec::new("a.alpha", "/page.html", "Alpha"))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    std::fs::copy(net.asn_db_path(), &db).unwrap();
    let mut cfg = config(&net);
    cfg.attribution.asn_db = Some(db.clone());
    cfg.attribution.watch_interval = Duration::from_millis(50);
    let checker = checker(cfg);
    let page = url(&net, "a.alpha", "/page.html");

    let checking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (checker, page, checking, seen) = (
            checker.clone(),
            page.clone(),
            checking.clone(),
            seen.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while checking.load(std::sync::atomic::Ordering::Relaxed) {
                let obs = checker.check(&job(&page)).await;
                seen.lock().unwrap().push((obs.verdict, obs.asn));
            }
        }));
    }
    let checks_so_far = || seen.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while checks_so_far() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let entries = [tdmon_simnet::AsnEntry::new(
        ALPHA,
        64999,
        "Alpha's New Owner",
    )];
    let bytes =
        tdmon_simnet::build_asn_db_entries(tdmon_simnet::AsnDbLayout::GeoLite2Asn, &entries)
            .unwrap();
    let next = dir.path().join("asn.mmdb.next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, &db).unwrap();
    let rotated_at = checks_so_far();

    while newly_attributed(&seen.lock().unwrap()) < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    checking.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let seen = seen.lock().unwrap();
    assert!(
        rotated_at >= 20,
        "checks ran before the rotation: {rotated_at}"
    );
    assert!(
        newly_attributed(&seen) >= 20,
        "the new database was read: {seen:?}"
    );
    for (verdict, asn) in seen.iter() {
        assert_eq!(*verdict, Verdict::Online, "no check failed: {seen:?}");
        assert!(
            matches!(asn, Some(64501 | 64999)),
            "every check attributed, by the old or the new database: {seen:?}"
        );
    }
    // Once the new database is in use, the old one never comes back (four
    // checks may have been in flight with the old one at the swap).
    let first_new = seen
        .iter()
        .position(|(_, asn)| *asn == Some(64999))
        .unwrap();
    let old_after = seen[first_new..]
        .iter()
        .filter(|(_, asn)| *asn == Some(64501))
        .count();
    assert!(
        old_after <= 4,
        "{old_after} checks used the old database after the new one: {seen:?}"
    );
}

/// Checks attributed by the rotated-in database.
fn newly_attributed(seen: &[(Verdict, Option<u32>)]) -> usize {
    seen.iter().filter(|(_, asn)| *asn == Some(64999)).count()
}

/// A connection is reused only to an address the check's own fresh answer
/// admitted: a URL that moved is checked at its new address on a new
/// connection, while the old connection still waits idle; and each
/// observation says whether its connection was reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_never_serves_a_check_whose_answer_left_its_address() {
    let net = SimNet::start(
        hosters()
            .url(UrlSpec::new("stay.alpha", "/page.html", "Alpha"))
            .url(
                UrlSpec::new("mover.alpha", "/page.html", "Alpha")
                    .moves_to("Beta", Duration::from_secs(3600)),
            ),
        SimNetOptions::manual_clock(),
    )
    .await
    .unwrap();
    let mut cfg = config(&net);
    cfg.resolver.max_ttl = Duration::from_millis(1);
    cfg.reuse_idle = Duration::from_secs(20);
    let checker = checker(cfg);
    let mover = url(&net, "mover.alpha", "/page.html");
    let connections = || net.counters().connections().values().sum::<u64>();

    let first = checker.check(&job(&mover)).await;
    assert_outcome(&first, Outcome::Served, Verdict::Online);
    assert!(in_prefix(first.ip, ALPHA));
    assert!(!first.http.as_ref().unwrap().connection_reused);
    let second = checker.check(&job(&mover)).await;
    assert_outcome(&second, Outcome::Served, Verdict::Online);
    assert_eq!(second.ip, first.ip);
    assert!(
        second.http.as_ref().unwrap().connection_reused,
        "the same answer: reused"
    );
    assert_eq!(connections(), 1);

    net.advance(Duration::from_secs(2 * 3600));
    // The old answer may live in the cache for the record's TTL.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let moved = checker.check(&job(&mover)).await;
    assert_outcome(&moved, Outcome::Served, Verdict::Online);
    assert!(in_prefix(moved.ip, BETA), "{:?}", moved.ip);
    assert_eq!(moved.asn, Some(64502));
    assert!(!moved.http.as_ref().unwrap().connection_reused);
    assert_eq!(connections(), 2, "a new connection, to the new address");
    let beta = moved.ip.unwrap();
    assert_eq!(net.counters().requests_per_address().get(&beta), Some(&1));

    // The idle connection to Alpha is still there, for checks whose answer
    // holds Alpha's address.
    let stay = url(&net, "stay.alpha", "/page.html");
    let stayed = checker.check(&job(&stay)).await;
    assert_outcome(&stayed, Outcome::Served, Verdict::Online);
    if stayed.ip == first.ip {
        assert!(stayed.http.as_ref().unwrap().connection_reused);
    }
    net.shutdown().await;
}

/// With `reuse_idle = 0` every request has a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_can_be_turned_off() {
    let net = start(hosters().url(UrlSpec::new("a.alpha", "/page.html", "Alpha"))).await;
    let mut cfg = config(&net);
    cfg.reuse_idle = Duration::ZERO;
    let checker = checker(cfg);
    let page = url(&net, "a.alpha", "/page.html");
    for _ in 0..3 {
        let obs = checker.check(&job(&page)).await;
        assert_outcome(&obs, Outcome::Served, Verdict::Online);
        assert!(!obs.http.as_ref().unwrap().connection_reused);
    }
    assert_eq!(net.counters().connections().values().sum::<u64>(), 3);
    net.shutdown().await;
}
