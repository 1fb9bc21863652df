//! `tdmon asn lookup [--asn-db FILE] [--input FILE] [ADDR ...]`: attributes
//! addresses exactly as the worker does (the ASN database, merges, overrides
//! and CDN list of the `[worker.attribution]` table) and prints one JSON line
//! per address, in input order:
//!
//! ```text
//! {"ip":"1.1.1.1","asn":13335,"as_org":"Cloudflare, Inc.","hoster":"Cloudflare, Inc.","cdn":true}
//! ```
//!
//! An address the database does not cover prints with `null`s. Input:
//! addresses from the arguments, then from `--input FILE` (`-` for standard
//! input), one per line; blank lines and `#` comments are skipped; every line
//! is printed, duplicates too, so that the output pairs with the input.
//!
//! Exit codes:
//! - 0: every address was looked up;
//! - 1: some input was not an IP address (reported on stderr); the rest was printed;
//! - 2: usage error (no address, no ASN database, unreadable input file);
//! - 3: the database cannot be used, some record in it did not decode
//!   (those addresses print without an ASN), or standard output failed.

use std::io::{BufWriter, Write};
use std::net::IpAddr;

use anyhow::Context;
use serde::Serialize;
use tdmon_worker::WorkerSettings;
use tdmon_worker::attribute::Attributor;

use crate::Exit;
use crate::cli::{AsnCommand, AsnLookupArgs};
use crate::commands::check::{Input, gather};

pub(crate) fn run(command: AsnCommand, worker: WorkerSettings) -> anyhow::Result<Exit> {
    match command {
        AsnCommand::Lookup(args) => lookup(args, worker),
    }
}

/// One output line.
#[derive(Debug, Serialize)]
struct Line<'a> {
    ip: IpAddr,
    asn: Option<u32>,
    as_org: Option<&'a str>,
    hoster: Option<&'a str>,
    cdn: bool,
}

fn lookup(args: AsnLookupArgs, worker: WorkerSettings) -> anyhow::Result<Exit> {
    let worker = match args.asn_db {
        Some(path) => worker.with_asn_db(path),
        None => worker,
    };
    let Some(db_path) = worker.asn_db().map(|p| p.display().to_string()) else {
        eprintln!(
            "tdmon asn lookup: no ASN database (pass --asn-db FILE or set worker.attribution.asn_db)"
        );
        return Ok(Exit::Usage);
    };
    let inputs = match gather(
        "tdmon asn lookup",
        "address",
        &args.addrs,
        args.input.as_deref(),
    ) {
        Ok(inputs) => inputs,
        Err(exit) => return Ok(exit),
    };

    let attributor = Attributor::from_settings(&worker)?;
    let (addrs, rejected) = parse(&inputs);
    for (input, why) in &rejected {
        eprintln!(
            "tdmon asn lookup: {}: {:?}: {why}",
            input.origin, input.text
        );
    }
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(std::io::stdout().lock());
        for ip in addrs {
            let a = attributor.attribute(ip);
            let line = Line {
                ip,
                asn: a.asn,
                as_org: a.as_org.as_deref(),
                hoster: a.hoster.as_deref(),
                cdn: a.cdn,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    write().context("cannot write to standard output")?;

    let undecodable = attributor.undecodable_records();
    if undecodable > 0 {
        eprintln!(
            "tdmon asn lookup: {undecodable} addresses are in records of {db_path} that do not decode; they were printed without an ASN"
        );
        return Ok(Exit::Failure);
    }
    Ok(if rejected.is_empty() {
        Exit::Success
    } else {
        Exit::InputRejected
    })
}

/// The addresses in input order, and the rejected inputs with why.
fn parse(inputs: &[Input]) -> (Vec<IpAddr>, Vec<(&Input, &'static str)>) {
    let mut addrs = Vec::with_capacity(inputs.len());
    let mut rejected = Vec::new();
    for input in inputs {
        match input.text.trim().parse::<IpAddr>() {
            Ok(ip) if input.utf8 => addrs.push(ip),
            Ok(_) => rejected.push((input, "not valid UTF-8")),
            Err(_) => rejected.push((input, "not an IP address")),
        }
    }
    (addrs, rejected)
}
