#!/usr/bin/env bash
# How much CPU a runaway plugin call costs the server under `deadline = "50ms"`: an endless loop
# (the `hostile` test plugin, message `loop`) on N fresh connections, the server's CPU time read
# from /proc before and after. Prints the wall time from `loop` to the 1011 as well.
# Needs the test build (`cargo test --workspace --no-run` builds both the CLI and the plugin),
# Python `websockets` and `openssl`. Usage: scripts/deadline-cpu.sh [N=40]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-40}
bin=target/debug/wasmsock-under-test
plugin=target/wasm-tests/wasm32-wasip2/plugin/hostile.wasm
[ -x "$bin" ] && [ -f "$plugin" ] || { echo "build first: cargo test --workspace --no-run" >&2; exit 1; }
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/plugins" "$dir/state" && cp "$plugin" "$dir/plugins/"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
  -out "$dir/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/wasmsock.toml" <<TOML
listen = "127.0.0.1:$port"
plugin_dir = "$dir/plugins"
state_dir = "$dir/state"
[admin]
listen = "off"
[tls]
cert = "$dir/cert.pem"
key = "$dir/key.pem"
[plugins.hostile]
deadline = "50ms"
max_failures = 100000
[[routes]]
path = "/hostile"
plugins = ["hostile"]
TOML
RUST_LOG=warn "$bin" serve --config "$dir/wasmsock.toml" 2>"$dir/server.log" &
pid=$!
python3 - "$port" "$n" "$pid" <<'PY'
import asyncio, os, ssl, sys, time, websockets
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
url = f"wss://127.0.0.1:{port}/hostile"
def cpu_ms():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")
async def one(text="loop"):
    async with websockets.connect(url, ssl=ctx) as ws:
        t = time.monotonic(); await ws.send(text)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            return (time.monotonic() - t) * 1000, e.rcvd.code if e.rcvd else None
    return (time.monotonic() - t) * 1000, None
async def main():
    for _ in range(50):  # until the server listens
        try:
            await one(); break
        except OSError:
            await asyncio.sleep(0.2)
    # The same connections with a message the plugin echoes: what a connection costs without the loop.
    before = cpu_ms()
    for _ in range(n):
        await one("hello")
    plain = (cpu_ms() - before) / n
    before = cpu_ms()
    r = [await one() for _ in range(n)]
    looping = (cpu_ms() - before) / n
    ms = sorted(x[0] for x in r)
    print(f"{n} loop calls, close codes {sorted(set(x[1] for x in r))}: server CPU {looping:.0f} ms per connection "
          f"with the loop, {plain:.0f} ms with an echo instead, so {looping - plain:.0f} ms for the loop call; "
          f"wall p50 {ms[len(ms)//2]:.0f} ms, max {ms[-1]:.0f} ms")
asyncio.run(main())
PY
