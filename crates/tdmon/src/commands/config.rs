//! `tdmon config show`: the effective configuration after every layer.

use crate::Exit;
use crate::cli::ConfigCommand;
use crate::config::Config;

pub(crate) fn run(command: ConfigCommand, config: &Config) -> anyhow::Result<Exit> {
    match command {
        ConfigCommand::Show => {
            print!("{}", toml::to_string_pretty(&config.effective)?);
            Ok(Exit::Success)
        }
    }
}
