//! The sample scenario in `config/scenarios/` parses, exercises every
//! behaviour, and starts: it cannot go stale.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tdmon_simnet::{Behaviour, Scenario, SimNet, SimNetOptions};

fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/scenarios/sample.toml")
}

fn name(behaviour: &Behaviour) -> &'static str {
    match behaviour {
        Behaviour::Never => "never",
        Behaviour::Removed { .. } => "removed",
        Behaviour::AlreadyRemoved { .. } => "already_removed",
        Behaviour::DnsRemoval { .. } => "dns_removal",
        Behaviour::DnsServfail { .. } => "dns_servfail",
        Behaviour::DnsNoAnswer { .. } => "dns_no_answer",
        Behaviour::SoftRemoval { .. } => "soft_removal",
        Behaviour::RedirectHome { .. } => "redirect_home",
        Behaviour::RedirectTo { .. } => "redirect_to",
        Behaviour::Flapping { .. } => "flapping",
        Behaviour::BlackHole { .. } => "black_hole",
        Behaviour::SlowDrip { .. } => "slow_drip",
        Behaviour::HugeBody { .. } => "huge_body",
        Behaviour::Delay { .. } => "delay",
        Behaviour::ServerErrors { .. } => "server_errors",
        Behaviour::RateLimited { .. } => "rate_limited",
    }
}

#[tokio::test]
async fn the_sample_scenario_covers_every_behaviour_and_starts() {
    let scenario = Scenario::from_file(&sample_path()).expect("sample scenario is valid");
    let seen: BTreeSet<&str> = scenario.urls.iter().map(|u| name(&u.behaviour)).collect();
    assert_eq!(seen.len(), 16, "every behaviour appears: {seen:?}");
    assert!(
        scenario.urls.iter().any(|u| u.moves.is_some()),
        "a move appears"
    );

    let dir = tempfile::tempdir().unwrap();
    let net = SimNet::start(
        scenario.clone(),
        SimNetOptions::manual_clock().asn_db(dir.path().join("asn.mmdb")),
    )
    .await
    .unwrap();
    assert_eq!(net.urls().len(), scenario.urls.len());
    assert!(net.urls().iter().any(|u| u.starts_with("https://")));
    let truth = net.truth();
    assert_eq!(truth.iter().filter(|t| t.already_removed).count(), 1);
    assert_eq!(truth.iter().filter(|t| t.moved.is_some()).count(), 1);
    assert_eq!(net.server_addrs().len(), 6);
    net.shutdown().await;
}

#[test]
fn a_scenario_round_trips_through_toml() {
    let scenario = Scenario::from_file(&sample_path()).unwrap();
    let text = toml::to_string(&scenario).expect("serializes");
    assert_eq!(Scenario::from_toml(&text).expect("reads back"), scenario);
}
