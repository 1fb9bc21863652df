//! Every scripted behaviour, observed by a plain client: a hickory resolver
//! for DNS and a raw HTTP/1.1 client (reqwest for HTTPS). Most tests use the
//! manual clock and move simulated time by hand, so nothing depends on timing.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::{Lookup, addr_of, eventually, get, get_at, lookup, split_url};
use tdmon_simnet::{Behaviour, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOUR: Duration = Duration::from_secs(3600);

fn hosters() -> Scenario {
    Scenario::new(3600.0)
        .hoster(Hoster::new(
            "FastHost",
            64500,
            "FastHost B.V.",
            "127.10.0.0/24",
            3,
        ))
        .hoster(Hoster::new(
            "SlowHost",
            64501,
            "SlowHost Ltd",
            "127.11.0.0/24",
            2,
        ))
}

async fn start(scenario: Scenario) -> SimNet {
    SimNet::start(scenario, SimNetOptions::manual_clock())
        .await
        .expect("network starts")
}

#[tokio::test]
async fn dns_tells_nxdomain_servfail_and_silence_apart() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("gone", "/", "FastHost").behaviour(Behaviour::DnsRemoval { at: HOUR }),
            )
            .url(
                UrlSpec::new("broken", "/", "FastHost").behaviour(Behaviour::DnsServfail {
                    from: Duration::ZERO,
                    until: Some(HOUR),
                }),
            )
            .url(
                UrlSpec::new("silent", "/", "SlowHost").behaviour(Behaviour::DnsNoAnswer {
                    from: Duration::ZERO,
                    until: None,
                }),
            ),
    )
    .await;
    let dns = net.dns_addr();
    assert!(dns.ip().is_loopback());

    let Lookup::Addrs(addrs) = lookup(dns, "gone.sim.test").await else {
        panic!("gone.sim.test resolves before its removal");
    };
    assert!(net.allowed_cidrs()[0].contains(&addrs[0]), "{addrs:?}");
    assert_eq!(lookup(dns, "broken.sim.test").await, Lookup::ServFail);
    assert_eq!(lookup(dns, "silent.sim.test").await, Lookup::Timeout);
    assert_eq!(lookup(dns, "nothing-here.sim.test").await, Lookup::NxDomain);

    net.advance(HOUR);
    assert_eq!(lookup(dns, "gone.sim.test").await, Lookup::NxDomain);
    assert!(matches!(
        lookup(dns, "broken.sim.test").await,
        Lookup::Addrs(_)
    ));

    let results: Vec<_> = net
        .counters()
        .dns_queries()
        .iter()
        .map(|q| q.result)
        .collect();
    assert!(results.contains(&"dropped"), "{results:?}");
    assert!(results.contains(&"servfail"), "{results:?}");
}

#[tokio::test]
async fn dns_answers_over_tcp_with_short_ttls_and_no_aaaa() {
    let net = start(hosters().url(UrlSpec::new("a.fast", "/", "FastHost").server(1))).await;
    let tcp = support::resolver_over(net.dns_addr(), true);
    let answer = tcp.lookup_ip("a.fast.sim.test.").await.expect("A over TCP");
    assert_eq!(
        answer.iter().collect::<Vec<_>>(),
        vec!["127.10.0.2".parse::<IpAddr>().unwrap()]
    );
    let ttl = answer.as_lookup().answers()[0].ttl;
    assert_eq!(ttl, tdmon_simnet::DNS_TTL);
    let udp = support::resolver(net.dns_addr());
    let aaaa = udp.ipv6_lookup("a.fast.sim.test.").await;
    assert!(aaaa.is_err(), "no AAAA records: {aaaa:?}");
    // An empty non-terminal exists without records; a name outside the zone is refused.
    assert_eq!(
        lookup(net.dns_addr(), "fast.sim.test").await,
        Lookup::NoRecords
    );
    assert!(matches!(
        lookup(net.dns_addr(), "example.org").await,
        Lookup::Other(_)
    ));
}

