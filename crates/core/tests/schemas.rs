//! The JSON Schemas of the messages, in docs/schemas/, are generated from the
//! Rust types: this test fails when a type changes and its checked-in schema
//! does not. Regenerate them with
//! `TDMON_WRITE_SCHEMAS=1 cargo nextest run -p tdmon-core --test schemas`.

use std::path::PathBuf;

use schemars::{JsonSchema, schema_for};
use tdmon_core::{CheckJob, Event, Observation};

fn check<T: JsonSchema>(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas")
        .join(format!("{name}.schema.json"));
    let mut generated = serde_json::to_string_pretty(&schema_for!(T)).unwrap();
    generated.push('\n');
    if std::env::var_os("TDMON_WRITE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        checked_in == generated,
        "{} is stale: the {name} type changed. Regenerate with \
         TDMON_WRITE_SCHEMAS=1 cargo nextest run -p tdmon-core --test schemas, \
         and describe the change in docs/MESSAGES.md",
        path.display()
    );
}

#[test]
fn check_job() {
    check::<CheckJob>("check-job");
}

#[test]
fn observation() {
    check::<Observation>("observation");
}

#[test]
fn event() {
    check::<Event>("event");
}
