#!/usr/bin/env bash
# Autobahn|Testsuite conformance: runs the fuzzingclient against wasmsock's echo route over
# ws:// and wss:// and compares every case's outcome with expected-results.json (the way
# tokio-tungstenite's scripts/autobahn-server.sh does). Exit 1 on any difference.
#
#   scripts/autobahn/run.sh [CASES]      CASES defaults to "*" (all); e.g. "1.*" or "9.1.1"
#   WASMSOCK_BIN=target/release/wasmsock scripts/autobahn/run.sh
#   UPDATE=1 scripts/autobahn/run.sh     rewrite expected-results.json from this run
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/scripts/autobahn
cases=${1:-*}
bin=${WASMSOCK_BIN:-$root/target/debug/wasmsock}
PY2=${PY2:-$HOME/.pyenv/versions/2.7.18/bin/python}

[ -x "$PY2" ] || { echo "autobahn: Autobahn|Testsuite needs Python 2.7 at $PY2 (pyenv 2.7.18)" >&2; exit 1; }
"$PY2" -c 'import autobahntestsuite' 2>/dev/null || "$PY2" -m pip install -q -r "$here/requirements-py27.txt" 2>&1 | grep -v DEPRECATION || true
"$PY2" -c 'import autobahntestsuite' || { echo "autobahn: could not install autobahntestsuite" >&2; exit 1; }
[ -x "$bin" ] || (cd "$root" && cargo build -p wasmsock)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$bin" build "$root/plugins/echo" --install "$work/plugins" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
serve() { # name port [flags]
  local name=$1 port=$2; shift 2
  cat >"$work/$name.toml" <<TOML
listen = "127.0.0.1:$port"
plugin_dir = "$work/plugins"
state_dir = "$work/state"
[admin]
listen = "off"
[limits]
# Autobahn's case 9 sends messages up to 16 MiB.
max_message_size = "20MiB"
max_frame_size = "20MiB"
outbox_bytes = "64MiB"
[[routes]]
path = "/echo"
plugins = ["echo"]
TOML
  RUST_LOG=warn "$bin" serve --config "$work/$name.toml" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done
  echo "autobahn: the $name server did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}
ws_port=$(free_port); serve plain "$ws_port" --plain
wss_port=$(free_port); serve tls "$wss_port"

cat >"$work/spec.json" <<JSON
{"outdir": "$work/report",
 "servers": [{"agent": "ws", "url": "ws://127.0.0.1:$ws_port/echo"},
             {"agent": "wss", "url": "wss://localhost:$wss_port/echo"}],
 "cases": ["$cases"], "exclude-cases": [], "exclude-agent-cases": {}}
JSON
echo "autobahn: running cases $cases over ws:// and wss:// (a few minutes)"
(cd "$work" && SSL_CERT_FILE="$work/state/dev-cert.pem" timeout 2400 "$PY2" -m autobahntestsuite.wstest -m fuzzingclient -s spec.json >"$work/wstest.log" 2>&1) || {
  echo "autobahn: wstest failed:" >&2; tail -20 "$work/wstest.log" >&2; exit 1; }

python3 - "$work/report/index.json" "$here/expected-results.json" "$cases" "${UPDATE:-}" <<'PY'
import fnmatch, json, sys, collections
report, expected_path, pattern, update = sys.argv[1:5]
index = json.load(open(report))
got = {agent: {case: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
               for case, r in cases.items()} for agent, cases in index.items()}
key = lambda c: [int(x) for x in c.split(".")]
if update:
    merged = got["ws"]
    json.dump({c: merged[c] for c in sorted(merged, key=key)}, open(expected_path, "w"), indent=1)
    print(f"autobahn: wrote {expected_path}")
expected = json.load(open(expected_path))
bad = []
for agent, cases in got.items():
    counts = collections.Counter(r["behavior"] for r in cases.values())
    print(f"autobahn [{agent}]: {counts['OK']} OK, {counts['NON-STRICT']} non-strict, "
          f"{counts['INFORMATIONAL']} informational, {counts['UNIMPLEMENTED']} unimplemented, {counts['FAILED']} failed")
    for case, r in cases.items():
        want = expected.get(case)
        if want is None:
            bad.append(f"{agent} {case}: {r} (not in expected-results.json)")
        elif r != want:
            bad.append(f"{agent} {case}: got {r}, expected {want}")
    for case in expected:
        if fnmatch.fnmatch(case, pattern) and case not in cases:
            bad.append(f"{agent} {case}: did not run")
for b in sorted(bad, key=lambda s: s.split()[0]):
    print("autobahn: MISMATCH", b)
sys.exit(1 if bad else 0)
PY
