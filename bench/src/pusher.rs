//! Scenario: the Pusher protocol as a plugin against the native rooms plugin, on the same server
//! in the same run. A backend triggers events over one kept-alive HTTPS connection (each
//! answered before the next, as a server SDK call is) to a channel of 1000 subscribers: the
//! `pusher` plugin through its signed HTTP API to protocol-7 clients (`pusher:subscribe`, as
//! pusher-js sends it), and the `rooms` plugin through the `api` plugin (Centrifugo's API) to
//! rooms clients. Measured: triggers/s until every subscriber has every event, trigger-to-
//! delivery p50/p99 over every delivery, and the server's CPU per delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::{self, Ws};
use crate::kit::{Kit, quantile};
use crate::server::Server;

const APP: &str = "bench";
const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const API_KEY: &str = "bench-api-key";

fn config() -> String {
    format!(
        r#"[server]
max_connections_per_ip = 100000
[limits]
ping_interval = "0s"
[host]
max_room_name = 256
[[routes]]
path = "/app/{{key}}"
plugins = ["pusher"]
[[http_routes]]
path = "/apps"
plugin = "pusher"
max_concurrent = 256
[[http_routes]]
path = "/api"
plugin = "api"
max_concurrent = 256
[plugins.pusher.config]
apps = "{APP}"
"{APP}.key" = "{KEY}"
"{APP}.secret" = "{SECRET}"
[plugins.api]
act_as = "rooms"
config = {{ api_key = "{API_KEY}" }}
"#
    )
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Pusher,
    Rooms,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Pusher => "pusher plugin (protocol 7, signed HTTP API)",
            System::Rooms => "rooms plugin (api plugin, Centrifugo's API)",
        }
    }
}

/// The next text message, or an error after 30 s.
async fn next(ws: &mut Ws) -> Result<String> {
    tokio::time::timeout(Duration::from_secs(30), client::next_text(ws))
        .await
        .context("no answer within 30 s")?
        .context("closed")
}

/// A subscriber of channel `fan`, as its system's clients subscribe.
async fn subscriber(system: System, port: u16, url: String, tls: Arc<rustls::ClientConfig>) -> Result<Ws> {
    let mut ws = client::connect(&url, port, &tls).await?;
    match system {
        System::Pusher => {
            let hello = next(&mut ws).await?;
            if !hello.contains("pusher:connection_established") {
                bail!("expected pusher:connection_established, got {hello}");
            }
            let sub = json!({"event": "pusher:subscribe", "data": {"channel": "fan"}});
            client::send_text(&mut ws, sub.to_string()).await?;
            loop {
                let t = next(&mut ws).await?;
                if t.contains("pusher_internal:subscription_succeeded") {
                    return Ok(ws);
                }
                if t.contains("error") {
                    bail!("subscribing: {t}");
                }
            }
        }
        System::Rooms => {
            client::send_text(&mut ws, json!({"event": "subscribe", "channel": "fan"}).to_string()).await?;
            loop {
                if next(&mut ws).await?.contains("\"subscribed\"") {
                    return Ok(ws);
                }
            }
        }
    }
}

async fn subscribers(system: System, server: &Server, tls: &Arc<rustls::ClientConfig>, n: usize) -> Result<Vec<Ws>> {
    let url = match system {
        System::Pusher => server.url(&format!("/app/{KEY}?protocol=7&client=wasmsock-bench&version=1")),
        System::Rooms => server.url("/rooms"),
    };
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(64);
        let tasks: Vec<_> =
            (0..batch).map(|_| tokio::spawn(subscriber(system, server.port, url.clone(), tls.clone()))).collect();
        for t in tasks {
            all.push(t.await??);
        }
    }
    Ok(all)
}

/// When a delivery was sent (`t`, ns since the run's epoch), from the text a subscriber got.
fn sent_at(system: System, text: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(text).ok()?;
    match system {
        // Pusher's event data is a string (the backend's JSON, as the SDK sends it).
        System::Pusher => {
            (v["event"] == "tick").then(|| serde_json::from_str::<Value>(v["data"].as_str()?).ok()?["t"].as_u64())?
        }
        System::Rooms => (v["event"] == "message").then(|| v["data"]["t"].as_u64())?,
    }
}

/// One kept-alive HTTPS connection to the server, one request at a time.
struct Backend {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Backend {
    async fn connect(port: u16, config: &Arc<rustls::ClientConfig>) -> Result<Backend> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost")?.to_owned();
        let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
        Ok(Backend { tls, buf: Vec::new() })
    }

    /// POSTs `body` to `target` (path and query) and returns the status and body of the answer.
    async fn post(&mut self, target: &str, headers: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n",
            body.len()
        );
        self.tls.write_all(head.as_bytes()).await?;
        self.tls.write_all(body).await?;
        self.tls.flush().await?;
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..end])?.to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("status line")?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("content-length")?;
        while self.buf.len() < end + len {
            self.fill().await?;
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the backend's connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pusher's request signing: the query with auth_key, auth_timestamp, auth_version and
/// body_md5, sorted, signed as "METHOD\nPATH\nQUERY" with HMAC-SHA256 under the app's secret.
fn signed_target(path: &str, body: &[u8]) -> Result<String> {
    use md5::{Digest, Md5};
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let query = format!("auth_key={KEY}&auth_timestamp={now}&auth_version=1.0&body_md5={}", hex(&Md5::digest(body)));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())?;
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    Ok(format!("{path}?{query}&auth_signature={}", hex(&mac.finalize().into_bytes())))
}

