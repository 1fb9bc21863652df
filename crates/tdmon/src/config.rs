//! The whole configuration, loaded in layers: defaults < file < `TDMON_*`
//! environment < `--set` (see `tdmon_core::config`). Each part is deserialized
//! by the crate that owns it and validated once, here; code below `main` only
//! ever sees the validated [`Config`].

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tdmon_bus_amqp::{BusConfig, BusSettings};
use tdmon_collector::CollectorConfig;
use tdmon_core::config::{self as layers, Measurement, MeasurementConfig};
use tdmon_core::notice::NoticeRules;
use tdmon_core::url::mask_url;
use tdmon_dispatcher::{DispatcherConfig, DispatcherSettings};
use tdmon_http::{HttpConfig, HttpSettings};
use tdmon_worker::config::{WorkerConfig, WorkerSettings};
use toml::{Table, Value};

/// Top-level keys of the measurement settings; every other top-level key is a
/// table owned by one part, listed in `from_tree`. Anything else is refused.
const MEASUREMENT_KEYS: [&str; 4] = ["schedule", "confirmation", "norms", "verdicts"];
const SECTION_KEYS: [&str; 8] = [
    "notices",
    "store",
    "bus",
    "dispatcher",
    "collector",
    "worker",
    "http",
    "shutdown",
];

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// `sqlite://PATH` (embedded) or `postgres://USER@HOST/DB` (distributed).
    pub(crate) url: String,
    /// PostgreSQL only: keep the tables in this schema (created if missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://tdmon.db".to_owned(),
            schema: None,
        }
    }
}

/// The `[shutdown]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ShutdownConfig {
    /// After SIGTERM or SIGINT, how long the process may drain what is in
    /// flight; past it, it exits at once with status 3 (what it did not
    /// finish is redone: leases and unacknowledged messages come back).
    #[serde(with = "tdmon_core::duration")]
    pub(crate) drain_timeout: std::time::Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) measurement: Measurement,
    pub(crate) notices: NoticeRules,
    pub(crate) store: StoreConfig,
    /// The RabbitMQ bus of the distributed roles.
    pub(crate) bus: BusSettings,
    pub(crate) dispatcher: DispatcherSettings,
    pub(crate) collector: CollectorConfig,
    pub(crate) worker: WorkerSettings,
    /// `/healthz`, `/readyz`, `/metrics` and the API.
    pub(crate) http: HttpSettings,
    pub(crate) shutdown: ShutdownConfig,
    /// The settings after layering, with defaults filled in and secrets
    /// masked: what `tdmon config show` prints.
    pub(crate) effective: Table,
}

/// Loads and validates the configuration. `file` is read if given; `env` is
/// the process environment; `overrides` are the `--set KEY=VALUE` arguments.
pub(crate) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
) -> anyhow::Result<Config> {
    load_with(file, env, overrides, Table::new())
}

/// [`load`] with one more layer on top of all others: settings a command
/// must impose (the demo points the worker at its simulated network).
pub(crate) fn load_with(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
    imposed: Table,
) -> anyhow::Result<Config> {
    from_tree(layered(file, env, overrides, imposed)?)
}

/// The settings of every layer merged, as written (nothing filled in, no
/// secret masked): what a process started with them as its only file gets.
pub(crate) fn layered(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[String],
    imposed: Table,
) -> anyhow::Result<Table> {
    let mut tree = Table::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        layers::merge(
            &mut tree,
            layers::parse_layer(&text, &path.display().to_string())?,
        );
    }
    layers::merge(&mut tree, layers::env_layer(env)?);
    layers::merge(&mut tree, layers::set_layer(overrides)?);
    layers::merge(&mut tree, imposed);
    Ok(tree)
}

