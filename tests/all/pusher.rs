//! The pusher plugin's WebSocket side on the real server over real TLS: raw protocol checks
//! with a Rust client, and `pusher-js` 8 in Node (the real client library, from
//! tests/pusher/package-lock.json) subscribing to public, private, encrypted and presence
//! channels through an auth endpoint built with the `pusher` server SDK, with the app's
//! webhooks arriving at a real local HTTP backend (tests/pusher/client-test.js).
//!
//! Without node/npm the Node test skips, except in CI (`WASMSOCK_REQUIRE_TOOLS`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const KEY: &str = "demo-key";
const SECRET: &str = "pusher-test-secret";

/// The server config: app `demo` (client events on) at `/app/{key}`; webhooks to 127.0.0.1:`webhook_port`.
fn config(webhook_port: u16) -> String {
    format!(
        r#"
[host]
max_room_name = 200

[[routes]]
path = "/app/{{key}}"
plugins = ["pusher"]

[plugins.pusher]
http_allowed_hosts = ["http://127.0.0.1:{webhook_port}"]
webhook_flush_delay = "20ms"

[plugins.pusher.config]
apps = "demo"
"demo.key" = "{KEY}"
"demo.secret" = "{SECRET}"
"demo.client_events" = true
"demo.webhook_url" = "http://127.0.0.1:{webhook_port}/pusher/webhooks"
activity_timeout = 30
"#
    )
}

async fn server(webhook_port: u16) -> TestServer {
    Setup::new(&config(webhook_port)).plugin("pusher", "pusher").start().await
}