/// What one trigger of the run sends: target, extra headers, body.
fn trigger(system: System, t: u64) -> Result<(String, String, Vec<u8>)> {
    match system {
        System::Pusher => {
            let body = json!({"name": "tick", "channel": "fan", "data": json!({"t": t}).to_string()}).to_string();
            let path = format!("/apps/{APP}/events");
            Ok((signed_target(&path, body.as_bytes())?, String::new(), body.into_bytes()))
        }
        System::Rooms => {
            let body = json!({"channel": "fan", "data": {"t": t}}).to_string();
            Ok(("/api/publish".to_owned(), format!("x-api-key: {API_KEY}\r\n"), body.into_bytes()))
        }
    }
}

struct Figures {
    /// Triggers/s until every subscriber had every trigger.
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_delivery: f64,
}

/// `count` triggers to `n` subscribers; `paced`: each trigger only once every subscriber has
/// the one before (latency without queueing), else back to back (throughput).
async fn run(
    system: System,
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
    count: usize,
    paced: bool,
) -> Result<Figures> {
    let subs = subscribers(system, server, tls, n).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let epoch = Instant::now();
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n * count)));
    let done = Arc::new(AtomicUsize::new(0));
    for mut ws in subs {
        let (lat, done) = (lat.clone(), done.clone());
        tokio::spawn(async move {
            let mut mine = Vec::with_capacity(count);
            while let Some(t) = client::next_text(&mut ws).await {
                if let Some(sent) = sent_at(system, &t) {
                    mine.push((epoch.elapsed().as_nanos() as u64 - sent) as f64 / 1e3);
                    done.fetch_add(1, Relaxed);
                    if mine.len() == count {
                        break;
                    }
                }
            }
            if let Ok(mut l) = lat.lock() {
                l.extend(mine);
            }
        });
    }
    let mut backend = Backend::connect(server.port, tls).await?;
    let cpu0 = server.cpu_ns();
    let started = Instant::now();
    let all_by = async |deliveries: usize| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(Relaxed) < deliveries {
            if Instant::now() > deadline {
                bail!("{}: only {} of {deliveries} deliveries arrived", system.label(), done.load(Relaxed));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    };
    for k in 0..count {
        let (target, headers, body) = trigger(system, epoch.elapsed().as_nanos() as u64)?;
        let (status, answer) = backend.post(&target, &headers, &body).await?;
        if status != 200 {
            bail!("{}: trigger answered {status}: {}", system.label(), String::from_utf8_lossy(&answer));
        }
        if paced {
            all_by(n * (k + 1)).await?;
        }
    }
    all_by(n * count).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = (server.cpu_ns() - cpu0) as f64 / 1e3;
    // Let the readers hand in their samples.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut l = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok(Figures {
        rate: count as f64 / secs,
        p50_us: quantile(&mut l, 0.5),
        p99_us: quantile(&mut l, 0.99),
        cpu_us_per_delivery: cpu / (n * count) as f64,
    })
}

pub async fn triggers(kit: &Kit, quick: bool) -> Result<()> {
    let n = 1000;
    let (count, paced_count) = if quick { (100, 20) } else { (1000, 100) };
    let tls = client::tls(&kit.cert);
    println!("## Pusher protocol: triggers to a channel of {n} subscribers, against the rooms plugin\n");
    println!(
        "A backend triggers over one kept-alive HTTPS connection, each request answered before the next. \
         Back to back: {count} triggers as fast as they are answered (throughput; latency is then mostly \
         queueing in this one-core client). Paced: {paced_count} triggers, each once every subscriber has \
         the one before (latency). Systems alternated, each run on a fresh server.\n"
    );
    println!(
        "| system | mode | triggers/s (all delivered) | deliveries/s | trigger-to-delivery p50 | p99 | server CPU per delivery |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for paced in [false, true] {
        for system in [System::Rooms, System::Pusher, System::Rooms, System::Pusher] {
            let server = Server::wasmsock_with(kit, &config(), "warn", &["pusher", "api"])?;
            let c = if paced { paced_count } else { count };
            let f = run(system, &server, &tls, n, c, paced).await?;
            let mode = if paced { "paced" } else { "back to back" };
            println!(
                "| {} | {mode} | {:.0} | {:.0} | {:.0} µs | {:.0} µs | {:.2} µs |",
                system.label(),
                f.rate,
                f.rate * n as f64,
                f.p50_us,
                f.p99_us,
                f.cpu_us_per_delivery
            );
            println!(
                "{}",
                json!({"scenario": "pusher", "system": system.label(), "mode": mode, "subscribers": n, "triggers": c,
                    "triggers_per_s": f.rate, "p50_us": f.p50_us, "p99_us": f.p99_us, "cpu_us_per_delivery": f.cpu_us_per_delivery})
            );
            rows.push((system, paced, f));
        }
    }
    for paced in [false, true] {
        let mean = |s: System, get: fn(&Figures) -> f64| {
            let v: Vec<f64> = rows.iter().filter(|(x, p, _)| *x == s && *p == paced).map(|(_, _, f)| get(f)).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let ratio = |get: fn(&Figures) -> f64| mean(System::Pusher, get) / mean(System::Rooms, get);
        println!(
            "\npusher / rooms, {} (means of two runs each): triggers/s {:.2}×, p50 {:.2}×, p99 {:.2}×, CPU per delivery {:.2}×",
            if paced { "paced" } else { "back to back" },
            ratio(|f| f.rate),
            ratio(|f| f.p50_us),
            ratio(|f| f.p99_us),
            ratio(|f| f.cpu_us_per_delivery)
        );
    }
    println!();
    Ok(())
}
