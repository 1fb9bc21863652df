//! No password reaches what tdmon prints. Every command that prints a store
//! URL, a configuration value or a rejected URL runs with a canary password,
//! given in each way a password can be given, and neither its stdout nor its
//! stderr may contain it.

mod support;

use std::process::Output;

use support::{PgSchema, postgres_url, run, stderr, stdout, tdmon, write};

const CANARY: &str = "Canary7Pw";

/// Store URLs that carry the canary, in every form sqlx reads a password.
fn store_urls(host_port: &str) -> Vec<String> {
    vec![
        format!("postgres://tdmon:{CANARY}@{host_port}/test"),
        format!("postgres://tdmon@{host_port}/test?password={CANARY}"),
        format!(
            "postgresql://tdmon@{host_port}/test?sslmode=disable&password={CANARY}&application_name=x"
        ),
    ]
}

#[track_caller]
fn assert_no_canary(what: &str, output: &Output) {
    let (out, err) = (stdout(output), stderr(output));
    assert!(
        !out.contains(CANARY) && !err.contains(CANARY),
        "{what} printed the password:\nstdout: {out}\nstderr: {err}"
    );
}

#[test]
fn config_show_masks_every_form_of_password() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls("db.example:5432") {
        let set = format!("store.url={url}");
        let output = run(&["--set", &set, "config", "show"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_no_canary("config show --set", &output);
        assert!(stdout(&output).contains("***"), "{}", stdout(&output));

        let output = tdmon()
            .env("TDMON_STORE__URL", &url)
            .args(["config", "show"])
            .output()
            .unwrap();
        assert_no_canary("config show with TDMON_STORE__URL", &output);

        let file = write(
            dir.path(),
            "tdmon.toml",
            &format!("[store]\nurl = \"{url}\"\n"),
        );
        let output = run(&["--config", &file, "config", "show"]);
        assert_no_canary("config show --config", &output);
    }
}

#[test]
fn configuration_errors_do_not_quote_a_password() {
    let dir = tempfile::tempdir().unwrap();
    // A TOML syntax error on the password's line: the string is not closed.
    let file = write(
        dir.path(),
        "broken.toml",
        &format!("[store]\nurl = \"postgres://tdmon:{CANARY}@db.example/tdmon\n"),
    );
    let output = run(&["--config", &file, "config", "show"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("line 2"), "{}", stderr(&output));
    assert_no_canary("a TOML syntax error", &output);

    // A store URL given where KEY=VALUE was expected.
    let url = format!("postgres://tdmon:{CANARY}@db.example/tdmon");
    let output = run(&["--set", &url, "config", "show"]);
    assert_eq!(output.status.code(), Some(2));
    assert_no_canary("--set without a key", &output);
}

#[test]
fn store_errors_mask_the_url_of_a_store_that_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let notices = write(
        dir.path(),
        "notices.csv",
        "url,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\n",
    );
    // Nothing listens on port 1 of loopback.
    for url in store_urls("127.0.0.1:1") {
        let set = format!("store.url={url}");
        for command in [
            vec!["status"],
            vec!["notify", notices.as_str()],
            vec!["run", "--exit-when-done"],
            vec!["run", "--notices", notices.as_str()],
        ] {
            let output = tdmon()
                .args(["--set", &set])
                .args(&command)
                .output()
                .unwrap();
            assert_eq!(
                output.status.code(),
                Some(3),
                "{command:?}: {}",
                stderr(&output)
            );
            assert!(stderr(&output).contains("refused"), "{}", stderr(&output));
            assert_no_canary(&format!("{command:?} with {url}"), &output);
        }
    }
    // A parameter tdmon does not pass on is refused without its value (the
    // driver would log the value).
    let set = format!("store.url=postgres://tdmon@127.0.0.1:1/test?pwd={CANARY}");
    let output = run(&["--set", &set, "status"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("unknown connection parameter \"pwd\""));
    assert_no_canary("an unknown parameter", &output);
    let set = format!("store.url=mysql://root:{CANARY}@127.0.0.1/x");
    assert_no_canary("an unsupported store", &run(&["--set", &set, "status"]));
}

#[test]
fn commands_on_a_working_store_show_it_masked() {
    let schema = PgSchema::new("tdmon_secrets");
    let dir = tempfile::tempdir().unwrap();
    let notices = write(
        dir.path(),
        "notices.csv",
        "url,notified_at\nhttp://a.example/,2024-01-01T00:00:00Z\n",
    );
    // The local server trusts every connection: the password is ignored,
    // but tdmon still has it to print.
    let url = format!("{}?password={CANARY}", postgres_url());
    let settings = schema.settings(&url);
    for command in [vec!["notify", notices.as_str()], vec!["status"]] {
        let output = tdmon().args(&settings).args(&command).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command:?}: {}",
            stderr(&output)
        );
        assert_no_canary(&format!("{command:?}"), &output);
    }
    let output = tdmon().args(&settings).arg("status").output().unwrap();
    assert!(
        stdout(&output).contains("?password=***"),
        "status names the store, masked: {}",
        stdout(&output)
    );
}

#[test]
fn rejected_urls_are_echoed_masked() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        format!("http://user:{CANARY}@a.example/x"),
        format!("ftp://user:{CANARY}@files.example/x"),
        format!("http://user:{CANARY}@[bad/x"),
    ];
    let file = write(dir.path(), "urls.txt", &inputs.join("\n"));
    let args: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let output = tdmon()
        .arg("check")
        .args(&args)
        .args(["--input", &file])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).matches("user:***@").count(),
        6,
        "{}",
        stderr(&output)
    );
    assert_no_canary("check", &output);

    let mut csv = String::from("url,notified_at\n");
    for url in &inputs {
        csv.push_str(&format!("\"{url}\",2024-01-01T00:00:00Z\n"));
    }
    let file = write(dir.path(), "notices.csv", &csv);
    for format in ["text", "json"] {
        let output = run(&["notices", "validate", &file, "--format", format]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert_no_canary("notices validate", &output);
    }
}
