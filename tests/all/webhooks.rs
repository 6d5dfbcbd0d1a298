//! Webhooks held by the host, against a real backend: a Python standard-library HTTP server
//! that checks each batch's signature with Python's own `hmac`, answers as its path says, and
//! prints every request it got as a JSON line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const SECRET: &str = "webhook-test-secret";

/// Paths: `/ok` answers 200; `/flaky` 500 to its first request and 200 after; `/reject` 400;
/// `/hang` never answers. Each request is printed (before the answer) with whether its
/// `x-test-signature` or `x-wasmsock-signature` is the hex HMAC-SHA256 of the body.
const BACKEND: &str = r#"
import hashlib, hmac, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = sys.argv[1].encode()
seen = {}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            n = seen.get(self.path, 0)
            seen[self.path] = n + 1
        status = {"/ok": 200, "/reject": 400, "/hang": 0}.get(self.path, 200)
        if self.path == "/flaky":
            status = 500 if n == 0 else 200
        sig = self.headers.get("x-test-signature") or self.headers.get("x-wasmsock-signature")
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        line = json.dumps({
            "path": self.path,
            "status": status,
            "signed": sig is not None,
            "signature_ok": sig is not None and hmac.compare_digest(sig, expected),
            "key": self.headers.get("x-test-key"),
            "content_type": self.headers.get("content-type"),
            "body": json.loads(body),
        })
        # One line at a time: requests are handled on threads of their own.
        with lock:
            print(line, flush=True)
        if status == 0:
            time.sleep(3600)
            return
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"#;

struct Backend {
    child: Child,
    port: u16,
    received: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    /// The backend, or `None` without python3.
    fn start() -> Option<Backend> {
        let spawned =
            Command::new("python3").args(["-c", BACKEND, SECRET]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
        let Ok(mut child) = spawned else {
            skip_without("python3");
            return None;
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first.trim().parse().unwrap_or_else(|_| panic!("backend printed {first:?}"));
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("backend printed {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Some(Backend { child, port, received })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next request the backend got.
    async fn next(&mut self) -> Value {
        match tokio::time::timeout(Duration::from_secs(10), self.received.recv()).await {
            Ok(Some(v)) => v,
            other => panic!("no webhook request arrived: {other:?}"),
        }
    }

    async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(v)) = tokio::time::timeout(wait, self.received.recv()).await {
            panic!("unexpected webhook request: {v}");
        }
    }
}

fn config(port: u16, extra: &str) -> String {
    format!(
        "[[routes]]\npath = \"/out\"\nplugins = [\"outbound\"]\n\
         [plugins.outbound]\nhttp_allowed_hosts = [\"http://127.0.0.1:{port}\"]\nhttp_timeout = \"1s\"\n\
         webhook_retry_backoff = \"50ms\"\n{extra}"
    )
}

async fn server(port: u16, extra: &str) -> TestServer {
    Setup::new(&config(port, extra)).plugin("outbound", "outbound").start().await
}

async fn ask(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    recv_text(ws).await
}

fn series(name: &str) -> String {
    format!("wasmsock_plugin_webhook_{name}_total{{plugin=\"outbound\"}}")
}

fn dropped(reason: &str) -> String {
    format!("wasmsock_plugin_webhook_dropped_total{{plugin=\"outbound\",reason=\"{reason}\"}}")
}

#[tokio::test]
async fn webhook_batches_arrive_in_pushers_shape_with_a_signature_the_backend_verifies() {
    let Some(mut b) = Backend::start() else { return };
    let s = server(b.port, "webhook_flush_delay = \"1s\"\n").await;
    let mut ws = s.connect("/out").await;
    let started_ms = unix_now() * 1000;
    for i in 0..3 {
        let signed = format!("signed {} {SECRET} {{\"name\":\"e\",\"i\":{i}}}", b.url("/ok"));
        assert_eq!(ask(&mut ws, &signed).await, "queued");
    }
    // Another key (URL, no signing): a batch of its own.
    assert_eq!(ask(&mut ws, &format!("hook {} [\"plain\"]", b.url("/plain"))).await, "queued");
    // Not an allowed host: refused at emit, nothing sent.
    assert_eq!(ask(&mut ws, "hook http://127.0.0.1:1/x {}").await, "error: connection not permitted for this plugin");
    assert_eq!(ask(&mut ws, &format!("hook {} {{oops", b.url("/ok"))).await, "error: invalid argument");

    let mut got = [b.next().await, b.next().await];
    got.sort_by_key(|r| r["path"].as_str().unwrap_or_default().to_owned());
    let (signed, plain) = (&got[0], &got[1]);
    assert_eq!(signed["path"], "/ok");
    assert_eq!(signed["signature_ok"], true, "{signed}");
    assert_eq!(signed["key"], "key-1");
    assert_eq!(signed["content_type"], "application/json");
    let events: Vec<Value> = (0..3).map(|i| json!({"name": "e", "i": i})).collect();
    assert_eq!(signed["body"]["events"], json!(events), "one batch, in order: {signed}");
    let time_ms = signed["body"]["time_ms"].as_u64().expect("time_ms is a number");
    assert!(time_ms >= started_ms && time_ms < started_ms + 60_000, "time_ms {time_ms}");
    assert_eq!(signed["body"].as_object().unwrap().len(), 2, "only time_ms and events");
    assert_eq!((plain["path"].as_str(), plain["signed"].as_bool()), (Some("/plain"), Some(false)));
    assert_eq!(plain["body"]["events"], json!([["plain"]]));
    b.assert_quiet(Duration::from_millis(300)).await;

    assert_eq!(s.metric(&series("events")).await, 4.0);
    assert_eq!(s.metric(&series("batches")).await, 2.0);
    assert_eq!(s.metric(&dropped("denied")).await, 1.0);
    assert_eq!(s.metric(&dropped("invalid")).await, 1.0);
    assert_eq!(s.metric(&series("retries")).await, 0.0);
}

#[tokio::test]
async fn webhook_answered_500_then_200_is_delivered_once_after_a_retry() {
    let Some(mut b) = Backend::start() else { return };
    let s = server(b.port, "webhook_flush_delay = \"50ms\"\n").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("hook {} {{\"name\":\"once\"}}", b.url("/flaky"))).await, "queued");
    let first = b.next().await;
    let second = b.next().await;
    assert_eq!((first["status"].as_u64(), second["status"].as_u64()), (Some(500), Some(200)));
    assert_eq!(first["body"], second["body"], "the retry sends the same batch");
    assert_eq!(second["body"]["events"], json!([{"name": "once"}]));
    b.assert_quiet(Duration::from_millis(500)).await;
    assert!(eventually(Duration::from_secs(2), async || s.metric(&series("batches")).await == 1.0).await);
    assert_eq!(s.metric(&series("retries")).await, 1.0);
    assert_eq!(s.metric(&dropped("failed")).await, 0.0);
}

