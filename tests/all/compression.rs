//! permessage-deflate (RFC 7692) end to end, with frames written and read by hand over real
//! TLS: negotiation, compressed echoes both ways, a room publish compressed once for all its
//! members, and what a deflate bomb or corrupt data earns (with the server's memory measured
//! in a real process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use crate::harness::*;

type Raw = MaybeTlsStream<TcpStream>;

const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";
const NO_TAKEOVER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

const ECHO: &str = "[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n[[routes]]\npath = \"/plain\"\nplugins = [\"echo\"]\ncompression = { enabled = false }\n";

async fn server(extra: &str) -> TestServer {
    Setup::new(&format!("{extra}\n{ECHO}")).plugin("echo", "echo").plugin("probe", "probe").start().await
}

/// Opens a WebSocket to `path` offering `offer`; returns the stream to speak frames on by hand
/// and the response's `Sec-WebSocket-Extensions`.
async fn connect_raw(s: &TestServer, path: &str, offer: Option<&str>) -> (Raw, Option<String>) {
    let mut req = s.url(path).into_client_request().unwrap();
    if let Some(o) = offer {
        req.headers_mut().insert("Sec-WebSocket-Extensions", o.parse().unwrap());
    }
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let connector = Connector::Rustls(s.tls_client_config());
    let (ws, resp) = tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)).await.unwrap();
    let ext = resp.headers().get("sec-websocket-extensions").map(|v| v.to_str().unwrap().to_owned());
    (ws.into_inner(), ext)
}

/// The next server frame: its first byte (FIN, RSV1, opcode) and payload.
async fn read_frame<R: AsyncRead + Unpin>(raw: &mut R) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        raw.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                raw.read_exact(&mut b).await.unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                raw.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        raw.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a frame from the server")
}

/// The close code of the server's next frame, which must be a close frame.
async fn close_code(raw: &mut Raw) -> u16 {
    let (b0, payload) = read_frame(raw).await;
    assert_eq!(b0 & 0x0f, 8, "expected a close frame, got {b0:#x} {payload:?}");
    u16::from_be_bytes([payload[0], payload[1]])
}

/// A message compressed as a client without context takeover sends it (trailer stripped).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).unwrap();
        consumed = c.total_in() as usize;
        if consumed == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

fn json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        i += 1;
        s.push_str(&format!("{{\"id\":{i},\"user\":\"user{}\",\"text\":\"message {i} of the day\"}},", i % 7));
    }
    s.truncate(n - 1);
    s.push(']');
    s
}

#[tokio::test]
async fn a_browser_offer_is_answered_and_messages_are_compressed_both_ways() {
    let s = server("").await;
    let (mut raw, ext) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(NO_TAKEOVER));

    // A compressed text message in two fragments comes back compressed (RSV1) and whole.
    let text = json(4096);
    let compressed = deflate(text.as_bytes());
    assert!(compressed.len() < text.len() / 3);
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let mut bytes = client_frame(false, true, 1, a);
    bytes.extend(client_frame(true, false, 0, b));
    raw.write_all(&bytes).await.unwrap();
    let (b0, payload) = read_frame(&mut raw).await;
    assert_eq!(b0, 0x80 | 0x40 | 1, "FIN, RSV1, text");
    assert!(payload.len() < text.len() / 3, "{} bytes on the wire for {}", payload.len(), text.len());
    assert_eq!(inflate(&payload), text.as_bytes());

    // Binary too; an uncompressed message is fine; a short one is answered uncompressed.
    let binary = json(2000).into_bytes();
    raw.write_all(&client_frame(true, true, 2, &deflate(&binary))).await.unwrap();
    let (b0, payload) = read_frame(&mut raw).await;
    assert_eq!(b0, 0x80 | 0x40 | 2);
    assert_eq!(inflate(&payload), binary);
    raw.write_all(&client_frame(true, false, 1, b"short and plain")).await.unwrap();
    assert_eq!(read_frame(&mut raw).await, (0x81, b"short and plain".to_vec()));
    // Compressed messages one after another, each on its own (no context kept).
    for round in 0..3 {
        let text = format!("{round}{}", json(1000));
        raw.write_all(&client_frame(true, true, 1, &deflate(text.as_bytes()))).await.unwrap();
        let (b0, payload) = read_frame(&mut raw).await;
        assert_eq!((b0, inflate(&payload)), (0xc1, text.into_bytes()));
    }
    raw.write_all(&client_frame(true, false, 8, &1000u16.to_be_bytes())).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1000);
}

