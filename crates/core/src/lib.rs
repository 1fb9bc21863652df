//! tdmon's measurement core: everything that decides what a check means, and
//! nothing that touches a network, a disk or a clock. Every function here is a
//! pure function of its inputs and of the `now` it is given.

pub mod config;
pub mod duration;
pub mod message;
pub mod norm;
pub mod notice;
pub mod outcome;
pub mod schedule;
pub mod state;
pub mod url;

pub use message::{Bracket, CheckJob, Event, EventKind, Observation, Purpose, UrlId};
pub use outcome::{Outcome, Verdict, VerdictMap};