#[tokio::test]
async fn webhook_to_a_backend_that_is_down_is_dropped_after_the_attempts_and_a_4xx_is_not_retried() {
    let Some(mut b) = Backend::start() else { return };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = config(b.port, "webhook_flush_delay = \"20ms\"\nwebhook_max_attempts = 3\n")
        .replace("http_allowed_hosts = [", &format!("http_allowed_hosts = [\"http://127.0.0.1:{closed}\", "));
    let s = Setup::new(&toml).plugin("outbound", "outbound").start().await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("hook http://127.0.0.1:{closed}/hook {{\"n\":1}}")).await, "queued");
    assert!(eventually(Duration::from_secs(5), async || s.metric(&dropped("failed")).await == 1.0).await);
    assert_eq!(s.metric(&series("retries")).await, 2.0, "3 attempts: 2 retries");
    assert_eq!(s.metric(&series("batches")).await, 0.0);

    assert_eq!(ask(&mut ws, &format!("hook {} {{\"n\":2}}", b.url("/reject"))).await, "queued");
    assert_eq!(b.next().await["status"], 400);
    assert!(eventually(Duration::from_secs(2), async || s.metric(&dropped("rejected")).await == 1.0).await);
    b.assert_quiet(Duration::from_millis(400)).await;
    assert_eq!(s.metric(&series("retries")).await, 2.0, "a 4xx is not retried");
    assert_eq!(ask(&mut ws, "say still here").await, "still here");
}

#[tokio::test]
async fn webhook_queue_bound_drops_are_counted_and_a_hanging_backend_does_not_slow_the_connection() {
    let Some(mut b) = Backend::start() else { return };
    let extra = "webhook_flush_delay = \"10ms\"\nwebhook_max_batch_events = 1\nwebhook_max_queued_events = 5\n";
    let toml = config(b.port, extra).replace("http_timeout = \"1s\"", "http_timeout = \"30s\"");
    let s = Setup::new(&toml).plugin("outbound", "outbound").start().await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("hooks 20 {}", b.url("/hang"))).await, "queued 5, refused 15");
    // The first batch is at the backend, which does not answer; the others wait behind it.
    assert_eq!(b.next().await["path"], "/hang");
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(ask(&mut ws, &format!("say {i}")).await, i.to_string());
        worst = worst.max(started.elapsed());
    }
    eprintln!("worst round trip with a hanging webhook backend: {worst:?}");
    assert!(worst < Duration::from_millis(250), "a round trip took {worst:?}");
    assert_eq!(ask(&mut ws, &format!("hook {} {{}}", b.url("/hang"))).await, "error: outgoing queue full");
    assert_eq!(s.metric(&dropped("queue_full")).await, 16.0);
    assert_eq!(s.metric(&series("events")).await, 5.0);
}

