//! HTTP routes: plain HTTPS requests served by a plugin's `on-request` on the WebSocket
//! listener, kept alive, bounded; and the users calls that let such a request reach every
//! connection of an identity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::harness::*;

pub const CONFIG: &str = r#"
[[routes]]
path = "/ws"
plugins = ["probe"]

[[routes]]
path = "/echo"
builtin = "echo"

[[routes]]
path = "/old"
plugins = ["legacy"]

[[http_routes]]
path = "/h"
plugin = "probe"
max_body_size = "1KiB"
max_concurrent = 2

[[http_routes]]
path = "/legacy"
plugin = "legacy"

[plugins.probe]
deadline = "50ms"
max_failures = 3
quarantine = "60s"
"#;

async fn server() -> TestServer {
    Setup::new(CONFIG).plugin("probe", "probe").plugin("legacy", "legacy-v0-1").start().await
}

/// One HTTPS connection that sends requests one after another and reads each response.
pub struct Client {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Client {
    pub async fn new(s: &TestServer) -> Client {
        let tcp = TcpStream::connect(s.addr).await.unwrap();
        let connector = TlsConnector::from(s.tls_client_config());
        let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        Client { tls, buf: Vec::new() }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
    }

    pub async fn request(&mut self, method: &str, path: &str, body: &str) -> Response {
        self.request_with(method, path, "Host: localhost", body).await
    }

    /// A request with these header lines (no trailing line break).
    pub async fn request_with(&mut self, method: &str, path: &str, headers: &str, body: &str) -> Response {
        let req = format!("{method} {path} HTTP/1.1\r\n{headers}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        self.send_raw(req.as_bytes()).await;
        self.response().await.unwrap_or_else(|| panic!("{method} {path}: no response"))
    }

    /// The next response, `None` if the connection ended first.
    async fn response(&mut self) -> Option<Response> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize =
                    headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    self.read_more().await?;
                }
                let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                self.buf.drain(..end + 4 + len);
                return Some(Response { status, headers, body });
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
            _ => None,
        }
    }
}

