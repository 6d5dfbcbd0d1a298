//! The plugin author's loop: `wasmsock new`, `cargo test` with the SDK's test host,
//! `wasmsock build --install` into a running server, and `wasmsock check`.

use std::path::Path;
use std::process::Command;

use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_wasmsock-under-test");

/// A target directory shared by every scaffolded crate, so repeated runs rebuild little.
fn scaffold_target() -> std::path::PathBuf {
    Path::new(env!("WASM_PLUGIN_DIR")).ancestors().nth(2).unwrap().join("scaffold-tests")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run command");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffold_build_install_and_talk_to_a_new_plugin() {
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = run(Command::new(BIN).args(["new", "shout", "--template", "echo", "--dir"]).arg(work.path()));
    assert!(ok, "{out}");
    let krate = work.path().join("shout");
    for f in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(krate.join(f).is_file(), "{f} missing");
    }
    // Make it shout, keeping the template's structure.
    let lib = krate.join("src/lib.rs");
    let src = std::fs::read_to_string(&lib).unwrap();
    let src = src.replace(
        "let _ = conn.send(msg);",
        "let _ = conn.send_text(&msg.as_text().unwrap_or_default().to_uppercase());",
    );
    let src = src.replace("vec![Message::from(\"hi\")]", "vec![Message::from(\"HI\")]");
    std::fs::write(&lib, src).unwrap();

    // Its own unit tests run natively, with the SDK's test host.
    let (ok, out) =
        run(Command::new("cargo").arg("test").current_dir(&krate).env("CARGO_TARGET_DIR", scaffold_target()));
    assert!(ok && out.contains("test result: ok. 1 passed"), "{out}");

    // Build and install into a running server's plugin directory: live at once.
    let mut s = Setup::new("[[routes]]\npath = \"/shout\"\nplugins = [\"shout\"]\n").start().await;
    assert_eq!(s.refused("/shout").await.0, 503);
    let (ok, out) = run(Command::new(BIN)
        .arg("build")
        .arg(&krate)
        .arg("--install")
        .arg(&s.plugin_dir)
        .env("CARGO_TARGET_DIR", scaffold_target()));
    assert!(ok, "{out}");
    assert!(out.contains("installed shout"), "{out}");
    assert!(matches!(s.next_outcome("shout").await, LoadOutcome::Loaded { .. }));
    let mut ws = s.connect("/shout").await;
    send(&mut ws, "hello").await;
    assert_eq!(recv_text(&mut ws).await, "HELLO");
}

#[test]
fn every_template_scaffolds_a_crate_whose_tests_pass() {
    let work = tempfile::tempdir().unwrap();
    for template in ["auth", "rooms", "api"] {
        let name = format!("my-{template}");
        let (ok, out) = run(Command::new(BIN).args(["new", &name, "--template", template, "--dir"]).arg(work.path()));
        assert!(ok, "{out}");
        let (ok, out) = run(Command::new("cargo")
            .arg("test")
            .current_dir(work.path().join(&name))
            .env("CARGO_TARGET_DIR", scaffold_target()));
        assert!(ok && out.contains("test result: ok. 1 passed"), "{template}: {out}");
    }
    // A name that cannot be a plugin, or an existing directory, is refused.
    let (ok, out) = run(Command::new(BIN).args(["new", "../escape", "--dir"]).arg(work.path()));
    assert!(!ok && out.contains("invalid plugin name"), "{out}");
    let (ok, out) = run(Command::new(BIN).args(["new", "my-auth", "--dir"]).arg(work.path()));
    assert!(!ok && out.contains("already exists"), "{out}");
}

#[test]
fn check_accepts_good_plugins_and_explains_bad_ones() {
    let (ok, out) = run(Command::new(BIN).arg("check").arg(wasm("echo")));
    assert!(ok, "{out}");
    for expected in [
        "plugin:    echo",
        "contract:  wasmsock:plugin@0.2.0",
        "wasmsock:plugin/handler@0.2.0",
        "wasi:cli/stdout",
        "ok: compatible",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in {out}");
    }
    // Imports the host does not provide are listed as such (they trap when called).
    let (ok, out) = run(Command::new(BIN).arg("check").arg(wasm("hostile")));
    assert!(ok, "{out}");
    // (The patch version is whatever the plugin's WASI crates were built against.)
    let sockets = out.lines().find(|l| l.contains("wasi:sockets/tcp-create-socket@0.2."));
    assert!(sockets.is_some_and(|l| l.ends_with("(not provided: calls trap)")), "{out}");

    let (ok, out) = run(Command::new(BIN).arg("check").arg(wasm("wrong-contract")));
    assert!(!ok);
    assert!(
        out.contains("built for contract wasmsock:plugin@0.9.0") && out.contains("speaks wasmsock:plugin@0.2.0"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"MZ\x90\x00 not wasm at all").unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check").arg(&corrupt));
    assert!(!ok && out.contains("not a WebAssembly file"), "{out}");
    // A valid component that is not a plugin (the empty component).
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check").arg(&empty));
    assert!(!ok && out.contains("not a wasmsock plugin"), "{out}");
    // A core module, not a component.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (ok, out) = run(Command::new(BIN).arg("check").arg(&core));
    assert!(!ok && out.contains("not a valid wasm component"), "{out}");
}
