//! Plugins written in JavaScript/TypeScript (componentize-js) and Python (componentize-py),
//! served by the real server over real TLS to real WebSocket clients: the examples, a live
//! reload from TypeScript to Python that keeps the host-held state, and the hostile cases.
//!
//! The plugins are built by `scripts/lang-plugins.sh` (run once per test process: it rebuilds
//! only what changed, into target/lang-plugins/), not by the Rust build, whose time they would
//! triple. Without node/npm or componentize-py these tests skip, except in CI
//! (`WASMSOCK_REQUIRE_TOOLS`), where `test.sh` installs both and they must run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

/// Exit code of the script when a toolchain is missing (anything else non-zero is a failure).
const TOOL_MISSING: i32 = 3;

/// Where the built plugins are; `None` when the toolchains are absent (the test then skips).
fn built() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, (Option<i32>, String)>> = OnceLock::new();
    let result = DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace root");
        let out = Command::new("bash")
            .arg(root.join("scripts/lang-plugins.sh"))
            .output()
            .map_err(|e| (None, format!("cannot run scripts/lang-plugins.sh: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            // tsc writes its type errors to stdout, the script its own messages to stderr.
            let last = |text: &str| {
                let tail: Vec<String> = text.lines().rev().take(40).map(str::to_owned).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            let stdout = String::from_utf8_lossy(&out.stdout);
            return Err((out.status.code(), format!("{}\n--- stdout:\n{}", last(&stderr), last(&stdout))));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(PathBuf::from(stdout.lines().last().unwrap_or_default().trim()))
    });
    match result {
        Ok(dir) => Some(dir.clone()),
        Err((Some(TOOL_MISSING), msg)) => {
            skip_without(&format!("the JavaScript/Python plugin toolchain ({})", msg.trim()));
            None
        }
        Err((_, msg)) => panic!("building the JavaScript/Python plugins failed (scripts/lang-plugins.sh):\n{msg}"),
    }
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

async fn echoes(s: &TestServer, path: &str) {
    let mut ws = s.connect(path).await;
    send(&mut ws, "hello ✓").await;
    assert_eq!(recv_text(&mut ws).await, "hello ✓", "{path}");
    ws_send(&mut ws, Message::Binary(vec![0u8, 159, 255].into())).await;
    match next_data(&mut ws).await {
        Some(Message::Binary(b)) => assert_eq!(&b[..], &[0, 159, 255], "{path}"),
        other => panic!("{path}: expected the binary message back, got {other:?}"),
    }
    ws.close(None).await.unwrap();
}

async fn ws_send(ws: &mut Ws, msg: Message) {
    use futures_util::SinkExt;
    ws.send(msg).await.unwrap();
}

async fn json(ws: &mut Ws) -> serde_json::Value {
    let text = recv_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn send_json(ws: &mut Ws, v: serde_json::Value) {
    send(ws, &v.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_echo_plugins_serve_wss_beside_rust() {
    let Some(dir) = built() else { return };
    let s = Setup::new(
        r#"
[[routes]]
path = "/js"
plugins = ["echo-js"]
[[routes]]
path = "/py"
plugins = ["echo-py"]
[[routes]]
path = "/rust"
plugins = ["echo"]
"#,
    )
    .plugin_file("echo-js", &file(&dir, "echo-js"))
    .plugin_file("echo-py", &file(&dir, "echo-py"))
    .plugin("echo", "echo")
    .start()
    .await;
    for path in ["/js", "/py", "/rust"] {
        echoes(&s, path).await;
    }
    // Many round trips on one connection each: the instance is reused, not rebuilt per message.
    for path in ["/js", "/py"] {
        let mut ws = s.connect(path).await;
        for i in 0..200 {
            send(&mut ws, &i.to_string()).await;
            assert_eq!(recv_text(&mut ws).await, i.to_string());
        }
    }
    let listing = s.plugin_listing("echo-js").await;
    assert_eq!(listing["errors"], 0, "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_fan_out_in_typescript_then_in_python_after_a_live_reload_that_keeps_state() {
    let Some(dir) = built() else { return };
    let mut s = Setup::new(
        r#"
[[routes]]
path = "/rooms"
plugins = ["rooms"]
"#,
    )
    .plugin_file("rooms", &file(&dir, "rooms-ts"))
    .start()
    .await;
    let mut ada = s.connect("/rooms?user=ada").await;
    let mut bob = s.connect("/rooms?user=bob").await;
    for ws in [&mut ada, &mut bob] {
        send_json(ws, serde_json::json!({"event": "subscribe", "channel": "news"})).await;
        assert_eq!(json(ws).await["event"], "subscribed");
    }
    send_json(&mut ada, serde_json::json!({"event": "publish", "channel": "news", "data": {"n": 1}})).await;
    let got = json(&mut bob).await;
    assert_eq!(got, serde_json::json!({"event": "message", "channel": "news", "data": {"n": 1}, "from": "ada"}));

    // The same plugin name, now Python: swapped live under the open connections.
    let dropped = Instant::now();
    let outcome = s.install_path("rooms", &file(&dir, "rooms-py"), Duration::from_secs(120)).await;
    assert!(matches!(outcome, LoadOutcome::Loaded { replaced: true, .. }), "{outcome:?}");
    eprintln!("rooms: Python code serving {:?} after the file was dropped", dropped.elapsed());

    // Memberships (host), the publish count (key/value) and ada's attachment survived.
    send_json(&mut ada, serde_json::json!({"event": "publish", "channel": "news", "data": {"n": 2}})).await;
    let got = json(&mut bob).await;
    assert_eq!(got, serde_json::json!({"event": "message", "channel": "news", "data": {"n": 2}, "from": "ada"}));
    send_json(&mut ada, serde_json::json!({"event": "stats", "channel": "news"})).await;
    let stats = json(&mut ada).await;
    assert_eq!(
        stats,
        serde_json::json!({"event": "stats", "channel": "news", "published": 2, "members": 2, "sent": 2}),
        "state kept across the reload from TypeScript to Python"
    );
    send(&mut bob, "not json").await;
    assert_eq!(json(&mut bob).await["event"], "error");
}

const HOSTILE: &str = r#"
[[routes]]
path = "/js"
plugins = ["hostile-js"]
[[routes]]
path = "/py"
plugins = ["hostile-py"]
[[routes]]
path = "/echo"
plugins = ["echo"]
# The witness reads only between steps, which on a loaded machine can be more than a minute
# apart: no heartbeat may take its silence for a dead peer.
limits = { ping_interval = "0s" }
# The default max_memory (64 MiB): the memory bomb must hit it, and ordinary calls fit under it.
[plugins.hostile-js]
deadline = "200ms"
max_failures = 1000
[plugins.hostile-py]
deadline = "200ms"
max_failures = 1000
[server]
detailed_errors = true
"#;

async fn misbehave(s: &TestServer, path: &str, cmd: &str) -> (u16, String) {
    let mut ws = s.connect(path).await;
    let started = Instant::now();
    send(&mut ws, cmd).await;
    let closed = expect_close(&mut ws).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{path} {cmd}: took {:?}", started.elapsed());
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_javascript_and_python_plugins_are_contained() {
    let Some(dir) = built() else { return };
    let s = Setup::new(HOSTILE)
        .plugin_file("hostile-js", &file(&dir, "hostile-js"))
        .plugin_file("hostile-py", &file(&dir, "hostile-py"))
        .plugin("echo", "echo")
        .start()
        .await;
    let mut witness = s.connect("/echo").await;
    for path in ["/js", "/py"] {
        // Endless loop: cut off at the deadline.
        let (code, reason) = misbehave(&s, path, "loop").await;
        assert_eq!(code, 1011, "{path} loop: {reason}");
        assert!(reason.contains("deadline"), "{path} loop: {reason}");
        // Memory bomb: the instance hits its cap; the host does not grow.
        let (code, reason) = misbehave(&s, path, "alloc").await;
        assert_eq!(code, 1011, "{path} alloc: {reason}");
        eprintln!("{path} alloc: {reason}");
        // Uncaught exception: a trap, contained.
        let (code, reason) = misbehave(&s, path, "throw").await;
        assert_eq!(code, 1011, "{path} throw: {reason}");
        // The SDK maps a refused host call to the contract's error code.
        let mut ws = s.connect(path).await;
        send(&mut ws, "send-unknown").await;
        assert_eq!(recv_text(&mut ws).await, "error unknown-connection", "{path}");
        // And it still serves, from a fresh instance.
        send(&mut ws, "still here").await;
        assert_eq!(recv_text(&mut ws).await, "still here", "{path}");
        // Misbehaviour at connect refuses the handshake.
        let (status, body) = s.refused(&format!("{path}?mode=loop")).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert!(body.contains("deadline"), "{path}: {body}");
        assert_eq!(s.refused(&format!("{path}?mode=throw")).await.0, 500, "{path}");
        send(&mut witness, path).await;
        assert_eq!(recv_text(&mut witness).await, path);
    }
    for plugin in ["hostile-js", "hostile-py"] {
        let deadline = format!("wasmsock_plugin_deadline_hits_total{{plugin=\"{plugin}\"}}");
        assert!(s.metric(&deadline).await >= 2.0, "{plugin}: loops at message and at connect");
        let limit = format!("wasmsock_plugin_failures_total{{plugin=\"{plugin}\",kind=\"resource_limit\"}}");
        let trap = format!("wasmsock_plugin_failures_total{{plugin=\"{plugin}\",kind=\"trap\"}}");
        // The memory bomb is either the cap itself or the language's out-of-memory error.
        assert!(s.metric(&limit).await + s.metric(&trap).await >= 3.0, "{plugin}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_close_runs_exactly_once_per_connection_for_javascript_and_python() {
    let Some(dir) = built() else { return };
    let s = Setup::new(HOSTILE)
        .plugin_file("hostile-js", &file(&dir, "hostile-js"))
        .plugin_file("hostile-py", &file(&dir, "hostile-py"))
        .plugin("echo", "echo")
        .start()
        .await;
    for path in ["/js", "/py"] {
        // Closed by the client, dropped without a close frame, and ended by a trap.
        let mut a = s.connect(path).await;
        send(&mut a, "x").await;
        recv_text(&mut a).await;
        a.close(None).await.unwrap();
        let b = s.connect(path).await;
        drop(b);
        assert_eq!(misbehave(&s, path, "throw").await.0, 1011);
        let closed = async || {
            let mut ws = s.connect(path).await;
            send(&mut ws, "closed").await;
            let n: u64 = recv_text(&mut ws).await.parse().unwrap();
            ws.close(None).await.unwrap();
            n
        };
        // Each probe connection adds its own close; wait until the three are counted.
        let mut probes = 0;
        let counted = eventually(Duration::from_secs(10), async || {
            let n = closed().await;
            let expected = 3 + probes;
            probes += 1;
            n >= expected
        })
        .await;
        assert!(counted, "{path}: on-close was not called for every connection");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = closed().await;
        assert_eq!(n, 3 + probes, "{path}: on-close ran exactly once per connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_plugins_that_keep_failing_are_quarantined() {
    let Some(dir) = built() else { return };
    let s = Setup::new(
        r#"
[[routes]]
path = "/js"
plugins = ["fragile-js"]
[[routes]]
path = "/py"
plugins = ["fragile-py"]
[plugins.fragile-js]
max_failures = 3
failure_window = "30s"
quarantine = "60s"
[plugins.fragile-py]
max_failures = 3
failure_window = "30s"
quarantine = "60s"
"#,
    )
    .plugin_file("fragile-js", &file(&dir, "hostile-js"))
    .plugin_file("fragile-py", &file(&dir, "hostile-py"))
    .start()
    .await;
    for (path, plugin) in [("/js", "fragile-js"), ("/py", "fragile-py")] {
        let mut bystander = s.connect(path).await;
        send(&mut bystander, "hello").await;
        assert_eq!(recv_text(&mut bystander).await, "hello");
        for _ in 0..3 {
            assert_eq!(misbehave(&s, path, "throw").await.0, 1011, "{path}");
        }
        assert_eq!(s.refused(path).await, (503, "unavailable".to_owned()), "{path}");
        let row = s.plugin_listing(plugin).await;
        assert!(row["quarantined_ms"].as_u64().unwrap() > 0, "{row}");
    }
}

/// The author's loop in both languages: `wasmsock new --lang`, the project's own unit tests,
/// `wasmsock build --install` into a running server, and the new code answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmsock_new_and_build_make_live_typescript_and_python_plugins() {
    let Some(_) = built() else { return };
    const BIN: &str = env!("CARGO_BIN_EXE_wasmsock-under-test");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run command");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{cmd:?}: {text}");
        text
    };
    let work = tempfile::tempdir().unwrap();
    let mut s = Setup::new(
        "[[routes]]\npath = \"/ts\"\nplugins = [\"shout-ts\"]\n[[routes]]\npath = \"/py\"\nplugins = [\"shout-py\"]\n",
    )
    .start()
    .await;
    for (lang, name, source, from, to) in [
        ("ts", "shout-ts", "src/plugin.ts", "conn.send(msg);", "conn.send(msg.text.toUpperCase());"),
        ("py", "shout-py", "app.py", "conn.send(msg)", "conn.send(msg.as_text().upper())"),
    ] {
        run(Command::new(BIN).args(["new", name, "--lang", lang, "--dir"]).arg(work.path()));
        let dir = work.path().join(name);
        let path = dir.join(source);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{lang} template changed: {text}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        // The template's own unit test (echo) now fails: the project's tests run for real.
        let tests = if lang == "ts" {
            run(Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&dir));
            Command::new("npm").arg("test").current_dir(&dir).output().unwrap()
        } else {
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
            let line = readme.lines().find(|l| l.contains("wasmsock_tool.py test")).unwrap();
            let tool = line.split_whitespace().nth(1).unwrap();
            Command::new("python3").args([tool, "test", "."]).current_dir(&dir).output().unwrap()
        };
        assert!(!tests.status.success(), "{lang}: the echo test should fail on the shouting plugin");
        let out = run(Command::new(BIN).arg("build").arg(&dir).arg("--install").arg(&s.plugin_dir));
        assert!(out.contains(&format!("installed {name}")), "{out}");
        let outcome = s.next_outcome_within(name, Duration::from_secs(120)).await;
        assert!(matches!(outcome, LoadOutcome::Loaded { .. }), "{outcome:?}");
        let mut ws = s.connect(&format!("/{lang}")).await;
        send(&mut ws, "hello").await;
        assert_eq!(recv_text(&mut ws).await, "HELLO", "{lang}");
    }
}

/// What a JavaScript or Python instance costs, beside the Rust echo plugin in the same run:
/// load (compile) time, per-message call time (in-process, `plugin::overhead`), and resident
/// memory per warm instance (RSS growth of this process while 8 connections call at once).
/// Not a pass/fail test: `cargo test --workspace --test all -- lang::costs --ignored --nocapture`
/// (figures in BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn costs_of_javascript_and_python_instances() {
    let Some(dir) = built() else { return };
    let rust = wasm("echo");
    println!(
        "| plugin | file | load (compile) | first round trip (instantiation) | warm round trip | call, 64 B | echo over wss, 8 conns | RSS after load | RSS per warm instance |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, path) in [("echo (Rust)", rust), ("echo-js", file(&dir, "echo-js")), ("echo-py", file(&dir, "echo-py"))]
    {
        let size = std::fs::metadata(&path).unwrap().len();
        let work = tempfile::tempdir().unwrap();
        let calls = {
            let path = path.clone();
            let work = work.path().to_owned();
            tokio::task::spawn_blocking(move || wasmsock::plugin::overhead::measure(&path, &work, &[64], 20_000))
                .await
                .unwrap()
                .unwrap()
        };
        let rss0 = rss();
        let started = Instant::now();
        let s = Setup::new("[[routes]]\npath = \"/e\"\nplugins = [\"e\"]\n[plugin_defaults]\nmax_idle_instances = 8\n")
            .plugin_file("e", &path)
            .start()
            .await;
        let load = started.elapsed();
        let rss1 = rss();
        // The first call instantiates (pooled slot, copy-on-write memory image); later ones reuse.
        let mut first = s.connect("/e").await;
        let t = Instant::now();
        send(&mut first, "x").await;
        recv_text(&mut first).await;
        let first_rtt = t.elapsed();
        let t = Instant::now();
        for _ in 0..100 {
            send(&mut first, "x").await;
            recv_text(&mut first).await;
        }
        let warm_rtt = t.elapsed() / 100;
        // 8 connections in flight at once: up to 8 instances, kept warm (max_idle_instances).
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(s.connect("/e").await);
        }
        let rounds = 300;
        let echo_started = Instant::now();
        for _ in 0..rounds {
            for ws in clients.iter_mut() {
                send(ws, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").await;
            }
            for ws in clients.iter_mut() {
                recv_text(ws).await;
            }
        }
        let msgs_per_sec = (rounds * clients.len()) as f64 / echo_started.elapsed().as_secs_f64();
        let rss2 = rss();
        let warm = s.plugin_listing("e").await;
        let instances = warm["idle_instances"].as_u64().unwrap_or(1).max(1);
        println!(
            "| {name} | {:.1} MB | {:.1} s | {:.2} ms | {:.3} ms | {:.1} µs | {msgs_per_sec:.0} msg/s | +{:.0} MB | {:.1} MB ({instances} instances) |",
            size as f64 / 1e6,
            load.as_secs_f64(),
            first_rtt.as_secs_f64() * 1e3,
            warm_rtt.as_secs_f64() * 1e3,
            calls[0].plugin_ns / 1000.0,
            (rss1.saturating_sub(rss0)) as f64 / 1e6,
            (rss2.saturating_sub(rss1)) as f64 / 1e6 / instances as f64,
        );
        drop(clients);
        s.shutdown().await.unwrap();
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
