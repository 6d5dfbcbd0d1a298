//! Outbound HTTP from plugins (`wasi:http` under each plugin's policy), against real local
//! backends: an in-process HTTP/1.1 server on 127.0.0.1 port 0 (plain and TLS) that counts the
//! connections it accepts, so a denied request provably never connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::*;

/// A local backend. Paths: `/echo` answers `METHOD BODY`; `/slow?ms=N` answers `slow` after N
/// ms; `/status?code=N` answers N; `/big` declares 10 MB; `/endless` streams chunks forever;
/// `/never` reads the request and never answers.
struct Backend {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    async fn start() -> Backend {
        Self::start_with(None).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                count.fetch_add(1, SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                                serve(stream).await;
                            }
                        }
                        None => serve(tcp).await,
                    }
                });
            }
        });
        Backend { port, accepted, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// One request per connection (the host's client opens one per request).
async fn serve(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = s.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let Ok(n) = s.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).and_then(|v| v.parse::<u64>().ok())
    };
    let reply = |status: u64, body: &str| {
        format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    };
    match path {
        "/echo" => {
            let _ = s.write_all(reply(200, &format!("{method} {body}")).as_bytes()).await;
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(param("ms").unwrap_or(100))).await;
            let _ = s.write_all(reply(200, "slow").as_bytes()).await;
        }
        "/status" => {
            let _ = s.write_all(reply(param("code").unwrap_or(200), "as asked").as_bytes()).await;
        }
        "/big" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n").await;
            let _ = s.write_all(&vec![b'x'; 64 << 10]).await;
        }
        "/endless" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            let piece = format!("4000\r\n{}\r\n", "y".repeat(0x4000));
            while s.write_all(piece.as_bytes()).await.is_ok() {}
        }
        "/never" => tokio::time::sleep(Duration::from_secs(3600)).await,
        _ => {
            let _ = s.write_all(reply(404, "no such path").as_bytes()).await;
        }
    }
    let _ = s.shutdown().await;
}

fn config(allowed: &[String], extra: &str) -> String {
    format!(
        "[[routes]]\npath = \"/out\"\nplugins = [\"outbound\"]\n\
         [plugins.outbound]\nhttp_allowed_hosts = {allowed:?}\nhttp_timeout = \"1s\"\nhttp_max_response = \"256KiB\"\n{extra}"
    )
}

async fn server(allowed: &[String], extra: &str) -> TestServer {
    Setup::new(&config(allowed, extra)).plugin("outbound", "outbound").start().await
}

async fn ask(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    recv_text(ws).await
}

#[tokio::test]
async fn an_allowed_backend_answers_and_the_wait_does_not_count_as_cpu() {
    let b = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("post {} hello backend", b.url("/echo"))).await, "200 POST hello backend");
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/status?code=418"))).await, "418 as asked");
    // 300 ms of waiting, six times the plugin's 50 ms CPU deadline: the call is not cut off.
    let started = Instant::now();
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/slow?ms=300"))).await, "200 slow");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(s.metric("wasmsock_plugin_http_requests_total{plugin=\"outbound\"}").await, 3.0);
    assert!(s.metric("wasmsock_plugin_http_seconds_count{plugin=\"outbound\"}").await >= 3.0);
    assert_eq!(s.metric("wasmsock_plugin_deadline_hits_total{plugin=\"outbound\"}").await, 0.0);
}

#[tokio::test]
async fn a_host_not_allowed_is_denied_without_a_connection() {
    let allowed = Backend::start().await;
    let other = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", allowed.port), "https://*.example.com".into()], "").await;
    let mut ws = s.connect("/out").await;
    // Another port of the same address, another scheme, and no list at all for other plugins.
    assert_eq!(
        ask(&mut ws, &format!("get {}", other.url("/echo"))).await,
        "error: request denied by the server's policy"
    );
    let https_same_port = format!("get https://127.0.0.1:{}/echo", allowed.port);
    assert_eq!(ask(&mut ws, &https_same_port).await, "error: request denied by the server's policy");
    assert_eq!(ask(&mut ws, "get http://localhost:1/").await, "error: request denied by the server's policy");
    assert_eq!(other.accepted.load(SeqCst), 0, "a denied request connected");
    assert_eq!(allowed.accepted.load(SeqCst), 0, "a denied request connected");
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"denied\"}").await, 3.0);
    // The connection is fine, and an allowed request still goes.
    assert_eq!(ask(&mut ws, &format!("get {}", allowed.url("/echo"))).await, "200 GET ");
}

#[tokio::test]
async fn deny_by_default_when_nothing_is_allowed() {
    let b = Backend::start().await;
    let s = server(&[], "").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/echo"))).await, "error: request denied by the server's policy");
    assert_eq!(b.accepted.load(SeqCst), 0);
}

#[tokio::test]
async fn refused_and_timed_out_requests_fail_cleanly() {
    let b = Backend::start().await;
    // A port nobody listens on: bind one, note it, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = server(&[format!("http://127.0.0.1:{}", b.port), format!("http://127.0.0.1:{closed}")], "").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get http://127.0.0.1:{closed}/")).await, "error: connection failed");
    let started = Instant::now();
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/never"))).await, "error: timed out");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "http_timeout is 1s, took {took:?}");
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"connect\"}").await, 1.0);
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"timeout\"}").await, 1.0);
    assert_eq!(ask(&mut ws, "say still here").await, "still here");
}

