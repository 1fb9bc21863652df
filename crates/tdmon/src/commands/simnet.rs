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

use anyhow::Context;
use tdmon_simnet::{Scenario, ScenarioError, SimNet, SimNetOptions};

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
        print!("{}", ready_text(&net));
        use std::io::Write as _;
        std::io::stdout()
            .flush()
            .context("cannot write to stdout")?;

        wait_for_shutdown_signal().await?;
        eprintln!("tdmon: simnet: shutting down");
        net.shutdown().await;
        Ok(Exit::Success)
    })
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
}
