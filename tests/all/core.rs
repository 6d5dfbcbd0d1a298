//! The first working wasmsock: echo over wss, routing errors, rejection before the upgrade,
//! hot reload without losing or duplicating a message, broken and removed plugin files, and
//! `on-close` exactly once whatever ended the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

const ECHO: &str = r#"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/probe"
plugins = ["probe"]
[[routes]]
path = "/missing"
plugins = ["nowhere"]
"#;

async fn echo_server() -> TestServer {
    Setup::new(ECHO).plugin("echo", "echo").plugin("probe", "probe").start().await
}

#[tokio::test]
async fn echoes_text_and_binary_over_wss() {
    let s = echo_server().await;
    let mut ws = s.connect("/echo").await;
    send(&mut ws, "hello wasmsock").await;
    assert_eq!(recv_text(&mut ws).await, "hello wasmsock");
    let binary: Vec<u8> = (0..=255).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Some(Message::binary(binary)));
    // Large messages cross many TLS records both ways.
    let big = "x".repeat(200_000);
    send(&mut ws, &big).await;
    assert_eq!(recv_text(&mut ws).await.len(), big.len());
    // Empty messages are messages too.
    send(&mut ws, "").await;
    assert_eq!(recv_text(&mut ws).await, "");
    ws.close(None).await.unwrap();
}

/// Pusher clients connect to `/app/{key}`: a route may be a pattern. Exact routes win, then
/// the pattern with more literal segments, then one without `{*rest}`; what matches none is 404.
#[tokio::test]
async fn routes_match_path_patterns_and_exact_routes_win() {
    let s = Setup::new(
        r#"
[[routes]]
path = "/app/{key}"
plugins = ["probe"]
[[routes]]
path = "/app/echo"
plugins = ["echo"]
[[routes]]
path = "/app/{key}/{*rest}"
plugins = ["echo"]
[[routes]]
path = "/{*rest}"
plugins = ["probe"]
"#,
    )
    .plugin("echo", "echo")
    .plugin("probe", "probe")
    .start()
    .await;
    // The probe answers "version" with its version; the echo plugin echoes the word.
    for (path, via_probe) in [
        ("/app/demo-key", true),
        ("/app/echo", false),
        ("/app/demo-key/x", false),
        ("/app/demo-key/x/y", false),
        ("/other", true),
        ("/a/b/c", true),
    ] {
        let mut ws = s.connect(path).await;
        send(&mut ws, "version").await;
        let answer = recv_text(&mut ws).await;
        assert_eq!(answer != "version", via_probe, "{path}: {answer}");
    }
    // `/{*rest}` needs a segment: the bare root is no route.
    assert_eq!(s.refused("/").await.0, 404);
    // A query string is not part of what is matched.
    let mut ws = s.connect("/app/demo-key?client=js&version=8.6.0").await;
    send(&mut ws, "whoami").await;
    assert_eq!(recv_text(&mut ws).await, "nobody");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_path_is_404_and_absent_plugin_is_503() {
    let s = echo_server().await;
    let (status, body) = s.refused("/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
    // Which plugin is missing is the operator's business (readiness and the log say it), not
    // the client's.
    assert_eq!(s.refused("/missing").await, (503, "unavailable".to_owned()));
}

#[tokio::test]
async fn rejecting_plugin_answers_its_status_and_reason_and_never_upgrades() {
    let s = echo_server().await;
    let mut monitor = s.connect("/probe?monitor=1").await;
    let (status, body) = s.refused("/probe?reject=401&reason=token%20required").await;
    assert_eq!(status, 401);
    assert_eq!(body, "token required");
    // No connection was accepted, so no plugin sees an on-close for it.
    send(&mut monitor, "id").await;
    let reply = recv_text(&mut monitor).await;
    assert!(reply.parse::<u64>().is_ok(), "monitor got {reply:?} instead of its id: an on-close leaked");
}

#[tokio::test]
async fn non_upgrade_requests_on_a_route_are_refused_clearly() {
    let s = echo_server().await;
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(s.url("/echo")).unwrap();
    req.headers_mut().insert("Sec-WebSocket-Version", "8".parse().unwrap());
    match s.connect_request(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 426);
            assert_eq!(resp.headers().get("sec-websocket-version").unwrap(), "13");
        }
        other => panic!("expected 426, got {other:?}"),
    }
}