fn from_tree(mut tree: Table) -> anyhow::Result<Config> {
    if let Some(unknown) = tree.keys().find(|key| {
        !MEASUREMENT_KEYS.contains(&key.as_str()) && !SECTION_KEYS.contains(&key.as_str())
    }) {
        bail!(
            "unknown setting {unknown:?}; the top-level settings are {}, {}",
            MEASUREMENT_KEYS.join(", "),
            SECTION_KEYS.join(", ")
        );
    }
    let mut effective = Table::new();
    let notices: NoticeRules = section(&mut tree, "notices", &mut effective)?;
    let store: StoreConfig = section(&mut tree, "store", &mut effective)?;
    // Shown with its password masked (`BrokerUrl` serializes so).
    let bus: BusConfig = section(&mut tree, "bus", &mut effective)?;
    let dispatcher: DispatcherConfig = section(&mut tree, "dispatcher", &mut effective)?;
    let collector: CollectorConfig = section(&mut tree, "collector", &mut effective)?;
    let worker: WorkerConfig = section(&mut tree, "worker", &mut effective)?;
    let http: HttpConfig = section(&mut tree, "http", &mut effective)?;
    let shutdown: ShutdownConfig = section(&mut tree, "shutdown", &mut effective)?;
    if !http.token.is_empty() {
        effective["http"]["token"] = Value::String("***".to_owned());
    }
    if shutdown.drain_timeout.is_zero() {
        bail!("shutdown.drain_timeout must be greater than zero");
    }
    let measurement = MeasurementConfig::deserialize(Value::Table(tree))?;
    let mut shown = Table::try_from(&measurement).context("cannot show the settings")?;
    shown.extend(effective);
    shown.iter_mut().for_each(|(_, value)| mask_secrets(value));
    // A check must end (queueing included) before its URL's lease runs out,
    // or the URL is dispatched again while it is still being checked.
    let check_bound = dispatcher.job_ttl + worker.total_timeout;
    if check_bound >= dispatcher.lease {
        bail!(
            "dispatcher.lease ({}) must be longer than dispatcher.job_ttl + worker.total_timeout ({})",
            tdmon_core::duration::format(dispatcher.lease),
            tdmon_core::duration::format(check_bound)
        );
    }
    // Only the distributed roles use the bus; every command refuses a wrong
    // [bus] all the same, as it does the other parts.
    let bus = bus.validate().context("in [bus]")?;
    Ok(Config {
        bus,
        measurement: Measurement::try_from(measurement)?,
        notices,
        dispatcher: dispatcher.validate().context("in [dispatcher]")?,
        collector: collector.validate().context("in [collector]")?,
        worker: worker.validate().context("in [worker]")?,
        http: http.validate().context("in [http]")?,
        shutdown,
        store,
        effective: shown,
    })
}

/// Masks the secrets of every URL among the settings (the store's, and any
/// other), wherever it is: `tdmon config show` prints them all.
fn mask_secrets(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(masked) = mask_url(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        Value::Table(table) => table.iter_mut().for_each(|(_, value)| mask_secrets(value)),
        _ => {}
    }
}