#[tokio::test]
async fn an_http_route_serves_its_prefix_over_one_kept_alive_connection_next_to_websockets() {
    let s = server().await;
    let mut c = Client::new(&s).await;
    // Thousands of requests over one connection, as a backend sends them.
    let started = Instant::now();
    for i in 0..2000 {
        let r = c.request("POST", &format!("/h/echo?i={i}"), &format!("body {i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        let v = r.json();
        assert_eq!(v["body"], format!("body {i}"));
        assert_eq!(v["query"], format!("i={i}"));
        assert_eq!((v["method"].as_str(), v["route"].as_str()), (Some("POST"), Some("/h")));
    }
    eprintln!("2000 requests over one connection in {:?}", started.elapsed());
    // The prefix itself and paths below it are the route's; a path that only starts alike is not.
    assert_eq!(c.request("GET", "/h", "").await.status, 404, "the probe's own 404 for /h itself");
    let r = c.request("GET", "/h/nothing/here", "").await;
    assert_eq!((r.status, r.header("x-probe")), (404, Some("404")), "answered by the plugin: {r:?}");
    // Pipelined requests are answered in order.
    c.send_raw(b"GET /h/echo?a HTTP/1.1\r\nHost: x\r\n\r\nGET /h/echo?b HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().json()["query"], "a");
    assert_eq!(c.response().await.unwrap().json()["query"], "b");
    // `Connection: close` is honoured.
    c.send_raw(b"GET /h/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.response().await.is_none(), "the connection ends after it");

    let mut other = Client::new(&s).await;
    let r = other.request("GET", "/hx", "").await;
    assert_eq!(r.status, 404, "/hx is not under /h: {r:?}");
    // The WebSocket routes keep working on the same listener.
    let mut ws = s.connect("/echo").await;
    send(&mut ws, "still here").await;
    assert_eq!(recv_text(&mut ws).await, "still here");
}

#[tokio::test]
async fn bodies_headers_and_framing_are_bounded() {
    let s = server().await;
    let mut c = Client::new(&s).await;
    let r = c.request("POST", "/h/echo", &"x".repeat(1024)).await;
    assert_eq!(r.status, 200, "exactly max_body_size passes");
    let r = c.request("POST", "/h/echo", &"x".repeat(1025)).await;
    assert_eq!((r.status, r.header("connection")), (413, Some("close")), "{r:?}");
    // Refused from its Content-Length alone: nothing of a huge body is read.
    let mut c = Client::new(&s).await;
    c.send_raw(b"POST /h/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 413);
    let mut c = Client::new(&s).await;
    c.send_raw(b"POST /h/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 411);
    let mut c = Client::new(&s).await;
    c.send_raw(b"POST /h/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").await;
    assert_eq!(c.response().await.unwrap().status, 400);
    // Headers over [server] max_header_bytes on a kept-alive connection's next request: 431.
    let mut c = Client::new(&s).await;
    assert_eq!(c.request("GET", "/h/echo", "").await.status, 200);
    let big = format!("GET /h/echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "y".repeat(20 << 10));
    c.send_raw(big.as_bytes()).await;
    assert_eq!(c.response().await.unwrap().status, 431);
    // Every answer is counted by route and status class, refusals included; whole requests are timed.
    assert_eq!(s.metric(r#"wasmsock_http_requests_total{route="/h",status="2xx"}"#).await, 2.0);
    assert_eq!(s.metric(r#"wasmsock_http_requests_total{route="/h",status="4xx"}"#).await, 5.0);
    assert_eq!(s.metric(r#"wasmsock_http_request_seconds_count{route="/h"}"#).await, 6.0);
}

#[tokio::test]
async fn a_failing_on_request_answers_500_then_503_in_quarantine_and_websockets_are_unharmed() {
    let s = server().await;
    let mut ws = s.connect("/ws?as=ada").await;
    let mut c = Client::new(&s).await;
    let r = c.request("GET", "/h/trap", "").await;
    assert_eq!((r.status, r.body.as_str()), (500, "internal error"), "no internals leak: {r:?}");
    let started = Instant::now();
    let r = c.request("GET", "/h/spin", "").await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "cut off by the deadline: {:?}", started.elapsed());
    // As for WebSockets, failures count once per connection: one client alone cannot
    // quarantine the plugin, and its connection keeps serving.
    assert_eq!(c.request("GET", "/h/echo", "").await.status, 200);
    // Failures from three connections quarantine it: its HTTP route answers 503 meanwhile.
    for _ in 0..2 {
        assert_eq!(Client::new(&s).await.request("GET", "/h/trap", "").await.status, 500);
    }
    let r = c.request("GET", "/h/echo", "").await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "{r:?}");
    // The WebSocket route of the same plugin answers its policy too; another plugin's route serves.
    let mut echo = s.connect("/echo").await;
    send(&mut echo, "fine").await;
    assert_eq!(recv_text(&mut echo).await, "fine");
    drop(ws.close(None).await);
}

#[tokio::test]
async fn a_plugin_built_for_contract_0_1_loads_next_to_0_2_and_its_http_route_answers_503() {
    let s = server().await;
    assert_eq!(s.plugin_listing("legacy").await["contract"], "0.1.0");
    let mut c = Client::new(&s).await;
    let r = c.request("GET", "/legacy/anything", "").await;
    assert_eq!((r.status, r.body.as_str()), (503, "unavailable"), "{r:?}");
    // It serves its WebSocket route as before, next to a 0.2.0 plugin serving HTTP.
    let mut old = s.connect("/old?as=ada").await;
    send(&mut old, "whoami").await;
    assert_eq!(recv_text(&mut old).await, "ada");
    let r = c.request("GET", "/h/echo", "").await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn users_calls_reach_every_connection_of_an_identity() {
    let s = server().await;
    let mut a1 = s.connect("/ws?as=ada").await;
    let mut a2 = s.connect("/ws?as=ada").await;
    let mut b = s.connect("/ws?as=bob").await;
    let mut c = Client::new(&s).await;
    assert_eq!(c.request("GET", "/h/count?user=ada", "").await.json()["count"], 2);
    assert_eq!(c.request("GET", "/h/count?user=nobody", "").await.json()["count"], 0);
    assert_eq!(c.request("POST", "/h/send?user=ada", "for ada").await.json()["queued"], 2);
    assert_eq!(recv_text(&mut a1).await, "for ada");
    assert_eq!(recv_text(&mut a2).await, "for ada");
    assert_eq!(c.request("POST", "/h/send?user=nobody", "x").await.json()["queued"], 0);
    assert_eq!(c.request("POST", "/h/close?user=ada", "").await.json()["closed"], 2);
    assert_eq!(expect_close(&mut a1).await, (4001, "closed by the backend".into()));
    assert_eq!(expect_close(&mut a2).await, (4001, "closed by the backend".into()));
    // Bob was not touched, and ada's connections are gone from the count.
    send(&mut b, "whoami").await;
    assert_eq!(recv_text(&mut b).await, "bob");
    assert!(
        eventually(Duration::from_secs(5), async || {
            c.request("GET", "/h/count?user=ada", "").await.json()["count"] == 0
        })
        .await
    );
    assert_eq!(c.request("POST", "/h/send?user=", "x").await.status, 400, "an empty user id is refused");
    // A publish from a request reaches the room's members.
    send(&mut b, "join news").await;
    assert_eq!(recv_text(&mut b).await, "joined");
    assert_eq!(c.request("POST", "/h/publish?room=news", "extra").await.json()["queued"], 1);
    assert_eq!(recv_text(&mut b).await, "extra");
}

#[tokio::test]
async fn a_request_flood_is_bounded_while_websockets_keep_serving() {
    let s = Arc::new(server().await);
    // Many clients at once on a route that takes 2 requests in flight: the others are told
    // 503 at once instead of queueing without bound.
    let mut flood = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        flood.push(tokio::spawn(async move {
            let mut c = Client::new(&s).await;
            let mut statuses = Vec::new();
            for _ in 0..20 {
                statuses.push(c.request("POST", "/h/echo", "flood").await.status);
            }
            statuses
        }));
    }
    let mut ws = s.connect("/echo").await;
    let mut worst = Duration::ZERO;
    for i in 0..50 {
        let t = Instant::now();
        send(&mut ws, &format!("ping {i}")).await;
        assert_eq!(recv_text(&mut ws).await, format!("ping {i}"));
        worst = worst.max(t.elapsed());
    }
    let mut counts = std::collections::BTreeMap::new();
    for f in flood {
        for status in f.await.unwrap() {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    eprintln!("flood statuses {counts:?}, worst WebSocket round trip {worst:?}");
    assert_eq!(counts.keys().filter(|k| ![200, 503].contains(*k)).count(), 0, "{counts:?}");
    assert!(counts.get(&200).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(worst < Duration::from_secs(2), "the WebSocket route kept serving: {worst:?}");
}
