//! `tdmon notices validate`, end to end: the built binary on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs `tdmon notices validate` with `args`, isolated from the caller's
/// TDMON_* environment.
fn validate(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TDMON_") {
            command.env_remove(key);
        }
    }
    command
        .args(["notices", "validate"])
        .args(args)
        .output()
        .expect("tdmon runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}):\n{}", stdout(output));
    })
}

/// A CSV file with one problem of each kind between good lines.
fn messy_csv(dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    let mut line = |text: &[u8]| {
        bytes.extend_from_slice(text);
        bytes.extend_from_slice(b"\r\n");
    };
    line(b"url,notified_at,notice_id,reporter");
    line(b"https://good.example/1,2024-05-01T10:00:00Z,M-1,hotline"); // 2
    line(b"ftp://files.example/2,2024-05-01T10:00:00Z,M-2,hotline"); // 3: bad URL
    line(b"https://good.example/4,2024-05-01T10:00:00+02:00,M-4,"); // 4
    line(b"https://good.example/5,2024-13-01T00:00:00Z,M-5,hotline"); // 5: bad time
    line(b"https://good.example/6,2024-05-01T10:00:00Z"); // 6: missing values
    line(b"https://good.example/7,2024-05-01T10:00:00Z,M-7,caf\xe9"); // 7: not UTF-8
    let huge = format!(
        "https://good.example/{},2024-05-01T10:00:00Z,M-8,hotline",
        "x".repeat(1024 * 1024)
    );
    line(huge.as_bytes()); // 8: 1 MB
    line(b"https://good.example/9,2024-05-01T10:00:00Z,M-9,hotline"); // 9
    line(b"https://good.example/10,2024-05-02T10:00:00Z,M-1,hotline"); // 10: duplicate of 2
    line(b"\"https://good.example/11?a=1,2\",2024-05-01T10:00:00Z,M-11,\"x, y\""); // 11
    let path = dir.join("messy.csv");
    std::fs::write(&path, bytes).unwrap();
    path
}

const MESSY_HUGE_LEN: usize =
    1024 * 1024 + "https://good.example/,2024-05-01T10:00:00Z,M-8,hotline".len();

#[test]
fn a_clean_csv_file_exits_0_with_its_count() {
    let path = data("clean.csv");
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(
        stdout(&output),
        format!("{}: 5 accepted, 0 rejected, 0 duplicates\n", path.display())
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_clean_jsonl_file_exits_0_with_its_count() {
    let path = data("clean.jsonl");
    let output = validate(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["file"], path.to_str().unwrap());
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["rejected"], Value::Array(vec![]));
    assert_eq!(report["duplicates"], Value::Array(vec![]));
    assert_eq!(report["warnings"], Value::Array(vec![]));
    assert_eq!(report["error"], Value::Null);
}

#[test]
fn a_messy_csv_file_reports_each_bad_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = messy_csv(dir.path());
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let expected = format!(
        "line 3: url: \"ftp://files.example/2\": scheme \"ftp\" is not http or https\n\
         line 5: notified_at: \"2024-13-01T00:00:00Z\" is not an RFC 3339 time with offset (input is out of range)\n\
         line 6: notice_id: missing value: the row has 2 fields, the header 4\n\
         line 7: reporter: not valid UTF-8 (byte 0xE9 at offset 3)\n\
         line 8: the line is {MESSY_HUGE_LEN} bytes long, over the 65536-byte limit\n\
         line 10: duplicate of line 2 (same notice_id \"M-1\")\n\
         {}: 4 accepted, 5 rejected, 1 duplicate\n",
        path.display()
    );
    assert_eq!(stdout(&output), expected);
}

#[test]
fn a_messy_csv_file_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = messy_csv(dir.path());
    let output = validate(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["accepted"], 4);
    assert_eq!(report["error"], Value::Null);

    let rejected = report["rejected"].as_array().unwrap();
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5, 6, 7, 8]);
    let fields: Vec<&Value> = rejected.iter().map(|r| &r["field"]).collect();
    assert_eq!(
        fields,
        [
            &Value::from("url"),
            &Value::from("notified_at"),
            &Value::from("notice_id"),
            &Value::from("reporter"),
            &Value::Null,
        ]
    );
    assert_eq!(
        rejected[1]["reason"],
        "\"2024-13-01T00:00:00Z\" is not an RFC 3339 time with offset (input is out of range)"
    );
    assert!(
        rejected[4]["reason"]
            .as_str()
            .unwrap()
            .contains("over the 65536-byte limit")
    );

    let duplicates = report["duplicates"].as_array().unwrap();
    assert_eq!(duplicates.len(), 1);
    assert_eq!(duplicates[0]["line"], 10);
    assert_eq!(duplicates[0]["duplicate_of"], 2);
    assert_eq!(duplicates[0]["key"], "notice_id \"M-1\"");
}

