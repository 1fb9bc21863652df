//! `tdmon notify`: notice files are streamed into the store in batches, bad
//! lines are refused before they reach it, and memory stays flat.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{PgSchema, stderr, tdmon, write};

#[test]
fn a_control_character_is_refused_by_line_and_the_rest_is_stored_on_postgres() {
    let schema = PgSchema::new("tdmon_notify");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nul.csv");
    // PostgreSQL text cannot hold NUL: one such value would fail the batch.
    std::fs::write(
        &file,
        b"url,notified_at,notice_id\n\
          https://a.example/1,2024-01-01T00:00:00Z,N-1\n\
          https://a.example/2,2024-01-01T00:00:00Z,N\x002\n\
          https://a.example/3,2024-01-01T00:00:00Z,N-3\n",
    )
    .unwrap();
    let output = tdmon()
        .args(schema.settings(&schema.url))
        .arg("notify")
        .arg(&file)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("line 3: notice_id: contains control character U+0000 at byte 1"),
        "{log}"
    );
    assert!(log.contains("2 notices added"), "{log}");
    let stored = schema.query(&format!(
        "SELECT string_agg(notice_id, ',' ORDER BY notice_id) FROM {}.notices",
        schema.name
    ));
    assert_eq!(stored, "N-1,N-3");
}

/// A CSV file of `count` distinct notices.
fn notices_file(dir: &Path, count: usize) -> String {
    let mut text = String::from("url,notified_at,notice_id,category,reporter,hoster\n");
    for i in 0..count {
        text.push_str(&format!(
            "https://host{}.example/files/{i}/image.jpg,2026-03-01T10:00:00Z,N-{i},csam,hotline-nl,Example Hosting BV\n",
            i % 5000
        ));
    }
    write(dir, "notices.csv", &text)
}

#[test]
fn duplicates_are_named_by_line_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("url,notified_at,notice_id\n");
    for i in 0..2500 {
        text.push_str(&format!(
            "https://a.example/{i},2026-03-01T10:00:00Z,N-{i}\n"
        ));
    }
    // Far from the lines they repeat: in later batches.
    text.push_str("https://b.example/,2026-03-01T10:00:00Z,N-0\n");
    text.push_str("https://a.example/1,2026-03-01T10:00:00Z,\n");
    let file = write(dir.path(), "notices.csv", &text);
    let db = dir.path().join("tdmon.db");
    let output = tdmon()
        .args(["notify", &file, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("line 2502: duplicate of line 2 (same notice_id \"N-0\")"),
        "{log}"
    );
    assert!(
        log.contains("line 2503: duplicate of line 3 (same url \"https://a.example/1\""),
        "{log}"
    );
    assert!(
        log.ends_with(
            "2500 notices added, 0 already stored, 0 lines rejected, 2 duplicates in the file\n"
        ),
        "{log}"
    );

    // Again: every notice is already stored, reported by the store.
    let output = tdmon()
        .args(["notify", &file, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(
        log.contains("line 2: notice_id \"N-0\" is already stored"),
        "{log}"
    );
    assert!(
        log.contains("0 notices added, 2500 already stored"),
        "{log}"
    );
}

/// The peak resident memory of a process, in KiB, from /proc while it runs.
fn peak_rss_kib(mut command: std::process::Command) -> (Option<i32>, u64) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        // VmHWM is the high-water mark: a late read still sees the peak.
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak = kib;
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), peak);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn memory_stays_flat_while_a_large_file_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = notices_file(dir.path(), 60_000);
    let mut command = tdmon();
    command
        .args(["notify", &file, "--db"])
        .arg(dir.path().join("tdmon.db"));
    let (code, peak) = peak_rss_kib(command);
    assert_eq!(code, Some(0));
    assert!(peak > 0, "no memory figure read");
    // Holding the notices would take well over 100 MiB here.
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
