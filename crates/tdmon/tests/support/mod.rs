//! What the command-line tests share: the built binary, isolated from the
//! caller's TDMON_* environment, and a PostgreSQL schema of their own.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The PostgreSQL the tests use (`TDMON_TEST_POSTGRES`, else the local one).
pub fn postgres_url() -> String {
    std::env::var("TDMON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `tdmon` with no TDMON_* variable of the caller's.
pub fn tdmon() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TDMON_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `tdmon ARGS`.
pub fn run(args: &[&str]) -> Output {
    tdmon().args(args).output().expect("tdmon runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A fresh PostgreSQL schema, dropped when the test ends.
#[derive(Debug)]
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    pub fn new(prefix: &str) -> Self {
        Self {
            url: postgres_url(),
            name: format!("{prefix}_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The `--set` arguments that point tdmon at this schema through `url`.
    pub fn settings(&self, url: &str) -> [String; 4] {
        [
            "--set".into(),
            format!("store.url={url}"),
            "--set".into(),
            format!("store.schema={}", self.name),
        ]
    }

    /// The one value `sql` selects, as text.
    pub fn query(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([self.url.as_str(), "-tAq", "-c"])
            .arg(sql)
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "{sql}: {}", stderr(&output));
        stdout(&output).trim().to_owned()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let status = Command::new("psql")
            .args([self.url.as_str(), "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

/// The `[worker]` tables that point tdmon at the simulated network `net`:
/// its DNS server, its prefixes allowed, its CA (written to `dir`) and ASN
/// database, short timeouts (`total_timeout` for a whole check) and limits
/// loose enough never to slow a test. Ends inside `[worker.attribution]`.
pub fn simnet_worker_toml(net: &tdmon_simnet::SimNet, dir: &Path, total_timeout: &str) -> String {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, net.ca_cert_pem()).unwrap();
    let allow: Vec<String> = net
        .allowed_cidrs()
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    format!(
        r#"[worker]
connect_timeout = "2s"
total_timeout = "{total_timeout}"
extra_root_certs = [{ca:?}]
[worker.resolver]
nameservers = ["{dns}"]
timeout = "500ms"
attempts = 1
max_ttl = "1ms"
[worker.policy]
allow = [{allow}]
[worker.limits]
checks_per_second = 2000
per_ip_interval = "1ms"
per_ip_burst = 500
per_ip_concurrency = 32
[worker.attribution]
asn_db = {asn_db:?}
"#,
        ca = ca.display().to_string(),
        dns = net.dns_addr(),
        allow = allow.join(", "),
        asn_db = net.asn_db_path().display().to_string(),
    )
}
