#!/usr/bin/env bash
# Runs every test: unit tests, plugin tests (native, with the SDK's test host) and the
# integration tests (real server, real TLS, real wasm plugins, real clients). On a fresh machine
# run as root it first installs what the tests use: the wasm target, and the Debian/PyPI/npm
# clients and servers (chromium, redis-server, python websockets, wscat). Without them, the
# tests that need them say so and skip.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v redis-server >/dev/null || need+=(redis-server)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q websockets
  command -v wscat >/dev/null || npm install -g --silent wscat >/dev/null 2>&1 || true
fi
cargo test --workspace "$@"
