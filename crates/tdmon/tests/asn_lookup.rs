//! `tdmon asn lookup`, end to end: the built binary on ASN databases written
//! in the products' layouts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use tdmon_simnet::{AsnDbLayout, AsnEntry, build_asn_db_entries};

/// Runs `tdmon [global...] asn lookup ARGS`, isolated from the caller's
/// TDMON_* environment.
fn lookup(global: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tdmon"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TDMON_") {
            command.env_remove(key);
        }
    }
    command
        .args(global)
        .args(["asn", "lookup"])
        .args(args)
        .output()
        .expect("tdmon runs")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_db(dir: &Path, layout: AsnDbLayout) -> PathBuf {
    let entries = [
        AsnEntry::new("1.1.1.0/24", 13335, "Cloudflare, Inc."),
        AsnEntry::new("51.38.0.0/16", 16276, "OVH SAS"),
        AsnEntry::new("2a01:4f8::/32", 24940, "Hetzner Online GmbH"),
        AsnEntry::new("5.104.136.0/21", 205_000, "Large ASN B.V."),
    ];
    let path = dir.join(format!("{layout:?}.mmdb"));
    std::fs::write(&path, build_asn_db_entries(layout, &entries).unwrap()).unwrap();
    path
}

#[test]
fn addresses_print_as_json_lines_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("addrs.txt");
    std::fs::write(
        &input,
        "# from a file\n51.38.1.1\n\nnot-an-ip\n2a01:4f8::1\n",
    )
    .unwrap();
    for layout in AsnDbLayout::ALL {
        let db = write_db(dir.path(), layout);
        let output = lookup(
            &[],
            &[
                "--asn-db",
                db.to_str().unwrap(),
                "1.1.1.1",
                "::ffff:1.1.1.1",
                "9.9.9.9",
                "--input",
                input.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("addrs.txt:4: \"not-an-ip\": not an IP address"),
            "{}",
            stderr(&output)
        );
        let cloudflare = |ip| {
            json!({"ip": ip, "asn": 13335, "as_org": "Cloudflare, Inc.",
                   "hoster": "Cloudflare, Inc.", "cdn": true})
        };
        assert_eq!(
            lines(&output),
            [
                cloudflare("1.1.1.1"),
                cloudflare("::ffff:1.1.1.1"),
                json!({"ip": "9.9.9.9", "asn": null, "as_org": null, "hoster": null, "cdn": false}),
                json!({"ip": "51.38.1.1", "asn": 16276, "as_org": "OVH SAS",
                       "hoster": "OVH SAS", "cdn": false}),
                json!({"ip": "2a01:4f8::1", "asn": 24940, "as_org": "Hetzner Online GmbH",
                       "hoster": "Hetzner Online GmbH", "cdn": false}),
            ],
            "{layout:?}"
        );
    }
}

#[test]
fn the_configuration_merges_and_replaces_the_cdn_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = write_db(dir.path(), AsnDbLayout::IpLocationDbAsn);
    let set_db = format!("worker.attribution.asn_db={}", db.display());
    let output = lookup(
        &[
            "--set",
            &set_db,
            "--set",
            "worker.attribution.cdn_asns=[]",
            "--set",
            "worker.attribution.extra_cdn_asns=[16276]",
        ],
        &["1.1.1.1", "51.38.1.1"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cdn: Vec<Value> = lines(&output)
        .into_iter()
        .map(|line| line["cdn"].clone())
        .collect();
    assert_eq!(cdn, [json!(false), json!(true)], "replaced, then extended");
}

#[test]
fn an_unusable_database_or_none_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = lookup(&[], &["1.1.1.1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no ASN database"),
        "{}",
        stderr(&output)
    );

    let text = dir.path().join("notes.mmdb");
    std::fs::write(&text, "not a database").unwrap();
    let output = lookup(
        &["--set", "worker.attribution.asn_db=/nonexistent/asn.mmdb"],
        &["--asn-db", text.to_str().unwrap(), "1.1.1.1"],
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("notes.mmdb is not a MaxMind DB file"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}
