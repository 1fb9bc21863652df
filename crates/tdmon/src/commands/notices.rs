//! `tdmon notices validate`.

use crate::Exit;
use crate::cli::NoticesCommand;

pub(crate) fn run(command: NoticesCommand) -> anyhow::Result<Exit> {
    match command {
        NoticesCommand::Validate(_args) => anyhow::bail!("notices validate: being written"),
    }
}
