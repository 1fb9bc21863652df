//! Exit statuses and error messages, command by command: one mapping for
//! every command (0 success, 1 input refused, 2 usage or configuration, 3 a
//! failure while running), and messages in which each layer says its part
//! once. Nothing here needs the network.

mod support;

use std::time::{Duration, Instant};

use support::{run, stderr, tdmon, write};

/// Files that each end in one exit status.
struct Inputs {
    _dir: tempfile::TempDir,
    clean: String,
    rejected_line: String,
    bad_header: String,
    unknown_extension: String,
    missing: String,
    bad_config: String,
    db: String,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    Inputs {
        clean: write(
            path,
            "clean.csv",
            "url,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\n",
        ),
        rejected_line: write(
            path,
            "rejected.csv",
            "url,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\nftp://b.example/,2024-01-01T00:00:00Z\n",
        ),
        bad_header: write(
            path,
            "header.csv",
            "link,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\n",
        ),
        unknown_extension: write(
            path,
            "notices.txt",
            "url,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\n",
        ),
        missing: path.join("absent.csv").to_str().unwrap().to_owned(),
        bad_config: write(path, "bad.toml", "[schedul]\nhorizon = \"1d\"\n"),
        db: path.join("tdmon.db").to_str().unwrap().to_owned(),
        _dir: dir,
    }
}

#[track_caller]
fn assert_exit(args: &[&str], code: i32) {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "tdmon {}:\n{}",
        args.join(" "),
        stderr(&output)
    );
}

const REFUSING_STORE: &str = "store.url=postgres://tdmon@127.0.0.1:1/test";

#[test]
fn notices_validate_exit_statuses() {
    let i = inputs();
    assert_exit(&["notices", "validate", &i.clean], 0);
    assert_exit(&["notices", "validate", &i.rejected_line], 1);
    assert_exit(&["notices", "validate", &i.bad_header], 1);
    assert_exit(&["notices", "validate", &i.unknown_extension], 2);
    assert_exit(&["notices", "validate", &i.missing], 2);
    assert_exit(
        &["--config", &i.bad_config, "notices", "validate", &i.clean],
        2,
    );
}

#[test]
fn notify_exit_statuses() {
    let i = inputs();
    assert_exit(&["notify", &i.clean, "--db", &i.db], 0);
    assert_exit(&["notify", &i.rejected_line, "--db", &i.db], 1);
    assert_exit(&["notify", &i.bad_header, "--db", &i.db], 1);
    assert_exit(&["notify", &i.unknown_extension, "--db", &i.db], 2);
    assert_exit(&["notify", &i.missing, "--db", &i.db], 2);
    assert_exit(&["--config", &i.bad_config, "notify", &i.clean], 2);
    assert_exit(&["--set", "store.url=mysql://x/y", "notify", &i.clean], 2);
    assert_exit(&["--set", REFUSING_STORE, "notify", &i.clean], 3);
}

#[test]
fn run_exit_statuses() {
    let i = inputs();
    // Nothing to monitor: done at once.
    assert_exit(&["run", "--exit-when-done", "--db", &i.db], 0);
    for (notices, code) in [
        (&i.bad_header, 1),
        (&i.unknown_extension, 2),
        (&i.missing, 2),
    ] {
        assert_exit(
            &[
                "run",
                "--exit-when-done",
                "--db",
                &i.db,
                "--notices",
                notices,
            ],
            code,
        );
    }
    assert_exit(&["--config", &i.bad_config, "run", "--exit-when-done"], 2);
    assert_exit(&["--set", "store.url=mysql://x/y", "run"], 2);
    assert_exit(&["--set", REFUSING_STORE, "run"], 3);
}

#[test]
fn status_check_and_config_exit_statuses() {
    let i = inputs();
    assert_exit(&["status", "--db", &i.db], 0);
    assert_exit(&["--set", "store.url=mysql://x/y", "status"], 2);
    let bad_schema = ["--set", REFUSING_STORE, "--set", "store.schema=Bad-Name"];
    assert_exit(&[&bad_schema[..], &["status"]].concat(), 2);
    assert_exit(&["--set", REFUSING_STORE, "status"], 3);

    // A loopback URL is refused by the target policy before any traffic.
    assert_exit(&["check", "http://127.0.0.1:9/"], 0);
    assert_exit(&["check", "ftp://a.example/"], 1);
    assert_exit(&["check"], 2);
    assert_exit(&["check", "--input", &i.missing], 2);

    assert_exit(&["config", "show"], 0);
    assert_exit(&["--config", &i.bad_config, "config", "show"], 2);
    assert_exit(&["--config", &i.missing, "config", "show"], 2);
}

#[test]
fn a_postgres_that_is_not_listening_is_named_at_once() {
    let started = Instant::now();
    let output = run(&["--set", REFUSING_STORE, "status"]);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        "tdmon: cannot open the store at postgres://tdmon@127.0.0.1:1/test: \
         127.0.0.1:1 refused the connection: is PostgreSQL running and listening there?\n"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// Each `: `-separated part of an error line appears once, and so does the
/// phrase that opens the store's own layer.
#[track_caller]
fn assert_no_part_repeats(message: &str) {
    let parts: Vec<&str> = message.trim_end().split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} repeats in: {message}"
        );
    }
    assert!(message.matches("cannot open").count() <= 1, "{message}");
}

#[test]
fn error_chains_say_each_part_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("no/such/dir/tdmon.db");
    let output = run(&["status", "--db", db.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert_eq!(
        message,
        format!(
            "tdmon: cannot open the store at sqlite://{}: error returned from database: \
             (code: 14) unable to open database file\n",
            db.display()
        )
    );
    assert_no_part_repeats(&message);

    let output = run(&["--set", REFUSING_STORE, "status"]);
    assert_no_part_repeats(&stderr(&output));

    let bad_header = write(dir.path(), "h.csv", "link,notified_at\n");
    let output = tdmon()
        .args(["notify", &bad_header, "--db"])
        .arg(dir.path().join("tdmon.db"))
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!("tdmon: {bad_header}: not loaded: line 1: ")),
        "{message}"
    );
    assert_no_part_repeats(&message);
}
