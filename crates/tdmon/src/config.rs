//! Placeholder: replaced by the layered configuration loader.
use std::path::Path;
#[derive(Debug)]
pub(crate) struct Config;
pub(crate) fn load(
    _file: Option<&Path>,
    _env: impl IntoIterator<Item = (String, String)>,
    _overrides: &[String],
) -> anyhow::Result<Config> {
    Ok(Config)
}
