//! The pusher plugin's HTTP API with the libraries apps use, unchanged: the `pusher` server SDK
//! (npm, 5.3.4) triggers events (single, several channels, batch, with socket exclusion) that
//! `pusher-js` (8.6.0, Node) clients receive over wss, queries channels and users, sends to and
//! terminates a signed-in user, and has its bad requests refused; a webhook backend checks the
//! plugin's webhooks with the SDK's `webhook().isValid()`. Real server, real TLS (the test CA
//! through `NODE_EXTRA_CA_CERTS`), the real plugin wasm. Also: the example config loads and
//! serves.
//!
//! The npm project is tests/pusher (installed by `crate::pusher::npm_project`); without node
//! and npm these tests skip, except under `WASMSOCK_REQUIRE_TOOLS`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// The server's routes and the one app of these tests; `{hook}` is the webhook backend's port.
pub const CONFIG: &str = r#"
[host]
max_room_name = 200                  # app id + ":" + Pusher's 164-byte channel names

[[routes]]
path = "/app/{key}"
plugins = ["pusher"]

[[http_routes]]
path = "/apps"
plugin = "pusher"

[plugins.pusher]
http_allowed_hosts = ["http://127.0.0.1:{hook}"]
webhook_flush_delay = "50ms"

[plugins.pusher.config]
apps = "test"
"test.key" = "test-key"
"test.secret" = "test-secret"
"test.client_events" = true
"test.webhook_url" = "http://127.0.0.1:{hook}/pusher/webhooks"
"#;

pub async fn server(hook_port: u16) -> TestServer {
    Setup::new(&CONFIG.replace("{hook}", &hook_port.to_string())).plugin("pusher", "pusher").start().await
}

/// Runs `node <script> <args>` in tests/pusher trusting the server's CA; returns its lines by
/// `step`. A script that fails (or a step it reports as failed) fails the test with its output.
pub async fn node(dir: &Path, s: &TestServer, script: &str, args: &[String]) -> serde_json::Map<String, Value> {
    let ca = s.ca.as_ref().expect("the test server has a CA");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(90), run).await.expect("the node script ends").expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node {script} failed:\n{stdout}\n{stderr}");
    let mut steps = serde_json::Map::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let step = v["step"].as_str().unwrap_or_default().to_owned();
        steps.insert(step, v);
    }
    steps
}

/// The events (names) a recorded list of `{event, data}` has.
fn names(events: &Value) -> Vec<&str> {
    events.as_array().map(|a| a.iter().filter_map(|e| e["event"].as_str()).collect()).unwrap_or_default()
}

