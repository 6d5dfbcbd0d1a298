#!/usr/bin/env python3
"""Medians of scripts/vs-go.sh results, and each side's same-round ratios against a base side.

    scripts/vs-go-summary.py OUT [BASE]      (BASE: go by default)

A ratio is taken per round (a side's run against the base's run of the same round, both on the
machine as it was then) and the median of those is printed: on a shared machine single runs
scatter by +-20%, the paired ratios much less.
"""
import collections
import json
import statistics
import sys

ECHO = ["msgs_per_sec", "server_user_us_per_msg", "server_cpu_us_per_msg", "p50_us", "p99_us", "server_cpu_util",
        "rss_per_conn_kb"]
FANOUT = ["last_delivery_p50_us", "last_delivery_max_us", "server_cpu_us_per_delivery",
          "server_user_us_per_delivery", "deliveries_per_sec"]


def main():
    path = sys.argv[1]
    base = sys.argv[2] if len(sys.argv) > 2 else "go"
    runs = collections.defaultdict(list)
    failed = collections.Counter()
    for line in open(path):
        side, _, js = line.strip().partition(" ")
        if js:
            run = json.loads(js)
            if run.get("errors"):
                failed[side] += 1  # a run with a lost or wrong message measures nothing
            else:
                runs[side].append(run)
    for side, n in failed.items():
        print(f"{side}: {n} run(s) with errors left out", file=sys.stderr)
    if not runs:
        sys.exit(f"{path}: no results")
    first = next(iter(runs.values()))[0]
    keys = FANOUT if first.get("mode") == "fanout" else ECHO
    keys = [k for k in keys if any(k in r for v in runs.values() for r in v)]
    print("| side | runs | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for side, v in runs.items():
        cells = [f"{statistics.median(r.get(k, 0) for r in v):.2f}" for k in keys]
        print(f"| {side} | {len(v)} | " + " | ".join(cells) + " |")
    if base not in runs:
        return
    for side, v in runs.items():
        if side == base:
            continue
        pairs = list(zip(v, runs[base]))
        ratios = []
        for k in keys:
            rs = [a[k] / b[k] for a, b in pairs if b.get(k)]
            ratios.append(f"{k} {statistics.median(rs):.3f}" if rs else f"{k} -")
        print(f"{side} / {base}, same-round median of {len(pairs)}: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
