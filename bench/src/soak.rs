//! Soak (issue 19, item 6): a few minutes of everything at once against one server with a
//! Redis broker: connection churn with mixed message sizes, steady connections, room
//! publishes, hot reloads of the echo plugin, a Redis restart and a hostile plugin. Nothing the
//! design promises may be lost (every echo on a connection that stays open, every local room
//! delivery: local delivery does not depend on Redis), and the server's file descriptors and
//! RSS must come back to their baseline once the load is gone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Ws};
use crate::fanout::Redis;
use crate::kit::Kit;
use crate::server::{Server, proc_rss_kb};

/// Message sizes the churning clients cycle through.
const SIZES: &[usize] = &[16, 200, 1500, 4096, 20_000, 65_536];
/// Connections that churn (connect, a few echoes, close) in a loop.
const CHURNERS: usize = 8;
/// Connections open for the whole run, one echo every 100 ms each.
const STEADY: usize = 40;
/// Room members, and one publisher every 50 ms.
const MEMBERS: usize = 20;
/// What hostile clients ask of the hostile plugin, in turn.
const HOSTILE: &[&str] = &["panic", "loop", "alloc", "stack", "flood", "publish-loop x"];
/// RSS may stay this much above its baseline after the load (the allocator keeps some pages
/// for reuse): a leak of even 1 KB per connection churned would exceed it.
const RSS_SLACK_KB: u64 = 16 << 10;

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    echoes: AtomicU64,
    lost: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    hostile: AtomicU64,
    reloads: AtomicU64,
    stop: AtomicBool,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One echo of `text` on `ws`: the reply must be the text itself or, from the other build
/// swapped in by the reloads, `v2:` and the text.
async fn echo(ws: &mut Ws, text: String) -> Result<()> {
    client::send_text(ws, text.clone()).await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), client::next_text(ws))
        .await
        .context("no echo within 10 s")?
        .context("closed before the echo")?;
    if reply != text && reply.strip_prefix("v2:") != Some(&text) {
        bail!("wrong echo: {} bytes for {}", reply.len(), text.len());
    }
    Ok(())
}

