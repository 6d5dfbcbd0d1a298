//! A TCP proxy that counts the bytes going each way: what is on the wire (TLS records, frame
//! headers, handshakes and all) between a load client and a server, whatever system calls the
//! server writes with.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// Listens on 127.0.0.1 and forwards every connection to `127.0.0.1:upstream`.
pub struct CountingProxy {
    pub port: u16,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Server to client.
    down: AtomicU64,
    /// Client to server.
    up: AtomicU64,
    stop: AtomicBool,
}

impl CountingProxy {
    pub fn start(upstream: u16) -> Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("proxy listen")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if c.stop.load(Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { continue };
                let (up, down) = (c.clone(), c.clone());
                thread::spawn(move || pipe(client, server, &up.up));
                thread::spawn(move || pipe(server2, client2, &down.down));
            }
        });
        Ok(CountingProxy { port, counts })
    }

    /// (server to client, client to server) bytes so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.counts.down.load(Relaxed), self.counts.up.load(Relaxed))
    }

    /// Waits until the counts stop moving (the last connection's bytes have gone through).
    pub fn settle(&self) -> (u64, u64) {
        let mut last = self.bytes();
        loop {
            thread::sleep(Duration::from_millis(200));
            let now = self.bytes();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.counts.stop.store(true, Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                count.fetch_add(n as u64, Relaxed);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
