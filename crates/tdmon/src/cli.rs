//! The command line: one subcommand per job, parsed with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tdmon: measures how fast hosting providers take notified content down.
#[derive(Debug, Parser)]
#[command(name = "tdmon", version)]
pub struct Cli {
    /// Configuration file (TOML); settings not in it keep their defaults.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "TDMON_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Override one setting, e.g. `--set schedule.horizon=30d`; wins over the
    /// file and over TDMON_* environment variables. Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    /// How to write logs to stderr: for people, or one JSON object per line.
    #[arg(
        long,
        global = true,
        env = "TDMON_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per record (colored on a terminal).
    Human,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with notice files.
    #[command(subcommand)]
    Notices(NoticesCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check URLs once and print one observation per URL.
    Check(CheckArgs),
    /// Work with the ASN database.
    #[command(subcommand)]
    Asn(AsnCommand),
    /// Run the simulated hosting network (for tests, demos and benchmarks).
    #[command(subcommand)]
    Simnet(SimnetCommand),
    /// Run every role in one process on a SQLite file (the embedded monitor).
    Run(RunArgs),
    /// Add notices to the store, also while `tdmon run` is running.
    Notify(NotifyArgs),
    /// Print monitored URLs by state and the next due time.
    Status(StoreArgs),
    /// A first minute with tdmon: monitor the simulated network and compare with its truth.
    Demo(DemoArgs),
    /// Work with the recheck schedule.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run the dispatcher role (distributed deployment): notice intake, due
    /// URLs onto the checks queue. Several may run; one is active, the others
    /// stand by.
    Dispatcher,
    /// Run a worker (distributed deployment): check jobs from the checks
    /// queue, observations onto the results exchange. Run as many as needed.
    Worker,
    /// Run the collector (distributed deployment): observations into the
    /// store, events onto the results exchange. Several may run.
    Collector,
    /// Print what flows on the results exchange (distributed deployment):
    /// the worked example for downstream consumers.
    Tail(TailArgs),
    /// The per-hoster ranking report (or per ASN, or per registrable
    /// domain) from the store: HTML, CSV, JSON or a table.
    Report(ReportArgs),
    /// Trace a URL's figures back to its observations: its timeline, its
    /// events with their brackets, and how each figure was derived.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The SQLite file of the embedded monitor; sets `store.url` to `sqlite://PATH`.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Notices from this day (UTC, YYYY-MM-DD) or time (RFC 3339) on.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Notices up to this day, inclusive (UTC, YYYY-MM-DD), or before this
    /// time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// One row per hoster, ASN or registrable domain.
    #[arg(long, value_enum, default_value_t = ReportBy::Hoster)]
    pub by: ReportBy,
    #[arg(long, value_enum, default_value_t = ReportOutput::Table)]
    pub format: ReportOutput,
    /// Write `report.<ext>` (and, for CSV, `monthly.csv`) into this
    /// directory instead of printing to standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The ranking key, worst first: `not_within` (the first norm),
    /// `not_within:N` (the N-th norm), `notices` or `median`.
    #[arg(long, value_name = "KEY", default_value = "not_within")]
    pub rank_by: String,
    /// URLs listed with their evidence per group in the HTML report.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub urls_per_group: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportBy {
    Hoster,
    Asn,
    Domain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportOutput {
    Html,
    Csv,
    Json,
    Table,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The SQLite file of the embedded monitor; sets `store.url` to `sqlite://PATH`.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// A monitored URL (every notice of it is explained), a notice id, or
    /// a URL id as the report shows it.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Routing keys to bind, e.g. `event.#` (every event), `event.takedown`,
    /// `observation.offline`. Repeatable.
    #[arg(long = "bind", value_name = "KEY", default_value = "event.#")]
    pub bindings: Vec<String>,
    /// How to print each message.
    #[arg(long, value_enum, default_value_t = TailFormat::Json)]
    pub format: TailFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// Each message as published: one JSON document per line.
    Json,
    /// One aligned line per message, for people.
    Table,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// What the configured schedule costs and how precise it is: checks per
    /// URL over its life, checks a day, workers needed, and, per norm, the
    /// takedown times it cannot judge.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Notices received a day, for the checks a day in steady state.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub notices_per_day: u64,
    /// Checks a second one worker makes; by default `worker.limits.checks_per_second`.
    #[arg(long, value_name = "R")]
    pub check_rate: Option<std::num::NonZeroU32>,
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

#[derive(Debug, Subcommand)]
pub enum SimnetCommand {
    /// Start the simulated network of a scenario file, print its DNS address,
    /// URLs, ASN database and allowed CIDRs, and serve until Ctrl-C or SIGTERM.
    Serve(SimnetServeArgs),
}

#[derive(Debug, Args)]
pub struct SimnetServeArgs {
    /// The scenario (TOML), e.g. config/scenarios/sample.toml.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Where to write the generated ASN database; a temporary file by default.
    #[arg(long, value_name = "FILE")]
    pub asn_db: Option<PathBuf>,
    /// Also write the CA certificate of the HTTPS servers (PEM) here.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// At shutdown, write what the servers saw here as JSON: requests,
    /// connections, DNS queries, bytes sent, and requests and bytes per URL.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// The DNS server's port on 127.0.0.1; by default one the system picks.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub dns_port: u16,
    /// Also write the network's URLs as a notice file (CSV, notified when the
    /// network started), ready for `tdmon notify`.
    #[arg(long, value_name = "FILE")]
    pub notices: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// URLs to check (http or https).
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Also check the URLs in FILE, one per line; blank lines and lines
    /// starting with `#` are skipped. `-` reads standard input.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// How to print the observations.
    #[arg(long, value_enum, default_value_t = CheckFormat::Jsonl)]
    pub format: CheckFormat,
    /// Checks in flight at once; by default `worker.limits.max_in_flight`.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<std::num::NonZeroUsize>,
}

#[derive(Debug, Subcommand)]
pub enum AsnCommand {
    /// Attribute addresses as the worker does (ASN database, merges,
    /// overrides, CDN list) and print one JSON line per address:
    /// {"ip", "asn", "as_org", "hoster", "cdn"}.
    Lookup(AsnLookupArgs),
}

#[derive(Debug, Args)]
pub struct AsnLookupArgs {
    /// IP addresses (IPv4 or IPv6).
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<String>,
    /// Also the addresses in FILE, one per line; blank lines and lines
    /// starting with `#` are skipped. `-` reads standard input.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The ASN database; by default `worker.attribution.asn_db`.
    #[arg(long, value_name = "FILE")]
    pub asn_db: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One observation per line as JSON (the message format), in input order.
    Jsonl,
    /// A table for people.
    Table,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The SQLite file of the embedded monitor; sets `store.url` to `sqlite://PATH`.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Notices to add before monitoring starts (CSV or JSON Lines); rejected
    /// lines are reported and the valid ones are monitored.
    #[arg(long, value_name = "FILE")]
    pub notices: Option<PathBuf>,
    /// The notice file's format; by default taken from its extension.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Stop once no URL has a check left (every one has expired).
    #[arg(long)]
    pub exit_when_done: bool,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The notice file (CSV or JSON Lines).
    pub file: PathBuf,
    /// The file's format; by default taken from its extension.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to keep the notices, the store, the summary and the ground truth.
    #[arg(long, value_name = "DIR", default_value = "tdmon-demo")]
    pub out: PathBuf,
    /// Run the roles as separate processes (one dispatcher, two workers, one
    /// collector) over this machine's RabbitMQ (`bus.url`) and PostgreSQL
    /// (`store.url`), in a fresh bus prefix and schema removed at the end.
    #[arg(long)]
    pub distributed: bool,
}