#[tokio::test]
async fn removal_answers_404_or_410_after_its_time() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("a.fast", "/page.html", "FastHost").behaviour(Behaviour::Removed {
                    at: 3 * HOUR,
                    status: 404,
                }),
            )
            .url(
                UrlSpec::new("b.fast", "/x", "FastHost").behaviour(Behaviour::Removed {
                    at: 3 * HOUR,
                    status: 410,
                }),
            ),
    )
    .await;
    let urls = net.urls();
    let dns = net.dns_addr();
    let first = get(dns, &urls[0]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(!first.body.is_empty());

    net.advance(3 * HOUR - Duration::from_secs(1));
    assert_eq!(get(dns, &urls[0]).await.status, 200);
    net.advance(Duration::from_secs(1));
    assert_eq!(get(dns, &urls[0]).await.status, 404);
    assert_eq!(get(dns, &urls[1]).await.status, 410);

    let truth = net.truth();
    assert_eq!(truth[0].went_down_sim, Some(3 * HOUR));
    // 3 simulated hours are 3 real seconds at 3600x.
    assert_eq!(
        truth[0].went_down,
        Some(net.notice_time() + chrono::TimeDelta::seconds(3))
    );
    assert!(!truth[0].already_removed);
}

#[tokio::test]
async fn removal_follows_the_real_clock_when_compressed() {
    // 7200x: the removal at 2 h comes after 1 s of real time.
    let scenario = Scenario {
        time_scale: 7200.0,
        ..hosters()
    }
    .url(
        UrlSpec::new("quick", "/", "FastHost").behaviour(Behaviour::Removed {
            at: 2 * HOUR,
            status: 404,
        }),
    );
    let net = SimNet::start(scenario, SimNetOptions::default())
        .await
        .unwrap();
    let url = &net.urls()[0];
    assert_eq!(get(net.dns_addr(), url).await.status, 200);
    assert!(
        net.sim_elapsed() < 2 * HOUR,
        "the first check came too late"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(net.dns_addr(), url).await.status, 404);
    net.shutdown().await;
}

#[tokio::test]
async fn flapping_goes_down_and_comes_back() {
    let net = start(
        hosters().url(
            UrlSpec::new("flap", "/f", "SlowHost").behaviour(Behaviour::Flapping {
                down_at: HOUR,
                up_at: 2 * HOUR,
                status: 404,
            }),
        ),
    )
    .await;
    let url = &net.urls()[0];
    let dns = net.dns_addr();
    assert_eq!(get(dns, url).await.status, 200);
    net.advance(HOUR);
    assert_eq!(get(dns, url).await.status, 404);
    net.advance(HOUR);
    assert_eq!(get(dns, url).await.status, 200);
    let truth = net.truth_for(url).unwrap();
    assert_eq!(
        (truth.went_down_sim, truth.came_back_sim),
        (Some(HOUR), Some(2 * HOUR))
    );
}

#[tokio::test]
async fn a_move_changes_the_dns_answer_and_the_serving_address() {
    let net =
        start(hosters().url(UrlSpec::new("mover", "/m", "FastHost").moves_to("SlowHost", HOUR)))
            .await;
    let url = net.urls()[0].clone();
    let dns = net.dns_addr();
    let before = addr_of(dns, "mover.sim.test").await;
    assert!(net.allowed_cidrs()[0].contains(&before), "{before}");
    assert_eq!(get(dns, &url).await.status, 200);

    assert_eq!(net.current_address("mover"), Some(before));
    net.advance(HOUR);
    let after = addr_of(dns, "mover.sim.test").await;
    assert_eq!(net.current_address("mover.sim.test"), Some(after));
    assert!(
        ["127.11.0.1", "127.11.0.2"].contains(&after.to_string().as_str()),
        "{after}"
    );
    assert!(net.allowed_cidrs()[1].contains(&after), "{after}");
    assert_eq!(get(dns, &url).await.status, 200);

    let seen: Vec<IpAddr> = net
        .counters()
        .requests_for(&url)
        .iter()
        .map(|r| r.local.ip())
        .collect();
    assert_eq!(seen, vec![before, after]);
    let moved = net.truth()[0].moved.clone().unwrap();
    assert_eq!(
        (moved.from.as_str(), moved.to.as_str()),
        ("FastHost", "SlowHost")
    );
    assert_eq!((moved.from_addr, moved.to_addr), (before, after));
}

