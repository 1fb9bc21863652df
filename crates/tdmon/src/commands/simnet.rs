//! `tdmon simnet serve`: runs the simulated hosting network of a scenario
//! file until Ctrl-C or SIGTERM. Once every listener is bound it prints, one
//! item a line, what a client needs:
//!
//! ```text
//! dns 127.0.0.1:40123
//! zone sim.test
//! asn_db /tmp/tdmon-simnet-.../asn.mmdb
//! allow 127.10.0.0/24
//! url http://a.fasthost.sim.test:38211/gallery/1.html
//! ready
//! ```
//!
//! With `--stats FILE` it writes, once the servers have stopped, what they saw
//! as JSON ([`tdmon_simnet::Stats`]): `requests`, `connections`,
//! `dns_queries`, `bytes_sent`, and per URL `requests` and `bytes_sent`.
//! Requests whose host is an IP literal count under the URL they reached.

use anyhow::Context;
use tdmon_simnet::{Scenario, ScenarioError, SimNet, SimNetOptions, Stats};

use crate::Exit;
use crate::cli::{SimnetCommand, SimnetServeArgs};

pub(crate) fn run(command: SimnetCommand) -> anyhow::Result<Exit> {
    match command {
        SimnetCommand::Serve(args) => serve(args),
    }
}

fn serve(args: SimnetServeArgs) -> anyhow::Result<Exit> {
    let scenario = match Scenario::from_file(&args.scenario) {
        Ok(scenario) => scenario,
        Err(e) => {
            match e {
                ScenarioError::Read { .. } => eprintln!("tdmon: simnet: {e}"),
                _ => eprintln!("tdmon: simnet: {}: {e}", args.scenario.display()),
            }
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            return Ok(Exit::Usage);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let options = SimNetOptions {
            asn_db_path: args.asn_db,
            dns_port: args.dns_port,
            ..SimNetOptions::default()
        };
        let net = SimNet::start(scenario, options)
            .await
            .context("cannot start the simulated network")?;
        if let Some(path) = &args.ca_cert {
            std::fs::write(path, net.ca_cert_pem()).with_context(|| {
                format!("cannot write the CA certificate to {}", path.display())
            })?;
        }
        if let Some(path) = &args.notices {
            write_whole(path, &super::demo::notices_csv(&net))
                .with_context(|| format!("cannot write the notices to {}", path.display()))?;
        }
        print!("{}", ready_text(&net));
        use std::io::Write as _;
        std::io::stdout()
            .flush()
            .context("cannot write to stdout")?;

        wait_for_shutdown_signal().await?;
        eprintln!("tdmon: simnet: shutting down");
        let counters = net.counters();
        net.shutdown().await;
        if let Some(path) = &args.stats {
            write_stats(path, &counters.stats())?;
        }
        Ok(Exit::Success)
    })
}

/// Writes the servers' counters as JSON.
fn write_stats(path: &std::path::Path, stats: &Stats) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(stats).context("cannot encode the stats")?;
    std::fs::write(path, json)
        .with_context(|| format!("cannot write the stats to {}", path.display()))
}

/// Writes `text` beside `path`, then renames it into place: whoever waits
/// for the file (the compose demo's health check) never reads half of it.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// The lines printed once the network is up.
fn ready_text(net: &SimNet) -> String {
    let mut out = format!(
        "dns {}\nzone {}\nasn_db {}\n",
        net.dns_addr(),
        net.zone(),
        net.asn_db_path().display()
    );
    for cidr in net.allowed_cidrs() {
        out.push_str(&format!("allow {cidr}\n"));
    }
    for url in net.urls() {
        out.push_str(&format!("url {url}\n"));
    }
    out.push_str("ready\n");
    out
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_text_lists_everything_a_client_needs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../config/scenarios/sample.toml");
            let scenario = Scenario::from_file(&path).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let options = SimNetOptions::manual_clock().asn_db(dir.path().join("asn.mmdb"));
            let net = SimNet::start(scenario, options).await.unwrap();
            let text = ready_text(&net);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], format!("dns {}", net.dns_addr()));
            assert!(lines.contains(&"zone sim.test"));
            assert!(lines.contains(&"allow 127.10.0.0/24"));
            for url in net.urls() {
                assert!(lines.contains(&format!("url {url}").as_str()), "{url}");
            }
            assert_eq!(lines.last(), Some(&"ready"));
            net.shutdown().await;
        });
    }

    #[test]
    fn stats_are_written_as_json_with_per_url_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        runtime.block_on(async {
            let scenario = Scenario::new(1.0)
                .hoster(tdmon_simnet::Hoster::new(
                    "H",
                    64500,
                    "H B.V.",
                    "127.31.0.0/24",
                    1,
                ))
                .url(tdmon_simnet::UrlSpec::new("a", "/a.html", "H"));
            let options = SimNetOptions::manual_clock().asn_db(dir.path().join("asn.mmdb"));
            let net = SimNet::start(scenario, options).await.unwrap();
            let addr = std::net::SocketAddr::from(([127, 31, 0, 1], net.http_port()));
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /a.html HTTP/1.1\r\nHost: 127.31.0.1\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            assert!(response.starts_with(b"HTTP/1.1 200"));
            let counters = net.counters();
            let url = net.urls()[0].clone();
            net.shutdown().await;
            write_stats(&path, &counters.stats()).unwrap();

            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(json["requests"], 1);
            assert_eq!(json["connections"], 1);
            assert_eq!(json["urls"][&url]["requests"], 1);
            assert_eq!(
                json["urls"][&url]["bytes_sent"].as_u64(),
                Some(response.len() as u64)
            );
            assert_eq!(json["bytes_sent"].as_u64(), Some(response.len() as u64));
        });
    }
}
