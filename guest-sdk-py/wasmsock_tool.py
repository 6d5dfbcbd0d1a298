"""wasmsock_tool: build and test wasmsock plugins written in Python.

    python3 wasmsock_tool.py bindings OUT          the contract's Python bindings (wit_world) into OUT
    python3 wasmsock_tool.py build [DIR] [-o OUT]  DIR/app.py -> a wasm component (componentize-py)
    python3 wasmsock_tool.py test [DIR]            DIR/tests/test_*.py with unittest, against TestHost

The contract is read from the wit/ directory next to this SDK (the repository's), or from
WASMSOCK_WIT; the bindings are generated from it every time, never copied by hand, so new
exports and host functions reach plugins at their next build. It lives beside the wasmsock_sdk
package, not in it: importing the SDK needs the generated bindings, which this command makes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SDK_ROOT = Path(__file__).resolve().parent  # the directory holding wasmsock_sdk/
WORLD = "plugin"
ENTRY = "app"


def die(msg: str) -> None:
    print(f"wasmsock_tool: {msg}", file=sys.stderr)
    sys.exit(1)


def wit_dir() -> Path:
    env = os.environ.get("WASMSOCK_WIT")
    d = Path(env).resolve() if env else SDK_ROOT.parent / "wit"
    if not (d / "wasmsock.wit").is_file():
        die(f"no contract at {d} (set WASMSOCK_WIT to the wit/ directory)")
    return d


def componentize_py(*args: str) -> None:
    try:
        import componentize_py  # noqa: F401
    except ImportError:
        die("componentize-py is not installed: python3 -m pip install componentize-py==0.25.1")
    code = "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()"
    r = subprocess.run([sys.executable, "-c", code, *args])
    if r.returncode != 0:
        die(f"componentize-py {args[4] if len(args) > 4 else ''} failed (see above)")


def bindings(out: Path) -> Path:
    """The bindings for the current contract, regenerated when wit/ changes."""
    wit = wit_dir()
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(wit.glob("*.wit")))).hexdigest()[:16]
    stamp = out / ".wit-hash"
    if stamp.is_file() and stamp.read_text() == digest:
        return out
    # componentize-py refuses to write into an existing directory: start afresh.
    shutil.rmtree(out, ignore_errors=True)
    componentize_py("-d", str(wit), "-w", WORLD, "-q", "bindings", str(out))
    stamp.write_text(digest)
    return out


def project_name(d: Path) -> str:
    pyproject = d / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
        if name:
            return name
    return d.name


def build(d: Path, out: Path | None) -> None:
    if not (d / f"{ENTRY}.py").is_file():
        die(f"{d}: no plugin module ({ENTRY}.py defining `Handler = export(YourPlugin)`)")
    name = project_name(d)
    out = (out or d / "dist" / f"{name}.wasm").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    componentize_py(
        "-d", str(wit_dir()), "-w", WORLD, "-q", "componentize",
        "-p", str(d), "-p", str(SDK_ROOT), ENTRY, "-o", str(out),
    )  # fmt: skip
    ms = int((time.monotonic() - started) * 1000)
    print(f"wasmsock_tool: built {out} ({out.stat().st_size} bytes, {ms} ms)", file=sys.stderr)


def test(d: Path) -> None:
    tests = d / "tests"
    if not any(tests.glob("test_*.py")):
        die(f"{d}: no tests (tests/test_*.py)")
    gen = bindings(d / "build" / "bindings")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(gen), str(SDK_ROOT), str(d), env.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "unittest", "discover", "-s", str(tests), "-v"]
    sys.exit(subprocess.run(cmd, env=env).returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("bindings", "build", "test"):
        die("usage: wasmsock_tool.py bindings OUT | build [DIR] [-o OUT.wasm] | test [DIR]")
    cmd, rest = argv[0], argv[1:]
    out = None
    if "-o" in rest:
        i = rest.index("-o")
        if i + 1 >= len(rest):
            die("-o needs a file name")
        out = Path(rest[i + 1])
        rest = rest[:i] + rest[i + 2 :]
    target = Path(rest[0] if rest else ".").resolve()
    if cmd == "bindings":
        print(bindings(target))
    elif cmd == "build":
        build(target, out)
    else:
        test(target)


if __name__ == "__main__":
    main(sys.argv[1:])