#[tokio::test]
async fn webhooks_queued_at_shutdown_are_sent_within_the_grace_period() {
    let Some(mut b) = Backend::start() else { return };
    let toml = format!("[server]\nshutdown_grace = \"3s\"\n{}", config(b.port, "webhook_flush_delay = \"60s\"\n"));
    let s = Setup::new(&toml).plugin("outbound", "outbound").start().await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("hook {} {{\"bye\":true}}", b.url("/ok"))).await, "queued");
    // (A client that does not answer the server's close would hold shutdown for the grace period.)
    drop(ws);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), s.shutdown()).await.expect("shutdown ends").unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "flushed at once, not after the 60 s delay");
    assert_eq!(b.next().await["body"]["events"], json!([{"bye": true}]));
}

#[tokio::test]
async fn webhooks_queued_before_a_hot_reload_are_still_sent_once() {
    let Some(mut b) = Backend::start() else { return };
    let mut s = server(b.port, "webhook_flush_delay = \"700ms\"\n").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("hook {} {{\"before\":\"reload\"}}", b.url("/ok"))).await, "queued");
    // New code under the same name while the event waits in the host's queue.
    assert!(matches!(s.install("outbound", "echo").await, wasmsock::plugin::LoadOutcome::Loaded { .. }));
    assert_eq!(ask(&mut ws, "say hi").await, "say hi", "the new code answers");
    assert_eq!(b.next().await["body"]["events"], json!([{"before": "reload"}]));
    b.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(s.metric(&series("batches")).await, 1.0);
}

#[tokio::test]
async fn rooms_webhooks_report_occupied_member_added_member_removed_and_vacated_in_order() {
    let Some(mut b) = Backend::start() else { return };
    let toml = format!(
        "{}\n[plugins.rooms]\nhttp_allowed_hosts = [\"http://127.0.0.1:{port}\"]\nwebhook_flush_delay = \"50ms\"\n\
         [plugins.rooms.config]\nwebhook_url = \"{url}\"\nwebhook_secret = \"{SECRET}\"\n",
        crate::rooms::CHAT,
        port = b.port,
        url = b.url("/rooms"),
    );
    let s = Setup::new(&toml).plugin("auth", "auth").plugin("rooms", "rooms").start().await;
    let mut ada = s.connect("/chat?name=ada").await;
    subscribe(&mut ada, "lobby").await;
    let mut bob = s.connect("/chat?name=bob").await;
    subscribe(&mut bob, "lobby").await;
    send(&mut ada, &json!({"event": "unsubscribe", "channel": "lobby"}).to_string()).await;
    // Bob's join comes first; then the answer, so Ada has left before Bob goes.
    while serde_json::from_str::<Value>(&recv_text(&mut ada).await).unwrap()["event"] != "unsubscribed" {}
    drop(bob);

    let mut events = Vec::new();
    while events.len() < 6 {
        let batch = b.next().await;
        assert_eq!(batch["signature_ok"], true, "{batch}");
        events.extend(batch["body"]["events"].as_array().unwrap().iter().cloned());
    }
    let user = |name: &str| events.iter().any(|e| e["user_id"].as_str().is_some_and(|u| u.contains(name)));
    assert!(user("ada") && user("bob"), "{events:?}");
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["channel_occupied", "member_added", "member_added", "member_removed", "member_removed", "channel_vacated"]
    );
    let users: Vec<&str> = events.iter().filter_map(|e| e["user_id"].as_str()).collect();
    assert_eq!(users.len(), 4);
    assert!(users[0].contains("ada") && users[1].contains("bob"), "{events:?}");
    assert_eq!((users[2], users[3]), (users[0], users[1]), "ada left first, then bob: {events:?}");
    assert!(events.iter().all(|e| e["channel"] == "lobby"));
    b.assert_quiet(Duration::from_millis(300)).await;
}

async fn subscribe(ws: &mut Ws, channel: &str) {
    send(ws, &json!({"event": "subscribe", "channel": channel}).to_string()).await;
    let reply: Value = serde_json::from_str(&recv_text(ws).await).unwrap();
    assert_eq!(reply["event"], "subscribed", "{reply}");
}