#[tokio::test]
async fn hot_reload_under_traffic_loses_and_duplicates_nothing() {
    let mut s = echo_server().await;
    let ws = s.connect("/echo").await;
    let (mut tx, mut rx) = ws.split();
    // The sender keeps going until the new version has been live for a while, however long
    // the reload takes on a busy machine, then ends with a marker.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tx.send(Message::text(i.to_string())).await.unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tx.send(Message::text("end")).await.unwrap();
            (tx, i)
        }
    });
    let reader = tokio::spawn(async move {
        let mut replies = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.ends_with("end") => break,
                Ok(Some(Ok(Message::Text(t)))) => replies.push(t.to_string()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("connection broke during reload after {} replies: {other:?}", replies.len()),
            }
        }
        (replies, rx)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = s.install("echo", "echo-v2").await;
    assert!(matches!(outcome, LoadOutcome::Loaded { replaced: true, .. }), "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut tx, sent) = sender.await.unwrap();
    let (replies, rx) = reader.await.unwrap();
    assert_eq!(replies.len(), sent, "every message answered exactly once");

    // Every message answered exactly once, in order; v1 answers, then v2 answers, no going back.
    let mut switched_at = None;
    for (i, r) in replies.iter().enumerate() {
        match r.strip_prefix("v2:") {
            Some(n) => {
                assert_eq!(n, i.to_string());
                switched_at.get_or_insert(i);
            }
            None => {
                assert_eq!(r, &i.to_string());
                assert!(switched_at.is_none(), "reply {i} came from v1 after v2 had answered");
            }
        }
    }
    let at = switched_at.expect("the new version answered");
    assert!(at > 0 && at < sent, "the switch happened mid-stream (at {at} of {sent})");
    // The same connection is still open and served by v2.
    let mut ws = tx.reunite(rx).unwrap();
    send(&mut ws, "after").await;
    assert_eq!(recv_text(&mut ws).await, "v2:after");
    tx = ws.split().0;
    let _ = tx.close().await;
}

#[tokio::test]
async fn corrupt_or_foreign_wasm_leaves_the_old_version_serving() {
    let mut s = echo_server().await;
    let mut ws = s.connect("/echo").await;
    for bad in [&b"definitely not wasm"[..], &b"\0asm\x0d\0\x01\0garbage"[..]] {
        match s.install_bytes("echo", bad).await {
            LoadOutcome::Failed { error, .. } => assert!(!error.is_empty()),
            other => panic!("expected a failed load, got {other:?}"),
        }
    }
    match s.install("echo", "wrong-contract").await {
        LoadOutcome::Failed { error, .. } => {
            assert!(error.contains("0.9.0") && error.contains("0.2.0"), "{error}");
        }
        other => panic!("expected a failed load, got {other:?}"),
    }
    // The existing connection and new connections still get the old echo.
    send(&mut ws, "still here").await;
    assert_eq!(recv_text(&mut ws).await, "still here");
    let mut fresh = s.connect("/echo").await;
    send(&mut fresh, "new").await;
    assert_eq!(recv_text(&mut fresh).await, "new");
}

/// What the watcher has done to plugin files so far: bytes read, compiles of `name`, failed
/// loads of `name`.
async fn watcher_work(s: &TestServer, name: &str) -> (f64, f64, f64) {
    (
        s.metric("wasmsock_plugin_file_read_bytes_total").await,
        s.metric(&format!("wasmsock_plugin_compiles_total{{plugin=\"{name}\"}}")).await,
        s.metric(&format!("wasmsock_plugin_reloads_total{{plugin=\"{name}\",result=\"failed\"}}")).await,
    )
}

#[tokio::test]
async fn the_watcher_reads_and_reports_a_file_only_when_its_content_changed() {
    let mut s = echo_server().await;
    // Idle after a reload: the server's own reads of the file must not bring the watcher back.
    assert!(matches!(s.install("echo", "probe").await, LoadOutcome::Loaded { .. }));
    let after_reload = watcher_work(&s, "echo").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(watcher_work(&s, "echo").await, after_reload, "idle after a reload: nothing read or compiled");
    assert_eq!(s.outcomes_since(), vec![]);

    // A broken file is compiled and reported once, then left alone.
    let broken = b"\0asm\x0d\0\x01\0 broken";
    assert!(matches!(s.install_bytes("echo", broken).await, LoadOutcome::Failed { .. }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (read, compiles, failed) = watcher_work(&s, "echo").await;
    assert_eq!((compiles - after_reload.1, failed), (1.0, 1.0), "one compile and one report of the broken file");
    assert_eq!(read - after_reload.0, broken.len() as f64, "read once");
    assert_eq!(s.outcomes_since(), vec![]);

    // Touching it, or writing the same content again, changes no content: at most a read.
    let path = s.plugin_dir.join("echo.wasm");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60)).unwrap();
    drop(file);
    let tmp = s.plugin_dir.join(".echo.wasm.tmp");
    std::fs::write(&tmp, broken).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = watcher_work(&s, "echo").await;
    assert_eq!((again.1, again.2), (compiles, failed), "the same broken content is not compiled or reported again");
    assert_eq!(s.outcomes_since(), vec![]);

    // A file over `max_plugin_size` is refused from its size: not read at all (a sparse 1 GiB
    // file costs no disk).
    let big = s.plugin_dir.join("big.wasm");
    std::fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    match s.next_outcome("big").await {
        LoadOutcome::Failed { error, .. } => assert!(error.contains("max_plugin_size"), "{error}"),
        other => panic!("expected the big file to be refused, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (read_big, compiles_big, failed_big) = watcher_work(&s, "big").await;
    assert_eq!((read_big, compiles_big, failed_big), (again.0, 0.0, 1.0), "refused once, without reading it");

    // New content is news again, and the old echo kept serving all along.
    assert!(matches!(s.install("echo", "echo").await, LoadOutcome::Loaded { .. }));
    let mut ws = s.connect("/echo").await;
    send(&mut ws, "still serving").await;
    assert_eq!(recv_text(&mut ws).await, "still serving");
}

#[tokio::test]
async fn deleting_the_file_unloads_the_plugin() {
    let mut s = echo_server().await;
    let mut ws = s.connect("/echo").await;
    assert!(matches!(s.remove("echo").await, LoadOutcome::Unloaded { .. }));
    assert_eq!(s.refused("/echo").await.0, 503);
    // An open connection of the route learns it on its next message.
    send(&mut ws, "anyone?").await;
    assert_eq!(expect_close(&mut ws).await, (1011, "unavailable".to_owned()));
    // Putting it back brings the route back.
    assert!(matches!(s.install("echo", "echo").await, LoadOutcome::Loaded { .. }));
    let mut ws = s.connect("/echo").await;
    send(&mut ws, "back").await;
    assert_eq!(recv_text(&mut ws).await, "back");
}

#[tokio::test]
async fn a_handshake_refused_later_in_the_chain_closes_every_plugin_it_got_past() {
    // `lenient` fails at connect and is bypassed, `probe` accepts, `auth` refuses (no token):
    // probe saw the connection open, so it is owed its on-close.
    let s = Setup::new(
        r#"
[[routes]]
path = "/probe"
plugins = ["probe"]
[[routes]]
path = "/gated"
plugins = ["lenient", "probe", "auth"]
[plugins.lenient]
on_error = "bypass"
[plugins.auth.config]
hs256_secret = "test-secret"
"#,
    )
    .plugin("probe", "probe")
    .plugin("lenient", "hostile")
    .plugin("auth", "auth")
    .start()
    .await;
    let mut monitor = s.connect("/probe?monitor=1").await;
    let (status, _) = s.refused("/gated?mode=panic").await;
    assert_eq!(status, 401);
    let line = recv_text(&mut monitor).await;
    assert!(line.starts_with("closed ") && line.ends_with(" 1006 handshake rejected"), "{line}");
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), monitor.next()).await {
        panic!("unexpected extra on-close report: {t}");
    }
}

async fn conn_id(ws: &mut Ws) -> u64 {
    send(ws, "id").await;
    recv_text(ws).await.parse().expect("probe replies its id")
}

#[tokio::test]
async fn on_close_runs_exactly_once_whatever_ends_the_connection() {
    let s = echo_server().await;
    let mut monitor = s.connect("/probe?monitor=1").await;
    let mut expected: HashMap<u64, u16> = HashMap::new();

    // 1. The peer closes with a code.
    let mut a = s.connect("/probe").await;
    let a_id = conn_id(&mut a).await;
    a.close(Some(CloseFrame { code: CloseCode::Library(4321), reason: "done".into() })).await.unwrap();
    let (code, _) = expect_close(&mut a).await;
    assert_eq!(code, 4321, "the server answers the client's close code");
    expected.insert(a_id, 4321);

    // 2. The peer drops TCP without a close frame.
    let mut b = s.connect("/probe").await;
    let b_id = conn_id(&mut b).await;
    drop(b);
    expected.insert(b_id, 1006);

    // 3. The server closes (a plugin asks for it).
    let mut c = s.connect("/probe").await;
    let c_id = conn_id(&mut c).await;
    send(&mut c, "close 4000 bye now").await;
    assert_eq!(expect_close(&mut c).await, (4000, "bye now".into()));
    expected.insert(c_id, 4000);

    // 4. A protocol error (invalid UTF-8 in a text frame) closes with 1007.
    let mut d = s.connect("/probe").await;
    let d_id = conn_id(&mut d).await;
    let frame = Frame::message(vec![0xce, 0xba, 0xff], OpCode::Data(Data::Text), true);
    d.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(expect_close(&mut d).await.0, 1007);
    expected.insert(d_id, 1007);

    // Collect on-close reports until quiet; each connection exactly once, with its code.
    let mut seen: HashMap<u64, Vec<u16>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
        let line = recv_text(&mut monitor).await;
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("closed"), "{line}");
        let id: u64 = parts.next().unwrap().parse().unwrap();
        let code: u16 = parts.next().unwrap().parse().unwrap();
        seen.entry(id).or_default().push(code);
    }
    // Anything late would be a duplicate.
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), monitor.next()).await {
        panic!("unexpected extra on-close report: {t}");
    }
    for (id, code) in &expected {
        assert_eq!(seen.get(id), Some(&vec![*code]), "connection {id}: on-close calls {:?}", seen.get(id));
    }
}

