//! Scenario 6: hot reload under load. 100 connections ping-pong with sequence numbers while
//! the echo plugin is replaced over and over (each time once the last swap is live),
//! alternating two builds (`echo` and `echo-v2`, which prefixes `v2:`). Every reply must answer
//! exactly the message just sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::client;
use crate::kit::{Kit, median};
use crate::server::Server;

/// One replacement of the plugin file: when, when a client first got an answer from the new
/// version, and whether the new version is v2.
type Swap = (Instant, Option<Instant>, bool);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    lost: AtomicU64,
    wrong: AtomicU64,
}

pub async fn under_load(kit: &Kit, quick: bool) -> Result<()> {
    let conns = 100;
    let run_for = Duration::from_secs(if quick { 4 } else { 15 });
    let server = Server::wasmsock(kit, "", "info")?;
    let plugins = server.dir.as_ref().context("dir")?.join("plugins");
    let tls = client::tls(&kit.cert);
    let tally = Arc::new(Tally::default());
    let swaps: Arc<Mutex<Vec<Swap>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut ws = client::connect(&server.url("/echo"), server.port, &tls).await?;
        let (tally, swaps) = (tally.clone(), swaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let msg = format!("{c}-{seq}");
                if client::send_text(&mut ws, msg.clone()).await.is_err() {
                    tally.lost.fetch_add(1, Relaxed);
                    return;
                }
                let reply = tokio::time::timeout(Duration::from_secs(5), client::next_text(&mut ws)).await;
                let Ok(Some(reply)) = reply else {
                    tally.lost.fetch_add(1, Relaxed);
                    return;
                };
                let v2 = match reply.strip_prefix("v2:") {
                    Some(r) if r == msg => true,
                    None if reply == msg => false,
                    _ => {
                        tally.wrong.fetch_add(1, Relaxed);
                        return;
                    }
                };
                tally.ok.fetch_add(1, Relaxed);
                let now = Instant::now();
                let mut s = swaps.lock().await;
                if let Some(last) = s.last_mut()
                    && last.2 == v2
                    && last.1.is_none()
                {
                    last.1 = Some(now);
                }
                seq += 1;
            }
            let _ = ws.close(None).await;
        }));
    }
    // Each swap waits until the clients see the new code (or 10 s), then the next one comes:
    // replacing the file faster than a reload takes would only measure the debounce.
    let mut v2 = false;
    let mut n_swaps = 0;
    while Instant::now() + Duration::from_secs(1) < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        v2 = !v2;
        let file = if v2 { "echo_v2" } else { "echo" };
        let tmp = plugins.join(".echo.wasm.tmp");
        std::fs::copy(kit.plugin(file), &tmp)?;
        swaps.lock().await.push((Instant::now(), None, v2));
        std::fs::rename(&tmp, plugins.join("echo.wasm"))?;
        n_swaps += 1;
        let waited = Instant::now();
        while swaps.lock().await.last().is_some_and(|s| s.1.is_none()) && waited.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for t in tasks {
        t.await?;
    }
    let swaps = swaps.lock().await;
    let latencies: Vec<f64> =
        swaps.iter().filter_map(|(at, seen, _)| seen.map(|s| (s - *at).as_secs_f64() * 1e3)).collect();
    let reload_ms: Vec<f64> = std::fs::read_to_string(server.dir.as_ref().context("dir")?.join("server.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("plugin reloaded"))
        .filter_map(|l| l.split("ms=").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()))
        .collect();
    println!(
        "## Hot reload under load ({conns} connections ping-pong for {}s; echo replaced again once each swap is live)\n",
        run_for.as_secs()
    );
    println!(
        "| messages answered | lost | duplicated or wrong | swaps | swaps seen by clients | file-to-new-code latency (median / max) | compile + swap in the server (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let max = latencies.iter().cloned().fold(0.0f64, f64::max);
    println!(
        "| {} | {} | {} | {n_swaps} | {} | {:.0} ms / {:.0} ms | {:.0} ms |\n",
        tally.ok.load(Relaxed),
        tally.lost.load(Relaxed),
        tally.wrong.load(Relaxed),
        latencies.len(),
        median(latencies.clone()),
        max,
        median(reload_ms)
    );
    Ok(())
}