#[tokio::test]
async fn a_huge_body_sends_little_to_a_client_that_leaves_after_the_headers() {
    const SIZE: u64 = 5 * 1024 * 1024;
    let net = start(hosters().url(
        UrlSpec::new("big", "/huge.bin", "FastHost").behaviour(Behaviour::HugeBody { size: SIZE }),
    ))
    .await;
    let url = net.urls()[0].clone();
    let (host, port, path) = split_url(&url);
    let ip = addr_of(net.dns_addr(), &host).await;
    let mut stream = TcpStream::connect(SocketAddr::new(ip, port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("Content-Length: {SIZE}")), "{head}");
    drop(stream);

    let counters = net.counters();
    assert!(
        eventually(|| counters
            .requests_for(&url)
            .first()
            .is_some_and(|r| r.status.is_some()))
        .await,
        "the server noticed the client leaving"
    );
    let record = &counters.requests_for(&url)[0];
    assert!(!record.completed);
    assert!(record.bytes_sent > 0);
    assert!(
        record.bytes_sent < SIZE / 4,
        "sent {} of {SIZE} bytes to a client that read only the head",
        record.bytes_sent
    );
    assert_eq!(counters.bytes_per_url()[&url], record.bytes_sent);
}

#[tokio::test]
async fn counters_record_requests_per_address() {
    let net = start(
        hosters()
            .url(UrlSpec::new("one", "/1", "FastHost").server(0))
            .url(UrlSpec::new("two", "/2", "SlowHost").server(1)),
    )
    .await;
    let urls = net.urls();
    for _ in 0..3 {
        assert_eq!(get(net.dns_addr(), &urls[0]).await.status, 200);
    }
    assert_eq!(get(net.dns_addr(), &urls[1]).await.status, 200);

    let fast: IpAddr = "127.10.0.1".parse().unwrap();
    let slow: IpAddr = "127.11.0.2".parse().unwrap();
    let counters = net.counters();
    let per_address = counters.requests_per_address();
    assert_eq!(per_address.get(&fast), Some(&3));
    assert_eq!(per_address.get(&slow), Some(&1));
    assert_eq!(per_address.len(), 2);
    assert_eq!(counters.max_requests_per_second(fast), 3);
    assert_eq!(
        counters.max_requests_per_second("127.10.0.2".parse().unwrap()),
        0
    );
    let record = &counters.requests()[0];
    assert_eq!(record.status, Some(200));
    assert!(record.completed && record.bytes_sent > 0);
    assert_eq!(record.path, "/1");
    assert_eq!(counters.connections().values().sum::<u64>(), 4);
}

#[tokio::test]
async fn soft_removal_redirects_and_disturbances() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("img", "/cat.png", "FastHost")
                    .image()
                    .behaviour(Behaviour::SoftRemoval { at: HOUR }),
            )
            .url(UrlSpec::new("home", "/deep/page", "FastHost").behaviour(
                Behaviour::RedirectHome {
                    at: HOUR,
                    status: 302,
                },
            ))
            .url(
                UrlSpec::new("burst", "/b", "SlowHost").behaviour(Behaviour::ServerErrors {
                    from: HOUR,
                    until: 2 * HOUR,
                    status: 503,
                }),
            )
            .url(
                UrlSpec::new("limit", "/l", "SlowHost").behaviour(Behaviour::RateLimited {
                    from: HOUR,
                    until: 2 * HOUR,
                    retry_after: Duration::from_secs(120),
                }),
            )
            .url(
                UrlSpec::new("early", "/e", "SlowHost")
                    .behaviour(Behaviour::AlreadyRemoved { status: 410 }),
            ),
    )
    .await;
    let dns = net.dns_addr();
    let urls = net.urls();
    let image = get(dns, &urls[0]).await;
    assert_eq!(
        (image.status, image.header("content-type")),
        (200, Some("image/png"))
    );
    assert!(image.body.starts_with(b"\x89PNG"));
    assert_eq!(get(dns, &urls[2]).await.status, 200);
    assert_eq!(get(dns, &urls[4]).await.status, 410);
    assert!(net.truth()[4].already_removed);

    net.advance(HOUR);
    let soft = get(dns, &urls[0]).await;
    assert_eq!(
        (soft.status, soft.header("content-type")),
        (200, Some("text/html; charset=utf-8"))
    );

    let redirect = get(dns, &urls[1]).await;
    assert_eq!(redirect.status, 302);
    let home = redirect.header("location").unwrap().to_owned();
    assert_eq!(home, format!("http://home.sim.test:{}/", net.http_port()));
    assert_eq!(get(dns, &home).await.status, 200);

    assert_eq!(get(dns, &urls[2]).await.status, 503);
    let limited = get(dns, &urls[3]).await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("120"))
    );

    net.advance(HOUR);
    assert_eq!(get(dns, &urls[2]).await.status, 200);
    assert_eq!(get(dns, &urls[3]).await.status, 200);
    // Disturbances are not takedowns.
    assert_eq!(net.truth()[2].went_down, None);
}

