//! Builds the example plugins and the test plugins for wasm32-wasip2, so `cargo test` alone
//! produces every `.wasm` the integration tests load (the pattern of wasmtime's test-programs
//! and Spin's test-components). The nested build has its own target directory, so it never
//! waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: &[&str] = &[
    "echo",
    "auth",
    "rooms",
    "proxy",
    "api",
    "pusher",
    "test-probe",
    "test-probe-v2",
    "test-echo-v2",
    "test-hostile",
    "test-wrong-contract",
    "test-legacy-v0-1",
    "test-no-timer",
    "test-outbound",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tests/ lives in the workspace root").to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>/out.
    let target_dir = out_dir.ancestors().nth(4).map(Path::to_path_buf).unwrap_or_else(|| root.join("target"));
    let wasm_target_dir = target_dir.join("wasm-tests");

    for dir in ["wit", "guest-sdk", "limits", "plugins", "tests/plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", "wasm32-wasip2", "--profile", "plugin"])
        .env("CARGO_TARGET_DIR", &wasm_target_dir);
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_LTO",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("running cargo to build the wasm plugins");
    if !output.status.success() {
        panic!(
            "building the wasm plugins failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm_dir = wasm_target_dir.join("wasm32-wasip2").join("plugin");
    println!("cargo:rustc-env=WASM_PLUGIN_DIR={}", wasm_dir.display());
}
