//! Outbound HTTP from plugins (issue 14): what a call to the application's backend adds, and
//! what waiting calls cost everybody else.
//!
//! - the connect proxy's handshake rate (`plugins/proxy` asking a local backend) against the
//!   same handshake without it;
//! - the latency one `http::get` adds to a message (the `outbound` test plugin's `get` against
//!   its `say`, which makes no request), on one connection;
//! - the echo route's p99 while 1000 connections each wait on a backend that answers after 1 s,
//!   against the same server with those connections quiet.
//!
//! The backend is a small HTTP/1.1 server in this process (a new connection per request, as the
//! host's client makes them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client;
use crate::kit::{Kit, median};
use crate::server::Server;

const WAITERS: usize = 1000;
const SLOW_MS: u64 = 1000;

/// The backend: `/auth` admits as user `u1`, `/ok` answers at once, `/slow` after [`SLOW_MS`].
struct Backend {
    port: u16,
    /// Requests being answered now, and the most at once.
    waiting: Arc<AtomicU64>,
    most: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl Backend {
    async fn start() -> Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (waiting, most, served) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (w, m, s) = (waiting.clone(), most.clone(), served.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (w, m, s) = (w.clone(), m.clone(), s.clone());
                tokio::spawn(async move {
                    let now = w.fetch_add(1, Relaxed) + 1;
                    m.fetch_max(now, Relaxed);
                    let _ = answer(stream).await;
                    w.fetch_sub(1, Relaxed);
                    s.fetch_add(1, Relaxed);
                });
            }
        });
        Ok(Backend { port, waiting, most, served })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Reads one request (head and `Content-Length` body) and answers it by its path.
async fn answer(mut stream: TcpStream) -> Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 << 10 {
            bail!("request head too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body = match path.as_str() {
        "/auth" => r#"{"user":"u1"}"#,
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
            "late"
        }
        _ => "ok",
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await.ok();
    Ok(())
}

fn routes(backend: &Backend) -> String {
    format!(
        r#"
[engine]
max_instances = {instances}

[[routes]]
path = "/proxied"
plugins = ["proxy", "echo"]
[plugins.proxy]
http_allowed_hosts = ["http://127.0.0.1:{port}"]
[plugins.proxy.config]
connect_url = "{auth}"

[[routes]]
path = "/out"
plugins = ["outbound"]
[plugins.outbound]
deadline = "100ms"
http_allowed_hosts = ["http://127.0.0.1:{port}"]
http_timeout = "10s"
http_max_concurrent = {instances}
"#,
        // Every waiting call holds an instance: room for all the waiters and the others.
        instances = WAITERS + 100,
        port = backend.port,
        auth = backend.url("/auth"),
    )
}

pub async fn calls_to_a_backend(kit: &Kit, quick: bool) -> Result<()> {
    let backend = Backend::start().await?;
    let server = Server::wasmsock_with(kit, &routes(&backend), "warn", &["proxy", "outbound"])?;
    let tls = client::tls(&kit.cert);
    println!("## Outbound HTTP from plugins: connect proxy, added latency, waiting calls\n");
    handshake_rates(&server, &tls, if quick { 300 } else { 2000 }).await?;
    added_latency(&server, &tls, &backend, if quick { 300 } else { 3000 }).await?;
    echo_beside_waiters(kit, &server, &tls, &backend, quick).await?;
    Ok(())
}

/// Handshakes per second through `/proxied` (the proxy plugin asks the backend first) and
/// through `/echo` (no question asked), 32 at a time, alternated.
async fn handshake_rates(server: &Server, tls: &Arc<rustls::ClientConfig>, total: usize) -> Result<()> {
    println!("| handshakes ({total}, 32 at a time) | handshakes/s | server CPU per handshake |");
    println!("|---|---|---|");
    let mut rates: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, path) in ["/echo", "/proxied"].into_iter().enumerate() {
            rates[i].push(crate::echo::handshake_rate(server, tls, path, total, 32).await?);
        }
    }
    for (i, label) in ["`/echo`: no connect proxy", "`/proxied`: the proxy plugin asks the backend"].iter().enumerate()
    {
        let rate = median(rates[i].iter().map(|r| r.0).collect());
        let cpu = median(rates[i].iter().map(|r| r.1).collect());
        println!("| {label} | {rate:.0} | {cpu:.0} µs |");
    }
    println!();
    Ok(())
}