#[tokio::test]
async fn redirect_to_a_landing_page_or_a_canonical_twin() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let net = start(
        hosters()
            .url(
                UrlSpec::new("shop", "/item/9", "FastHost").behaviour(Behaviour::RedirectTo {
                    at: HOUR,
                    host: Some("landing.fast".into()),
                    path: "/".into(),
                    scheme: None,
                    status: 301,
                }),
            )
            .url(UrlSpec::new("blog", "/post", "SlowHost").image().behaviour(
                Behaviour::RedirectTo {
                    at: HOUR,
                    host: Some("www.blog".into()),
                    path: "/post/".into(),
                    scheme: Some(tdmon_simnet::Scheme::Https),
                    status: 308,
                },
            )),
    )
    .await;
    let dns = net.dns_addr();
    let urls = net.urls();
    let original = get(dns, &urls[1]).await;
    assert_eq!(original.status, 200);
    net.advance(HOUR);

    let landing = get(dns, &urls[0]).await;
    assert_eq!(landing.status, 301);
    let location = landing.header("location").unwrap();
    assert_eq!(
        location,
        format!("http://landing.fast.sim.test:{}/", net.http_port())
    );
    // The landing host resolves (to the redirecting URL's address) and answers 200.
    assert_eq!(get(dns, location).await.status, 200);
    assert!(net.truth()[0].went_down.is_some());

    let canonical = get(dns, &urls[1]).await;
    assert_eq!(canonical.status, 308);
    let target = canonical.header("location").unwrap().to_owned();
    assert_eq!(
        target,
        format!("https://www.blog.sim.test:{}/post/", net.https_port())
    );
    let ip = addr_of(dns, "www.blog.sim.test").await;
    let ca = reqwest::Certificate::from_pem(net.ca_cert_pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .resolve("www.blog.sim.test", SocketAddr::new(ip, net.https_port()))
        .build()
        .unwrap();
    let twin = client.get(&target).send().await.unwrap();
    assert_eq!(twin.status(), 200);
    assert_eq!(
        twin.headers()["content-type"],
        original.header("content-type").unwrap()
    );
    assert_eq!(
        twin.bytes().await.unwrap().as_ref(),
        original.body.as_slice()
    );
    assert_eq!(
        net.truth()[1].went_down,
        None,
        "a canonical move is no takedown"
    );
}