pub async fn run(kit: &Kit, minutes: f64) -> Result<()> {
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let redis_port = crate::server::free_port();
    let mut redis = Some(Redis::start_on(redis_port)?);
    let extra = format!(
        "[server]\nmax_connections_per_ip = 100000\n[broker]\nurl = \"redis://127.0.0.1:{redis_port}\"\nshared_kv = true\n\
         [[routes]]\npath = \"/hostile\"\nplugins = [\"hostile\"]\n[plugins.hostile]\ndeadline = \"20ms\"\nmax_memory = \"16MiB\"\n"
    );
    let server = Arc::new(Server::wasmsock_with(kit, &extra, "warn", &["hostile"])?);
    let plugin_dir = server.dir.as_ref().context("wasmsock's directory")?.join("plugins");
    let tls = client::tls(&kit.cert);
    let pid = server.pid();
    println!(
        "## Soak: {minutes} min of churn, mixed sizes, room publishes, hot reloads, a Redis restart and a hostile plugin\n"
    );

    // Warm up every path once (pools, caches, the broker's connections), then take the baseline.
    let counts = Arc::new(Counts::default());
    {
        let mut ws = client::connect(&server.url("/echo"), server.port, &tls).await?;
        for &size in SIZES {
            echo(&mut ws, "w".repeat(size)).await?;
        }
        let mut h = client::connect(&server.url("/hostile"), server.port, &tls).await?;
        let _ = client::send_text(&mut h, "panic".into()).await;
        let _ = client::next_text(&mut h).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss0, fds0) = (proc_rss_kb(pid), fds(pid));

    let started = Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<Result<()>>> = Vec::new();
    for i in 0..CHURNERS {
        let (server, tls, counts) = (server.clone(), tls.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = i;
            while !counts.stop.load(Relaxed) {
                let mut ws = client::connect(&server.url("/echo"), server.port, &tls).await?;
                counts.connections.fetch_add(1, Relaxed);
                for _ in 0..5 {
                    round += 1;
                    let text = format!("{round}:{}", "m".repeat(SIZES[round % SIZES.len()]));
                    match echo(&mut ws, text).await {
                        Ok(()) => counts.echoes.fetch_add(1, Relaxed),
                        Err(e) => {
                            eprintln!("soak: churn echo lost: {e:#}");
                            counts.lost.fetch_add(1, Relaxed)
                        }
                    };
                }
                let _ = ws.close(None).await;
            }
            Ok(())
        }));
    }
    for i in 0..STEADY {
        let (server, tls, counts) = (server.clone(), tls.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = client::connect(&server.url("/echo"), server.port, &tls).await?;
            counts.connections.fetch_add(1, Relaxed);
            let mut n = 0u64;
            while !counts.stop.load(Relaxed) {
                n += 1;
                match echo(&mut ws, format!("steady {i} {n}")).await {
                    Ok(()) => counts.echoes.fetch_add(1, Relaxed),
                    Err(e) => {
                        eprintln!("soak: steady echo lost: {e:#}");
                        counts.lost.fetch_add(1, Relaxed);
                        ws = client::connect(&server.url("/echo"), server.port, &tls).await?;
                        0
                    }
                };
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = ws.close(None).await;
            Ok(())
        }));
    }
    // Room members, each checking it gets every publish, in order.
    for _ in 0..MEMBERS {
        let (server, tls, counts) = (server.clone(), tls.clone(), counts.clone());
        let mut ws = member(&server, &tls).await?;
        tasks.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut quiet_since_stop = 0;
            loop {
                let t = match tokio::time::timeout(Duration::from_secs(1), client::next_text(&mut ws)).await {
                    Ok(Some(t)) => t,
                    Ok(None) => bail!("a room member was closed"),
                    Err(_) => {
                        // After the end, wait for the last publishes, but not for ever.
                        if counts.stop.load(Relaxed) {
                            quiet_since_stop += 1;
                            if last == counts.published.load(Relaxed) || quiet_since_stop > 10 {
                                break;
                            }
                        }
                        continue;
                    }
                };
                let Some(n) = room_seq(&t) else { continue };
                if n != last + 1 {
                    eprintln!("soak: a member got publish {n} after {last}");
                    counts.lost.fetch_add(n.saturating_sub(last + 1).max(1), Relaxed);
                }
                last = n;
                counts.delivered.fetch_add(1, Relaxed);
                if counts.stop.load(Relaxed) && last == counts.published.load(Relaxed) {
                    break;
                }
            }
            Ok(())
        }));
    }
    {
        let (server, tls, counts) = (server.clone(), tls.clone(), counts.clone());
        // Not a member itself (the route allows publishing without subscribing).
        let mut publisher = client::connect(&server.url("/rooms"), server.port, &tls).await?;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !counts.stop.load(Relaxed) {
                n += 1;
                let msg = json!({"event": "publish", "channel": "soak", "data": {"n": n, "pad": "p".repeat(200)}});
                client::send_text(&mut publisher, msg.to_string()).await?;
                counts.published.store(n, Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = publisher.close(None).await;
            Ok(())
        }));
    }
    // The hostile plugin: one client every 2 s asks for the next misbehaviour; what it gets
    // (1011, a refusal while quarantined, an error reply) does not matter, only that the server
    // gets all its resources back.
    {
        let (server, tls, counts) = (server.clone(), tls.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !counts.stop.load(Relaxed) {
                if let Ok(mut ws) = client::connect(&server.url("/hostile"), server.port, &tls).await {
                    let _ = client::send_text(&mut ws, HOSTILE[i % HOSTILE.len()].into()).await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), client::next_text(&mut ws)).await;
                }
                counts.hostile.fetch_add(1, Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(())
        }));
    }
    // Hot reloads: the echo plugin's file replaced by the other build every 15 s.
    {
        let counts = counts.clone();
        let builds: [PathBuf; 2] = [kit.plugin("echo_v2"), kit.plugin("echo")];
        let target = plugin_dir.join("echo.wasm");
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !counts.stop.load(Relaxed) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                // Written aside and renamed: the watcher sees one complete file.
                let tmp = target.with_extension("tmp");
                std::fs::copy(&builds[i % 2], &tmp)?;
                std::fs::rename(&tmp, &target)?;
                counts.reloads.fetch_add(1, Relaxed);
                i += 1;
            }
            Ok(())
        }));
    }

    // Redis goes away at 40% of the run and comes back 5 s later; meanwhile, sample the peaks.
    let (mut rss_peak, mut fds_peak, mut redis_restarted) = (rss0, fds0, false);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_peak = rss_peak.max(proc_rss_kb(pid));
        fds_peak = fds_peak.max(fds(pid));
        if !redis_restarted && started.elapsed() > duration.mul_f64(0.4) {
            drop(redis.take()); // killed
            tokio::time::sleep(Duration::from_secs(5)).await;
            redis = Some(Redis::start_on(redis_port)?);
            redis_restarted = true;
        }
        if let Some(t) = tasks.iter().find(|t| t.is_finished()) {
            bail!("a soak client stopped early: {t:?}");
        }
    }
    counts.stop.store(true, Relaxed);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(r) => r??,
            Err(_) => bail!("a soak client did not finish within 30 s of the end"),
        }
    }
    let secs = started.elapsed().as_secs_f64();

    // Everything closed: the server should come back to where it started.
    let settle = Instant::now();
    while fds(pid) > fds0 && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss1, fds1) = (proc_rss_kb(pid), fds(pid));
    let c = |a: &AtomicU64| a.load(Relaxed);
    println!("| | RSS | file descriptors |");
    println!("|---|---|---|");
    println!("| baseline (after a warm-up) | {} MB | {fds0} |", rss0 / 1024);
    println!("| peak during the run | {} MB | {fds_peak} |", rss_peak / 1024);
    println!("| after the run (all clients gone, 5 s) | {} MB | {fds1} |", rss1 / 1024);
    println!(
        "\n{secs:.0} s: {} connections opened, {} echoes ({} lost), {} room deliveries of {} publishes × {MEMBERS} members, \
         {} hostile requests, {} hot reloads, Redis restarted {}.\n",
        c(&counts.connections),
        c(&counts.echoes),
        c(&counts.lost),
        c(&counts.delivered),
        c(&counts.published),
        c(&counts.hostile),
        c(&counts.reloads),
        if redis_restarted { "once" } else { "never" },
    );
    let summary: Value = json!({
        "secs": secs, "rss_kb": [rss0, rss_peak, rss1], "fds": [fds0, fds_peak, fds1],
        "connections": c(&counts.connections), "echoes": c(&counts.echoes), "lost": c(&counts.lost),
        "published": c(&counts.published), "delivered": c(&counts.delivered),
        "hostile": c(&counts.hostile), "reloads": c(&counts.reloads),
    });
    println!("<!-- soak: {summary} -->\n");
    drop(redis);
    if c(&counts.lost) > 0 {
        bail!("the soak lost {} messages", c(&counts.lost));
    }
    if c(&counts.delivered) != c(&counts.published) * MEMBERS as u64 {
        bail!("room deliveries {} != {} publishes × {MEMBERS}", c(&counts.delivered), c(&counts.published));
    }
    if fds1 > fds0 {
        bail!("file descriptors did not come back: {fds0} before, {fds1} after");
    }
    if rss1 > rss0 + RSS_SLACK_KB {
        bail!("RSS did not come back: {rss0} KB before, {rss1} KB after");
    }
    println!("Soak passed: nothing lost, file descriptors and RSS back to their baseline.\n");
    Ok(())
}

/// A member of the `soak` room.
async fn member(server: &Server, tls: &Arc<rustls::ClientConfig>) -> Result<Ws> {
    let mut ws = client::connect(&server.url("/rooms"), server.port, tls).await?;
    client::send_text(&mut ws, json!({"event": "subscribe", "channel": "soak"}).to_string()).await?;
    loop {
        let t = client::next_text(&mut ws).await.context("closed while subscribing")?;
        if t.contains("\"subscribed\"") {
            return Ok(ws);
        }
    }
}

/// The sequence number of a room publish.
fn room_seq(text: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(text).ok()?;
    (v["event"] == "message").then(|| v["data"]["n"].as_u64())?
}
