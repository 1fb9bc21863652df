//! Rotating the ASN database under a running monitor: SIGHUP reads the file
//! again, and the checks that follow are attributed by the new database
//! without the monitor stopping or a check failing. (The worker's test
//! `a_replaced_asn_database_attributes_later_checks_and_fails_none` covers
//! the file being noticed without a signal.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tdmon_core::Verdict;
use tdmon_simnet::{AsnDbLayout, AsnEntry, Hoster, Scenario, SimNet, SimNetOptions, UrlSpec};
use tdmon_store::Store;

const ALPHA: &str = "127.10.1.0/24";

/// What one stored observation says: its verdict and its ASN.
type Seen = (Verdict, Option<u32>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_asn_database_of_a_running_monitor() {
    let scenario = Scenario::new(1.0)
        .hoster(Hoster::new("Alpha", 64501, "Alpha Hosting B.V.", ALPHA, 1))
        .url(UrlSpec::new("a.alpha", "/page.html", "Alpha"));
    let net = SimNet::start(scenario, SimNetOptions::default())
        .await
        .expect("the simulated network starts");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("asn.mmdb");
    std::fs::copy(net.asn_db_path(), &db).unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("tdmon.db").display());
    let config = dir.path().join("tdmon.toml");
    std::fs::write(&config, config_text(&net, &db, &store_url)).unwrap();
    let notices = dir.path().join("notices.csv");
    let at = net.notice_time().to_rfc3339();
    std::fs::write(
        &notices,
        format!("url,notified_at\n{},{at}\n", net.urls()[0]),
    )
    .unwrap();

    let mut run = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--notices"])
        .arg(&notices)
        .env("TDMON_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tdmon run starts");
    // A failed assertion must not leave the monitor running.
    let mut stop = KillOnDrop(Some(run.id()));
    let store = Store::open(&store_url).await.expect("the store opens");
    let asns = async || -> Vec<Seen> {
        store
            .observations(1)
            .await
            .unwrap_or_default()
            .iter()
            .map(|o| (o.verdict, o.asn))
            .collect()
    };
    let wait_for = async |enough: &dyn Fn(&[Seen]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = asns().await;
            if enough(&seen) || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let seen = wait_for(&|seen| seen.len() >= 3).await;
    if seen.len() < 3 {
        kill("KILL", run.id());
        stop.0 = None;
        let output = run.wait_with_output().unwrap();

        panic!(
            "no checks by the first database: {seen:?}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let entries = [AsnEntry::new(ALPHA, 64999, "Alpha's New Owner")];
    let next = dir.path().join("asn.mmdb.next");
    std::fs::write(
        &next,
        tdmon_simnet::build_asn_db_entries(AsnDbLayout::GeoLite2Asn, &entries).unwrap(),
    )
    .unwrap();
    std::fs::rename(&next, &db).unwrap();
    // The file is looked at once an hour in this configuration: only the
    // signal can make the monitor read it now.
    let rotated_at = asns().await.len();
    kill("HUP", run.id());
    let newly_attributed =
        |seen: &[Seen]| seen.iter().filter(|(_, asn)| *asn == Some(64999)).count();
    let seen = wait_for(&|seen| newly_attributed(seen) >= 3).await;
    assert!(
        newly_attributed(&seen) >= 3,
        "checks by the rotated database: {seen:?}"
    );

    assert_eq!(
        run.try_wait().unwrap(),
        None,
        "SIGHUP does not stop the monitor"
    );
    kill("TERM", run.id());
    stop.0 = None;
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("ASN database reloaded"), "{stderr}");
    for (verdict, asn) in &seen {
        assert_eq!(*verdict, Verdict::Online, "{seen:?}");
        assert!(matches!(asn, Some(64501 | 64999)), "{seen:?}");
    }
    assert!(
        seen[..rotated_at]
            .iter()
            .all(|(_, asn)| *asn == Some(64501)),
        "before the signal, the first database: {seen:?}"
    );
}

/// Kills the process if the test ends before it was waited for (then its
/// id may belong to another process: `None`).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A monitor that checks the URL every 100 ms and looks at the ASN database
/// file only once an hour.
fn config_text(net: &SimNet, db: &Path, store_url: &str) -> String {
    let allow: Vec<String> = net
        .allowed_cidrs()
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    format!(
        r#"
[schedule]
offsets = ["0s", "100ms"]
then_every = "100ms"
horizon = "30d"
[confirmation]
recheck_delay = "100ms"
min_span = "300ms"
[store]
url = "{store_url}"
[dispatcher]
tick = "20ms"
per_host_interval = "1ms"
[collector]
linger = "10ms"
[worker.resolver]
nameservers = ["{dns}"]
timeout = "500ms"
attempts = 1
max_ttl = "1ms"
[worker.policy]
allow = [{allow}]
[worker.limits]
per_ip_interval = "1ms"
[worker.attribution]
asn_db = {db:?}
watch_interval = "1h"
"#,
        dns = net.dns_addr(),
        allow = allow.join(", "),
        db = db.display().to_string(),
    )
}
