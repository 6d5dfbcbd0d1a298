#!/usr/bin/env bash
# Runs every test: unit, doc and plugin tests (native, with the SDK's test host) and the
# integration tests (real server, real TLS, real wasm plugins, real clients). On a fresh machine
# it first installs what the tests use, as root or through sudo: the wasm target, and the
# Debian/PyPI/npm clients and servers (chromium, redis-server, haproxy, python websockets, wscat, and
# Centrifugo's Python client cent in target/test-venv).
# Without them the tests that need them say SKIP, unless WASMSOCK_REQUIRE_TOOLS=1 (as in CI),
# where a missing tool fails its test.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
as_root=()
[ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && as_root=(sudo -n); }
if { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; } && command -v apt-get >/dev/null; then
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v script >/dev/null || need+=(bsdutils)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
  python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
  if [ ${#need[@]} -gt 0 ]; then
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  command -v wscat >/dev/null || "${as_root[@]}" npm install -g --silent wscat >/dev/null 2>&1 || echo "test.sh: could not install wscat" >&2
fi
python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q websockets
# Centrifugo's Python client, for the api plugin's tests, in a virtualenv of its own.
[ -x target/test-venv/bin/python3 ] || python3 -m venv target/test-venv
target/test-venv/bin/python3 -c 'import cent' 2>/dev/null || target/test-venv/bin/python3 -m pip install -q 'cent>=5,<6'
cargo test --workspace "$@"
