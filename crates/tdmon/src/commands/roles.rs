//! `tdmon dispatcher`, `tdmon worker`, `tdmon collector`: one role per
//! process, for the distributed deployment (see `crate::distributed`). Each
//! runs until SIGTERM or SIGINT, then finishes what it holds and exits 0.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::config::Config;

/// The three roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Dispatcher,
    Worker,
    Collector,
}

pub(crate) fn run(role: Role, config: &Config) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::signals::stop_on_signal(
            shutdown.clone(),
            "finishing and settling what this process holds",
            config.shutdown.drain_timeout,
        ));
        match role {
            Role::Dispatcher => crate::distributed::dispatcher(config, shutdown).await?,
            Role::Worker => crate::distributed::worker(config, shutdown).await?,
            Role::Collector => crate::distributed::collector(config, shutdown).await?,
        }
        Ok(Exit::Success)
    })
}
