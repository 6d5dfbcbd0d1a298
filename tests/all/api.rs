//! The api plugin with the clients its users have: Centrifugo's Python client `cent` (5.x,
//! unchanged, pointed at wasmsock's URL) and `curl`; subscribers are WebSocket clients of the
//! `rooms` protocol.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::*;

pub const CONFIG: &str = r#"
[[routes]]
path = "/chat"
plugins = ["auth", "rooms"]

[[http_routes]]
path = "/api"
plugin = "api"
max_body_size = "64KiB"

[plugins.auth.config]
hs256_secret = "api-test-secret"
allow_anonymous = "true"

[plugins.api]
act_as = "rooms"
[plugins.api.config]
api_key = "test-api-key"
"#;

pub async fn server_with(extra: &str) -> TestServer {
    Setup::new(&format!("{CONFIG}\n{extra}"))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("api", "api")
        .start()
        .await
}

async fn server() -> TestServer {
    Setup::new(CONFIG).plugin("auth", "auth").plugin("rooms", "rooms").plugin("api", "api").start().await
}

async fn subscriber(s: &TestServer, name: &str, channel: &str) -> Ws {
    let mut ws = s.connect(&format!("/chat?name={name}")).await;
    send(&mut ws, &json!({"event": "subscribe", "channel": channel}).to_string()).await;
    loop {
        let e: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
        if e["event"] == "subscribed" {
            return ws;
        }
    }
}

/// The next `message` event (presence events skipped).
async fn message(ws: &mut Ws) -> Value {
    loop {
        let e: Value = serde_json::from_str(&recv_text(ws).await).unwrap();
        if e["event"] == "message" {
            return e;
        }
    }
}

/// Whether nothing arrives for a while.
async fn quiet(ws: &mut Ws) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(300), futures_util::StreamExt::next(ws)).await.is_err()
}

/// A Python that has `cent`: `WASMSOCK_TEST_PYTHON`, the virtualenv `./test.sh` makes
/// (`target/test-venv`), or the system's.
fn python_with_cent() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python3");
    let candidates =
        std::env::var_os("WASMSOCK_TEST_PYTHON").map(PathBuf::from).into_iter().chain([venv, "python3".into()]);
    candidates.into_iter().find(|p| Command::new(p).args(["-c", "import cent"]).status().is_ok_and(|s| s.success()))
}

/// Runs `script` with `cent` against the server; returns what it printed (one JSON per line).
async fn cent(python: &Path, s: &TestServer, key: &str, script: &str) -> Vec<Value> {
    let prelude = r#"
import json, sys, requests, cent
session = requests.Session()
session.verify = sys.argv[2]
# The development certificate is its own CA: trust it the way Python's ssl module does.
import ssl
from requests.adapters import HTTPAdapter
class DevCa(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=sys.argv[2])
        return super().init_poolmanager(*args, **kwargs)
session.mount("https://", DevCa())
client = cent.Client(sys.argv[1], sys.argv[3], session=session)
def out(v):
    print(json.dumps(v), flush=True)
"#;
    let url = format!("https://localhost:{}/api", s.addr.port());
    let ca = s.ca.as_ref().unwrap().to_string_lossy().into_owned();
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .args([url.as_str(), ca.as_str(), key])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "cent script failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifugos_python_client_publishes_broadcasts_and_disconnects_through_wasmsock() {
    let Some(python) = python_with_cent() else { return skip_without("python3 `cent` (PyPI, 5.x)") };
    let s = server().await;
    let mut ada = subscriber(&s, "ada", "orders").await;
    let mut bob = subscriber(&s, "bob", "news").await;
    let script = r#"
from cent import PublishRequest, BroadcastRequest, PresenceRequest, PresenceStatsRequest, DisconnectRequest, Disconnect
out(client.publish(PublishRequest(channel="orders", data={"id": 1, "total": 9.5})).model_dump())
out(client.publish(PublishRequest(channel="nobody-here", data=1)).model_dump())
r = client.broadcast(BroadcastRequest(channels=["orders", "news"], data={"note": "both"}))
out([x.model_dump() for x in r.responses])
out(client.presence_stats(PresenceStatsRequest(channel="orders")).model_dump())
p = client.presence(PresenceRequest(channel="news"))
out({k: v.user for k, v in p.presence.items()})
out(client.disconnect(DisconnectRequest(user="guest-bob", disconnect=Disconnect(code=4000, reason="bye"))).model_dump())
"#;
    let out = cent(&python, &s, "test-api-key", script).await;
    assert_eq!(out[0], json!({"offset": 0, "epoch": ""}), "{out:?}");
    assert_eq!(out[1], json!({"offset": 0, "epoch": ""}), "a channel nobody is in: success");
    assert_eq!(out[2].as_array().unwrap().len(), 2);
    assert_eq!(out[3], json!({"num_clients": 1, "num_users": 1}));
    assert_eq!(out[4].as_object().unwrap().values().collect::<Vec<_>>(), [&json!("guest-bob")]);
    let e = message(&mut ada).await;
    assert_eq!(e, json!({"event": "message", "channel": "orders", "data": {"id": 1, "total": 9.5}}));
    assert_eq!(message(&mut ada).await["data"], json!({"note": "both"}));
    assert_eq!(message(&mut bob).await["data"], json!({"note": "both"}));
    assert_eq!(expect_close(&mut bob).await, (4000, "bye".into()));

    // A wrong key: cent's own error, and nothing published.
    let script = r#"
from cent import PublishRequest, CentUnauthorizedError
try:
    client.publish(PublishRequest(channel="orders", data="must not arrive"))
    out("published")
except CentUnauthorizedError:
    out("unauthorized")
"#;
    assert_eq!(cent(&python, &s, "wrong-key", script).await, [json!("unauthorized")]);
    assert!(quiet(&mut ada).await, "nothing else arrives");
}

