//! Attacks from outside, with raw TLS sockets where a WebSocket client would refuse to send
//! them: each test is one finding of the black-box review (origin bypasses, header limits,
//! partial messages, pending handshakes, the admin listener, HTTP conformance, dotfiles), and
//! failed before the server was hardened.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::harness::*;

type Tls = TlsStream<TcpStream>;

async fn tls_over(s: &TestServer, tcp: TcpStream) -> Tls {
    let connector = tokio_rustls::TlsConnector::from(s.tls_client_config());
    connector.connect("localhost".try_into().unwrap(), tcp).await.expect("TLS handshake")
}

async fn tls(s: &TestServer) -> Tls {
    tls_over(s, TcpStream::connect(s.addr).await.unwrap()).await
}

/// An upgrade request for `path` with `Host: localhost:PORT` and `extra` header lines.
fn upgrade(s: &TestServer, path: &str, extra: &[&str]) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        s.addr.port()
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r + "\r\n"
}

/// Reads the response head (through its blank line) and returns its status.
async fn status(t: &mut Tls) -> u16 {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            match t.read_u8().await {
                Ok(b) => head.push(b),
                Err(_) => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("a response in time");
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {text:?}"))
}

/// Sends `request` in one write on a fresh TLS connection; the answer's status.
async fn answer(s: &TestServer, request: &str) -> u16 {
    let mut t = tls(s).await;
    t.write_all(request.as_bytes()).await.unwrap();
    t.flush().await.unwrap();
    status(&mut t).await
}

/// An upgraded raw connection to `path`.
async fn upgraded(s: &TestServer, path: &str) -> Tls {
    let mut t = tls(s).await;
    t.write_all(upgrade(s, path, &[]).as_bytes()).await.unwrap();
    assert_eq!(status(&mut t).await, 101);
    t
}

/// Reads server frames until a close frame; its code (1006 if the stream ends first).
async fn close_code(t: &mut Tls, within: Duration) -> u16 {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            if t.read_exact(&mut head).await.is_err() {
                return 1006;
            }
            let len = match head[1] & 0x7f {
                126 => t.read_u16().await.map(u64::from).unwrap_or(0),
                127 => t.read_u64().await.unwrap_or(0),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            if t.read_exact(&mut payload).await.is_err() {
                return 1006;
            }
            if head[0] & 0x0f == 8 {
                return payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    };
    tokio::time::timeout(within, read).await.unwrap_or(0)
}

#[tokio::test]
async fn origins_that_merely_contain_an_allowed_domain_are_refused() {
    let s = Setup::new(
        "[origins]\nallow = [\"https://*.example.com\"]\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &["Origin: https://app.example.com"])).await, 101, "control");
    for evil in ["https://evil.com/x.example.com", "https://evil.com#.example.com", "https://evil.com?.example.com"] {
        assert_eq!(answer(&s, &upgrade(&s, "/echo", &[&format!("Origin: {evil}")])).await, 403, "{evil}");
    }
}

#[tokio::test]
async fn two_origin_headers_are_refused() {
    let s = Setup::new(
        "[origins]\nallow = [\"https://app.example.com\"]\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let two = ["Origin: https://app.example.com", "Origin: https://evil.com"];
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &two)).await, 403);
}

#[tokio::test]
async fn an_explicit_default_port_is_the_same_origin() {
    let s = Setup::new(
        "[origins]\nallow = [\"https://app.example.com\"]\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &["Origin: https://app.example.com:443"])).await, 101);
}

#[tokio::test]
async fn same_origin_checks_the_scheme_and_does_not_trust_a_client_host() {
    let s = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    let port = s.addr.port();
    let same = format!("Origin: https://localhost:{port}");
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &[&same])).await, 101, "control");
    // A plain-http page on the same host and port is another origin.
    let http = format!("Origin: http://localhost:{port}");
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &[&http])).await, 403);
    // DNS rebinding: evil.com resolves to this server, and the browser sends Host = its origin.
    let rebinding = format!(
        "GET /echo HTTP/1.1\r\nHost: evil.com:{port}\r\nOrigin: https://evil.com:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    assert_eq!(answer(&s, &rebinding).await, 403);
}

