//! Room history (`[[history]]`): publishing with history on against off (one node), recovery of
//! 100 missed messages for 1000 clients reconnecting at once, and memory per history entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client;
use crate::fanout::{BIG, stream, subscribers};
use crate::kit::Kit;
use crate::server::Server;

const WITH_HISTORY: &str = "[[history]]\nrooms = \"*\"\nsize = 10000\nttl = \"1h\"\nmax_bytes = \"64MiB\"\n[host]\nmax_history_memory = \"1GiB\"\n";

pub async fn scenarios(kit: &Kit, quick: bool) -> Result<()> {
    publishing(kit, quick).await?;
    recovery(kit, quick).await?;
    memory(kit, quick).await
}

async fn publishing(kit: &Kit, quick: bool) -> Result<()> {
    let count = if quick { 500 } else { 5000 };
    let subs_n = 100;
    let tls = client::tls(&kit.cert);
    println!(
        "## History: publishing with history on and off ({count} publishes of ~60 B to {subs_n} subscribers, one node)\n"
    );
    println!("| history | publishes/s | deliveries/s | publish-to-delivery p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (label, extra) in [("off", String::new()), ("on (`size = 10000`)", WITH_HISTORY.to_owned())] {
        let server = Server::wasmsock(kit, &format!("{BIG}{extra}"), "warn")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let subs = subscribers(&server, &tls, "x", subs_n).await?;
        let publisher = subscribers(&server, &tls, "x", 1).await?.pop().context("publisher")?;
        let (rate, p50, p99) = stream(publisher, subs, count).await?;
        println!("| {label} | {rate:.0} | {:.0} | {p50:.0} µs | {p99:.0} µs |", rate * subs_n as f64);
    }
    println!();
    Ok(())
}

/// 1000 subscribers see one message, all drop, 100 are published, and all come back at once
/// with `since`: time until every one has its 100 missed messages, and the server's CPU for it.
async fn recovery(kit: &Kit, quick: bool) -> Result<()> {
    let (n, missed) = if quick { (200, 100) } else { (1000, 100) };
    let tls = client::tls(&kit.cert);
    let server = Server::wasmsock(kit, &format!("{BIG}{WITH_HISTORY}"), "warn")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = subscribers(&server, &tls, "r", 1).await?.pop().context("publisher")?;
    let publish = |i: usize| json!({"event": "publish", "channel": "r", "data": {"i": i}, "echo": false}).to_string();
    let subs = subscribers(&server, &tls, "r", n).await?;
    client::send_text(&mut publisher, publish(0)).await?;
    // Every subscriber's position: the first message.
    let mut since = None;
    for mut ws in subs {
        let t = loop {
            let t = client::next_text(&mut ws).await.context("closed before the first message")?;
            if t.contains("\"message\"") {
                break t;
            }
        };
        let v: Value = serde_json::from_str(&t)?;
        since = Some(json!({"offset": v["offset"], "epoch": v["epoch"]}));
    }
    let since = since.context("no subscriber")?;
    for i in 1..=missed {
        client::send_text(&mut publisher, publish(i)).await?;
    }
    // Confirmed: every publish was made before anyone comes back.
    client::send_text(&mut publisher, json!({"event": "ping"}).to_string()).await?;
    while !client::next_text(&mut publisher).await.context("publisher closed")?.contains("pong") {}

    let caught_up = Arc::new(AtomicUsize::new(0));
    let cpu0 = server.cpu_ns();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, port, tls, since, caught_up) =
            (server.url("/rooms"), server.port, tls.clone(), since.clone(), caught_up.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = client::connect(&url, port, &tls).await?;
            let req = json!({"event": "subscribe", "channel": "r", "since": since});
            client::send_text(&mut ws, req.to_string()).await?;
            let mut got = 0;
            loop {
                let t = client::next_text(&mut ws).await.context("closed while recovering")?;
                if t.contains("\"message\"") {
                    got += 1;
                } else if t.contains("\"subscribed\"") {
                    if !t.contains("\"recovered\":true") || got != missed {
                        bail!("not recovered: {got} of {missed}: {t}");
                    }
                    caught_up.fetch_add(1, Relaxed);
                    return Ok::<_, anyhow::Error>(ws);
                }
            }
        }));
    }
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (server.cpu_ns() - cpu0) as f64 / 1e9;
    println!("## History: {n} clients reconnecting at once, each recovering {missed} missed messages\n");
    println!("| clients caught up | time until all caught up (TLS handshakes included) | server CPU |");
    println!("|---|---|---|");
    println!("| {} | {:.2} s | {cpu:.2} s |\n", caught_up.load(Relaxed), secs);
    drop(kept);
    Ok(())
}

/// Server memory per kept entry: RSS before and after filling a room's history.
async fn memory(kit: &Kit, quick: bool) -> Result<()> {
    let entries = if quick { 2000 } else { 10_000 };
    let tls = client::tls(&kit.cert);
    let server = Server::wasmsock(kit, &format!("{BIG}{WITH_HISTORY}"), "warn")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = subscribers(&server, &tls, "elsewhere", 1).await?.pop().context("publisher")?;
    let rss0 = server.rss_kb();
    for i in 0..entries {
        let msg = json!({"event": "publish", "channel": "m", "data": {"i": i, "pad": "x".repeat(40)}});
        client::send_text(&mut publisher, msg.to_string()).await?;
        if i % 500 == 499 {
            client::send_text(&mut publisher, json!({"event": "ping"}).to_string()).await?;
            while !client::next_text(&mut publisher).await.context("publisher closed")?.contains("pong") {}
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = server.rss_kb();
    println!("## History: memory per entry ({entries} entries of ~110 B in one room)\n");
    println!("| server RSS per entry | counted against `max_history_memory` |");
    println!("|---|---|");
    println!("| {:.0} B | payload + 96 B |\n", (rss1.saturating_sub(rss0)) as f64 * 1024.0 / entries as f64);
    Ok(())
}
