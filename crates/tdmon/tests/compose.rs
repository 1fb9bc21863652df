//! docker-compose.yml and the Dockerfile cannot rot, although no Docker engine
//! runs here: every tdmon service's command parses with the command line's
//! own parser, every TDMON_* variable passes the configuration loader (which
//! refuses a setting it does not know), the worker's opt-in to the simulated
//! network matches what `tdmon simnet serve` really serves, and the image is
//! built with the workspace's Rust.

mod support;

// The command line's parser itself: `cli.rs` depends on clap and std only.
#[allow(dead_code)]
#[path = "../src/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Parser as _;
use serde_yaml::{Mapping, Value};

use cli::{Cli, Command, SimnetCommand};
use support::{stderr, stdout, tdmon};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The services of docker-compose.yml, merge keys (`<<: *anchor`) applied.
fn services() -> BTreeMap<String, Mapping> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut compose: Value = serde_yaml::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    // `apply_merge` merges one level; services merge anchors one level down.
    let services = compose["services"].as_mapping_mut().unwrap();
    for (_, service) in services.iter_mut() {
        service.apply_merge().unwrap();
        if let Some(environment) = service.get_mut("environment") {
            environment.apply_merge().unwrap();
        }
    }
    services
        .iter()
        .map(|(name, service)| {
            let name = name.as_str().unwrap().to_owned();
            let service = service.as_mapping().unwrap().clone();
            (name, service)
        })
        .collect()
}

/// The services that run the tdmon image.
fn tdmon_services() -> BTreeMap<String, Mapping> {
    services()
        .into_iter()
        .filter(|(_, service)| service.get("image").and_then(Value::as_str) == Some("tdmon:latest"))
        .collect()
}

/// A service's command as a list of arguments: the list form only, so that no
/// shell stands between compose and tdmon.
fn command(name: &str, service: &Mapping) -> Vec<String> {
    let Some(Value::Sequence(items)) = service.get("command") else {
        panic!("{name}: `command` must be a list of arguments");
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => text.clone(),
            other => panic!("{name}: argument {other:?} is not a string; quote it"),
        })
        .collect()
}

fn parse(name: &str, service: &Mapping) -> Cli {
    let args = command(name, service);
    Cli::try_parse_from(std::iter::once("tdmon".to_owned()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("{name}: `tdmon {}` does not parse:\n{e}", args.join(" ")))
}

/// A service's TDMON_* variables.
fn settings(service: &Mapping) -> Vec<(String, String)> {
    let Some(environment) = service.get("environment") else {
        return Vec::new();
    };
    environment
        .as_mapping()
        .expect("`environment` is a mapping")
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => panic!("{key:?}: {other:?} is not a scalar"),
            };
            (key.as_str().unwrap().to_owned(), value)
        })
        .filter(|(key, _)| key.starts_with("TDMON_"))
        .collect()
}

/// `tdmon config show` with only `vars` and the command's `--set`s: the
/// loader's verdict on them (it refuses unknown and invalid settings).
fn config_show(vars: &[(String, String)], cli: &Cli) -> std::process::Output {
    let mut command = tdmon();
    for set in &cli.overrides {
        command.arg("--set").arg(set);
    }
    command
        .args(["config", "show"])
        .envs(vars.iter().cloned())
        .output()
        .unwrap()
}

#[test]
fn every_service_command_is_a_tdmon_command_that_parses() {
    let services = tdmon_services();
    let roles: BTreeMap<&str, bool> = ["dispatcher", "worker", "collector", "simnet"]
        .into_iter()
        .map(|name| (name, services.contains_key(name)))
        .collect();
    assert!(roles.values().all(|present| *present), "{roles:?}");
    for (name, service) in &services {
        let cli = parse(name, service);
        assert!(
            cli.config.is_none(),
            "{name}: settings come as TDMON_* variables, not a file of the host"
        );
        // Each role service runs its role, not another command.
        let expected = match name.as_str() {
            "dispatcher" => matches!(cli.command, Command::Dispatcher),
            "worker" => matches!(cli.command, Command::Worker),
            "collector" => matches!(cli.command, Command::Collector),
            "simnet" => matches!(cli.command, Command::Simnet(SimnetCommand::Serve(_))),
            _ => true,
        };
        assert!(expected, "{name} runs {:?}", cli.command);
    }
    // The parser is the real one: a mistake is refused.
    assert!(Cli::try_parse_from(["tdmon", "worker", "--scale", "3"]).is_err());
    assert!(Cli::try_parse_from(["tdmon", "simnet", "serve"]).is_err());
}

