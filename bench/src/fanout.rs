//! Scenario 7: one publish to a room of 1k and 10k subscribers (time until the last one has it,
//! and server memory per subscriber); and the broker: publishes across two nodes through Redis
//! against the same publishes on one node.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Ws};
use crate::kit::{Kit, median, quantile};
use crate::server::{Server, free_port};

pub(crate) const BIG: &str = "[server]\nmax_connections_per_ip = 100000\n[limits]\nping_interval = \"0s\"\n";

/// A client of `/rooms` on the server at `port`, subscribed to `channel`.
async fn subscribe_at(url: String, port: u16, tls: Arc<rustls::ClientConfig>, channel: String) -> Result<Ws> {
    let mut ws = client::connect(&url, port, &tls).await?;
    client::send_text(&mut ws, json!({"event": "subscribe", "channel": channel}).to_string()).await?;
    loop {
        let t = client::next_text(&mut ws).await.context("closed while subscribing")?;
        if t.contains("\"subscribed\"") {
            return Ok(ws);
        }
    }
}

async fn subscribe(server: &Server, tls: &Arc<rustls::ClientConfig>, channel: &str) -> Result<Ws> {
    subscribe_at(server.url("/rooms"), server.port, tls.clone(), channel.to_owned()).await
}

/// Opens `n` subscribers, 64 handshakes at a time.
pub(crate) async fn subscribers(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    channel: &str,
    n: usize,
) -> Result<Vec<Ws>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(64);
        let tasks: Vec<_> = (0..batch)
            .map(|_| tokio::spawn(subscribe_at(server.url("/rooms"), server.port, tls.clone(), channel.to_owned())))
            .collect();
        for t in tasks {
            all.push(t.await??);
        }
    }
    Ok(all)
}

fn data_of(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text).ok()?;
    (v["event"] == "message").then(|| v["data"].clone())
}

