//! `tdmon check` as people run it: the built binary checks a list of URLs on
//! the simulated network.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use tdmon_simnet::{Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};

/// The worker settings of the scaled-down polite case: one request per
/// 50 ms to an address (bursts of 2, 2 at once), 64 checks in flight, a
/// total timeout of 1 s.
fn write_config(net: &SimNet, dir: &Path) -> std::path::PathBuf {
    let allow: Vec<String> = net
        .allowed_cidrs()
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    let config = format!(
        r#"
[worker]
total_timeout = "1s"
[worker.resolver]
nameservers = ["{dns}"]
[worker.policy]
allow = [{allow}]
[worker.limits]
per_ip_interval = "50ms"
per_ip_burst = 2
per_ip_concurrency = 2
max_in_flight = 64
[worker.attribution]
asn_db = {asn_db:?}
"#,
        dns = net.dns_addr(),
        allow = allow.join(", "),
        asn_db = net.asn_db_path().display().to_string(),
    );
    let path = dir.join("tdmon.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_long_list_of_one_host_is_checked_whole_at_the_polite_rate() {
    // `tdmon check --input` on 2,000 URLs of one host at the default
    // politeness, scaled down: each check waits up to 3 s for its turn,
    // three times its total timeout.
    const URLS: usize = 150;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut scenario = Scenario::new(1.0).hoster(Hoster::new(
        "Alpha",
        64501,
        "Alpha Hosting B.V.",
        "127.10.1.0/24",
        1,
    ));
    for i in 0..URLS {
        scenario = scenario.url(UrlSpec::new("many.alpha", &format!("/{i}"), "Alpha"));
    }
    let net = runtime
        .block_on(SimNet::start(scenario, SimNetOptions::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&net, dir.path());
    let input = dir.path().join("urls.txt");
    std::fs::write(&input, net.urls().join("\n")).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TDMON_") {
            command.env_remove(key);
        }
    }
    let output = command
        .arg("--config")
        .arg(&config)
        .args(["check", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let outcomes: Vec<String> = stdout
        .lines()
        .map(|line| {
            let observation: serde_json::Value = serde_json::from_str(line).unwrap();
            observation["outcome"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(outcomes.len(), URLS);
    assert!(outcomes.iter().all(|o| o == "served"), "{outcomes:?}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!("tdmon check: {URLS} checked in ")),
        "{stderr}"
    );
    assert!(
        summary.ends_with(&format!(": {URLS} online, 0 offline, 0 inconclusive")),
        "{stderr}"
    );

    let alpha: IpAddr = "127.10.1.1".parse().unwrap();
    let counters = net.counters();
    assert_eq!(
        counters.requests_per_address().get(&alpha),
        Some(&(URLS as u64))
    );
    // A burst of 2, then one per 50 ms; the server reads a request a little
    // after its admission, which can pull one more into a one-second window.
    assert!(counters.max_requests_per_second(alpha) <= 23);
    runtime.block_on(net.shutdown());
}
