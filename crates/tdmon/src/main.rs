//! `tdmon`: parses the command line, loads the configuration, starts tracing and
//! hands over to the subcommand. Every role lives in its own library crate.
//!
//! Exit codes, the same for every command (also in README.md):
//! - 0: success;
//! - 1: the input was read and some of it was refused, each problem
//!   reported: rejected or duplicate notice lines, a notice file header that
//!   is not usable, URLs that are not valid;
//! - 2: usage or configuration error: the command line or a setting is not
//!   valid, a file named on the command line cannot be opened or its format
//!   is unknown, the store URL is not usable;
//! - 3: runtime failure: reading or writing fails midway, the store or the
//!   network fails, another monitor holds the store, a stop did not drain
//!   within `shutdown.drain_timeout`;
//! - 130: a second SIGINT or SIGTERM ended the drain (see `signals`).
//!
//! A command returns the status it ends with, or an error; [`exit_for`] maps
//! every error to its status, in one place.

mod cli;
mod cluster;
mod commands;
mod config;
mod distributed;
mod embedded;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};
use crate::commands::roles::Role;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Success = 0,
    InputRejected = 1,
    Usage = 2,
    Failure = 3,
}

/// An error that the user fixes in the command line or the configuration:
/// exit status 2 wherever it occurs.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit status of a command that failed with `error`.
fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.is::<UsageError>()
            || cause
                .downcast_ref::<tdmon_store::StoreError>()
                .is_some_and(tdmon_store::StoreError::is_configuration)
        {
            return Exit::Usage;
        }
        if cause.is::<tdmon_core::notice::NoticeFileError>() {
            return Exit::InputRejected;
        }
    }
    Exit::Failure
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A role that runs for days says what it does; a command says only what
    // goes wrong.
    let level = match cli.command {
        Command::Dispatcher | Command::Worker | Command::Collector => {
            "warn,tdmon=info,tdmon_dispatcher=info,tdmon_worker=info,tdmon_collector=info,\
             tdmon_bus_amqp=info,tdmon_store=info,tdmon_http=info"
        }
        Command::Run(_) => "warn,tdmon_http=info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TDMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let config = match config::load(cli.config.as_deref(), std::env::vars(), &cli.overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tdmon: configuration error: {e:#}");
            return Exit::Usage.into();
        }
    };

    let result = match cli.command {
        Command::Notices(command) => commands::notices::run(command, &config),
        Command::Config(command) => commands::config::run(command, &config),
        Command::Check(args) => commands::check::run(
            args,
            config.worker.clone(),
            config.measurement.verdicts.clone(),
        ),
        Command::Asn(command) => commands::asn::run(command, config.worker.clone()),
        Command::Simnet(command) => commands::simnet::run(command),
        Command::Run(args) => commands::run::run(args, &config),
        Command::Notify(args) => commands::run::notify(args, &config),
        Command::Status(args) => commands::run::status(args, &config),
        Command::Demo(args) => commands::demo::run(args, cli.config.as_deref(), &cli.overrides),
        Command::Dispatcher => commands::roles::run(Role::Dispatcher, &config),
        Command::Worker => commands::roles::run(Role::Worker, &config),
        Command::Collector => commands::roles::run(Role::Collector, &config),
        Command::Tail(args) => commands::tail::run(args, &config),
        Command::Schedule(command) => commands::schedule::run(command, &config),
        Command::Report(args) => commands::report::run(args, &config),
        Command::Explain(args) => commands::report::explain(args, &config),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("tdmon: {e:#}");
            exit_for(&e).into()
        }
    }
}