#[tokio::test]
async fn offers_are_declined_when_off_invalid_or_absent() {
    let s = server("[compression]\nwindow_bits = 12\n").await;
    // The route that turns it off, a client that offers nothing, and an invalid offer.
    assert_eq!(connect_raw(&s, "/plain", Some(BROWSER_OFFER)).await.1, None);
    assert_eq!(connect_raw(&s, "/echo", None).await.1, None);
    assert_eq!(connect_raw(&s, "/echo", Some("permessage-deflate; server_max_window_bits=99")).await.1, None);
    // Several offers: the first acceptable one wins, within our window.
    let (mut raw, ext) =
        connect_raw(&s, "/echo", Some("permessage-deflate; x=1, permessage-deflate; server_max_window_bits=13")).await;
    assert_eq!(ext.as_deref(), Some(&*format!("{NO_TAKEOVER}; server_max_window_bits=12")));
    let text = json(3000);
    raw.write_all(&client_frame(true, true, 1, &deflate(text.as_bytes()))).await.unwrap();
    let (b0, payload) = read_frame(&mut raw).await;
    assert_eq!((b0, inflate(&payload)), (0xc1, text.into_bytes()));
    // Without compression negotiated, RSV1 is a protocol error.
    let (mut raw, _) = connect_raw(&s, "/plain", Some(BROWSER_OFFER)).await;
    raw.write_all(&client_frame(true, true, 1, &deflate(b"hello"))).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1002);
}

#[tokio::test]
async fn corrupt_or_misplaced_compressed_data_closes_the_connection() {
    let s = server("[limits]\nmax_message_size = \"64KiB\"\n").await;
    // Invalid deflate data: 1007 (invalid payload data).
    let (mut raw, _) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    raw.write_all(&client_frame(true, true, 1, &[0xff, 0xff, 0xff, 0xff])).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1007);
    // Valid deflate data that is not UTF-8, in a text message: 1007.
    let (mut raw, _) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    raw.write_all(&client_frame(true, true, 1, &deflate(&[0xce, 0xba, 0xff, 0xfe]))).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1007);
    // RSV1 on a continuation frame or a control frame: 1002.
    let (mut raw, _) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    let mut bytes = client_frame(false, true, 1, &deflate(b"hello "));
    bytes.extend(client_frame(true, true, 0, &deflate(b"world")));
    raw.write_all(&bytes).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1002);
    let (mut raw, _) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    raw.write_all(&client_frame(true, true, 9, b"")).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1002);
    // A deflate bomb (16 MiB of zeros in 16 KiB) against a 64 KiB limit: 1009.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 << 10);
    let (mut raw, _) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    raw.write_all(&client_frame(true, true, 2, &bomb)).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1009);
}

