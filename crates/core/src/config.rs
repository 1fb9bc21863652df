//! The measurement settings (`[schedule]`, `[confirmation]`, `norms`,
//! `[verdicts]`) and the layering that every tdmon setting goes through:
//! defaults < file < `TDMON_*` environment < `--set key=value` on the command
//! line. Layers are TOML trees merged table by table; the merged tree is then
//! deserialized once (unknown keys rejected) and validated into types that
//! cannot be invalid. All of it is pure: the caller reads the file and the
//! environment.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::{Table, Value};

use crate::norm::{NormError, Norms};
use crate::outcome::{Outcome, Verdict, VerdictMap};
use crate::schedule::{Confirmation, ConfirmationConfig, RuleError, Schedule, ScheduleConfig};
use crate::state::Rules;
use crate::url::mask_url;

/// The prefix of environment variables that set configuration keys. Nested
/// keys are joined with a double underscore: `TDMON_SCHEDULE__HORIZON=30d`.
pub const ENV_PREFIX: &str = "TDMON_";

/// Environment variables with the prefix that are not settings.
const ENV_NOT_SETTINGS: [&str; 2] = ["TDMON_CONFIG", "TDMON_LOG"];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayerError {
    #[error("{source_name}: {message}")]
    Toml {
        source_name: String,
        message: String,
    },
    #[error("--set {0:?}: expected KEY=VALUE, e.g. schedule.horizon=30d")]
    NotAnAssignment(String),
    #[error("{origin}: key {key:?} is not a valid dotted key")]
    BadKey { origin: String, key: String },
    #[error("{origin}: {key} is a table in the configuration, not a single value")]
    NotALeaf { origin: String, key: String },
}

/// Parses one TOML document; `source_name` (a path) prefixes any error. The
/// error names the line and column but does not quote the line: it may hold
/// a password.
pub fn parse_layer(text: &str, source_name: &str) -> Result<Table, LayerError> {
    text.parse::<Table>().map_err(|e| {
        let message = e.message().trim_end().replace('\n', "; ");
        let message = match e.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        };
        LayerError::Toml {
            source_name: source_name.to_owned(),
            message,
        }
    })
}

/// Merges `overlay` into `base`: tables merge key by key, anything else
/// (values and arrays) is replaced whole.
pub fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A value as written on a command line or in the environment: TOML if it
/// parses as a TOML value (`3`, `true`, `["1h", "2h"]`), else a plain string
/// (`15m`, `http://...`).
fn loose_value(text: &str) -> Value {
    format!("v = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

fn assign(table: &mut Table, path: &[&str], value: Value, origin: &str) -> Result<(), LayerError> {
    let key = path.join(".");
    let bad_key = || LayerError::BadKey {
        origin: origin.to_owned(),
        key: key.clone(),
    };
    let Some((last, parents)) = path.split_last() else {
        return Err(bad_key());
    };
    let mut cursor = table;
    for part in parents {
        if part.is_empty() {
            return Err(bad_key());
        }
        let entry = cursor
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| LayerError::NotALeaf {
            origin: origin.to_owned(),
            key: key.clone(),
        })?;
    }
    if last.is_empty() {
        return Err(bad_key());
    }
    cursor.insert(last.to_string(), value);
    Ok(())
}

/// The layer made of `TDMON_*` environment variables.
pub fn env_layer(vars: impl IntoIterator<Item = (String, String)>) -> Result<Table, LayerError> {
    let mut layer = Table::new();
    for (name, value) in vars {
        if ENV_NOT_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let path: Vec<&str> = key.split("__").collect();
        assign(&mut layer, &path, loose_value(&value), &name)?;
    }
    Ok(layer)
}

/// The layer made of `--set key=value` arguments.
pub fn set_layer(assignments: &[String]) -> Result<Table, LayerError> {
    let mut layer = Table::new();
    for assignment in assignments {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| LayerError::NotAnAssignment(mask_url(assignment).into_owned()))?;
        let path: Vec<&str> = key.trim().split('.').collect();
        // The origin names no value: it may be a password.
        assign(&mut layer, &path, loose_value(value.trim()), "--set")?;
    }
    Ok(layer)
}

