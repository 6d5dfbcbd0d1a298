//! What the classic Go WSS stack hand-writes, as wasmsock configuration: origins, mutual TLS,
//! size limits, handshake/idle/write timeouts, connection limits and heartbeats.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

fn with_origin(s: &TestServer, path: &str, origin: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = s.url(path).into_client_request().unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    req
}

#[tokio::test]
async fn origin_allowlist_refuses_other_origins_with_403_before_the_upgrade() {
    let s = Setup::new(
        r#"
[origins]
allow = ["https://app.example.com", "https://*.trusted.org"]
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/strict"
plugins = ["echo"]
origins = { allow_missing = false }
[[routes]]
path = "/open"
plugins = ["echo"]
origins = { allow = ["*"] }
"#,
    )
    .plugin("echo", "echo")
    .start()
    .await;
    // A browser-like handshake from an allowed origin (exact, and a subdomain pattern).
    for origin in ["https://app.example.com", "https://eu.trusted.org"] {
        let mut ws = s.connect_request(with_origin(&s, "/echo", origin)).await.expect(origin);
        send(&mut ws, "hi").await;
        assert_eq!(recv_text(&mut ws).await, "hi");
    }
    // Another origin: 403, never upgraded.
    for origin in ["https://evil.example.net", "http://app.example.com", "https://trusted.org", "null"] {
        match s.connect_request(with_origin(&s, "/echo", origin)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 403, "{origin}")
            }
            other => panic!("{origin}: expected 403, got {other:?}"),
        }
    }
    // Without an Origin header (non-browser clients): allowed by default, refused where configured.
    s.connect("/echo").await;
    assert_eq!(s.refused("/strict").await, (403, "an Origin header is required".into()));
    // A route can open itself up.
    s.connect_request(with_origin(&s, "/open", "https://anything.example")).await.expect("open route");
}

#[tokio::test]
async fn without_an_allowlist_browsers_must_come_from_the_same_origin() {
    let s = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    // A page served by this host (the Host header the client sends is localhost:PORT).
    let same = format!("https://localhost:{}", s.addr.port());
    let mut ws = s.connect_request(with_origin(&s, "/echo", &same)).await.expect("same origin");
    send(&mut ws, "hi").await;
    assert_eq!(recv_text(&mut ws).await, "hi");
    // A cross-site page is refused before the upgrade; a non-browser client without Origin is not.
    match s.connect_request(with_origin(&s, "/echo", "https://evil.example.net")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    s.connect("/echo").await;
}

/// A CA, a client certificate it signed for `alice`, and one from an unrelated CA.
fn client_pki() -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    let pki = Pki::new();
    let ca = pki.ca("ca", "wasmsock test CA");
    pki.leaf(&ca, "alice", "alice", "alice.client", ClientAuth);
    let rogue = pki.ca("rogue", "rogue CA");
    pki.leaf(&rogue, "mallory", "mallory", "mallory.client", ClientAuth);
    pki
}

async fn tls_connect(s: &TestServer, path: &str, client: Option<(&Path, &Path)>) -> Result<Ws, String> {
    wss_over(s, TcpStream::connect(s.addr).await.unwrap(), path, client).await
}

#[tokio::test]
async fn mutual_tls_required_refuses_clients_without_a_valid_certificate() {
    let pki = client_pki();
    let s = Setup::new(&format!(
        "[tls]\nclient_ca = {:?}\nclient_auth = \"required\"\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n",
        pki.path("ca.pem")
    ))
    .plugin("probe", "probe")
    .start()
    .await;
    // No certificate, then a certificate from another CA: the TLS handshake fails (an alert,
    // not an HTTP refusal), and the server counts it as such.
    let tls_rejects = "wasmsock_handshake_rejects_total{reason=\"tls_handshake\"}";
    let bad = (pki.path("mallory.pem"), pki.path("mallory.key"));
    for (n, client) in [(1.0, None), (2.0, Some((bad.0.as_path(), bad.1.as_path())))] {
        let err = tls_connect(&s, "/probe", client).await.expect_err("refused");
        assert!(!err.starts_with("HTTP error"), "refused by TLS, not HTTP: {err}");
        assert!(eventually(Duration::from_secs(5), async || s.metric(tls_rejects).await == n).await, "{err}");
    }
    // A good certificate: accepted, and the plugin sees the verified subject.
    let good = (pki.path("alice.pem"), pki.path("alice.key"));
    let mut ws = tls_connect(&s, "/probe?as=cert", Some((&good.0, &good.1))).await.expect("good client cert");
    send(&mut ws, "whoami").await;
    let who = recv_text(&mut ws).await;
    assert!(who.contains("CN=alice") && who.contains("O=wasmsock tests"), "{who}");
}