#[tokio::test]
async fn huge_and_endless_answers_are_cut_at_the_cap() {
    let b = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut ws = s.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/big"))).await, "error: answer too large");
    let started = Instant::now();
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/endless"))).await, "error: answer too large");
    assert!(started.elapsed() < Duration::from_secs(1), "cut at the cap, not at the timeout");
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"too_large\"}").await, 2.0);
    assert_eq!(ask(&mut ws, &format!("post {} after", b.url("/echo"))).await, "200 POST after");
}

#[tokio::test]
async fn one_connections_messages_stay_in_order_while_others_are_served() {
    let b = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut slow = s.connect("/out").await;
    let mut other = s.connect("/out").await;
    // The slow connection's second message waits for its first call (which waits 400 ms).
    send(&mut slow, &format!("get {}", b.url("/slow?ms=400"))).await;
    send(&mut slow, "say second").await;
    // Meanwhile another connection is served at once.
    let started = Instant::now();
    assert_eq!(ask(&mut other, "say quick").await, "quick");
    assert!(started.elapsed() < Duration::from_millis(300), "a waiting call held up another connection");
    assert_eq!(recv_text(&mut slow).await, "200 slow");
    assert_eq!(recv_text(&mut slow).await, "second");
}

#[tokio::test]
async fn requests_in_flight_are_bounded_per_plugin() {
    let b = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", b.port)], "http_max_concurrent = 2\n").await;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut ws = s.connect("/out").await;
        send(&mut ws, &format!("get {}", b.url("/slow?ms=600"))).await;
        waiting.push(ws);
    }
    assert!(eventually(Duration::from_secs(2), async || b.accepted.load(SeqCst) == 2).await);
    let mut third = s.connect("/out").await;
    assert_eq!(ask(&mut third, &format!("get {}", b.url("/echo"))).await, "error: too many requests in flight");
    for ws in &mut waiting {
        assert_eq!(recv_text(ws).await, "200 slow");
    }
    // The slots are back.
    assert_eq!(ask(&mut third, &format!("get {}", b.url("/echo"))).await, "200 GET ");
}

#[tokio::test]
async fn on_connect_can_ask_the_backend() {
    let b = Backend::start().await;
    let s = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let ok = b.url("/status?code=204");
    let mut ws = s.connect(&format!("/out?check={ok}")).await;
    assert_eq!(ask(&mut ws, "say in").await, "in");
    let (status, body) = s.refused(&format!("/out?check={}", b.url("/status?code=401"))).await;
    assert_eq!((status, body.as_str()), (403, "backend said 401"));
}

#[tokio::test]
async fn https_is_verified_against_the_configured_ca() {
    let pki = Pki::new();
    let ca = pki.ca("backend-ca", "backend CA");
    pki.leaf(&ca, "backend", "backend", "localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let config = {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(pki.path("backend.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.path("backend.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(c)
    };
    let b = Backend::start_with(Some(config)).await;
    let url = format!("https://localhost:{}/echo", b.port);
    let allowed = [format!("https://localhost:{}", b.port)];
    // `localhost` resolves to 127.0.0.1: allowed only with the SSRF guard's opt-in.
    let trusting =
        server(&allowed, &format!("http_ca = {:?}\nhttp_allow_private = true\n", pki.path("backend-ca.pem"))).await;
    let mut ws = trusting.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("post {url} over tls")).await, "200 POST over tls");
    // Against the system's roots the private CA is unknown: the handshake fails.
    let system = server(&allowed, "http_allow_private = true\n").await;
    let mut ws = system.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {url}")).await, "error: TLS failed");
    assert_eq!(system.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"tls\"}").await, 1.0);
}

#[tokio::test]
async fn a_plugin_may_still_not_sleep() {
    let s = server(&[], "").await;
    let mut ws = s.connect("/out").await;
    send(&mut ws, "sleep 20").await;
    assert_eq!(expect_close(&mut ws).await.0, 1011);
}

#[tokio::test]
async fn a_reload_while_a_request_waits_lets_it_finish_once_on_the_old_code() {
    let b = Backend::start().await;
    let mut s = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut ws = s.connect("/out").await;
    send(&mut ws, &format!("get {}", b.url("/slow?ms=600"))).await;
    assert!(eventually(Duration::from_secs(2), async || b.accepted.load(SeqCst) == 1).await);
    // New code under the same name while the call waits: the echo plugin.
    assert!(matches!(s.install("outbound", "echo").await, wasmsock::plugin::LoadOutcome::Loaded { .. }));
    assert_eq!(recv_text(&mut ws).await, "200 slow", "the call in flight finishes on the old code");
    assert_eq!(ask(&mut ws, "say hi").await, "say hi", "the next message reaches the new code");
    assert_eq!(b.accepted.load(SeqCst), 1, "the request was sent once");
}