async fn json_msg(ws: &mut Ws) -> Value {
    let text = recv_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A signature of the demo app: lower-case hex HMAC-SHA256 under its secret.
fn sign(message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// `data` parsed when the server sent it as a JSON string.
fn data(v: &Value) -> Value {
    match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

#[tokio::test]
async fn pusher_connection_established_arrives_right_after_the_upgrade_and_bad_input_keeps_the_connection() {
    let s = server(free_port()).await;
    let mut ws = s.connect("/app/demo-key?protocol=7&client=js&version=8.6.0").await;
    let hello = json_msg(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    assert!(hello["data"].is_string(), "data is a JSON string: {hello}");
    let established = data(&hello);
    assert_eq!(established["activity_timeout"], 30);
    let socket_id = established["socket_id"].as_str().expect("socket_id").to_owned();
    assert!(socket_id.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()), "{socket_id}");

    for bad in ["{", "[1]", r#"{"data":{}}"#] {
        send(&mut ws, bad).await;
        let err = json_msg(&mut ws).await;
        assert_eq!(err["event"], "pusher:error", "{bad}: {err}");
    }
    send(&mut ws, r#"{"event":"pusher:subscribe","data":{"channel":"bad name!"}}"#).await;
    let err = json_msg(&mut ws).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    send(&mut ws, r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"demo-key:00"}}"#).await;
    let err = json_msg(&mut ws).await;
    assert_eq!((err["event"].as_str(), err["data"]["status"].as_u64()), (Some("pusher:subscription_error"), Some(401)));
    send(&mut ws, r#"{"event":"client-x","channel":"news","data":{}}"#).await;
    assert_eq!(json_msg(&mut ws).await["data"]["code"], 4301);
    // Still connected and served.
    send(&mut ws, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(json_msg(&mut ws).await["event"], "pusher:pong");
    send(&mut ws, r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#).await;
    let ok = json_msg(&mut ws).await;
    assert_eq!(
        (ok["event"].as_str(), ok["channel"].as_str()),
        (Some("pusher_internal:subscription_succeeded"), Some("news"))
    );
}

#[tokio::test]
async fn pusher_unknown_keys_and_old_protocols_get_the_protocols_error_then_close() {
    let s = server(free_port()).await;
    for (path, code) in [
        ("/app/no-such-key?protocol=7", 4001),
        ("/app/demo-key", 4008),
        ("/app/demo-key?protocol=6", 4007),
        ("/app/demo-key?protocol=seven", 4006),
    ] {
        let mut ws = s.connect(path).await;
        let err = json_msg(&mut ws).await;
        assert_eq!(err["event"], "pusher:error", "{path}: {err}");
        assert_eq!(err["data"]["code"], code, "{path}: {err}");
        assert_eq!(expect_close(&mut ws).await.0, code, "{path}");
    }
}

#[tokio::test]
async fn pusher_presence_and_client_events_between_raw_clients_survive_a_live_reload() {
    let mut s = server(free_port()).await;
    let mut clients = Vec::new();
    for user in ["ada", "bob"] {
        let mut ws = s.connect("/app/demo-key?protocol=7").await;
        let sid = data(&json_msg(&mut ws).await)["socket_id"].as_str().unwrap().to_owned();
        let channel_data = json!({"user_id": user}).to_string();
        let auth = format!("{KEY}:{}", sign(&format!("{sid}:presence-room:{channel_data}")));
        let sub = json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data}});
        send(&mut ws, &sub.to_string()).await;
        let ok = json_msg(&mut ws).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
        clients.push((ws, data(&ok)));
    }
    assert_eq!(clients[1].1["presence"]["count"], 2);
    let added = json_msg(&mut clients[0].0).await;
    assert_eq!(
        (added["event"].as_str(), data(&added)["user_id"].as_str()),
        (Some("pusher_internal:member_added"), Some("bob"))
    );
    // A new version of the plugin under the open connections: their protocol state is the host's.
    let outcome = s.install_bytes("pusher", &rebuilt("pusher", "v2")).await;
    assert!(matches!(outcome, wasmsock::plugin::LoadOutcome::Loaded { .. }), "{outcome:?}");
    let ev = json!({"event": "client-hi", "channel": "presence-room", "data": {"n": 1}});
    send(&mut clients[0].0, &ev.to_string()).await;
    let got = json_msg(&mut clients[1].0).await;
    assert_eq!(got, json!({"event": "client-hi", "channel": "presence-room", "data": {"n": 1}, "user_id": "ada"}));
    let (mut bob, _) = clients.pop().unwrap();
    bob.close(None).await.unwrap();
    let removed = json_msg(&mut clients[0].0).await;
    assert_eq!(
        (removed["event"].as_str(), data(&removed)["user_id"].as_str()),
        (Some("pusher_internal:member_removed"), Some("bob"))
    );
}

/// The Pusher npm project's directory with its locked packages installed; `None` (a skip)
/// without node and npm.
pub(crate) fn npm_project() -> Option<PathBuf> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pusher");
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !have("node") || !have("npm") {
        skip_without("node and npm (for pusher-js and the pusher server SDK)");
        return None;
    }
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let installed = dir.join("node_modules/.package-lock.json");
    let stale = match (std::fs::metadata(&installed), std::fs::metadata(dir.join("package-lock.json"))) {
        (Ok(i), Ok(l)) => l.modified().ok() > i.modified().ok(),
        _ => true,
    };
    if stale || !dir.join("node_modules/pusher-js").is_dir() || !dir.join("node_modules/pusher").is_dir() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("run npm ci");
        assert!(out.status.success(), "npm ci in tests/pusher failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Some(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_subscribes_presence_client_events_signin_and_webhooks_reach_the_backend() {
    let Some(dir) = npm_project() else { return };
    let webhook_port = free_port();
    let s = server(webhook_port).await;
    let ca = s.ca.clone().expect("a TLS test server has a CA");
    let mut child = tokio::process::Command::new("node");
    child
        .arg(dir.join("client-test.js"))
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("PUSHER_HOST", "localhost")
        .env("PUSHER_PORT", s.addr.port().to_string())
        .env("PUSHER_APP_ID", "demo")
        .env("PUSHER_KEY", KEY)
        .env("PUSHER_SECRET", SECRET)
        .env("WEBHOOK_PORT", webhook_port.to_string())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), child.output())
        .await
        .expect("the pusher-js test finishes within 90 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client-test.js failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let steps: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
    assert_eq!(
        steps,
        [
            "connected",
            "subscribed public private encrypted presence",
            "presence member_added",
            "client events",
            "one member per user",
            "presence member_removed",
            "bad auth refused",
            "signin",
            "unknown key refused",
            "vacated",
        ],
        "{stdout}"
    );
    // The webhooks as the backend got them: every batch signed, and the events Pusher's.
    let hooks: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("webhook "))
        .map(|l| serde_json::from_str(l).expect("webhook line is JSON"))
        .collect();
    assert!(hooks.iter().all(|h| h["signed"] == true), "{hooks:?}");
    let count =
        |name: &str, key: &str, value: &str| hooks.iter().filter(|h| h["name"] == name && h[key] == value).count();
    for ch in ["news", "private-orders", "private-encrypted-secrets", "presence-room"] {
        assert_eq!(count("channel_occupied", "channel", ch), 1, "{ch}: {hooks:?}");
        assert_eq!(count("channel_vacated", "channel", ch), 1, "{ch}: {hooks:?}");
    }
    // Ada had two connections in the room: one member_added and one member_removed each.
    for user in ["ada", "bob"] {
        assert_eq!(count("member_added", "user_id", user), 1, "{user}: {hooks:?}");
        assert_eq!(count("member_removed", "user_id", user), 1, "{user}: {hooks:?}");
    }
    let client =
        hooks.iter().find(|h| h["name"] == "client_event" && h["event"] == "client-wave").expect("client_event");
    assert_eq!(client["channel"], "presence-room");
    assert_eq!(client["data"], r#"{"hi":1}"#);
    assert!(client["socket_id"].as_str().is_some_and(|s| s.contains('.')));
}