#[tokio::test]
async fn a_black_hole_never_answers_and_a_slow_drip_trickles() {
    let net = start(
        hosters()
            .url(
                UrlSpec::new("hole", "/h", "FastHost").behaviour(Behaviour::BlackHole {
                    from: Duration::ZERO,
                }),
            )
            .url(
                UrlSpec::new("drip", "/d", "FastHost").behaviour(Behaviour::SlowDrip {
                    pause: Duration::from_millis(100),
                }),
            ),
    )
    .await;
    let urls = net.urls();
    for (i, url) in urls.iter().enumerate() {
        let (host, port, path) = split_url(url);
        let ip = addr_of(net.dns_addr(), &host).await;
        let mut stream = TcpStream::connect(SocketAddr::new(ip, port)).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(450);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if i == 0 {
            assert!(got.is_empty(), "the black hole answered {got:?}");
        } else {
            // One byte at once, then one per 100 ms.
            assert!(
                (2..=7).contains(&got.len()),
                "drip sent {} bytes",
                got.len()
            );
            assert!(b"HTTP/1.1 200".starts_with(&got));
        }
    }
    let hole = &net.counters().requests_for(&urls[0])[0];
    assert_eq!(hole.status, None);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let net = start(hosters().url(UrlSpec::new("ka", "/k", "FastHost"))).await;
    let (host, port, path) = split_url(&net.urls()[0]);
    let ip = addr_of(net.dns_addr(), &host).await;
    let mut stream = TcpStream::connect(SocketAddr::new(ip, port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let last = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(format!("{request}{request}{last}").as_bytes())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert_eq!(net.counters().connections().values().sum::<u64>(), 1);
    assert_eq!(net.counters().requests().len(), 3);
    // Unknown paths are 404, the home page of a known host is 200.
    let addr = SocketAddr::new(ip, port);
    assert_eq!(get_at(addr, &host, "/nope").await.status, 404);
    assert_eq!(get_at(addr, &host, "/").await.status, 200);
}

#[tokio::test]
async fn https_is_served_with_the_network_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let net = start(hosters().url(UrlSpec::new("secure", "/s.html", "SlowHost").https())).await;
    let url = net.urls()[0].clone();
    assert!(url.starts_with(&format!("https://secure.sim.test:{}/", net.https_port())));
    let ip = addr_of(net.dns_addr(), "secure.sim.test").await;
    let ca = reqwest::Certificate::from_pem(net.ca_cert_pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .resolve("secure.sim.test", SocketAddr::new(ip, net.https_port()))
        .resolve("secure.sim.test", SocketAddr::new(ip, net.http_port()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Simulated notified content")
    );

    // The plain-HTTP twin of an HTTPS URL redirects to it, as real sites do.
    let plain = format!("http://secure.sim.test:{}/s.html", net.http_port());
    let redirect = get_at(
        SocketAddr::new(ip, net.http_port()),
        "secure.sim.test",
        "/s.html",
    )
    .await;
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some(url.as_str()))
    );
    assert!(plain.starts_with("http://"));
    let record = &net.counters().requests_for(&url)[0];
    assert!(record.bytes_sent > 0 && record.completed);
}

#[tokio::test]
async fn shutdown_closes_the_listeners() {
    let net = start(hosters().url(UrlSpec::new("bye", "/", "FastHost").server(0))).await;
    let addr = SocketAddr::new("127.10.0.1".parse().unwrap(), net.http_port());
    assert_eq!(get_at(addr, "bye.sim.test", "/").await.status, 200);
    let db = net.asn_db_path().to_owned();
    assert!(db.exists());
    net.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    assert!(!db.exists(), "the temp ASN database is removed");
}

#[tokio::test]
async fn many_addresses_listen_and_bad_requests_get_4xx() {
    let net = start(
        Scenario::new(60.0)
            .hoster(Hoster::new(
                "Big",
                64510,
                "Big Hosting",
                "127.20.0.0/24",
                64,
            ))
            .url(UrlSpec::new("x.big", "/", "Big")),
    )
    .await;
    let addrs = net.server_addrs();
    assert_eq!(addrs.len(), 64);
    for ip in &addrs {
        let addr = SocketAddr::new(*ip, net.http_port());
        assert_eq!(
            get_at(addr, "x.big.sim.test", "/").await.status,
            200,
            "{addr}"
        );
    }
    assert_eq!(net.counters().requests_per_address().len(), 64);

    let addr = SocketAddr::new(addrs[0], net.http_port());
    for (request, status) in [
        (b"NONSENSE\r\n\r\n".to_vec(), 400),
        (
            [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat(),
            431,
        ),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(support::parse_response(&bytes).status, status);
    }
}

#[tokio::test]
async fn a_network_can_start_part_way_through_its_scenario() {
    let options = SimNetOptions {
        start_offset: 3 * HOUR,
        ..SimNetOptions::manual_clock()
    };
    let scenario = hosters().url(UrlSpec::new("late", "/", "FastHost").behaviour(
        Behaviour::Removed {
            at: 2 * HOUR,
            status: 404,
        },
    ));
    let net = SimNet::start(scenario, options).await.unwrap();
    assert_eq!(net.sim_elapsed(), 3 * HOUR);
    assert_eq!(get(net.dns_addr(), &net.urls()[0]).await.status, 404);
    // The notice lies three simulated hours (three real seconds) back.
    let went_down = net.truth()[0].went_down.unwrap();
    let ago = chrono::Utc::now() - went_down;
    assert!(ago >= chrono::TimeDelta::milliseconds(900), "{ago}");
    assert!(ago <= chrono::TimeDelta::seconds(3), "{ago}");
}

#[tokio::test]
async fn a_delay_answers_normally_after_a_real_pause() {
    const PAUSE: Duration = Duration::from_millis(300);
    let net = start(
        hosters()
            .url(
                UrlSpec::new("late", "/late.html", "FastHost")
                    .behaviour(Behaviour::Delay { pause: PAUSE }),
            )
            .url(UrlSpec::new("prompt", "/now.html", "FastHost")),
    )
    .await;
    let urls = net.urls();
    let started = tokio::time::Instant::now();
    let late = get(net.dns_addr(), &urls[0]).await;
    let waited = started.elapsed();
    assert_eq!(late.status, 200);
    assert!(
        late.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        String::from_utf8_lossy(&late.body).contains("/late.html"),
        "the content itself is served"
    );
    assert!(waited >= PAUSE, "answered after {waited:?}");

    let started = tokio::time::Instant::now();
    assert_eq!(get(net.dns_addr(), &urls[1]).await.status, 200);
    assert!(started.elapsed() < PAUSE, "other URLs are not delayed");
    // Not a takedown.
    assert_eq!(net.truth()[0].went_down, None);
}

#[tokio::test]
async fn an_ip_literal_host_is_routed_by_the_address_and_path() {
    let net = start(
        hosters()
            .url(UrlSpec::new("one", "/a.html", "FastHost").server(0))
            .url(
                UrlSpec::new("two", "/b.html", "FastHost")
                    .server(1)
                    .behaviour(Behaviour::AlreadyRemoved { status: 410 }),
            )
            .url(UrlSpec::new("three", "/a.html", "FastHost").server(2)),
    )
    .await;
    let port = net.http_port();
    let urls = net.urls();
    assert_eq!(
        net.address_urls(),
        [
            format!("http://127.10.0.1:{port}/a.html"),
            format!("http://127.10.0.2:{port}/b.html"),
            format!("http://127.10.0.3:{port}/a.html"),
        ]
    );
    let at = |last: u8| SocketAddr::new(IpAddr::from([127, 10, 0, last]), port);
    // The same path on two addresses reaches two URLs.
    let one = get_at(at(1), "127.10.0.1", "/a.html").await;
    assert_eq!(one.status, 200);
    assert!(String::from_utf8_lossy(&one.body).contains(&urls[0]));
    let three = get_at(at(3), &format!("127.10.0.3:{port}"), "/a.html").await;
    assert!(String::from_utf8_lossy(&three.body).contains(&urls[2]));
    // Behaviour follows the URL.
    assert_eq!(get_at(at(2), "127.10.0.2", "/b.html").await.status, 410);
    // A path no URL on that address has is 404.
    assert_eq!(get_at(at(2), "127.10.0.2", "/a.html").await.status, 404);
    assert_eq!(get_at(at(1), "127.10.0.1", "/b.html").await.status, 404);

    let stats = net.counters().stats();
    assert_eq!(stats.urls[&urls[0]].requests, 1);
    assert_eq!(stats.urls[&urls[1]].requests, 1);
    assert_eq!(stats.urls[&urls[2]].requests, 1);
    assert_eq!(stats.requests, 5);
    assert!(stats.urls[&urls[0]].bytes_sent > 0);
}

#[tokio::test]
async fn a_fixed_dns_port_is_the_one_served_and_a_taken_one_fails_the_start() {
    // A port the system picked a moment ago is very probably free again.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scenario = || hosters().url(UrlSpec::new("a.fast", "/", "FastHost").server(1));
    let options = SimNetOptions {
        dns_port: port,
        ..SimNetOptions::manual_clock()
    };
    let net = SimNet::start(scenario(), options.clone()).await.unwrap();
    assert_eq!(net.dns_addr(), SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(matches!(
        lookup(net.dns_addr(), "a.fast.sim.test").await,
        Lookup::Addrs(_)
    ));
    // A second network cannot take the same port; it says so instead of
    // quietly serving elsewhere.
    let err = SimNet::start(scenario(), options).await.unwrap_err();
    assert!(err.to_string().contains("DNS server"), "{err}");
}