/// Takes the table `key` out of `tree`, deserializes it with its defaults,
/// and records what it came to in `effective`.
fn section<T: DeserializeOwned + Serialize>(
    tree: &mut Table,
    key: &str,
    effective: &mut Table,
) -> anyhow::Result<T> {
    let value = tree.remove(key).unwrap_or(Value::Table(Table::new()));
    let parsed = T::deserialize(value).with_context(|| format!("in [{key}]"))?;
    effective.insert(
        key.to_owned(),
        Value::try_from(&parsed).with_context(|| format!("cannot show [{key}]"))?,
    );
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)], sets: &[&str]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tdmon.toml");
        std::fs::write(&path, text)?;
        load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    /// Every file in config/ parses and validates: the examples cannot go stale.
    #[test]
    fn every_file_in_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(Some(&path), std::iter::empty(), &[])
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no config files found in {}", dir.display());
    }

    /// The example file documents every setting: showing the defaults lists
    /// no key that the example lacks.
    #[test]
    fn the_example_mentions_every_setting() {
        let example_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tdmon.toml");
        let example = std::fs::read_to_string(example_path).unwrap();
        let defaults = load(None, std::iter::empty(), &[]).unwrap().effective;
        fn keys(table: &Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    Value::Table(inner) => keys(inner, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let mut all = Vec::new();
        keys(&defaults, "", &mut all);
        for key in all {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{leaf} =")),
                "config/tdmon.toml does not document {key}"
            );
        }
    }

    #[test]
    fn precedence_is_defaults_file_env_command_line() {
        let file = "[schedule]\nhorizon = \"60d\"\n[confirmation]\nchecks = 4\nmin_span = \"1h\"\n";
        let config = load_text(file, &[], &[]).unwrap();
        assert_eq!(config.measurement.rules.confirmation.checks, 4);
        assert_eq!(
            config.effective["confirmation"]["recheck_delay"].as_str(),
            Some("15m"),
            "defaults fill what the file leaves out"
        );

        let env = [
            ("TDMON_CONFIRMATION__CHECKS", "5"),
            ("TDMON_SCHEDULE__HORIZON", "50d"),
        ];
        let config = load_text(file, &env, &[]).unwrap();
        assert_eq!(config.measurement.rules.confirmation.checks, 5);
        assert_eq!(
            config.effective["schedule"]["horizon"].as_str(),
            Some("50d")
        );

        let config = load_text(file, &env, &["confirmation.checks=6"]).unwrap();
        assert_eq!(config.measurement.rules.confirmation.checks, 6);

        let secret = ["store.url=postgres://tdmon:s3cret@127.0.0.1/tdmon"];
        let config = load_text(file, &env, &secret).unwrap();
        assert!(config.store.url.contains("s3cret"));
        let shown = toml::to_string(&config.effective).unwrap();
        assert!(!shown.contains("s3cret"), "the password is masked: {shown}");
        assert_eq!(
            config.effective["confirmation"]["min_span"].as_str(),
            Some("1h")
        );
    }

    #[test]
    fn the_bus_is_configured_like_the_rest_and_its_password_never_shown() {
        let file = "[bus]\nurl = \"amqp://tdmon:s3cret@rabbit.internal:5672/tdmon\"\n";
        let env = [("TDMON_BUS__PREFETCH__JOBS", "20")];
        let config = load_text(file, &env, &["bus.prefix=staging"]).unwrap();
        let bus = &config.effective["bus"];
        assert_eq!(
            bus["url"].as_str(),
            Some("amqp://tdmon:***@rabbit.internal:5672/tdmon")
        );
        assert_eq!(bus["prefix"].as_str(), Some("staging"));
        assert_eq!(bus["prefetch"]["jobs"].as_integer(), Some(20));
        let shown = toml::to_string(&config.effective).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");

        let err = load_text("[bus]\nurl = \"http://u:s3cret@h/\"\n", &[], &[]).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("in [bus]") && err.contains("amqp"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = load_text("", &[("TDMON_BUS__DELIVERY_LIMIT", "0")], &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("bus.delivery_limit: must be at least 1"),
            "{err:#}"
        );
    }

    #[test]
    fn the_api_token_is_never_shown() {
        let env = [("TDMON_HTTP__TOKEN", "s3cret-token-of-the-api")];
        let config = load_text("[http]\nlisten = \"127.0.0.1:0\"\n", &env, &[]).unwrap();
        assert_eq!(config.http.listen, Some("127.0.0.1:0".parse().unwrap()));
        let shown = toml::to_string(&config.effective).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("token = \"***\""), "{shown}");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn mistakes_are_refused_with_their_place() {
        let err = load_text("[schedul]\nhorizon = \"1d\"\n", &[], &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown setting \"schedul\""),
            "{err:#}"
        );
        let err = load_text("[schedule]\nhorizn = \"1d\"\n", &[], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("horizn"), "{err:#}");
        let err = load_text("[confirmation]\nchecks = 0\n", &[], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("at least 1"), "{err:#}");
        let err = load_text("", &[("TDMON_SCHEDULE__THEN_EVERY", "weekly")], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("weekly"), "{err:#}");
        let err = load_text(
            "[dispatcher]\nlease = \"30s\"\njob_ttl = \"20s\"\n",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}")
                .contains("must be longer than dispatcher.job_ttl + worker.total_timeout"),
            "{err:#}"
        );
        let err = load_text("[worker]\nconect_timeout = \"1s\"\n", &[], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("in [worker]"), "{err:#}");
        assert!(format!("{err:#}").contains("conect_timeout"), "{err:#}");
    }
}