#[tokio::test]
async fn a_room_publish_is_compressed_once_and_the_same_bytes_reach_every_member() {
    let s = server("").await;
    let mut members = Vec::new();
    for _ in 0..4 {
        let (mut raw, ext) = connect_raw(&s, "/probe", Some(BROWSER_OFFER)).await;
        assert_eq!(ext.as_deref(), Some(NO_TAKEOVER));
        raw.write_all(&client_frame(true, false, 1, b"join team")).await.unwrap();
        assert_eq!(read_frame(&mut raw).await, (0x81, b"joined".to_vec()));
        members.push(raw);
    }
    // A member that did not negotiate compression gets the message as it is.
    let (mut plain, ext) = connect_raw(&s, "/probe", None).await;
    assert_eq!(ext, None);
    plain.write_all(&client_frame(true, false, 1, b"join team")).await.unwrap();
    assert_eq!(read_frame(&mut plain).await, (0x81, b"joined".to_vec()));

    let before = s.metric("wasmsock_compressions_total").await;
    let text = json(2048);
    let publish = format!("publish team {text}");
    members[0].write_all(&client_frame(true, true, 1, &deflate(publish.as_bytes()))).await.unwrap();
    let mut wire = Vec::new();
    for m in &mut members {
        let (b0, payload) = read_frame(m).await;
        assert_eq!(b0, 0xc1);
        assert_eq!(inflate(&payload), text.as_bytes());
        wire.push(payload);
    }
    assert!(wire.iter().all(|w| *w == wire[0]), "every member gets the same bytes");
    assert_eq!(read_frame(&mut plain).await, (0x81, text.clone().into_bytes()));
    assert_eq!(read_frame(&mut members[0]).await, (0x81, b"published to 5".to_vec()));
    let compressions = s.metric("wasmsock_compressions_total").await - before;
    assert_eq!(compressions, 1.0, "one compression for four compressed members");
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn a_deflate_bomb_against_the_real_binary_leaves_its_memory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmsock.toml");
    // 1 MiB messages: a frame of 1 MiB of compressed zeros would inflate to 1 GiB.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = {:?}\nplugin_dir = {:?}\n[admin]\nlisten = \"off\"\n[[routes]]\npath = \"/echo\"\nbuiltin = \"echo\"\n",
            dir.path().join("state"),
            dir.path().join("plugins"),
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmsock-under-test"))
        .args(["serve", "--plain", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut child, port, "wasmsock");
    let connect = async || {
        let req = format!("ws://127.0.0.1:{port}/echo").into_client_request().unwrap();
        let mut req = req;
        req.headers_mut().insert("Sec-WebSocket-Extensions", BROWSER_OFFER.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert!(resp.headers().contains_key("sec-websocket-extensions"));
        ws.into_inner()
    };
    // Warm up: a normal compressed message, then note the peak so far.
    let mut raw = connect().await;
    let text = json(100_000);
    raw.write_all(&client_frame(true, true, 1, &deflate(text.as_bytes()))).await.unwrap();
    let (b0, payload) = read_frame(&mut raw).await;
    assert_eq!((b0, inflate(&payload).len()), (0xc1, text.len()));
    let before = peak_rss(child.id());

    let gib_of_zeros = {
        // 1 GiB of zeros compressed, without holding 1 GiB here: the same 1 MiB fed 1024 times.
        let zeros = vec![0u8; 1 << 20];
        let mut c = Compress::new(Compression::new(9), false);
        let mut out = Vec::with_capacity(1 << 20);
        for _ in 0..1024 {
            c.compress_vec(&zeros, &mut out, FlushCompress::None).unwrap();
        }
        c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
        out.truncate(out.len() - 4);
        out
    };
    assert!(gib_of_zeros.len() < 1 << 20, "{} bytes", gib_of_zeros.len());
    for _ in 0..3 {
        let mut raw = connect().await;
        raw.write_all(&client_frame(true, true, 2, &gib_of_zeros)).await.unwrap();
        assert_eq!(close_code(&mut raw).await, 1009);
    }
    let grew = peak_rss(child.id()).saturating_sub(before);
    let _ = child.kill();
    let _ = child.wait();
    assert!(grew < 16 << 20, "the peak resident memory grew by {} MiB", grew >> 20);
}

#[tokio::test]
async fn a_hot_reload_under_compressed_traffic_loses_and_duplicates_nothing() {
    let mut s = server("").await;
    let (raw, ext) = connect_raw(&s, "/echo", Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(NO_TAKEOVER));
    let (mut rd, mut wr) = tokio::io::split(raw);
    let stop = Arc::new(AtomicBool::new(false));
    let body = json(600);
    let sender = tokio::spawn({
        let (stop, body) = (stop.clone(), body.clone());
        async move {
            let mut i = 0usize;
            while !stop.load(Relaxed) {
                let text = format!("{i} {body}");
                wr.write_all(&client_frame(true, true, 1, &deflate(text.as_bytes()))).await.unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // A short marker, answered uncompressed, ends the replies.
            wr.write_all(&client_frame(true, false, 1, b"end")).await.unwrap();
            i
        }
    });
    let reader = tokio::spawn(async move {
        let mut replies = Vec::new();
        loop {
            match read_frame(&mut rd).await {
                (0x81, end) if end.ends_with(b"end") => break,
                (0xc1, payload) => replies.push(String::from_utf8(inflate(&payload)).unwrap()),
                other => panic!("unexpected frame after {} replies: {other:?}", replies.len()),
            }
        }
        replies
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(s.install("echo", "echo-v2").await, wasmsock::plugin::LoadOutcome::Loaded { replaced: true, .. }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Relaxed);
    let sent = sender.await.unwrap();
    let replies = reader.await.unwrap();
    assert_eq!(replies.len(), sent, "every message answered exactly once");
    let mut switched_at = None;
    for (i, r) in replies.iter().enumerate() {
        let expected = format!("{i} {body}");
        match r.strip_prefix("v2:") {
            Some(rest) => {
                assert_eq!(rest, expected);
                switched_at.get_or_insert(i);
            }
            None => {
                assert_eq!(r, &expected);
                assert!(switched_at.is_none(), "reply {i} came from v1 after v2 had answered");
            }
        }
    }
    let at = switched_at.expect("the new version answered");
    assert!(at > 0 && at < sent, "the switch happened mid-stream (at {at} of {sent})");
}

/// Python `websockets` with context takeover agreed both ways (it offers it by default), through
/// a proxy in the script that counts the bytes of each message on the wire: the messages after
/// the first, which repeat most of it, inflate correctly on both sides and cost a fraction of
/// the first each way, because each side kept its window. A route without context takeover is
/// the control: there every message costs about the same.
#[tokio::test]
async fn python_websockets_keeps_its_context_across_messages_and_so_do_we() {
    if !crate::process::python_has_websockets() {
        skip_without("python3 `websockets`");
        return;
    }
    let s = Setup::new(
        "[compression]\ncontext_takeover = true\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n\
         [[routes]]\npath = \"/fresh\"\nplugins = [\"echo\"]\ncompression = { context_takeover = false }\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let script = r#"
import asyncio, random, ssl, sys, websockets
port, ca = int(sys.argv[1]), sys.argv[2]
counts = {"up": 0, "down": 0}

async def pipe(r, w, key):
    try:
        while data := await r.read(65536):
            counts[key] += len(data)
            w.write(data)
            await w.drain()
    finally:
        w.close()

async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.gather(pipe(cr, sw, "up"), pipe(sr, cw, "down"))

async def sizes(path, ctx, proxy_port):
    # Words that do not repeat within a message (it compresses little on its own) but repeat
    # from one message to the next.
    rnd = random.Random(7)
    words = " ".join("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(300))
    out = []
    async with websockets.connect(f"wss://localhost:{proxy_port}{path}", ssl=ctx) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for i in range(6):
            msg = '{"seq":%d,"text":"%s"}' % (i, words)
            up, down = counts["up"], counts["down"]
            await ws.send(msg)
            assert await ws.recv() == msg, f"echo {i} differs"
            out.append((counts["up"] - up, counts["down"] - down))
    return ext, out

async def main():
    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    ctx = ssl.create_default_context(cafile=ca)
    for path in ["/echo", "/fresh"]:
        ext, out = await sizes(path, ctx, proxy_port)
        print(path, repr(ext), out)

asyncio.run(main())
"#;
    let ca = s.ca.as_ref().unwrap().to_str().unwrap().to_owned();
    let out = crate::process::run_python(script, &[&s.addr.port().to_string(), &ca]).await;
    // Per path: the agreed extension, then (client → server, server → client) bytes per message.
    let line = |path: &str| -> (String, Vec<(u64, u64)>) {
        let l = out.lines().find(|l| l.starts_with(&format!("{path} "))).unwrap_or_else(|| panic!("python: {out}"));
        let rest = &l[path.len() + 1..];
        let (ext, sizes) = rest.split_once(" [").unwrap();
        let nums: Vec<u64> =
            sizes.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).map(|n| n.parse().unwrap()).collect();
        (ext.trim_matches('\'').to_owned(), nums.chunks(2).map(|p| (p[0], p[1])).collect())
    };
    let (ext, kept) = line("/echo");
    assert_eq!(ext, "permessage-deflate", "both sides keep their context: {out}");
    let (ext, fresh) = line("/fresh");
    assert_eq!(ext, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", "{out}");
    let (first_up, first_down) = kept[0];
    for &(up, down) in &kept[1..] {
        assert!(up * 4 < first_up && down * 4 < first_down, "context kept: {kept:?} (without: {fresh:?})");
    }
    for &(up, down) in &fresh[1..] {
        assert!(up * 4 > fresh[0].0 * 3 && down * 4 > fresh[0].1 * 3, "no context kept: {fresh:?}");
    }
}