pub async fn fan_out(kit: &Kit, quick: bool) -> Result<()> {
    let sizes: &[usize] = if quick { &[1000] } else { &[1000, 10_000] };
    let rounds = if quick { 5 } else { 20 };
    let tls = client::tls(&kit.cert);
    println!("## Fan-out: one publish to every member of a room ({rounds} publishes each, 64 B payload)\n");
    println!(
        "| subscribers | time until the last subscriber has it (median / worst) | server CPU per delivery | server memory per subscriber |"
    );
    println!("|---|---|---|---|");
    for &n in sizes {
        let server = Server::wasmsock(kit, BIG, "warn")?;
        let rss0 = server.rss_kb();
        let subs = subscribers(&server, &tls, "fan", n).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss1 = server.rss_kb();
        let epoch = Instant::now();
        let start_ns = Arc::new(AtomicU64::new(0));
        let last_ns: Arc<Vec<AtomicU64>> = Arc::new((0..rounds).map(|_| AtomicU64::new(0)).collect());
        let got: Arc<Vec<AtomicUsize>> = Arc::new((0..rounds).map(|_| AtomicUsize::new(0)).collect());
        for mut ws in subs {
            let (last_ns, got) = (last_ns.clone(), got.clone());
            tokio::spawn(async move {
                while let Some(t) = client::next_text(&mut ws).await {
                    if let Some(r) = data_of(&t).and_then(|d| d["round"].as_u64()) {
                        let now = epoch.elapsed().as_nanos() as u64;
                        last_ns[r as usize].fetch_max(now, Relaxed);
                        got[r as usize].fetch_add(1, Relaxed);
                    }
                }
            });
        }
        let mut publisher = subscribe(&server, &tls, "elsewhere").await?;
        let mut latencies = Vec::new();
        let cpu0 = server.cpu_ns();
        for round in 0..rounds {
            let t0 = epoch.elapsed().as_nanos() as u64;
            start_ns.store(t0, Relaxed);
            let payload =
                json!({"event": "publish", "channel": "fan", "data": {"round": round, "pad": "x".repeat(20)}});
            client::send_text(&mut publisher, payload.to_string()).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while got[round].load(Relaxed) < n {
                if Instant::now() > deadline {
                    bail!("round {round}: only {} of {n} subscribers got the message", got[round].load(Relaxed));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            latencies.push((last_ns[round].load(Relaxed) - t0) as f64 / 1e6);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu_per = (server.cpu_ns() - cpu0) as f64 / 1e3 / (n * rounds) as f64;
        let worst = latencies.iter().cloned().fold(0.0f64, f64::max);
        println!(
            "| {n} | {:.1} ms / {worst:.1} ms | {cpu_per:.2} µs | {:.1} KB |",
            median(latencies.clone()),
            (rss1.saturating_sub(rss0)) as f64 / n as f64
        );
    }
    println!("\nBoth sides have one core: the time includes this client decrypting and parsing every copy.\n");
    Ok(())
}

/// A `redis-server` for the broker scenarios.
pub(crate) struct Redis(Child, u16);

impl Redis {
    pub(crate) fn start() -> Result<Redis> {
        Redis::start_on(free_port())
    }

    /// `[broker]` for a node of this Redis (with the tables every many-client run needs).
    pub(crate) fn broker(&self) -> String {
        format!("{BIG}[broker]\nurl = \"redis://127.0.0.1:{}\"\n", self.1)
    }

    /// CPU time of the Redis server, in nanoseconds (`taskset` execs it: the same process).
    pub(crate) fn cpu_ns(&self) -> u64 {
        crate::server::proc_cpu_ns(self.0.id())
    }

    /// On a given port (the soak restarts it where the server expects it).
    pub(crate) fn start_on(port: u16) -> Result<Redis> {
        // Nothing is saved (`--save ""`, no AOF); its directory is a scratch one all the same.
        let dir = std::env::temp_dir().join(format!("wasmsock-bench-redis-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("taskset")
            .args([
                "-c",
                "1",
                "redis-server",
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Redis(child, port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server did not start")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes `count` messages from `publisher` (batches of 50, each batch confirmed by the
/// publisher's own copy) and measures, at `subs`, publish-to-delivery latency and throughput.
pub(crate) async fn stream(mut publisher: Ws, subs: Vec<Ws>, count: usize) -> Result<(f64, f64, f64)> {
    let epoch = Instant::now();
    let n = subs.len();
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n * count)));
    let done = Arc::new(AtomicUsize::new(0));
    for mut ws in subs {
        let (lat, done) = (lat.clone(), done.clone());
        tokio::spawn(async move {
            while let Some(t) = client::next_text(&mut ws).await {
                if let Some(sent) = data_of(&t).and_then(|d| d["t"].as_u64()) {
                    let now = epoch.elapsed().as_nanos() as u64;
                    if let Ok(mut l) = lat.lock() {
                        l.push((now - sent) as f64 / 1e3);
                    }
                    done.fetch_add(1, Relaxed);
                }
            }
        });
    }
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let batch = (count - i).min(50);
        for k in 0..batch {
            let t = epoch.elapsed().as_nanos() as u64;
            client::send_text(
                &mut publisher,
                json!({"event": "publish", "channel": "x", "data": {"i": i + k, "t": t}}).to_string(),
            )
            .await?;
        }
        let mut own = 0;
        while own < batch {
            let t = tokio::time::timeout(Duration::from_secs(30), client::next_text(&mut publisher))
                .await?
                .context("publisher closed")?;
            if data_of(&t).is_some() {
                own += 1;
            }
        }
        i += batch;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Relaxed) < n * count {
        if Instant::now() > deadline {
            bail!("only {} of {} deliveries arrived", done.load(Relaxed), n * count);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut l = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    Ok((count as f64 / secs, quantile(&mut l, 0.5), quantile(&mut l, 0.99)))
}

pub async fn cross_node(kit: &Kit, quick: bool) -> Result<()> {
    let count = if quick { 500 } else { 5000 };
    let subs_n = 100;
    let redis = Redis::start()?;
    let broker = format!("{BIG}[broker]\nurl = \"redis://127.0.0.1:{}\"\n", redis.1);
    let tls = client::tls(&kit.cert);
    println!("## Rooms across nodes through Redis ({count} publishes of ~60 B to {subs_n} subscribers)\n");
    println!("| path | publishes/s | deliveries/s | publish-to-delivery p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (label, cross) in [("one node (no broker)", false), ("node A → Redis → node B", true)] {
        let a = Server::wasmsock(kit, if cross { &broker } else { BIG }, "warn")?;
        let b = if cross { Some(Server::wasmsock(kit, &broker, "warn")?) } else { None };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sub_server = b.as_ref().unwrap_or(&a);
        let subs = subscribers(sub_server, &tls, "x", subs_n).await?;
        let publisher = subscribe(&a, &tls, "x").await?;
        let (rate, p50, p99) = stream(publisher, subs, count).await?;
        println!("| {label} | {rate:.0} | {:.0} | {p50:.0} µs | {p99:.0} µs |", rate * subs_n as f64);
    }
    println!("\nBoth nodes share CPU 0; Redis and the clients share CPU 1.\n");
    Ok(())
}
