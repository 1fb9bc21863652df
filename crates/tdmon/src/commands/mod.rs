//! One module per subcommand; each returns the exit status it ends with.

pub(crate) mod config;
pub(crate) mod notices;
