//! The command line: one subcommand per job, parsed with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tdmon: measures how fast hosting providers take notified content down.
#[derive(Debug, Parser)]
#[command(name = "tdmon", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML); settings not in it keep their defaults.
    #[arg(long, short = 'c', global = true, env = "TDMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one setting, e.g. `--set schedule.horizon=30d`; wins over the
    /// file and over TDMON_* environment variables. Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with notice files.
    #[command(subcommand)]
    Notices(NoticesCommand),
    /// Show or check the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check URLs once and print one observation per URL.
    Check,
    /// Run the simulated hosting network (for tests, demos and benchmarks).
    Simnet,
    /// Run every role in one process on a SQLite file (the embedded monitor).
    Run,
    /// Add notices to the store, also while `tdmon run` is running.
    Notify,
    /// Print monitored URLs by state and the next due time.
    Status,
    /// A first minute with tdmon: monitor the simulated network and compare with its truth.
    Demo,
    /// Run the dispatcher role (distributed deployment).
    Dispatcher,
    /// Run a worker (distributed deployment).
    Worker,
    /// Run the collector role (distributed deployment).
    Collector,
    /// Produce the per-hoster ranking report.
    Report,
}

#[derive(Debug, Subcommand)]
pub enum NoticesCommand {
    /// Parse a notice file (CSV or JSON Lines) and report every line that is not valid.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The notice file.
    pub file: PathBuf,
    /// The file's format; by default taken from its extension (.csv, .jsonl, .ndjson).
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// For people.
    Text,
    /// One JSON document, for machines.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults < file < environment < --set) as TOML.
    Show,
}