/// Round trips on an echo route, in milliseconds, sorted.
async fn echo_round_trips(ws: &mut Ws, n: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        send(ws, &format!("ping {i}")).await;
        assert_eq!(recv_text(ws).await, format!("ping {i}"));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times
}

fn p99(sorted: &[f64]) -> f64 {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[tokio::test]
async fn connections_waiting_on_a_silent_backend_leave_other_routes_alone() {
    const WAITING: usize = 200;
    let b = Backend::start().await;
    let toml = format!(
        "[[routes]]\npath = \"/native\"\nbuiltin = \"echo\"\n{}",
        config(&[format!("http://127.0.0.1:{}", b.port)], "http_timeout = \"3s\"\nhttp_max_concurrent = 1000\n")
            .replace("http_timeout = \"1s\"\n", "")
    );
    let s = Setup::new(&toml).plugin("outbound", "outbound").start().await;
    let mut echo = s.connect("/native").await;
    let idle = echo_round_trips(&mut echo, 200).await;
    let mut waiting = Vec::new();
    for _ in 0..WAITING {
        let mut ws = s.connect("/out").await;
        send(&mut ws, &format!("get {}", b.url("/never"))).await;
        waiting.push(ws);
    }
    assert!(eventually(Duration::from_secs(5), async || b.accepted.load(SeqCst) >= WAITING / 2).await);
    let busy = echo_round_trips(&mut echo, 200).await;
    eprintln!(
        "echo round trip p99: idle {:.2} ms, with {} calls waiting on a backend {:.2} ms (backend got {})",
        p99(&idle),
        WAITING,
        p99(&busy),
        b.accepted.load(SeqCst)
    );
    assert!(p99(&busy) < (p99(&idle) * 2.0).max(p99(&idle) + 20.0), "idle {idle:?}, busy {busy:?}");
    // Every waiting call ends: timed out, or refused an instance (closed 1011) past the pool.
    for ws in &mut waiting {
        match next_data(ws).await {
            Some(tokio_tungstenite::tungstenite::Message::Text(t)) => assert_eq!(t.as_str(), "error: timed out"),
            Some(tokio_tungstenite::tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1011),
            other => panic!("unexpected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_backend_past_its_grace_period() {
    let b = Backend::start().await;
    let extra = "[server]\nshutdown_grace = \"300ms\"\n";
    let toml = config(&[format!("http://127.0.0.1:{}", b.port)], "")
        .replace("http_timeout = \"1s\"", "http_timeout = \"60s\"");
    let s = Setup::new(&format!("{extra}{toml}")).plugin("outbound", "outbound").start().await;
    let mut ws = s.connect("/out").await;
    send(&mut ws, &format!("get {}", b.url("/never"))).await;
    assert!(eventually(Duration::from_secs(2), async || b.accepted.load(SeqCst) == 1).await);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), s.shutdown()).await.expect("shutdown ends").unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?} with a request waiting (http_timeout 60s)");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error_and_nothing_else_is_affected() {
    let b = Backend::start().await;
    let s = server(&["http://nothing.invalid".into(), format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut ws = s.connect("/out").await;
    let mut other = s.connect("/out").await;
    assert_eq!(ask(&mut ws, "get http://nothing.invalid/").await, "error: DNS lookup failed");
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"dns\"}").await, 1.0);
    assert_eq!(ask(&mut ws, "say still here").await, "still here");
    assert_eq!(ask(&mut other, &format!("get {}", b.url("/echo"))).await, "200 GET ");
    assert_eq!(s.metric("wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"connect\"}").await, 0.0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_the_policy_opts_in() {
    let b = Backend::start().await;
    let allowed = [format!("http://localhost:{}", b.port)];
    let url = format!("http://localhost:{}/echo", b.port);
    let guarded = server(&allowed, "webhook_flush_delay = \"10ms\"\n").await;
    let mut ws = guarded.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {url}")).await, "error: request denied by the server's policy");
    let private = "wasmsock_plugin_http_errors_total{plugin=\"outbound\",kind=\"private\"}";
    assert_eq!(guarded.metric(private).await, 1.0);
    // A webhook to it is queued (the name is allowed) and refused when sent, not retried.
    assert_eq!(ask(&mut ws, &format!("hook {url} {{}}")).await, "queued");
    let denied = "wasmsock_plugin_webhook_dropped_total{plugin=\"outbound\",reason=\"denied\"}";
    assert!(eventually(Duration::from_secs(3), async || guarded.metric(denied).await == 1.0).await);
    assert_eq!(guarded.metric("wasmsock_plugin_webhook_retries_total{plugin=\"outbound\"}").await, 0.0);
    assert_eq!(b.accepted.load(SeqCst), 0, "a refused request connected");
    // The same address written as an IP literal is the operator's choice: allowed.
    let literal = server(&[format!("http://127.0.0.1:{}", b.port)], "").await;
    let mut ws = literal.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {}", b.url("/echo"))).await, "200 GET ");
    // With the opt-in the name goes through.
    let opted = server(&allowed, "http_allow_private = true\n").await;
    let mut ws = opted.connect("/out").await;
    assert_eq!(ask(&mut ws, &format!("get {url}")).await, "200 GET ");
}
