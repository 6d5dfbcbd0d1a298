#!/usr/bin/env bash
# Server CPU per echoed message, before and after a change: two checkouts, each with its own
# release build (`cargo build --release --workspace`, which also builds its `wasmsock-bench`)
# and its own echo plugin (`target/wasm32-wasip2/plugin/echo.wasm`, built by
# `wasmsock-bench`). Alternates before/after and the echo plugin (/echo) with the built-in echo
# (/native) ROUNDS times, so a loaded machine weighs on every side alike, and prints the
# medians and the ratios the issues ask for: plugin route after/before, and plugin/built-in
# within each build. Server on CPU 0, the Go load client (wsload) on CPU 1.
#
#   scripts/ab-echo-cpu.sh BEFORE_DIR AFTER_DIR [ROUNDS] [wsload args...]
#   scripts/ab-echo-cpu.sh /work/before /work/after 8 -c 100 -n 1000 -s 64
set -euo pipefail

before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-8}
shift $(($# < 3 ? $# : 3))
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(-c 100 -n 1000 -s 64)
wsload=${WSLOAD:-$(dirname "$0")/../../shared/bench/bin/wsload}
[ -x "$wsload" ] || { echo "no wsload at $wsload (set WSLOAD; ../shared/bench/build.sh builds it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Starts SIDE's server on a free port; sets $pid and $port.
start() {
    local side=$1 dir=$2
    local base="$work/$side"
    mkdir -p "$base/plugins"
    cp "$dir/target/wasm32-wasip2/plugin/echo.wasm" "$base/plugins/echo.wasm"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$base/wasmsock.toml" <<EOF
listen = "127.0.0.1:$port"
plugin_dir = "$base/plugins"
state_dir = "$base/state"
[admin]
listen = "off"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/native"
builtin = "echo"
EOF
    RUST_LOG=warn taskset -c 0 "$dir/target/release/wasmsock" serve --config "$base/wasmsock.toml" 2>"$base/log" &
    pid=$!
    for _ in $(seq 200); do
        if (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then sleep 0.3; return; fi
        sleep 0.05
    done
    echo "$side: the server did not start: $(cat "$base/log")" >&2
    exit 1
}

results="$work/results"
for round in $(seq "$rounds"); do
    for side in before after; do
        dir=$before
        [ "$side" = after ] && dir=$after
        start "$side" "$dir"
        for path in /echo /native; do
            out=$(taskset -c 1 "$wsload" -url "wss://localhost:$port$path" -cacert "$work/$side/state/dev-cert.pem" \
                -server-pid "$pid" "${load[@]}")
            cpu=$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); assert v["errors"]==0, v; print(v["server_cpu_us_per_msg"])' "$out")
            echo "$side $path $cpu" >>"$results"
            echo "round $round: $side $path ${cpu} µs/msg" >&2
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done

python3 - "$results" "${load[*]}" "$rounds" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cpu = {}
for side, path, v in rows:
    cpu.setdefault((side, path), []).append(float(v))
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
EOF