#[tokio::test]
async fn malformed_frames_get_the_right_close_codes() {
    let s = echo_server().await;
    // An unknown opcode is a protocol error (1002); the connection is closed, nothing else hurt.
    let mut ws = s.connect("/echo").await;
    let header = FrameHeader { opcode: OpCode::Data(Data::Reserved(3)), ..FrameHeader::default() };
    ws.send(Message::Frame(Frame::from_payload(header, vec![1u8].into()))).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1002);
    // A fragmented message whose continuation never comes, then a new message: 1002.
    let mut ws = s.connect("/echo").await;
    ws.send(Message::Frame(Frame::message(b"part".to_vec(), OpCode::Data(Data::Text), false))).await.unwrap();
    ws.send(Message::Frame(Frame::message(b"new".to_vec(), OpCode::Data(Data::Text), true))).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1002);
    // Meanwhile a healthy client is unaffected.
    let mut ok = s.connect("/echo").await;
    send(&mut ok, "fine").await;
    assert_eq!(recv_text(&mut ok).await, "fine");
}

#[tokio::test]
async fn chains_pass_forward_and_stop() {
    let s = Setup::new(
        r#"
[[routes]]
path = "/chain"
plugins = ["probe", "echo"]
"#,
    )
    .plugin("probe", "probe")
    .plugin("echo", "echo")
    .start()
    .await;
    let mut ws = s.connect("/chain?as=ada").await;
    // probe handles `whoami` itself (Done): echo never sees it.
    send(&mut ws, "whoami").await;
    assert_eq!(recv_text(&mut ws).await, "ada");
    // `pass` goes on to echo unchanged; `forward X` goes on rewritten.
    send(&mut ws, "pass").await;
    assert_eq!(recv_text(&mut ws).await, "pass");
    send(&mut ws, "forward rewritten").await;
    assert_eq!(recv_text(&mut ws).await, "rewritten");
}

#[tokio::test]
async fn plain_ws_serves_the_same_routes() {
    let s = Setup::new(ECHO).plugin("echo", "echo").plain().start().await;
    let mut ws = s.connect("/echo").await;
    send(&mut ws, "no tls here").await;
    assert_eq!(recv_text(&mut ws).await, "no tls here");
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Some(Message::binary(big)));
}

#[tokio::test]
async fn the_builtin_echo_route_needs_no_plugin() {
    let s = Setup::new("[[routes]]\npath = \"/native\"\nbuiltin = \"echo\"\n").start().await;
    let mut ws = s.connect("/native").await;
    send(&mut ws, "native").await;
    assert_eq!(recv_text(&mut ws).await, "native");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Some(Message::binary(vec![1u8, 2, 3])));
}