/// `curl` as a backend would use it: the reply shapes, and what bad input gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_publishes_and_bad_input_gets_401_400_413() {
    if Command::new("curl").arg("--version").output().is_err() {
        return skip_without("curl");
    }
    let s = server().await;
    let mut ada = subscriber(&s, "ada", "orders").await;
    let url = |method: &str| format!("https://localhost:{}/api/{method}", s.addr.port());
    let ca = s.ca.as_ref().unwrap().to_string_lossy().into_owned();
    let curl = |method: String, key: &'static str, body: String| {
        let ca = ca.clone();
        async move {
            let out = tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "--cacert",
                    &ca,
                    "-H",
                    &format!("X-API-Key: {key}"),
                    "-H",
                    "Content-Type: application/json",
                ])
                .args(["--data-binary", "@-", "-w", "\n%{http_code}", &method])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = out;
            use tokio::io::AsyncWriteExt;
            out.stdin.take().unwrap().write_all(body.as_bytes()).await.unwrap();
            let out = out.wait_with_output().await.unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, status) = text.rsplit_once('\n').unwrap();
            (status.parse::<u16>().unwrap(), body.to_owned())
        }
    };
    let publish = json!({"channel": "orders", "data": {"id": 2}}).to_string();
    assert_eq!(curl(url("publish"), "test-api-key", publish.clone()).await, (200, r#"{"result":{}}"#.into()));
    assert_eq!(message(&mut ada).await["data"], json!({"id": 2}));
    assert_eq!(curl(url("publish"), "nope", publish.clone()).await.0, 401);
    let (status, body) = curl(url("publish"), "test-api-key", "{\"channel\":".into()).await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed JSON"), "{body}");
    let big = json!({"channel": "orders", "data": "x".repeat(70 << 10)}).to_string();
    assert_eq!(curl(url("publish"), "test-api-key", big).await.0, 413);
    assert_eq!(curl(url("history"), "test-api-key", "{}".into()).await.0, 404);
    // Nothing of the refused requests reached the subscriber.
    assert!(quiet(&mut ada).await, "nothing else arrives");
}

/// Publishes through the API over one kept-alive HTTPS connection to `publish_to`, to a room of
/// 100 subscribers on `subscribe_on`, one publish at a time (each waits for its reply); prints
/// publishes per second and publish-to-delivery latency. A measurement, not a check: run with
/// `cargo test --release --workspace --test all -- --ignored api_publish --nocapture`.
pub async fn measure(publish_to: &TestServer, subscribe_on: &TestServer, label: &str) {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    const MEMBERS: usize = 100;
    const PUBLISHES: usize = 2000;
    let start = Instant::now();
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        members.push(subscriber(subscribe_on, &format!("m{i}"), "bench").await);
    }
    let latencies = Arc::new(parking_lot_free::Samples::default());
    let mut readers = Vec::new();
    for mut ws in members {
        let latencies = latencies.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..PUBLISHES {
                let e = message(&mut ws).await;
                let sent = e["data"]["t"].as_u64().unwrap();
                latencies.push(start.elapsed().as_micros() as u64 - sent);
            }
        }));
    }
    let mut backend = crate::http_routes::Client::new(publish_to).await;
    let headers = "Host: x\r\nX-API-Key: test-api-key\r\nContent-Type: application/json";
    let began = Instant::now();
    for _ in 0..PUBLISHES {
        let body = json!({"channel": "bench", "data": {"t": start.elapsed().as_micros() as u64}}).to_string();
        let r = backend.request_with("POST", "/api/publish", headers, &body).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let took = began.elapsed();
    for r in readers {
        tokio::time::timeout(Duration::from_secs(60), r).await.unwrap().unwrap();
    }
    let mut l = latencies.take();
    l.sort_unstable();
    let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
    eprintln!(
        "BENCH api publish {label}: {PUBLISHES} publishes to {MEMBERS} members in {took:?}: {:.0} publishes/s, {:.0} deliveries/s; publish-to-delivery p50 {} us, p99 {} us",
        PUBLISHES as f64 / took.as_secs_f64(),
        (PUBLISHES * MEMBERS) as f64 / took.as_secs_f64(),
        at(0.5),
        at(0.99)
    );
}