#[test]
fn every_tdmon_variable_names_a_real_setting_with_a_valid_value() {
    for (name, service) in &tdmon_services() {
        let cli = parse(name, service);
        let vars = settings(service);
        let shown = config_show(&vars, &cli);
        assert!(
            shown.status.success(),
            "{name}: the loader refuses its settings: {}",
            stderr(&shown)
        );
        // Each variable reached the effective configuration.
        let effective: toml::Table = stdout(&shown).parse().unwrap();
        for (key, _) in &vars {
            let path: Vec<String> = key["TDMON_".len()..]
                .to_ascii_lowercase()
                .split("__")
                .map(str::to_owned)
                .collect();
            let mut cursor = toml::Value::Table(effective.clone());
            for part in &path {
                cursor = cursor
                    .get(part)
                    .unwrap_or_else(|| panic!("{name}: {key} is not in the effective settings"))
                    .clone();
            }
        }
    }
    // The same check refuses a setting that does not exist.
    let cli = Cli::try_parse_from(["tdmon", "worker"]).unwrap();
    let typo = [("TDMON_WORKER__POLICY__ALLOWED".to_owned(), "[]".to_owned())];
    let shown = config_show(&typo, &cli);
    assert_eq!(shown.status.code(), Some(2), "{}", stderr(&shown));
}

#[test]
fn the_worker_can_reach_the_simulated_network_and_only_through_its_opt_in() {
    let services = tdmon_services();
    let worker = &services["worker"];
    assert_eq!(
        worker.get("network_mode").and_then(Value::as_str),
        Some("service:simnet"),
        "the simulated hosters live on simnet's loopback"
    );
    // Scaling needs interchangeable workers: no fixed name, no published port.
    assert!(worker.get("container_name").is_none());
    assert!(worker.get("ports").is_none());
    let vars: BTreeMap<String, String> = settings(worker).into_iter().collect();

    // What the simnet service serves, started as compose starts it, with
    // its files in a temporary directory instead of the volume.
    let Command::Simnet(SimnetCommand::Serve(serve)) = parse("simnet", &services["simnet"]).command
    else {
        unreachable!("checked above")
    };
    let scenario = repo().join("config").join(
        serve
            .scenario
            .strip_prefix("/etc/tdmon")
            .expect("the image has config/ in /etc/tdmon (Dockerfile)"),
    );
    assert_eq!(
        PathBuf::from(&vars["TDMON_WORKER__ATTRIBUTION__ASN_DB"]),
        serve.asn_db.clone().unwrap()
    );
    assert_eq!(
        vars["TDMON_WORKER__EXTRA_ROOT_CERTS"],
        format!("[{:?}]", serve.ca_cert.clone().unwrap())
    );
    assert_eq!(
        vars["TDMON_WORKER__RESOLVER__NAMESERVERS"],
        format!("[\"127.0.0.1:{}\"]", serve.dns_port),
        "the worker asks simnet's DNS server"
    );
    let dir = tempfile::tempdir().unwrap();
    let notices = dir.path().join("notices.csv");
    let mut simnet = tdmon()
        .args(["simnet", "serve", "--scenario"])
        .arg(&scenario)
        .arg("--notices")
        .arg(&notices)
        .arg("--asn-db")
        .arg(dir.path().join("asn.mmdb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut allowed = Vec::new();
    for line in BufReader::new(simnet.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(cidr) = line.strip_prefix("allow ") {
            allowed.push(cidr.to_owned());
        }
        if line == "ready" {
            break;
        }
    }
    let _ = simnet.kill();
    let _ = simnet.wait();
    // The opt-in admits the simulated hosters' prefixes, and nothing more.
    let allow: Vec<String> =
        toml::from_str::<toml::Table>(&format!("v = {}", vars["TDMON_WORKER__POLICY__ALLOW"]))
            .unwrap()["v"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    assert!(!allowed.is_empty());
    assert_eq!(allow, allowed);
    // The notice file it wrote is what `notify` reads: every URL, valid.
    let validated = tdmon()
        .args(["notices", "validate", "--format", "json"])
        .arg(&notices)
        .output()
        .unwrap();
    assert!(validated.status.success(), "{}", stdout(&validated));
    let report: serde_json::Value = serde_json::from_slice(&validated.stdout).unwrap();
    let urls = std::fs::read_to_string(&scenario)
        .unwrap()
        .matches("[[urls]]")
        .count();
    assert_eq!(report["accepted"], urls, "{report}");
    let notify = parse("notify", &services["notify"]);
    let Command::Notify(args) = notify.command else {
        panic!("the notify service runs `tdmon notify`")
    };
    assert_eq!(args.file, serve.notices.unwrap());
}

#[test]
fn the_image_is_built_with_the_workspace_rust_and_runs_tdmon_unprivileged() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let manifest: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let rust = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(
        stages[0].starts_with(&format!("FROM rust:{rust}-")),
        "{}",
        stages[0]
    );
    assert!(stages[1].contains("-slim"), "{}", stages[1]);
    // `command` in docker-compose.yml is the argument list of tdmon.
    assert!(dockerfile.contains("ENTRYPOINT [\"tdmon\"]"));
    let user = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(user != "root" && user != "0", "{user}");
    assert!(dockerfile.contains("COPY config/ /etc/tdmon/"));
}
