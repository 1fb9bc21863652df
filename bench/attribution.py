#!/usr/bin/env python3
"""Attribution against the reference reader: the same random addresses through
`tdmon asn lookup` and through Python's `maxminddb` (MaxMind's own reader),
and every ASN and organisation compared.

    attribution.py --tdmon PATH --db FILE [--count N] [--seed S] [--out DIR]

The addresses (fixed seed): 40% IPv4 drawn from the whole space, 20% the same
as IPv4-mapped IPv6 (::ffff:a.b.c.d), 20% IPv6 drawn from 2000::/3 (nearly all
unrouted: misses must agree too), 20% IPv6 drawn inside an IPv6 network of
the database picked at random (hits on IPv6 records).

The reference side applies tdmon's documented rules (docs/MEASUREMENT.md,
"Attribution") on top of the reader: an IPv6 address carrying an IPv4 one
(mapped, translated, NAT64) is looked up as that IPv4 address; the layout is
chosen by the record's fields; an ASN written as "AS123" is the number 123; an
empty organisation is none. Prints a JSON summary; writes the addresses, both
outputs and the disagreements to DIR.
"""

import argparse
import ipaddress
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import maxminddb

# (asn field, organisation field), as tdmon's LAYOUTS in crates/worker/src/attribute.rs.
LAYOUTS = [
    ("autonomous_system_number", "autonomous_system_organization"),
    ("asn", "name"),
    ("asn", "as_name"),
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


def addresses(reader, count, seed):
    rng = random.Random(seed)
    v6_networks = [net for net, _ in reader if net.version == 6]
    out = []
    for i in range(count):
        kind = i % 5
        if kind in (0, 1):
            out.append(ipaddress.IPv4Address(rng.getrandbits(32)))
        elif kind == 2:
            out.append(ipaddress.IPv6Address((0xFFFF << 32) | rng.getrandbits(32)))
        elif kind == 3:
            out.append(ipaddress.IPv6Address((0b001 << 125) | rng.getrandbits(125)))
        else:
            net = rng.choice(v6_networks)
            offset = rng.getrandbits(128 - net.prefixlen)
            out.append(net.network_address + offset)
    return out


def canonical(ip):
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in TRANSLATED or ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def asn_number(value):
    if isinstance(value, str):
        digits = value[2:] if value[:2] in ("AS", "as") else value
        return int(digits)
    return value


def reference(reader, ip):
    record = reader.get(canonical(ip))
    if record is None:
        return None, None
    fields = set(record)
    asn_field, org_field = next(
        (l for l in LAYOUTS if l[0] in fields and l[1] in fields),
        next((l for l in LAYOUTS if l[0] in fields), LAYOUTS[0]),
    )
    asn = record.get(asn_field)
    return (None if asn is None else asn_number(asn)), (record.get(org_field) or None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tdmon", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--out", default="/tmp/tdmon-bench-attribution")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    reader = maxminddb.open_database(args.db)
    ips = addresses(reader, args.count, args.seed)
    (out / "addresses.txt").write_text("".join(f"{ip}\n" for ip in ips))

    started = time.perf_counter()
    expected = [reference(reader, ip) for ip in ips]
    reference_seconds = time.perf_counter() - started

    def tdmon(*addresses):
        started = time.perf_counter()
        run = subprocess.run(
            [args.tdmon, "asn", "lookup", "--asn-db", args.db, *addresses],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},  # no TDMON_* settings
        )
        return run, time.perf_counter() - started

    # One address: the start-up and the database load alone.
    _, startup_seconds = tdmon("1.1.1.1")
    run, tdmon_seconds = tdmon("--input", str(out / "addresses.txt"))
    (out / "tdmon.jsonl").write_text(run.stdout)
    if run.returncode != 0:
        sys.exit(f"tdmon asn lookup exited {run.returncode}: {run.stderr}")
    got = [json.loads(line) for line in run.stdout.splitlines()]
    if len(got) != len(ips):
        sys.exit(f"tdmon printed {len(got)} lines for {len(ips)} addresses")

    disagreements = []
    for ip, (asn, org), line in zip(ips, expected, got):
        same_ip = ipaddress.ip_address(line["ip"]) == ip
        if not same_ip or line["asn"] != asn or line["as_org"] != org or line["hoster"] != org:
            disagreements.append({"ip": str(ip), "reference": [asn, org], "tdmon": line})
    (out / "disagreements.json").write_text(json.dumps(disagreements, indent=1))

    kinds = {"ipv4": 0, "mapped": 0, "ipv6": 0}
    for ip in ips:
        kind = "ipv4" if ip.version == 4 else ("mapped" if ip.ipv4_mapped else "ipv6")
        kinds[kind] += 1
    hits = [asn for asn, _ in expected if asn is not None]
    metadata = reader.metadata()
    summary = {
        "database": args.db,
        "database_type": metadata.database_type,
        "seed": args.seed,
        "addresses": len(ips),
        "by_kind": kinds,
        "with_asn": len(hits),
        "asn_below_65536": sum(asn < 65536 for asn in hits),
        "agree": len(ips) - len(disagreements),
        "disagree": len(disagreements),
        "tdmon_seconds": round(tdmon_seconds, 3),
        "tdmon_startup_seconds": round(startup_seconds, 3),
        "reference_seconds": round(reference_seconds, 3),
        "tdmon_stderr": run.stderr.strip(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
