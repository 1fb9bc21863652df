//! tdmon's measurement core: everything that decides what a check means, and
//! nothing that touches a network, a disk or a clock. Every function here is a
//! pure function of its inputs and of the `now` it is given.

pub mod config;
pub mod duration;
pub mod hoster;
pub mod message;
pub mod norm;
pub mod notice;
pub mod outcome;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod state;
pub mod survival;
pub mod url;

pub use message::{
    Bracket, CheckJob, Event, EventKind, Evidence, Observation, ObservedAddress, Purpose, UrlId,
};
pub use outcome::{Outcome, Verdict, VerdictMap};

/// An error and its sources on one line, `outer: inner: root`, for logs that
/// print an error once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
