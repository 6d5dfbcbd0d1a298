#!/usr/bin/env bash
# Server CPU per echoed message, before and after a change: two checkouts, each with its own
# release build (`cargo build --release -p wasmsock`) and its own echo plugin (built by its
# `wasmsock build`). Alternates before/after and the echo plugin (/echo) with the built-in echo
# (/native) ROUNDS times through scripts/vs-go.sh (a fresh server per run on CPU 0, the Go load
# client wsload on CPU 1), so a loaded machine weighs on every side alike, and prints the
# medians and the ratios the issues ask for: plugin route after/before, and plugin/built-in
# within each build.
#
#   scripts/ab-echo-cpu.sh BEFORE_DIR AFTER_DIR [ROUNDS] [wsload args...]
#   scripts/ab-echo-cpu.sh /work/before /work/after 8 -c 100 -n 1000 -s 64
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-8}
shift $(($# < 3 ? $# : 3))
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(-c 100 -n 1000 -s 64)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# vs-go.sh labels a side by the name it is given: "before", "after".
ln -s "$before" "$work/before"
ln -s "$after" "$work/after"
"$here/vs-go.sh" "$work/results" "$rounds" "$work/before" "$work/before:native" "$work/after" "$work/after:native" \
    -- "${load[@]}"

python3 - "$work/results" "${load[*]}" "$rounds" <<'PY'
import json, statistics, sys
cpu = {}
for line in open(sys.argv[1]):
    label, _, js = line.strip().partition(" ")
    run = json.loads(js)
    assert run["errors"] == 0, run
    side, _, native = label.partition(":")
    cpu.setdefault((side, "/native" if native else "/echo"), []).append(run["server_cpu_us_per_msg"])
m = {k: statistics.median(v) for k, v in cpu.items()}
print(f"wsload {sys.argv[2]}, {sys.argv[3]} alternated rounds; server CPU per message, median (all runs)\n")
print("| build | echo plugin (/echo) | built-in echo (/native) | plugin / built-in |")
print("|---|---|---|---|")
for side in ("before", "after"):
    runs = lambda p: ", ".join(f"{x:.2f}" for x in cpu[(side, p)])
    print(f"| {side} | {m[(side, '/echo')]:.2f} µs ({runs('/echo')}) | {m[(side, '/native')]:.2f} µs ({runs('/native')}) | {m[(side, '/echo')] / m[(side, '/native')]:.3f} |")
rel = (m[("after", "/echo")] / m[("after", "/native")]) / (m[("before", "/echo")] / m[("before", "/native")])
print(f"\nplugin route after/before: {m[('after', '/echo')] / m[('before', '/echo')]:.3f}; "
      f"against the built-in echo of the same build: {rel:.3f}")
PY
