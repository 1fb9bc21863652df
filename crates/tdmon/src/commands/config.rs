//! `tdmon config show`.
use crate::Exit;
use crate::cli::ConfigCommand;
use crate::config::Config;
pub(crate) fn run(_command: ConfigCommand, _config: &Config) -> anyhow::Result<Exit> {
    Ok(Exit::Success)
}
