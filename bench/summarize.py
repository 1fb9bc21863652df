#!/usr/bin/env python3
"""Summarises bench/check.sh or bench/delay.sh results: per-run figures, medians
over the runs, and (check) ratios of tdmon against lychee measured in the same
run. Writes OUT_DIR/summary.json and OUT_DIR/summary.md, prints the latter.

  bench/summarize.py check|delay OUT_DIR
"""

import collections
import glob
import json
import os
import re
import statistics
import sys

KIB = 1024
MIB = 1024 * 1024


def read_time(path):
    """Wall seconds, CPU seconds and peak RSS (KiB) from `/usr/bin/time -v`."""
    text = open(path).read()

    def field(name):
        m = re.search(rf"{re.escape(name)}: (.*)", text)
        return m.group(1).strip() if m else None

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"wall_s": wall, "cpu_s": cpu, "rss_kib": int(field("Maximum resident set size (kbytes)"))}


def read_rc(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def big_url_bytes(stats_path, big_paths):
    """Per big URL: bytes the server wrote and requests it got."""
    stats = json.load(open(stats_path))
    per = [v for url, v in stats["urls"].items() if "/" + url.split("/", 3)[3] in big_paths]
    if not per:
        return None
    nbytes = sorted(v["bytes_sent"] for v in per)
    return {
        "big_urls_seen": len(per),
        "median_bytes": statistics.median(nbytes),
        "p90_bytes": nbytes[int(0.9 * (len(nbytes) - 1))],
        "max_bytes": nbytes[-1],
        "mean_bytes": sum(nbytes) / len(nbytes),
        "requests": sum(v["requests"] for v in per),
        "server_requests": stats["requests"],
        "server_connections": stats["connections"],
        "server_bytes": stats["bytes_sent"],
    }


def tdmon_outcomes(path):
    counts = collections.Counter()
    with open(path) as f:
        for line in f:
            if line.strip():
                counts[json.loads(line)["outcome"]] += 1
    return dict(counts)


def lychee_outcomes(path):
    try:
        report = json.load(open(path))
    except (OSError, ValueError):
        return None
    keys = ["total", "successful", "errors", "timeouts", "excludes", "redirects", "unknown", "unsupported", "cached"]
    return {k: report[k] for k in keys if k in report}


def wrk_rate(path):
    try:
        m = re.search(r"Requests/sec:\s+([\d.]+)", open(path).read())
    except OSError:
        return None
    return float(m.group(1)) if m else None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec=",.0f"):
    return "-" if v is None else format(v, spec)


