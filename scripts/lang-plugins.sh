#!/usr/bin/env bash
# Builds the JavaScript/TypeScript and Python plugins the integration tests load (the examples
# in plugins/ and the test plugins in tests/plugins/) into target/lang-plugins/NAME.wasm, after
# running their unit tests (Node's test runner, Python's unittest, against each SDK's TestHost).
#
# The toolchains are slow (10-30 s a plugin), so this is not part of the Rust build: the
# integration tests run this script once per test process, and a plugin is rebuilt only when
# its sources, the SDK or wit/ changed (a hash stamp beside each .wasm). Needs node/npm (the
# SDK's npm packages are installed from its lock file here) and componentize-py (test.sh
# installs it). Prints the output directory on the last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${WASMSOCK_LANG_PLUGINS:-$root/target/lang-plugins}"
mkdir -p "$out"

js_plugins=(plugins/echo-js plugins/rooms-ts tests/plugins/hostile-js)
py_plugins=(plugins/echo-py plugins/rooms-py tests/plugins/hostile-py)

need() { command -v "$1" >/dev/null || { echo "lang-plugins: $1 is not installed ($2)" >&2; exit 3; }; }
need node "apt-get install nodejs npm"
need npm "apt-get install npm"
python3 -c 'import componentize_py' 2>/dev/null \
  || { echo "lang-plugins: componentize-py is not installed (python3 -m pip install componentize-py==0.25.1)" >&2; exit 3; }

sdk_js="$root/guest-sdk-js"
# The SDK's own tools (componentize-js, jco, esbuild, typescript), exactly as locked.
if [ ! -d "$sdk_js/node_modules/@bytecodealliance/componentize-js" ] \
  || [ "$sdk_js/package-lock.json" -nt "$sdk_js/node_modules/.package-lock.json" ]; then
  (cd "$sdk_js" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# What a plugin's build depends on: its files, its SDK, the contract, and the tool versions.
fingerprint() {
  local dir="$1" sdk="$2"
  {
    (cd "$root" && find "$dir" "$sdk" wit -type f \
      -not -path '*/node_modules/*' -not -path '*/dist/*' -not -path '*/build/*' \
      -not -path '*/__pycache__/*' -not -path "$sdk/types/*" -not -name 'package-lock.json' -print0 \
      | sort -z | xargs -0 sha256sum)
    node --version
    python3 -c 'import importlib.metadata as m; print(m.version("componentize-py"))'
  } | sha256sum | cut -c1-32
}

build() {
  local kind="$1" dir="$2" name stamp fp
  name="$(basename "$dir")"
  stamp="$out/$name.stamp"
  if [ "$kind" = js ]; then fp="$(fingerprint "$dir" guest-sdk-js)"; else fp="$(fingerprint "$dir" guest-sdk-py)"; fi
  if [ -f "$out/$name.wasm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$fp" ]; then
    return
  fi
  echo "lang-plugins: building $dir" >&2
  if [ "$kind" = js ]; then
    (cd "$root/$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
    if [ -d "$root/$dir/test" ]; then node "$sdk_js/bin/wasmsock-js.js" test "$root/$dir" >&2; fi
    node "$sdk_js/bin/wasmsock-js.js" build "$root/$dir" -o "$out/$name.wasm"
  else
    if [ -d "$root/$dir/tests" ]; then python3 "$root/guest-sdk-py/wasmsock_tool.py" test "$root/$dir" >&2; fi
    python3 "$root/guest-sdk-py/wasmsock_tool.py" build "$root/$dir" -o "$out/$name.wasm"
  fi
  echo "$fp" > "$stamp"
}

for d in "${js_plugins[@]}"; do build js "$d"; done
for d in "${py_plugins[@]}"; do build py "$d"; done
echo "$out"