#[tokio::test]
async fn mutual_tls_optional_accepts_both_and_reports_the_subject() {
    let pki = client_pki();
    let s = Setup::new(&format!(
        "[tls]\nclient_ca = {:?}\nclient_auth = \"optional\"\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n",
        pki.path("ca.pem")
    ))
    .plugin("probe", "probe")
    .start()
    .await;
    let mut anon = tls_connect(&s, "/probe?as=cert", None).await.expect("no cert is fine");
    send(&mut anon, "whoami").await;
    assert_eq!(recv_text(&mut anon).await, "no certificate");
    let good = (pki.path("alice.pem"), pki.path("alice.key"));
    let mut ws = tls_connect(&s, "/probe?as=cert", Some((&good.0, &good.1))).await.expect("good cert");
    send(&mut ws, "whoami").await;
    assert!(recv_text(&mut ws).await.contains("CN=alice"));
    let bad = (pki.path("mallory.pem"), pki.path("mallory.key"));
    assert!(
        tls_connect(&s, "/probe", Some((&bad.0, &bad.1))).await.is_err(),
        "an invalid certificate is still refused"
    );
}

#[tokio::test]
async fn oversize_messages_and_frames_close_with_1009() {
    let s = Setup::new(
        r#"
[limits]
max_message_size = "64KiB"
max_frame_size = "16KiB"
[[routes]]
path = "/echo"
plugins = ["echo"]
"#,
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let mut ws = s.connect("/echo").await;
    send(&mut ws, &"a".repeat(16 * 1024)).await;
    assert_eq!(recv_text(&mut ws).await.len(), 16 * 1024);
    // One frame over the frame limit.
    send(&mut ws, &"a".repeat(16 * 1024 + 1)).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    // A message over the message limit, in frames under the frame limit.
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut ws = s.connect("/echo").await;
    ws.send(Message::Frame(Frame::message(vec![b'x'; 16_000], OpCode::Data(Data::Binary), false))).await.unwrap();
    for _ in 0..3 {
        ws.send(Message::Frame(Frame::message(vec![b'x'; 16_000], OpCode::Data(Data::Continue), false))).await.unwrap();
    }
    let _ = ws.send(Message::Frame(Frame::message(vec![b'x'; 16_000], OpCode::Data(Data::Continue), true))).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn connection_limits_answer_503_before_the_upgrade() {
    let s = Setup::new(
        r#"
[server]
max_connections = 3
max_connections_per_ip = 2
[[routes]]
path = "/echo"
plugins = ["echo"]
"#,
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let a = s.connect("/echo").await;
    let _b = s.connect("/echo").await;
    let (status, body) = s.refused("/echo").await;
    assert_eq!(status, 503);
    assert!(body.contains("this address"), "{body}");
    // A slot frees up when a connection ends.
    drop(a);
    assert!(eventually(Duration::from_secs(5), async || s.try_connect("/echo").await.is_ok()).await);
}

#[tokio::test]
async fn global_connection_limit() {
    let s = Setup::new("[server]\nmax_connections = 2\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n")
        .plugin("echo", "echo")
        .start()
        .await;
    let _a = s.connect("/echo").await;
    let _b = s.connect("/echo").await;
    let (status, body) = s.refused("/echo").await;
    assert_eq!((status, body.as_str()), (503, "server connection limit reached"));
}

/// A WebSocket over TLS through a pretend balancer that sends `header` first.
async fn via_balancer(s: &TestServer, header: &[u8]) -> Result<Ws, String> {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    wss_over(s, tcp, "/echo", None).await
}

/// A PROXY protocol v2 header for a TCP/IPv4 client.
fn proxy_v2(command: u8, client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | command, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn behind_a_proxy_protocol_balancer_limits_count_the_real_client() {
    let s = Setup::new(
        "[server]\nproxy_protocol = true\nmax_connections_per_ip = 1\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    // Every connection comes from 127.0.0.1 (the "balancer"); the limit of one per address
    // applies to the clients the headers name.
    let mut first = via_balancer(&s, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n").await.unwrap();
    let _second = via_balancer(&s, b"PROXY TCP6 2001:db8::8 ::1 5556 443\r\n").await.unwrap();
    let again = via_balancer(&s, &proxy_v2(1, [203, 0, 113, 7], 5557)).await.err().unwrap_or_default();
    assert!(again.contains("503"), "203.0.113.7 again, in a v2 header: {again}");
    // LOCAL (the balancer's own health check) counts as the balancer's address.
    let _local = via_balancer(&s, &proxy_v2(0, [0; 4], 0)).await.unwrap();
    send(&mut first, "through the balancer").await;
    assert_eq!(recv_text(&mut first).await, "through the balancer");
    // Without a header, or with a malformed one, the connection is dropped before TLS.
    assert!(s.try_connect("/echo").await.is_err(), "no header");
    assert!(via_balancer(&s, b"PROXY TCP4 not-an-address 127.0.0.1 1 443\r\n").await.is_err());
    let refused = s.metric("wasmsock_handshake_rejects_total{reason=\"proxy_protocol\"}").await;
    assert_eq!(refused, 2.0);
}

/// A real HAProxy in TCP mode in front of a server, sending the PROXY protocol; killed on drop.
struct Haproxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `send_proxy` is HAProxy's server option: `send-proxy` (v1) or `send-proxy-v2`.
    fn start(backend: std::net::SocketAddr, send_proxy: &str) -> Option<Haproxy> {
        let path = std::env::var("PATH").unwrap_or_default();
        let exe = path
            .split(':')
            .chain(["/usr/sbin", "/usr/local/sbin"])
            .map(|d| Path::new(d).join("haproxy"))
            .find(|p| p.is_file())?;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n\
                 frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
                 backend b\n  server s {backend} {send_proxy}\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(exe)
            .arg("-db") // foreground
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut h = Haproxy { child, port, _dir: dir };
        wait_listening(&mut h.child, port, "haproxy");
        Some(h)
    }

    /// A TCP connection to HAProxy from the loopback address `source` (all of 127/8 is local).
    async fn connect_from(&self, source: [u8; 4]) -> TcpStream {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((source, 0).into()).unwrap();
        sock.connect(([127, 0, 0, 1], self.port).into()).await.unwrap()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn haproxy_in_front_passes_each_clients_own_address() {
    let s = Setup::new(
        "[server]\nproxy_protocol = true\nmax_connections_per_ip = 1\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    for (send_proxy, [a, b]) in [("send-proxy-v2", [2, 3]), ("send-proxy", [4, 5])] {
        let Some(h) = Haproxy::start(s.addr, send_proxy) else { return skip_without("haproxy") };
        // HAProxy connects from 127.0.0.1 every time; the one-per-address limit applies to the
        // clients behind it, 127.0.0.a and 127.0.0.b.
        let mut ws = wss_over(&s, h.connect_from([127, 0, 0, a]).await, "/echo", None).await.unwrap();
        let _other = wss_over(&s, h.connect_from([127, 0, 0, b]).await, "/echo", None).await.unwrap();
        let again = wss_over(&s, h.connect_from([127, 0, 0, a]).await, "/echo", None).await.err().unwrap_or_default();
        assert!(again.contains("503"), "{send_proxy}: 127.0.0.{a} again: {again}");
        send(&mut ws, send_proxy).await;
        assert_eq!(recv_text(&mut ws).await, send_proxy);
    }
}

const PROBE_WITH_MONITOR: &str = "[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n";

/// Waits for the monitor's report of connection `id` and returns its close code and reason.
async fn reported_close(monitor: &mut Ws, id: u64) -> (u16, String) {
    loop {
        let line = recv_text(monitor).await;
        let mut parts = line.splitn(4, ' ');
        let (_, got, code, reason) = (parts.next(), parts.next(), parts.next(), parts.next());
        if got == Some(&id.to_string()) {
            return (code.unwrap().parse().unwrap(), reason.unwrap_or("").to_owned());
        }
    }
}

async fn probe_id(ws: &mut Ws) -> u64 {
    send(ws, "id").await;
    recv_text(ws).await.parse().unwrap()
}

#[tokio::test]
async fn a_silent_peer_is_closed_within_the_heartbeat_bound() {
    let s = Setup::new(&format!("[limits]\nping_interval = \"200ms\"\npong_timeout = \"300ms\"\n{PROBE_WITH_MONITOR}"))
        .plugin("probe", "probe")
        .start()
        .await;
    let mut monitor = s.connect("/probe?monitor=1").await;
    let mut silent = s.connect("/probe").await;
    let id = probe_id(&mut silent).await;
    // From now on the client never reads, so it never answers the server's pings.
    let started = tokio::time::Instant::now();
    let (code, reason) = reported_close(&mut monitor, id).await;
    let took = started.elapsed();
    assert_eq!((code, reason.as_str()), (1006, "heartbeat timeout"));
    assert!(took < Duration::from_millis(1500), "closed after {took:?}; bound is 500ms + a sweep");
    // The monitor itself reads, answers pings, and stays connected the whole time.
    send(&mut monitor, "id").await;
    recv_text(&mut monitor).await;
    drop(silent);
}

#[tokio::test]
async fn the_host_answers_client_pings_without_calling_plugins() {
    let s = Setup::new(PROBE_WITH_MONITOR).plugin("probe", "probe").start().await;
    let mut ws = s.connect("/probe").await;
    send(&mut ws, "warm").await;
    assert_eq!(recv_text(&mut ws).await, "warm");
    let calls = async || s.plugin_listing("probe").await["calls"].as_u64().unwrap();
    let before = calls().await;
    for _ in 0..3 {
        ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
            // The probe echoes data messages: anything else means a ping reached it.
            other => panic!("expected the pong, got {other:?}"),
        }
    }
    assert_eq!(calls().await, before, "answering pings called no plugin");
    send(&mut ws, "after").await;
    assert_eq!(recv_text(&mut ws).await, "after");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let s = Setup::new(&format!("[limits]\nidle_timeout = \"300ms\"\n{PROBE_WITH_MONITOR}"))
        .plugin("probe", "probe")
        .start()
        .await;
    let mut ws = s.connect("/probe").await;
    send(&mut ws, "x").await;
    recv_text(&mut ws).await;
    let started = tokio::time::Instant::now();
    assert_eq!(expect_close(&mut ws).await, (1001, "idle timeout".into()));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_memory_stays_bounded() {
    let s = Setup::new(
        r#"
[limits]
write_timeout = "500ms"
max_message_size = "1MiB"
outbox_bytes = "2MiB"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/probe"
plugins = ["probe"]
"#,
    )
    .plugin("echo", "echo")
    .plugin("probe", "probe")
    .start()
    .await;
    let rss_before = rss_bytes();
    let ws = s.connect("/echo").await;
    let (mut tx, rx) = futures_util::StreamExt::split(ws);
    // Ask for echoes of 1 MB messages and never read one: the server must give up on this
    // peer (slow-consumer policy, then the write timeout) instead of buffering without bound.
    let blob = vec![7u8; 1 << 20];
    let started = tokio::time::Instant::now();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(15) {
            match tokio::time::timeout(Duration::from_secs(3), tx.send(Message::binary(blob.clone()))).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        sent
    });
    // The peak while the peer misbehaves, not just what is left afterwards.
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while started.elapsed() < Duration::from_secs(16) {
            peak = peak.max(rss_bytes());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    let sent = sender.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the server was still taking data after {took:?} ({sent} MB)");
    sampler.abort();
    let peak = rss_bytes().max(sampler.await.unwrap_or(0));
    // Outbox 2 MiB + one 1 MiB message in decoding + TLS buffers; far below the data sent.
    let growth = peak.saturating_sub(rss_before);
    assert!(growth < 64 << 20, "server memory grew by {} MB while {sent} MB were sent", growth >> 20);
    // Other clients are unaffected.
    let mut ok = s.connect("/probe").await;
    send(&mut ok, "fine").await;
    assert_eq!(recv_text(&mut ok).await, "fine");
    assert!(s.metric("wasmsock_outbox_drops_total").await >= 1.0);
    drop(rx);
}

#[tokio::test]
async fn the_drop_policy_keeps_a_slow_consumer_and_drops_what_does_not_fit() {
    let s = Setup::new(
        r#"
[[routes]]
path = "/drop"
plugins = ["hostile"]
limits = { outbox_messages = 8, slow_consumer = "drop" }
[[routes]]
path = "/close"
plugins = ["hostile"]
limits = { outbox_messages = 8 }
"#,
    )
    .plugin("hostile", "hostile")
    .start()
    .await;
    // One call sends until the queue refuses: with "drop" the rest is dropped, the peer stays.
    let mut ws = s.connect("/drop").await;
    send(&mut ws, "flood").await;
    send(&mut ws, "last").await;
    let mut floods = 0;
    let report = loop {
        match recv_text(&mut ws).await.as_str() {
            "flood" => floods += 1,
            other => break other.to_owned(),
        }
    };
    assert_eq!(floods, 8, "the queue's worth was delivered");
    assert!(report.starts_with("flood stopped after 8"), "{report}");
    assert!(s.metric("wasmsock_outbox_drops_total").await >= 1.0);
    send(&mut ws, "still here").await;
    assert_eq!(recv_text(&mut ws).await, "still here");
    // The default policy closes the slow consumer with 1008 instead.
    let mut ws = s.connect("/close").await;
    send(&mut ws, "flood").await;
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1008);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Completes TLS, sends the start of an upgrade request and never its end (a WebSocket client
/// cannot stall mid-request, so rustls directly); resolves to whatever the server answers.
fn half_request(s: &TestServer) -> tokio::task::JoinHandle<String> {
    let tls = rustls::ClientConnection::new(s.tls_client_config(), "localhost".try_into().unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, std::net::TcpStream::connect(s.addr).unwrap());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        stream.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n").unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[tokio::test]
async fn handshake_timeouts_close_stalled_clients() {
    let s = Setup::new(
        r#"
[server]
tls_handshake_timeout = "300ms"
ws_handshake_timeout = "300ms"
[[routes]]
path = "/echo"
plugins = ["echo"]
"#,
    )
    .plugin("echo", "echo")
    .start()
    .await;
    // TCP only, never a TLS ClientHello: dropped after the TLS handshake timeout.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the stalled TCP client was not dropped: {n:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // TLS done, but the HTTP request never completes: 408 after the WebSocket handshake timeout.
    let reply = half_request(&s).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let _ = tcp.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_connections_still_in_their_handshake_at_once() {
    let s = Setup::new(
        r#"
[server]
tls_handshake_timeout = "30s"
ws_handshake_timeout = "30s"
[[routes]]
path = "/echo"
plugins = ["echo"]
"#,
    )
    .plugin("echo", "echo")
    .start()
    .await;
    // One socket that never starts TLS, one with TLS done but a request that never ends.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let half_request = half_request(&s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await.expect("shutdown did not wait").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read(&mut silent, &mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the silent socket is still open: {n:?}");
    let reply = tokio::time::timeout(Duration::from_secs(2), half_request).await.expect("still open").unwrap();
    assert!(reply.is_empty(), "{reply}");
}