def check(out):
    big_paths = {line.strip() for line in open(os.path.join(out, "big-paths.txt")) if line.strip()}
    urls = sum(1 for line in open(os.path.join(out, "urls-ip.tmpl")) if line.strip())
    runs = []
    for run_dir in sorted(glob.glob(os.path.join(out, "run-*")), key=lambda d: int(d.rsplit("-", 1)[1])):
        run = {"run": os.path.basename(run_dir)}
        for tool in ("tdmon", "lychee"):
            time_path = os.path.join(run_dir, f"{tool}.time")
            if not os.path.exists(time_path):
                continue
            r = read_time(time_path)
            r["exit"] = read_rc(os.path.join(run_dir, f"{tool}.rc"))
            r["checks_per_s"] = urls / r["wall_s"] if r["wall_s"] else None
            stats = os.path.join(run_dir, f"{tool}.stats.json")
            r["big"] = big_url_bytes(stats, big_paths) if os.path.exists(stats) else None
            if tool == "tdmon":
                r["outcomes"] = tdmon_outcomes(os.path.join(run_dir, "tdmon.out"))
            else:
                r["outcomes"] = lychee_outcomes(os.path.join(run_dir, "lychee.json"))
            big_stats = os.path.join(run_dir, f"{tool}-big.stats.json")
            if os.path.exists(big_stats):
                r["big_only"] = big_url_bytes(big_stats, big_paths)
                try:
                    lo = int(open(os.path.join(run_dir, f"{tool}-big.lo_bytes")).read())
                    r["big_only"]["lo_bytes_per_url"] = lo / len(big_paths)
                except (OSError, ValueError):
                    pass
            run[tool] = r
        run["wrk_keepalive_rps"] = wrk_rate(os.path.join(run_dir, "wrk-keepalive.out"))
        run["wrk_close_rps"] = wrk_rate(os.path.join(run_dir, "wrk-close.out"))
        if "tdmon" in run and "lychee" in run:
            t, l = run["tdmon"], run["lychee"]
            run["speed_ratio"] = t["checks_per_s"] / l["checks_per_s"]
            run["rss_ratio"] = t["rss_kib"] / l["rss_kib"]
        runs.append(run)

    def tool_median(tool, key):
        return med([r[tool][key] for r in runs if tool in r])

    def big_median(tool, key):
        return med([r[tool]["big"][key] for r in runs if tool in r and r[tool]["big"]])

    summary = {"urls": urls, "runs": runs, "median": {}}
    for tool in ("tdmon", "lychee"):
        summary["median"][tool] = {
            "checks_per_s": tool_median(tool, "checks_per_s"),
            "wall_s": tool_median(tool, "wall_s"),
            "cpu_s": tool_median(tool, "cpu_s"),
            "rss_kib": tool_median(tool, "rss_kib"),
            "big_median_bytes": big_median(tool, "median_bytes"),
            "big_max_bytes": big_median(tool, "max_bytes"),
            "big_requests": big_median(tool, "requests"),
            "big_only_median_bytes": med(
                [r[tool]["big_only"]["median_bytes"] for r in runs if tool in r and r[tool].get("big_only")]
            ),
            "big_only_lo_bytes_per_url": med(
                [r[tool]["big_only"].get("lo_bytes_per_url") for r in runs if tool in r and r[tool].get("big_only")]
            ),
        }
    summary["median"]["speed_ratio"] = med([r.get("speed_ratio") for r in runs])
    summary["median"]["rss_ratio"] = med([r.get("rss_ratio") for r in runs])
    summary["median"]["wrk_keepalive_rps"] = med([r["wrk_keepalive_rps"] for r in runs])
    summary["median"]["wrk_close_rps"] = med([r["wrk_close_rps"] for r in runs])

    m = summary["median"]
    lines = [
        f"Medians of {len(runs)} runs, {urls} URLs each.",
        "",
        "| | checks/s | wall s | CPU s | peak RSS MiB | bytes sent per big URL (median / max) | requests to big URLs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool in ("tdmon", "lychee"):
        t = m[tool]
        if t["wall_s"] is None:
            continue
        lines.append(
            f"| {tool} | {fmt(t['checks_per_s'])} | {fmt(t['wall_s'], '.2f')} | {fmt(t['cpu_s'], '.2f')} "
            f"| {fmt(t['rss_kib'] and t['rss_kib'] / KIB, '.1f')} "
            f"| {fmt(t['big_median_bytes'] and t['big_median_bytes'] / KIB, ',.1f')} KiB / "
            f"{fmt(t['big_max_bytes'] and t['big_max_bytes'] / KIB, ',.1f')} KiB | {fmt(t['big_requests'])} |"
        )
    lines += [""]
    lines += [
        "Big URLs alone (1,000 URLs with 5 MiB bodies, one request each):",
        "",
        "| | written by the server per URL (median) | bytes on lo per URL (both directions, all headers) |",
        "| --- | ---: | ---: |",
    ]
    for tool in ("tdmon", "lychee"):
        t = m[tool]
        if t["big_only_median_bytes"] is None:
            continue
        lines.append(
            f"| {tool} | {fmt(t['big_only_median_bytes'] / KIB, ',.1f')} KiB "
            f"| {fmt(t['big_only_lo_bytes_per_url'] and t['big_only_lo_bytes_per_url'] / KIB, ',.1f')} KiB |"
        )
    lines += [
        "",
        "| | ceiling |",
        "| --- | ---: |",
        f"| wrk, keep-alive | {fmt(m['wrk_keepalive_rps'])} req/s |",
        f"| wrk, `Connection: close` | {fmt(m['wrk_close_rps'])} req/s |",
        "",
        f"tdmon/lychee checks/s (median of per-run ratios): {fmt(m['speed_ratio'], '.2f')}; "
        f"tdmon/lychee peak RSS: {fmt(m['rss_ratio'], '.3f')}",
        "",
        "| run | tdmon checks/s | lychee checks/s | speed ratio | tdmon RSS MiB | lychee RSS MiB | RSS ratio | wrk keep-alive | wrk close |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        t, l = r.get("tdmon", {}), r.get("lychee", {})
        lines.append(
            f"| {r['run']} | {fmt(t.get('checks_per_s'))} | {fmt(l.get('checks_per_s'))} | {fmt(r.get('speed_ratio'), '.2f')} "
            f"| {fmt(t.get('rss_kib') and t['rss_kib'] / KIB, '.1f')} | {fmt(l.get('rss_kib') and l['rss_kib'] / KIB, '.1f')} "
            f"| {fmt(r.get('rss_ratio'), '.3f')} | {fmt(r['wrk_keepalive_rps'])} | {fmt(r['wrk_close_rps'])} |"
        )
    lines += ["", "Outcomes (last run):"]
    last = runs[-1] if runs else {}
    for tool in ("tdmon", "lychee"):
        if tool in last:
            lines.append(f"- {tool} (exit {last[tool]['exit']}): {json.dumps(last[tool]['outcomes'], sort_keys=True)}")
    return summary, lines


def delay(out):
    urls = sum(1 for line in open(os.path.join(out, "urls-ip.tmpl")) if line.strip())
    runs = []
    for run_dir in sorted(glob.glob(os.path.join(out, "run-*")), key=lambda d: int(d.rsplit("-", 1)[1])):
        r = read_time(os.path.join(run_dir, "tdmon.time"))
        r["run"] = os.path.basename(run_dir)
        r["exit"] = read_rc(os.path.join(run_dir, "tdmon.rc"))
        r["checks_per_s"] = urls / r["wall_s"]
        r["outcomes"] = tdmon_outcomes(os.path.join(run_dir, "tdmon.out"))
        runs.append(r)
    m = {k: med([r[k] for r in runs]) for k in ("wall_s", "cpu_s", "rss_kib", "checks_per_s")}
    summary = {"urls": urls, "runs": runs, "median": m}
    lines = [
        f"Medians of {len(runs)} runs, {urls} URLs each answering after 1 s.",
        "",
        "| run | wall s | CPU s | checks/s | peak RSS MiB | outcomes |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r['run']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['checks_per_s']:,.0f} "
            f"| {r['rss_kib'] / KIB:.1f} | {json.dumps(r['outcomes'], sort_keys=True)} |"
        )
    lines.append(
        f"| median | {fmt(m['wall_s'], '.2f')} | {fmt(m['cpu_s'], '.2f')} | {fmt(m['checks_per_s'])} "
        f"| {fmt(m['rss_kib'] and m['rss_kib'] / KIB, '.1f')} | |"
    )
    return summary, lines


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "delay"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, out = sys.argv[1], sys.argv[2]
    summary, lines = check(out) if kind == "check" else delay(out)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