#[tokio::test]
async fn configured_public_origins_are_the_same_origin_whatever_the_host_header() {
    let s = Setup::new(
        "[origins]\npublic = [\"https://chat.example.com\"]\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &["Origin: https://chat.example.com"])).await, 101);
    let port = s.addr.port();
    assert_eq!(answer(&s, &upgrade(&s, "/echo", &[&format!("Origin: https://localhost:{port}")])).await, 403);
}

#[tokio::test]
async fn the_header_limit_holds_for_a_request_sent_in_one_write() {
    let s = Setup::new("[server]\nmax_header_bytes = \"1KiB\"\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n")
        .plugin("echo", "echo")
        .start()
        .await;
    for size in [2_000, 8_000, 15_000] {
        let pad = format!("X-Pad: {}", "a".repeat(size));
        assert_eq!(answer(&s, &upgrade(&s, "/echo", &[&pad])).await, 431, "{size} bytes");
    }
    let d = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    for _ in 0..3 {
        for size in [20_000, 40_000, 60_000] {
            let pad = format!("X-Pad: {}", "a".repeat(size));
            assert_eq!(answer(&d, &upgrade(&d, "/echo", &[&pad])).await, 431, "{size} bytes at the default limit");
        }
    }
}

#[tokio::test]
async fn http_1_0_and_requests_without_host_are_not_upgraded() {
    let s = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    let req = upgrade(&s, "/echo", &[]);
    assert_eq!(answer(&s, &req.replacen("HTTP/1.1", "HTTP/1.0", 1)).await, 505);
    let host = format!("Host: localhost:{}\r\n", s.addr.port());
    assert_eq!(answer(&s, &req.replacen(&host, "", 1)).await, 400);
}

#[tokio::test]
async fn an_absolute_form_target_is_routed_on_its_path() {
    let s = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    let target = format!("https://localhost:{}/echo", s.addr.port());
    let mut t = tls(&s).await;
    t.write_all(upgrade(&s, &target, &[]).as_bytes()).await.unwrap();
    assert_eq!(status(&mut t).await, 101);
    t.write_all(&client_frame(true, false, 1, b"hi")).await.unwrap();
    let mut echoed = [0u8; 4];
    t.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x81\x02hi");
}

#[tokio::test]
async fn a_fragmented_message_kept_open_with_control_frames_is_closed_1008() {
    let s = Setup::new("[limits]\nmessage_timeout = \"600ms\"\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n")
        .plugin("echo", "echo")
        .start()
        .await;
    let mut t = upgraded(&s, "/echo").await;
    let start = Instant::now();
    t.write_all(&client_frame(false, false, 1, &[b'a'; 1000])).await.unwrap();
    // Pings (and more fragments) keep the connection busy, never the message complete.
    let keep_busy = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = t.write_all(&client_frame(true, false, 9, b"still here")).await;
            let _ = t.write_all(&client_frame(false, false, 0, b"more")).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(800), keep_busy).await;
    assert_eq!(close_code(&mut t, Duration::from_secs(3)).await, 1008);
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert!(
        eventually(Duration::from_secs(2), async || s.metric("wasmsock_message_timeouts_total").await >= 1.0).await
    );
}

#[tokio::test]
async fn a_frame_trickled_a_byte_at_a_time_is_closed_1008() {
    let s = Setup::new(
        "[limits]\nmessage_timeout = \"600ms\"\nping_interval = \"200ms\"\npong_timeout = \"200ms\"\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let mut t = upgraded(&s, "/echo").await;
    let whole = client_frame(true, false, 1, &[b'a'; 100]);
    let trickle = async {
        for b in &whole[..whole.len() - 1] {
            if t.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1000), trickle).await;
    assert_eq!(close_code(&mut t, Duration::from_secs(3)).await, 1008);
}

#[tokio::test]
async fn the_buffer_budget_sheds_the_biggest_holder_with_1013() {
    let s = Setup::new(
        "[server]\nmax_buffered_bytes = \"512KiB\"\n[limits]\nmessage_timeout = \"60s\"\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let mut small = upgraded(&s, "/echo").await;
    small.write_all(&client_frame(false, false, 2, &[1; 50_000])).await.unwrap();
    let mut big = upgraded(&s, "/echo").await;
    // The server may close while the frame is still arriving.
    let _ = big.write_all(&client_frame(false, false, 2, &[2; 600_000])).await;
    assert_eq!(close_code(&mut big, Duration::from_secs(5)).await, 1013);
    // The smaller holder goes on: its message completes and is echoed.
    small.write_all(&client_frame(true, false, 0, &[1; 10])).await.unwrap();
    let mut head = [0u8; 4];
    small.read_exact(&mut head).await.unwrap();
    assert_eq!((head[0], head[1] & 0x7f, u16::from_be_bytes([head[2], head[3]])), (0x82, 126, 50_010));
    assert!(s.metric("wasmsock_buffered_sheds_total").await >= 1.0);
}

#[tokio::test]
async fn one_address_cannot_take_every_pending_handshake_slot() {
    let s = Setup::new(
        "[server]\nmax_pending_handshakes = 8\nmax_pending_handshakes_per_ip = 4\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    // Silent sockets from 127.0.0.1: only 4 are held, the rest are dropped at once.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another address is still served.
    let other = TcpSocket::new_v4().unwrap();
    other.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let tcp = tokio::time::timeout(Duration::from_secs(2), other.connect(s.addr)).await.unwrap().unwrap();
    let mut ws = tokio::time::timeout(Duration::from_secs(3), wss_over(&s, tcp, "/echo", None))
        .await
        .expect("served while one address holds its slots")
        .expect("upgraded");
    send(&mut ws, "hi").await;
    assert_eq!(recv_text(&mut ws).await, "hi");
    let from_address = "wasmsock_handshake_rejects_total{reason=\"too_many_pending_handshakes_from_address\"}";
    assert!(s.metric(from_address).await >= 4.0);
    drop(silent);
}

#[tokio::test]
async fn idle_admin_connections_do_not_starve_healthz() {
    let s = Setup::new("[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n").plugin("echo", "echo").start().await;
    let admin = s.admin.unwrap();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    let start = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), http_get(admin, "/healthz"))
        .await
        .expect("healthz answered")
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    drop(idle);
}

#[tokio::test]
async fn static_files_serve_no_dotfiles_and_stream_large_files() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(site.path().join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir(site.path().join(".git")).unwrap();
    std::fs::write(site.path().join(".git/config"), "[core]").unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("big.bin"), &big).unwrap();
    let s =
        Setup::new(&format!("[static]\ndir = {:?}\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n", site.path()))
            .plugin("echo", "echo")
            .start()
            .await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(answer(&s, &get("/index.html")).await, 200);
    for hidden in ["/.env", "/.git/config", "/a/../.env"] {
        assert_eq!(answer(&s, &get(hidden)).await, 404, "{hidden}");
    }
    let mut t = tls(&s).await;
    t.write_all(get("/big.bin").as_bytes()).await.unwrap();
    assert_eq!(status(&mut t).await, 200);
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), t.read_to_end(&mut body)).await;
    assert!(body == big, "the whole file, {} of {} bytes", body.len(), big.len());
}
