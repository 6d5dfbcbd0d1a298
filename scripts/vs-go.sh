#!/usr/bin/env bash
# wasmsock against the Go peer (../shared/bench: Gin + gorilla, its /rooms channel hub), in
# alternated rounds, so a busy machine weighs on every side alike. Each run starts a fresh
# server on CPU 0 and the Go load client (wsload) on CPU 1, over wss on 127.0.0.1, and appends
# "SIDE {wsload's JSON line}" to OUT; scripts/vs-go-summary.py prints the medians and the
# same-round ratios against the Go peer.
#
#   scripts/vs-go.sh OUT ROUNDS SIDE... -- [wsload args]
#
# SIDE: `go`; or a checkout (labelled by its directory's name) with a release build (`cargo build
# --release -p wasmsock`; its echo and rooms plugins are built with its `wasmsock build`), whose
# echo plugin (/echo) or built-in echo (`DIR:native`, /native) is measured; `-mode fanout`
# measures /rooms (the rooms plugin, presence events off) and the Go hub's /rooms instead.
# NEIGHBOUR=1 runs a CPU-burning loop on the server's core for the length of each run.
#
#   scripts/vs-go.sh /tmp/e.txt 4 . .:native go -- -c 100 -n 3000 -s 64
#   NEIGHBOUR=1 scripts/vs-go.sh /tmp/n.txt 3 . go -- -c 100 -n 400 -s 4096
#   scripts/vs-go.sh /tmp/f.txt 3 . go -- -mode fanout -c 5000 -n 40 -s 64
#   scripts/vs-go-summary.py /tmp/e.txt
set -euo pipefail

out=$1
rounds=$2
shift 2
sides=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sides+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(-c 100 -n 3000 -s 64)
kit=${KIT:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
[ -x "$kit/bin/wsload" ] || "$kit/build.sh" >&2
fanout=false
[[ " ${load[*]} " == *" -mode fanout "* ]] && fanout=true
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$kit/gencert.sh" "$work" >/dev/null
cert=$work/cert.pem
key=$work/key.pem

# Starts SIDE's server on a free port; sets $pid, $port and $route.
start() {
    local side=$1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    if [ "$side" = go ]; then
        route=/echo
        $fanout && route=/rooms
        taskset -c 0 "$kit/bin/wss-echo-gin" -addr "127.0.0.1:$port" -cert "$cert" -key "$key" 2>"$work/go.log" &
    else
        local dir=${side%:native}
        route=/echo
        [ "$dir" != "$side" ] && route=/native
        $fanout && route=/rooms
        local base=$work/side-$RANDOM
        mkdir -p "$base"
        # The side's own echo and rooms plugins, built as a user would (`wasmsock build`), once.
        local plugins=$work/plugins-$(echo "$dir" | md5sum | cut -c1-8)
        [ -d "$plugins" ] || "$dir/target/release/wasmsock" build "$dir/plugins/echo" "$dir/plugins/rooms" \
            --install "$plugins" >&2
        cp -r "$plugins" "$base/plugins"
        # The routes of wasmsock-bench's servers (bench/src/server.rs, ROUTES).
        cat >"$base/wasmsock.toml" <<EOF
listen = "127.0.0.1:$port"
plugin_dir = "$base/plugins"
state_dir = "$base/state"
[tls]
cert = "$cert"
key = "$key"
[server]
max_connections_per_ip = 50000
max_pending_handshakes_per_ip = 50000
[admin]
listen = "off"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/native"
builtin = "echo"
[[routes]]
path = "/rooms"
plugins = ["rooms"]
[plugins.rooms.config]
presence = "false"
publish_without_subscribe = "true"
EOF
        RUST_LOG=warn taskset -c 0 "$dir/target/release/wasmsock" serve --config "$base/wasmsock.toml" 2>"$base/log" &
    fi
    pid=$!
    for _ in $(seq 300); do
        if (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then sleep 0.5; return; fi
        sleep 0.05
    done
    echo "$side: the server did not start" >&2
    exit 1
}

for round in $(seq "$rounds"); do
    for side in "${sides[@]}"; do
        start "$side"
        burner=
        if [ -n "${NEIGHBOUR:-}" ]; then
            taskset -c 0 bash -c 'while :; do :; done' &
            burner=$!
            sleep 0.2
        fi
        line=$(taskset -c 1 "$kit/bin/wsload" -url "wss://localhost:$port$route" -cacert "$cert" -server-pid "$pid" "${load[@]}" | tail -1) || true
        [ -n "$burner" ] && { kill "$burner"; wait "$burner" 2>/dev/null || true; }
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        label=$side
        # The directory's name as given (a symlink keeps its own), with ":native" if asked.
        [ "$side" != go ] && label=$(basename "$(cd "${side%:native}" && pwd -L)")${side#"${side%:native}"}
        [ -n "$line" ] && echo "$label $line" >>"$out"
        echo "round $round: $label ${line:0:160}" >&2
    done
done