fn body_json(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pusher_server_sdk_triggers_queries_and_terminates_and_pusher_js_clients_receive() {
    let Some(dir) = crate::pusher::npm_project() else { return };
    let hook = free_port();
    let s = server(hook).await;
    let out = node(&dir, &s, "sdk-api.js", &[s.addr.port().to_string(), hook.to_string()]).await;

    // One event to one channel: both subscribers, data decoded by pusher-js.
    let single = &out["single"];
    assert_eq!(single["answer"], json!({"status": 200, "body": "{}"}), "{single}");
    for who in ["ada", "bob"] {
        assert_eq!(single[who], json!([{"event": "placed", "data": {"id": 1, "total": 9.5}}]), "{who}: {single}");
    }

    // Several channels, and a batch.
    let mb = &out["multi_and_batch"];
    assert_eq!((mb["multi"]["status"].as_u64(), mb["batch"]["status"].as_u64()), (Some(200), Some(200)), "{mb}");
    assert_eq!(mb["batch"]["body"], "{}");
    assert_eq!(names(&mb["ada"]), ["placed", "both", "b1"], "{mb}");
    assert_eq!(mb["ada"][1]["data"], "plain text");
    assert_eq!(mb["ada"][2]["data"], json!({"n": 1}));
    assert_eq!(mb["bob_news"], json!([{"event": "both", "data": "plain text"}, {"event": "b2", "data": {"n": 2}}]));

    // Socket exclusion: ada never got `excluded`, bob did, before the marker.
    let ex = &out["exclusion"];
    assert_eq!(ex["answer"]["status"], 200, "{ex}");
    assert_eq!(ex["ada"], json!(["placed", "both", "b1", "marker"]), "{ex}");
    assert_eq!(ex["bob"], json!(["placed", "both", "b1", "excluded", "marker"]), "{ex}");

    let info = &out["trigger_info"];
    assert_eq!(
        body_json(&info["answer"]),
        json!({"channels": {"presence-room": {"user_count": 2, "subscription_count": 2}}})
    );

    // Channel queries through the SDK's `get`.
    let q = &out["queries"];
    assert_eq!(q["channels"]["body"], json!({"channels": {"news": {}, "orders": {}, "presence-room": {}}}), "{q}");
    assert_eq!(q["presence"]["body"], json!({"channels": {"presence-room": {"user_count": 2}}}), "{q}");
    assert_eq!(q["orders"]["body"], json!({"occupied": true, "subscription_count": 2}), "{q}");
    assert_eq!(q["empty"]["body"], json!({"occupied": false}), "{q}");
    assert_eq!(q["users"]["body"], json!({"users": [{"id": "ada"}, {"id": "bob"}]}), "{q}");
    assert_eq!(q["user_count_on_public"]["status"], 400, "{q}");

    // sendToUser reaches the signed-in user; terminating closes ada with 4009, not bob.
    let t = &out["terminate"];
    assert_eq!(t["to_user"], json!([{"hi": true}]), "{t}");
    assert_eq!(t["answer"], json!({"status": 200, "body": "{}"}), "{t}");
    assert!(t["ada_errors"].as_array().is_some_and(|e| e.iter().any(|e| e["code"] == 4009)), "{t}");
    assert_eq!(t["ada_state"], "disconnected", "pusher-js does not reconnect after 4009: {t}");
    assert_eq!(t["bob_state"], "connected", "{t}");
    assert_eq!(t["users_after"]["body"], json!({"users": [{"id": "bob"}]}), "{t}");

    // Refused requests, with Pusher's statuses and explanations; none reached a subscriber.
    let r = &out["refused"];
    let refusal = |name: &str, status: u64, says: &str| {
        assert_eq!(r[name]["status"].as_u64(), Some(status), "{name}: {r}");
        assert!(r[name]["body"].as_str().is_some_and(|b| b.contains(says)), "{name}: {r}");
    };
    refusal("bad_signature", 401, "Invalid signature");
    refusal("stale", 401, "Timestamp expired");
    refusal("bad_md5", 401, "Invalid body_md5");
    refusal("unknown_app", 404, "Unknown app");
    refusal("too_big", 413, "Event data too large");
    assert_eq!(r["bob"], json!(["placed", "both", "b1", "excluded", "marker", "after-refusals"]), "{r}");

    // Every webhook checks out with the SDK (and not with another secret), and tells the story.
    let requests = out["webhooks"]["requests"].as_array().expect("webhook requests");
    assert!(!requests.is_empty());
    for w in requests {
        assert_eq!((&w["valid"], &w["valid_with_wrong_secret"]), (&json!(true), &json!(false)), "{w}");
    }
    let events: Vec<&Value> = requests.iter().flat_map(|w| w["events"].as_array().into_iter().flatten()).collect();
    let has = |e: Value| events.iter().any(|got| e.as_object().is_some_and(|m| m.iter().all(|(k, v)| &got[k] == v)));
    for expected in [
        json!({"name": "channel_occupied", "channel": "orders"}),
        json!({"name": "member_added", "channel": "presence-room", "user_id": "ada"}),
        json!({"name": "member_added", "channel": "presence-room", "user_id": "bob"}),
        json!({"name": "member_removed", "channel": "presence-room", "user_id": "ada"}),
        json!({"name": "channel_vacated", "channel": "orders"}),
    ] {
        assert!(has(expected.clone()), "no {expected} among {events:?}");
    }
}

/// pusher-js's browser build on a page the server serves, in headless Chromium: it subscribes
/// and receives an event the server SDK triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_on_a_page_in_chromium_receives_a_triggered_event() {
    let Some(exe) = crate::browser::chromium() else { return skip_without("chromium") };
    let Some(dir) = crate::pusher::npm_project() else { return };
    let page_dir = dir.canonicalize().expect("tests/pusher");
    let hook = free_port();
    let toml = format!("[static]\ndir = {page_dir:?}\n{}", CONFIG.replace("{hook}", &hook.to_string()));
    let s = Setup::new(&toml).plugin("pusher", "pusher").start().await;
    let port = s.addr.port();
    let mut browser = crate::browser::Browser::launch(&exe).await;
    let page = browser.open(&format!("https://localhost:{port}/browser.html?key=test-key&channel=lobby")).await;
    browser.wait_for(&page, "window.subscribed === true").await;
    assert_eq!(browser.eval(&page, "pusher.connection.state").await, "connected");

    let args = ["test", "test-key", "test-secret", "lobby", "greeting", r#"{"text":"hello, browser"}"#];
    let args: Vec<String> = std::iter::once(port.to_string()).chain(args.iter().map(|a| a.to_string())).collect();
    let out = node(&dir, &s, "sdk-trigger.js", &args).await;
    assert_eq!(out["trigger"]["status"], 200, "{out:?}");
    browser.wait_for(&page, "window.received.length === 1").await;
    assert_eq!(browser.eval(&page, "JSON.stringify(window.received)").await, r#"[{"text":"hello, browser"}]"#);
    // The page's transport is the WebSocket over TLS, not a fallback.
    let socket = "(t => ({name: t.name, url: t.socket && t.socket.url}))(pusher.connection.connection.transport)";
    let transport = browser.eval(&page, &format!("JSON.stringify({socket})")).await;
    let transport: Value = serde_json::from_str(transport.as_str().unwrap_or("null")).unwrap_or_default();
    assert!(["ws", "wss"].contains(&transport["name"].as_str().unwrap_or_default()), "{transport}");
    let url = format!("wss://localhost:{port}/app/test-key?");
    assert!(transport["url"].as_str().is_some_and(|u| u.starts_with(&url)), "{transport}");
}

/// examples/configs/pusher.toml as it is (but its listen address, plugin and state
/// directories, which the test server sets): a protocol-7 client at /app/demo-key gets an event
/// the server SDK triggers at /apps/demo with the secret from `WASMSOCK_PUSHER_SECRET` (or the
/// example's stand-in when unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_serves_the_demo_app() {
    let Some(dir) = crate::pusher::npm_project() else { return };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs/pusher.toml");
    let example = std::fs::read_to_string(&path).expect("examples/configs/pusher.toml");
    let setup_owns = ["listen", "plugin_dir", "state_dir"];
    let toml: Vec<&str> =
        example.lines().filter(|l| !setup_owns.iter().any(|k| l.trim_start().starts_with(&format!("{k} =")))).collect();
    let s = Setup::new(&toml.join("\n")).plugin("pusher", "pusher").start().await;

    let mut ws = s.connect("/app/demo-key?protocol=7&client=js&version=8.6.0").await;
    let established: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
    assert_eq!(established["event"], "pusher:connection_established", "{established}");
    send(&mut ws, &json!({"event": "pusher:subscribe", "data": {"channel": "lobby"}}).to_string()).await;
    let subscribed: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
    assert_eq!(subscribed["event"], "pusher_internal:subscription_succeeded", "{subscribed}");

    let secret = std::env::var("WASMSOCK_PUSHER_SECRET").unwrap_or_else(|_| "demo-secret-change-me".into());
    let args = [
        s.addr.port().to_string(),
        "demo".into(),
        "demo-key".into(),
        secret,
        "lobby".into(),
        "hi".into(),
        "[1]".into(),
    ];
    let out = node(&dir, &s, "sdk-trigger.js", &args).await;
    assert_eq!(out["trigger"]["status"], 200, "{out:?}");
    let event: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
    assert_eq!(event, json!({"event": "hi", "channel": "lobby", "data": "[1]"}));
    // Another key is refused as the protocol refuses it.
    let mut other = s.connect("/app/not-a-key?protocol=7").await;
    let error: Value = serde_json::from_str(&recv_text(&mut other).await).unwrap();
    assert_eq!(error["data"]["code"], 4001, "{error}");
}
