//! One module per subcommand; each returns the exit status it ends with.

pub(crate) mod asn;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod notices;
pub(crate) mod report;
pub(crate) mod roles;
pub(crate) mod run;
pub(crate) mod schedule;
pub(crate) mod simnet;
pub(crate) mod tail;