/// A vector shared by the reader tasks.
mod parking_lot_free {
    #[derive(Default)]
    pub struct Samples(std::sync::Mutex<Vec<u64>>);
    impl Samples {
        pub fn push(&self, v: u64) {
            self.0.lock().unwrap().push(v);
        }
        pub fn take(&self) -> Vec<u64> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see BENCHMARKS.md"]
async fn api_publish_to_a_room_of_100_one_node() {
    let s = server_with("").await;
    measure(&s, &s, "one node").await;
}

/// The orders-feed example as shipped: its configuration, its backend (`cent`) and its Python
/// subscriber (`websockets`). `extra` is appended to the configuration of each node.
pub async fn orders_feed(publish_to: &TestServer, subscribe_on: &TestServer) {
    use tokio::io::AsyncBufReadExt;
    let Some(python) = python_with_cent() else { return skip_without("python3 `cent` (PyPI, 5.x)") };
    if !Command::new("python3").args(["-c", "import websockets"]).status().is_ok_and(|s| s.success()) {
        return skip_without("python3 `websockets`");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders-feed");
    let ca = |s: &TestServer| s.ca.as_ref().unwrap().to_string_lossy().into_owned();
    let mut sub = tokio::process::Command::new("python3")
        .arg(dir.join("subscriber.py"))
        .args(["--url", &subscribe_on.url("/orders?name=watcher"), "--ca", &ca(subscribe_on), "--count", "3"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await;
    assert_eq!(first.unwrap().unwrap().as_deref(), Some("subscribed"));
    let url = format!("https://localhost:{}/api", publish_to.addr.port());
    let backend = tokio::process::Command::new(&python)
        .arg(dir.join("backend.py"))
        .args(["--url", &url, "--ca", &ca(publish_to), "--count", "3", "--interval", "0"])
        .output()
        .await
        .unwrap();
    assert!(backend.status.success(), "backend.py: {}", String::from_utf8_lossy(&backend.stderr));
    for id in 1..=3 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await;
        let order: Value = serde_json::from_str(&line.unwrap().unwrap().unwrap()).unwrap();
        assert_eq!(order["id"], id, "{order}");
        assert!(order["item"].is_string() && order["total"].is_number(), "{order}");
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), sub.wait()).await;
    assert!(status.unwrap().unwrap().success());
}

pub const ORDERS_FEED: &str = include_str!("../../examples/orders-feed/wasmsock.toml");

pub async fn orders_node(extra: &str) -> TestServer {
    Setup::new(&format!("{ORDERS_FEED}\n{extra}"))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("api", "api")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_feed_example_on_one_node() {
    let s = orders_node("").await;
    orders_feed(&s, &s).await;
}
