//! What an idle connection costs the server, by phase of its life, counted on the heap (the
//! test binary uses the system allocator, whose `mallinfo2` says how much is allocated), with
//! Python clients in another process so that only the server's allocations count. Run by hand
//! (a minute, needs Python): `cargo test --workspace --test all -- --ignored --nocapture idle_memory`.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::harness::*;

/// Bytes allocated on the heap right now (small chunks and mmapped ones).
fn heap() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: mallinfo2 takes no arguments and returns a struct by value.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Opens N connections to the given phase (`tcp`: connected only; `tls`: handshake done; `ws`:
/// upgraded; `deflate`: upgraded with permessage-deflate; `message`: that, and one compressed
/// 1 KiB message echoed), prints `held`, holds them 3 s, closes them.
const CLIENTS: &str = r#"
import asyncio, ssl, sys, zlib
n, phase, port, ca = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
upgrade = (b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
text = (b'{"id":18231,"user":"guest-4812","room":"lobby","text":"see you at the standup tomorrow"},' * 12)[:1024]
c = zlib.compressobj(6, zlib.DEFLATED, -15)
compressed = (c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
mask = b"\x01\x02\x03\x04"
frame = bytes([0xc1, 0x80 | len(compressed)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(compressed))
assert len(compressed) < 126

async def one(sem, keep):
    async with sem:
        if phase == "tcp":
            r, w = await asyncio.open_connection("127.0.0.1", port)
        else:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        if phase in ("ws", "deflate", "message"):
            offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if phase != "ws" else b""
            w.write(upgrade + offer + b"\r\n")
            assert b" 101 " in await r.readuntil(b"\r\n\r\n")
        if phase == "message":
            w.write(frame)
            head = await r.readexactly(2)
            assert head[0] == 0xc1, head
            await r.readexactly(head[1] & 0x7f)
        keep.append(w)

async def main():
    keep, sem = [], asyncio.Semaphore(64)
    await asyncio.gather(*[one(sem, keep) for _ in range(n)])
    await asyncio.sleep(1)
    print("held", len(keep), flush=True)
    await asyncio.sleep(3)
    for w in keep:
        w.close()
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a minute of 5 × 1000 connections from Python; run by hand"]
async fn idle_memory_per_connection_by_phase() {
    if !crate::process::python_has_websockets() {
        skip_without("python3");
        return;
    }
    let s = Setup::new(
        "[server]\nmax_pending_handshakes_per_ip = 10000\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
    )
    .plugin("echo", "echo")
    .start()
    .await;
    let ca = s.ca.as_ref().unwrap().to_str().unwrap().to_owned();
    let port = s.addr.port().to_string();
    // One compressed message first, so that what is made once for all (this thread's
    // compressor, a pooled inflater) is there before counting.
    let warm = tokio::process::Command::new("python3").args(["-c", CLIENTS, "1", "message", &port, &ca]).output();
    assert!(warm.await.unwrap().status.success());
    let n = 1000u64;
    let mut per_conn = Vec::new();
    for phase in ["tcp", "tls", "ws", "deflate", "message"] {
        let before = heap();
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", CLIENTS, &n.to_string(), phase, &port, &ca])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut held = None;
        while let Some(l) = lines.next_line().await.unwrap() {
            if l == format!("held {n}") {
                tokio::time::sleep(Duration::from_millis(500)).await;
                held = Some((heap() as f64 - before as f64) / n as f64);
            }
        }
        assert!(child.wait().await.unwrap().success(), "{phase}: the clients failed");
        let held = held.unwrap_or_else(|| panic!("{phase}: not every connection was held"));
        println!("idle memory, {phase}: {held:.0} B of heap per connection");
        per_conn.push(held);
        // Wait for every connection to be gone before the next phase.
        assert!(eventually(Duration::from_secs(10), async || s.metric("wasmsock_connections").await == 0.0).await);
    }
    // Compression negotiated costs nothing while idle, and a compressed message leaves nothing
    // behind.
    let (ws, deflate, message) = (per_conn[2], per_conn[3], per_conn[4]);
    assert!(deflate < ws + 64.0, "negotiating compression: {ws:.0} → {deflate:.0} B per connection");
    assert!(message < deflate + 256.0, "after a compressed message: {deflate:.0} → {message:.0} B per connection");
}
