#!/usr/bin/env bash
# Builds wasmsock and the example plugins, then serves them on wss://localhost:8443 with a
# self-signed development certificate (written to .wasmsock/dev-cert.pem) and the example
# routes (/echo, /chat). Extra arguments go to `wasmsock serve` (e.g. --config my.toml).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release -p wasmsock
./target/release/wasmsock build plugins/echo plugins/auth plugins/rooms plugins/api plugins/pusher --install plugins/dist
exec ./target/release/wasmsock serve "$@"