#[test]
fn a_messy_jsonl_file_reports_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.ndjson");
    std::fs::write(
        &path,
        concat!(
            r#"{"url":"https://a.example/","notified_at":"2024-01-01T00:00:00Z","extra":1}"#,
            "\n",
            r#"{"url":"https://b.example/","notified_at":"2024-01-01T00:00:00"}"#,
            "\n",
            "not json\n",
            "\n",
            r#"{"url":"https://A.example:443/#x","notified_at":"2024-01-01T01:00:00+01:00"}"#,
            "\n",
        ),
    )
    .unwrap();
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "line 1: warning: field \"extra\" is not a notice field; ignored"
    );
    assert!(lines[1].starts_with("line 2: notified_at: \"2024-01-01T00:00:00\" is not an RFC 3339 time with offset (it has no offset"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("line 3: not valid JSON: "),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        "line 5: duplicate of line 1 (same url \"https://a.example/\" notified at 2024-01-01T00:00:00Z)"
    );
    assert_eq!(
        lines[4],
        format!(
            "{}: 1 accepted, 2 rejected, 1 duplicate, 1 warning",
            path.display()
        )
    );
    assert_eq!(lines.len(), 5);
}

#[test]
fn warnings_alone_keep_the_exit_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.csv");
    std::fs::write(
        &path,
        "url,notified_at,internal_ref\nhttps://a.example/,2024-01-01T00:00:00Z,42\n",
    )
    .unwrap();
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "line 1: warning: column \"internal_ref\" is not a notice field; ignored\n\
             {}: 1 accepted, 0 rejected, 0 duplicates, 1 warning\n",
            path.display()
        )
    );
}

#[test]
fn a_header_without_a_required_column_rejects_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noheader.csv");
    std::fs::write(&path, "https://a.example/,2024-01-01T00:00:00Z\n").unwrap();

    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with(&format!(
            "{}: not loaded: line 1: the header has no \"url\" column",
            path.display()
        )),
        "{}",
        stdout(&output)
    );

    let output = validate(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["accepted"], 0);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("no \"url\" column")
    );
}

#[test]
fn the_format_comes_from_the_extension_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.txt");
    std::fs::copy(data("clean.csv"), &path).unwrap();

    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    let message = stderr(&output);
    assert!(message.contains("cannot tell the format"), "{message}");
    assert!(message.contains("--input-format"), "{message}");

    let output = validate(&[path.to_str().unwrap(), "--input-format", "csv"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(": 5 accepted, 0 rejected"));

    // The flag wins over the extension: a CSV read as JSON Lines fails line by line.
    let output = validate(&[
        data("clean.csv").to_str().unwrap(),
        "--input-format",
        "jsonl",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains(": 0 accepted, 6 rejected"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_file_that_cannot_be_opened_is_a_usage_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path().join("absent.csv"), dir.path().to_owned()] {
        let output = validate(&[path.to_str().unwrap(), "--input-format", "csv"]);
        assert_eq!(output.status.code(), Some(2));
        assert!(stdout(&output).is_empty());
        let message = stderr(&output);
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(message.contains("cannot open notice file"), "{message}");
    }
}

#[test]
fn control_characters_are_refused_with_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nul.csv");
    std::fs::write(
        &path,
        b"url,notified_at,notice_id,reporter\n\
          https://a.example/1,2024-01-01T00:00:00Z,N\x001,hotline\n\
          https://a.example/2,2024-01-01T00:00:00Z,N-2,hot\x07line\n\
          https://a.example/3,2024-01-01T00:00:00Z,N-3,hotline\n",
    )
    .unwrap();
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "line 2: notice_id: contains control character U+0000 at byte 1\n\
             line 3: reporter: contains control character U+0007 at byte 3\n\
             {}: 1 accepted, 2 rejected, 0 duplicates\n",
            path.display()
        )
    );
}

#[test]
fn notice_times_far_in_the_future_or_past_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("times.jsonl");
    let mut text = String::new();
    for (i, at) in [
        "2024-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z",
        "9999-12-31T23:00:00-02:00",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!(
            "{{\"url\":\"https://a.example/{i}\",\"notified_at\":\"{at}\"}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let output = validate(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["accepted"], 1);
    let reasons: Vec<(u64, &str)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for (line, reason) in &reasons[..2] {
        assert!(
            reason.contains("is in the future") && reason.contains("notices.max_future"),
            "line {line}: {reason}"
        );
    }
    for (line, reason) in &reasons[2..] {
        assert!(
            reason.contains("is before 2000-01-01T00:00:00Z")
                && reason.contains("notices.earliest"),
            "line {line}: {reason}"
        );
    }

    // The bounds are settings.
    let output = Command::new(env!("CARGO_BIN_EXE_tdmon"))
        .args(["--set", "notices.earliest=0001-01-01T00:00:00Z"])
        .args([
            "notices",
            "validate",
            path.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(json(&output)["accepted"], 3);
}

#[test]
fn broken_csv_quoting_is_refused_instead_of_changing_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quotes.csv");
    std::fs::write(
        &path,
        "url,notified_at,notice_id\n\
         https://a.example/1,2024-01-01T00:00:00Z,\"Q1\n\
         https://a.example/2,2024-01-01T00:00:00Z,Q2\n\
         https://a.example/3,2024-01-01T00:00:00Z,\"Q3\"junk\n",
    )
    .unwrap();
    let output = validate(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "line 2: notice_id: the quoted value is not closed (a quoted value cannot span lines)\n\
             line 4: notice_id: text after the closing quote; inside a quoted value, write a quote as \"\"\n\
             {}: 1 accepted, 2 rejected, 0 duplicates\n",
            path.display()
        )
    );
}