/// Round trips on one connection: `say` (no request) and `get` of the backend's `/ok`,
/// alternated in blocks, so both see the same machine.
async fn added_latency(server: &Server, tls: &Arc<rustls::ClientConfig>, backend: &Backend, n: usize) -> Result<()> {
    let mut ws = client::connect(&server.url("/out"), server.port, tls).await?;
    let (mut say, mut get) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let ok = backend.url("/ok");
    for block in 0..10 {
        for _ in 0..n / 10 {
            let (command, expect, into) = if block % 2 == 0 {
                ("say hi".to_owned(), "hi", &mut say)
            } else {
                (format!("get {ok}"), "200 ok", &mut get)
            };
            let started = Instant::now();
            client::send_text(&mut ws, command).await?;
            let reply = client::next_text(&mut ws).await.context("the outbound connection closed")?;
            if reply != expect {
                bail!("expected {expect:?}, got {reply:?}");
            }
            into.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    println!("| one connection, {} round trips each | p50 | p99 |", n / 2);
    println!("|---|---|---|");
    println!("| `say`: a message, no request | {:.0} µs | {:.0} µs |", pct(&mut say, 0.5), pct(&mut say, 0.99));
    println!(
        "| `get`: a message that waits on one request to the backend | {:.0} µs | {:.0} µs |",
        pct(&mut get, 0.5),
        pct(&mut get, 0.99)
    );
    println!("| added by the request | {:.0} µs | |\n", pct(&mut get, 0.5) - pct(&mut say, 0.5));
    Ok(())
}

/// The echo route's p99 (wsload on `/echo`) with [`WAITERS`] connections each waiting on the
/// backend's `/slow`, against the same server with them quiet, alternated.
async fn echo_beside_waiters(
    kit: &Kit,
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    backend: &Backend,
    quick: bool,
) -> Result<()> {
    let rounds = if quick { 1 } else { 3 };
    let n = if quick { "1000" } else { "3000" };
    let args = ["-c", "10", "-n", n, "-s", "64"];
    let waiting = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<tokio::task::JoinHandle<Result<()>>> = Vec::new();
    for _ in 0..WAITERS {
        let mut ws = client::connect(&server.url("/out"), server.port, tls).await?;
        let (waiting, slow) = (waiting.clone(), backend.url("/slow"));
        tasks.push(tokio::spawn(async move {
            loop {
                while !waiting.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                client::send_text(&mut ws, format!("get {slow}")).await?;
                let reply = client::next_text(&mut ws).await.context("a waiting connection closed")?;
                if reply != "200 late" {
                    bail!("a waiting call got {reply:?}");
                }
            }
        }));
    }
    let (mut quiet, mut loaded): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
    let mut most_waiting = 0;
    for _ in 0..rounds {
        for wait in [false, true] {
            waiting.store(wait, Relaxed);
            if wait {
                // Until every connection has its call waiting on the backend.
                let started = Instant::now();
                while backend.waiting.load(Relaxed) < WAITERS as u64 * 9 / 10
                    && started.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let v = crate::echo::wsload_beside(kit, server, "/echo", &args).await?;
            if wait {
                most_waiting = most_waiting.max(backend.waiting.load(Relaxed));
                loaded.push(v);
            } else {
                quiet.push(v);
            }
            waiting.store(false, Relaxed);
            if let Some(t) = tasks.iter().find(|t| t.is_finished()) {
                bail!("a waiting connection stopped: {t:?}");
            }
            // Let the last slow answers come back before the next measurement.
            tokio::time::sleep(Duration::from_millis(SLOW_MS + 300)).await;
        }
    }
    for t in &tasks {
        t.abort();
    }
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let quiet_p99 = median(quiet.iter().map(|v| f(v, "p99_us")).collect());
    println!(
        "| echo (wsload `-c 10 -n {n} -s 64` on `/echo`, {rounds} runs each) | msgs/s | p50 | p99 | p99 vs quiet |"
    );
    println!("|---|---|---|---|---|");
    for (label, runs) in [
        ("the other connections quiet".to_owned(), &quiet),
        (format!("{WAITERS} connections each waiting {SLOW_MS} ms on the backend"), &loaded),
    ] {
        let m = |k: &str| median(runs.iter().map(|v| f(v, k)).collect());
        println!(
            "| {label} | {:.0} | {:.0} µs | {:.0} µs | {:.2} |",
            m("msgs_per_sec"),
            m("p50_us"),
            m("p99_us"),
            m("p99_us") / quiet_p99.max(1.0)
        );
    }
    println!(
        "\nCalls waiting on the backend at once during the loaded runs: {most_waiting} (most ever {}), requests \
         served {}.\n",
        backend.most.load(Relaxed),
        backend.served.load(Relaxed)
    );
    Ok(())
}