/// The measurement settings as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementConfig {
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub confirmation: ConfirmationConfig,
    /// Removal deadlines from the notice time.
    #[serde(
        default = "crate::norm::default_durations",
        with = "crate::duration::list"
    )]
    pub norms: Vec<Duration>,
    /// Overrides of the default outcome-to-verdict mapping, e.g. `http_forbidden = "offline"`.
    #[serde(default)]
    pub verdicts: BTreeMap<Outcome, Verdict>,
}

impl Default for MeasurementConfig {
    fn default() -> Self {
        Self {
            schedule: ScheduleConfig::default(),
            confirmation: ConfirmationConfig::default(),
            norms: crate::norm::default_durations(),
            verdicts: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MeasurementError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Norm(#[from] NormError),
}

/// The validated measurement settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measurement {
    pub rules: Rules,
    pub norms: Norms,
    pub verdicts: VerdictMap,
}

impl TryFrom<MeasurementConfig> for Measurement {
    type Error = MeasurementError;

    fn try_from(config: MeasurementConfig) -> Result<Self, MeasurementError> {
        Ok(Self {
            rules: Rules {
                schedule: Schedule::try_from(config.schedule)?,
                confirmation: Confirmation::try_from(config.confirmation)?,
            },
            norms: Norms::try_from(config.norms)?,
            verdicts: VerdictMap::with_overrides(config.verdicts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_tables_merge() {
        let mut base = parse_layer(
            "[schedule]\nhorizon = \"90d\"\nthen_every = \"7d\"\n",
            "defaults",
        )
        .unwrap();
        let file = parse_layer("[schedule]\nhorizon = \"60d\"\n", "tdmon.toml").unwrap();
        let env = env_layer([
            ("TDMON_SCHEDULE__HORIZON".to_owned(), "30d".to_owned()),
            ("TDMON_CONFIRMATION__CHECKS".to_owned(), "4".to_owned()),
            ("TDMON_LOG".to_owned(), "debug".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ])
        .unwrap();
        let cli = set_layer(&["confirmation.checks=5".to_owned()]).unwrap();
        for layer in [file, env, cli] {
            merge(&mut base, layer);
        }
        assert_eq!(base["schedule"]["horizon"].as_str(), Some("30d"));
        assert_eq!(base["schedule"]["then_every"].as_str(), Some("7d"));
        assert_eq!(base["confirmation"]["checks"].as_integer(), Some(5));
        assert!(!base.contains_key("log"), "TDMON_LOG is not a setting");
        assert!(!base.contains_key("home"));
    }

    #[test]
    fn bad_assignments_say_what_is_wrong() {
        let err = set_layer(&["schedule.horizon".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
        let err = set_layer(&["schedule..horizon=1d".to_owned()]).unwrap_err();
        assert!(matches!(err, LayerError::BadKey { .. }), "{err}");
        let err = parse_layer("[schedule\n", "bad.toml").unwrap_err();
        assert!(
            err.to_string().starts_with("bad.toml: line 1, column 10: "),
            "{err}"
        );
        let err =
            parse_layer("[store]\nurl = \"postgres://u:s3cret@h/db\n", "bad.toml").unwrap_err();
        assert!(
            err.to_string().starts_with("bad.toml: line 2, column "),
            "{err}"
        );
        assert!(
            !err.to_string().contains("s3cret"),
            "the line is not quoted: {err}"
        );
    }

    #[test]
    fn measurement_validates_and_rejects_unknown_keys() {
        let config: MeasurementConfig = toml::from_str(
            "norms = [\"24h\"]\n[verdicts]\nhttp_forbidden = \"offline\"\n[confirmation]\nchecks = 2\n",
        )
        .unwrap();
        let measurement = Measurement::try_from(config).unwrap();
        assert_eq!(measurement.rules.confirmation.checks, 2);
        assert_eq!(
            measurement.verdicts.verdict(Outcome::HttpForbidden),
            Verdict::Offline
        );
        assert_eq!(measurement.norms.iter().count(), 1);

        let unknown = toml::from_str::<MeasurementConfig>("[schedule]\nhorizn = \"1d\"\n");
        assert!(unknown.unwrap_err().to_string().contains("horizn"));
        let k0: MeasurementConfig = toml::from_str("[confirmation]\nchecks = 0\n").unwrap();
        assert!(Measurement::try_from(k0).is_err());
        let bad_outcome =
            toml::from_str::<MeasurementConfig>("[verdicts]\nhttp_teapot = \"online\"\n");
        assert!(bad_outcome.is_err());
    }
}
