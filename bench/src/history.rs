//! Room history (`[[history]]`) and presence across nodes: publishing with history on against
//! off (one node, one node with `[broker]`, node A → Redis → node B), 1000 clients reconnecting
//! at once to recover 100 missed messages (without and with `[broker]`), memory per history
//! entry, and 1000 clients subscribing to one room (presence) without and with `[broker]`.
//!
//! Every comparison is run twice in the same process, in the order A B B A, so that a machine
//! that gets slower or faster during the run (two shared cores) moves both sides alike; each
//! run gets its own servers and its own Redis. The bench talks to the server only through the
//! rooms protocol and the configuration, so it measures whatever the host does with them (history
//! kept on the node, or in Redis with `[broker]`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Ws};
use crate::fanout::{BIG, Redis, stream, subscribers};
use crate::kit::Kit;
use crate::server::Server;

/// History for the channels the scenarios use: `x` (publishing), `r` (recovery), `m*` (memory);
/// `warm`, `p` and `elsewhere` have none.
const HISTORY: &str = "[[history]]\nrooms = \"m*\"\nsize = 100000\nttl = \"1h\"\nmax_bytes = \"1GiB\"\n\
[[history]]\nrooms = \"x\"\nsize = 10000\nttl = \"1h\"\nmax_bytes = \"64MiB\"\n\
[[history]]\nrooms = \"r\"\nsize = 10000\nttl = \"1h\"\nmax_bytes = \"64MiB\"\n\
[host]\nmax_history_memory = \"1GiB\"\n";

/// Room for every call of a burst of 1000 subscribes in flight at once (see [`recovery`]): with
/// the default 256, calls that wait longer than the plugin's deadline for an instance fail and
/// their connections are closed (1011).
const ENGINE: &str = "[engine]\nmax_instances = 4096\n";

/// A second configuration of the rooms plugin, with join/leave events (`/rooms` has none).
const PRESENCE_ROUTE: &str = "[[routes]]\npath = \"/presence\"\nplugins = [\"presence\"]\n\
[plugins.presence.config]\npresence = \"true\"\n";

/// `only`: the parts to run (`--only publishing,recovery,memory,presence`), all when empty.
pub async fn scenarios(kit: &Kit, quick: bool, only: &[String]) -> Result<()> {
    let part = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if let Some(unknown) = only.iter().find(|o| !PARTS.contains(&o.as_str())) {
        bail!("history --only {unknown}: one of {}", PARTS.join(", "));
    }
    if part("publishing") {
        publishing(kit, quick).await?;
    }
    if part("recovery") {
        recovery(kit, quick).await?;
    }
    if part("memory") {
        memory(kit, quick).await?;
    }
    if part("presence") {
        presence(kit, quick).await?;
    }
    Ok(())
}

const PARTS: &[&str] = &["publishing", "recovery", "memory", "presence"];

/// Runs every variant twice (once in quick mode), forward then backward (A B B A, A B C C B A),
/// so that a machine getting slower or faster during the run moves all alike. One result per
/// variant per round, in the variants' order.
async fn alternating<V, T, F, Fut>(quick: bool, variants: &[V], mut run: F) -> Result<Vec<Vec<T>>>
where
    V: Copy,
    F: FnMut(V) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut rounds = Vec::new();
    for round in 0..if quick { 1 } else { 2 } {
        let mut results: Vec<Option<T>> = variants.iter().map(|_| None).collect();
        let order: Vec<usize> = match round % 2 {
            0 => (0..variants.len()).collect(),
            _ => (0..variants.len()).rev().collect(),
        };
        for i in order {
            results[i] = Some(run(variants[i]).await?);
        }
        rounds.push(results.into_iter().flatten().collect());
    }
    Ok(rounds)
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    OneNode,
    OneNodeRedis,
    TwoNodes,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::OneNode => "one node",
            Path::OneNodeRedis => "one node, `[broker]`",
            Path::TwoNodes => "node A → Redis → node B",
        }
    }
}

struct Publishing {
    rate: f64,
    p50: f64,
    p99: f64,
    /// Server CPU (both nodes) and Redis CPU per publish, µs.
    cpu: f64,
    redis_cpu: f64,
}

async fn publishing(kit: &Kit, quick: bool) -> Result<()> {
    let count = if quick { 500 } else { 5000 };
    let subs_n = 100;
    let mut all = Vec::new();
    for path in [Path::OneNode, Path::OneNodeRedis, Path::TwoNodes] {
        let runs = alternating(quick, &[false, true], |on| publish_run(kit, path, on, count, subs_n)).await?;
        all.push((path, runs));
    }
    println!(
        "## History: publishing with history on and off ({count} publishes of ~60 B to {subs_n} subscribers, in batches of 50)\n"
    );
    println!(
        "| path | run | history | publishes/s | publish-to-delivery p50 | p99 | server CPU per publish | Redis CPU per publish |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (path, runs) in &all {
        for (i, run) in runs.iter().enumerate() {
            for (label, r) in [("off", &run[0]), ("on", &run[1])] {
                let redis = if *path == Path::OneNode { "–".to_owned() } else { format!("{:.1} µs", r.redis_cpu) };
                println!(
                    "| {} | {} | {label} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {redis} |",
                    path.label(),
                    i + 1,
                    r.rate,
                    r.p50,
                    r.p99,
                    r.cpu
                );
            }
        }
    }
    println!("\nSame-run ratios, history on / off:\n");
    println!("| path | run | publishes/s | p50 | p99 | server CPU per publish |");
    println!("|---|---|---|---|---|---|");
    for (path, runs) in &all {
        for (i, run) in runs.iter().enumerate() {
            let (off, on) = (&run[0], &run[1]);
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                path.label(),
                i + 1,
                on.rate / off.rate,
                on.p50 / off.p50,
                on.p99 / off.p99,
                on.cpu / off.cpu
            );
        }
    }
    println!();
    Ok(())
}

async fn publish_run(kit: &Kit, path: Path, history: bool, count: usize, subs_n: usize) -> Result<Publishing> {
    let tls = client::tls(&kit.cert);
    let redis = if path == Path::OneNode { None } else { Some(Redis::start()?) };
    let mut config = redis.as_ref().map_or_else(|| BIG.to_owned(), Redis::broker);
    if history {
        config.push_str(HISTORY);
    }
    let a = Server::wasmsock(kit, &config, "warn")?;
    let b = if path == Path::TwoNodes { Some(Server::wasmsock(kit, &config, "warn")?) } else { None };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subs = subscribers(b.as_ref().unwrap_or(&a), &tls, "x", subs_n).await?;
    let publisher = subscribers(&a, &tls, "x", 1).await?.pop().context("publisher")?;
    let cpu = || a.cpu_ns() + b.as_ref().map_or(0, Server::cpu_ns);
    let redis_cpu = || redis.as_ref().map_or(0, Redis::cpu_ns);
    let (cpu0, redis0) = (cpu(), redis_cpu());
    let (rate, p50, p99) = stream(publisher, subs, count).await?;
    let per_publish = |ns: u64| ns as f64 / 1e3 / count as f64;
    Ok(Publishing { rate, p50, p99, cpu: per_publish(cpu() - cpu0), redis_cpu: per_publish(redis_cpu() - redis0) })
}

/// One wave of clients connecting at once and subscribing: how long until every one has its
/// `subscribed` reply (and, when recovering, every missed message before it), and the CPU.
struct Wave {
    secs: f64,
    cpu: f64,
    redis_cpu: f64,
    /// Clients the server closed instead of answering, and the first one's close frame.
    closed: usize,
    reason: Option<String>,
}

/// Whether `e` is the server closing the connection (rather than a wrong answer).
fn closed_by_server(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.to_string().starts_with("closed by the server"))
}

/// Where the clients come back.
#[derive(Clone, Copy, PartialEq)]
enum Back {
    /// One node, no broker: its history.
    Alone,
    /// The same node, with `[broker]`: with history in Redis, the node's mirror of it.
    SameNode,
    /// With `[broker]`, a node started after the publishes: with history in Redis, read from
    /// Redis (the node has no mirror of it).
    NewNode,
}

impl Back {
    fn label(self) -> &'static str {
        match self {
            Back::Alone => "one node, no broker",
            Back::SameNode => "`[broker]`, the same node",
            Back::NewNode => "`[broker]`, a node started since",
        }
    }
}

/// 1000 subscribers see one message, all drop, 100 are published, and all come back at once
/// with `since`: time until every one has its 100 missed messages, and the server's CPU for it.
/// Then, as the baseline, all drop again and come back without `since` (nothing to recover).
async fn recovery(kit: &Kit, quick: bool) -> Result<()> {
    let (n, missed) = if quick { (200, 100) } else { (1000, 100) };
    let backs = [Back::Alone, Back::SameNode, Back::NewNode];
    let runs = alternating(quick, &backs, |back| recovery_run(kit, back, ENGINE, n, missed)).await?;
    // The same without `[engine] max_instances`: how many the default leaves unanswered.
    let (defaults, _) = recovery_run(kit, Back::Alone, "", n, missed).await?;
    println!("## History: {n} clients reconnecting at once, each recovering {missed} missed messages\n");
    println!(
        "| run | clients come back to | recovering: time until all caught up | server CPU | Redis CPU | resubscribing without `since`: time | server CPU | Redis CPU | closed by the server |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, run) in runs.iter().enumerate() {
        for (back, (rec, plain)) in backs.iter().zip(run) {
            let redis =
                |w: &Wave| if *back == Back::Alone { "–".to_owned() } else { format!("{:.2} s", w.redis_cpu) };
            println!(
                "| {} | {} | {:.2} s | {:.2} s | {} | {:.2} s | {:.2} s | {} | {} + {} |",
                i + 1,
                back.label(),
                rec.secs,
                rec.cpu,
                redis(rec),
                plain.secs,
                plain.cpu,
                redis(plain),
                rec.closed,
                plain.closed
            );
        }
    }
    println!("\nSame-run ratios against one node without broker (recovering; resubscribing):\n");
    println!("| run | clients come back to | time | server CPU | time (resubscribing) | server CPU (resubscribing) |");
    println!("|---|---|---|---|---|---|");
    for (i, run) in runs.iter().enumerate() {
        let (r0, p0) = &run[0];
        for (back, (r1, p1)) in backs.iter().zip(run).skip(1) {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                i + 1,
                back.label(),
                r1.secs / r0.secs,
                r1.cpu / r0.cpu,
                p1.secs / p0.secs,
                p1.cpu / p0.cpu
            );
        }
    }
    println!(
        "\nWith `{}` (all rows above). With the default (256), one node without broker: {} of {n} recovering clients closed by the server ({}), in {:.2} s.",
        ENGINE.trim().replace('\n', " "),
        defaults.closed,
        defaults.reason.as_deref().unwrap_or("none"),
        defaults.secs
    );
    println!(
        "\nTimes include the {n} TLS handshakes of each wave, made by one client thread; server CPU is the node the clients come back to.\n"
    );
    Ok(())
}

async fn recovery_run(kit: &Kit, back: Back, engine: &str, n: usize, missed: usize) -> Result<(Wave, Wave)> {
    let tls = client::tls(&kit.cert);
    let redis = if back == Back::Alone { None } else { Some(Redis::start()?) };
    let config = redis.as_ref().map_or_else(|| BIG.to_owned(), Redis::broker) + HISTORY + engine;
    let server = Server::wasmsock(kit, &config, "warn")?;
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
        if v["offset"].is_null() {
            bail!("a message of a channel with history has no offset: {t}");
        }
        since = Some(json!({"offset": v["offset"], "epoch": v["epoch"]}));
    }
    let since = since.context("no subscriber")?;
    for i in 1..=missed {
        client::send_text(&mut publisher, publish(i)).await?;
    }
    // Confirmed: every publish was made before anyone comes back.
    confirm(&mut publisher).await?;
    let new_node = match back {
        Back::NewNode => {
            let node = Server::wasmsock(kit, &config, "warn")?;
            // As warm as the first node, whose plugin instances the first subscribers made.
            drop(subscribers(&node, &tls, "warm", n).await?);
            Some(node)
        }
        _ => None,
    };
    // The closes of the dropped subscribers are behind us (and the new node is up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node = new_node.as_ref().unwrap_or(&server);
    let recovering = wave(node, redis.as_ref(), &tls, n, Some((since, missed))).await?;
    drop(recovering.1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plain = wave(node, redis.as_ref(), &tls, n, None).await?;
    Ok((recovering.0, plain.0))
}

/// Pings and waits for the pong: everything sent before has been handled.
async fn confirm(ws: &mut Ws) -> Result<()> {
    client::send_text(ws, json!({"event": "ping"}).to_string()).await?;
    while !client::next_text(ws).await.context("closed before the pong")?.contains("pong") {}
    Ok(())
}

/// `n` clients connect at once and subscribe to `r`, with `since` (expecting `missed` messages
/// first) or without.
async fn wave(
    server: &Server,
    redis: Option<&Redis>,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
    since: Option<(Value, usize)>,
) -> Result<(Wave, Vec<Ws>)> {
    let redis_cpu = || redis.map_or(0, Redis::cpu_ns);
    let (cpu0, redis0) = (server.cpu_ns(), redis_cpu());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, port, tls, since) = (server.url("/rooms"), server.port, tls.clone(), since.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = client::connect(&url, port, &tls).await?;
            let mut req = json!({"event": "subscribe", "channel": "r"});
            let missed = since.as_ref().map_or(0, |s| s.1);
            if let Some((since, _)) = since {
                req["since"] = since;
            }
            client::send_text(&mut ws, req.to_string()).await?;
            let mut got = 0;
            loop {
                let t = client::expect_text(&mut ws).await.context("while subscribing")?;
                if t.contains("\"message\"") {
                    got += 1;
                } else if t.contains("\"subscribed\"") {
                    if missed > 0 && (!t.contains("\"recovered\":true") || got != missed) {
                        bail!("not recovered: {got} of {missed}: {t}");
                    }
                    return Ok::<_, anyhow::Error>(ws);
                }
            }
        }));
    }
    let (mut kept, mut closed, mut reason) = (Vec::new(), 0, None);
    for t in tasks {
        match t.await? {
            Ok(ws) => kept.push(ws),
            Err(e) if closed_by_server(&e) => {
                closed += 1;
                reason.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => return Err(e.context(format!("server log:\n{}", server.log_tail(20)))),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (server.cpu_ns() - cpu0) as f64 / 1e9;
    let redis_cpu = (redis_cpu() - redis0) as f64 / 1e9;
    Ok((Wave { secs, cpu, redis_cpu, closed, reason }, kept))
}

/// Server memory per kept entry: the slope of RSS against entries kept while a room's history
/// fills (least squares), against what the host counts for it (`wasmsock_history_bytes`,
/// against `max_history_memory`). Two rooms are filled one after the other and the second is
/// measured: during the first seconds mimalloc gives back memory of the start-up (the plugins'
/// compilation), which would otherwise be subtracted from what the history takes.
async fn memory(kit: &Kit, quick: bool) -> Result<()> {
    let entries = if quick { 20_000 } else { 100_000 };
    let step = entries / 10;
    let tls = client::tls(&kit.cert);
    let server = Server::wasmsock_admin(kit, &format!("{BIG}{HISTORY}"), "warn", &[])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = subscribers(&server, &tls, "elsewhere", 1).await?.pop().context("publisher")?;
    let message = |room: &str, i: usize| {
        json!({"event": "publish", "channel": room, "data": {"i": i, "pad": "x".repeat(40)}}).to_string()
    };
    // The same publishes to a room without history first (the plugin's memory, buffers).
    for i in 0..2000 {
        client::send_text(&mut publisher, message("warm", i)).await?;
        if i % 500 == 499 {
            confirm(&mut publisher).await?;
        }
    }
    let mut samples = Vec::new();
    let mut bytes0 = 0.0;
    for room in ["m1", "m2"] {
        bytes0 = server.metric("wasmsock_history_bytes")?;
        samples = vec![(0.0, server.rss_kb() as f64 * 1024.0)];
        for i in 1..=entries {
            client::send_text(&mut publisher, message(room, i)).await?;
            if i % 500 == 0 {
                confirm(&mut publisher).await?;
            }
            if i % step == 0 {
                samples.push((i as f64, server.rss_kb() as f64 * 1024.0));
            }
        }
    }
    let kept = server.metric("wasmsock_history_entries")?;
    let counted = server.metric("wasmsock_history_bytes")? - bytes0;
    if kept as usize != 2 * entries {
        bail!("{kept} entries kept of {} published", 2 * entries);
    }
    let rss_per = slope(&samples);
    let counted_per = counted / entries as f64;
    let mib = |b: f64| b / (1 << 20) as f64;
    let (first, last) = (samples[0].1, samples[samples.len() - 1].1);
    println!("## History: memory per entry ({entries} entries in a room, after as many in another; one node)\n");
    println!(
        "| entries kept | message size | counted per entry (`max_history_memory`) | server RSS per entry | RSS, second room at 0 → {entries} entries |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {kept:.0} | {:.0} B | {counted_per:.0} B | {rss_per:.0} B | {:.1} → {:.1} MiB |\n",
        counted_per - 96.0,
        mib(first),
        mib(last)
    );
    Ok(())
}

/// Least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) =
        points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// 1000 clients (each a user of its own) connected first, then subscribing at once to one
/// channel: time until every one has its `subscribed` reply, the server's CPU until it is idle
/// again, without and with `[broker]` (presence in Redis: one script per join, the member
/// list and count of every reply from Redis); join events off (`/rooms`) and on (`/presence`).
async fn presence(kit: &Kit, quick: bool) -> Result<()> {
    let n = if quick { 200 } else { 1000 };
    let mut all = Vec::new();
    for events in [false, true] {
        let runs = alternating(quick, &[false, true], |broker| presence_run(kit, broker, events, n)).await?;
        all.push((events, runs));
    }
    println!("## Presence: {n} connected clients subscribing at once to one channel (one node)\n");
    println!(
        "| join events | run | broker | time until all subscribed | server CPU until idle | Redis CPU | join events received | closed by the server |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (events, runs) in &all {
        for (i, run) in runs.iter().enumerate() {
            for (label, r) in [("none", &run[0]), ("`[broker]`", &run[1])] {
                let redis = if label == "none" { "–".to_owned() } else { format!("{:.2} s", r.redis_cpu) };
                println!(
                    "| {} | {} | {label} | {:.2} s | {:.2} s | {redis} | {} | {} |",
                    if *events { "on" } else { "off" },
                    i + 1,
                    r.secs,
                    r.cpu,
                    r.joins,
                    r.closed
                );
            }
        }
    }
    println!("\nSame-run ratios, `[broker]` / none:\n");
    println!("| join events | run | time | server CPU |");
    println!("|---|---|---|---|");
    for (events, runs) in &all {
        for (i, run) in runs.iter().enumerate() {
            let (off, on) = (&run[0], &run[1]);
            println!(
                "| {} | {} | {:.2} | {:.2} |",
                if *events { "on" } else { "off" },
                i + 1,
                on.secs / off.secs,
                on.cpu / off.cpu
            );
        }
    }
    println!();
    Ok(())
}

struct Joining {
    secs: f64,
    cpu: f64,
    redis_cpu: f64,
    joins: usize,
    /// Clients the server closed instead of answering.
    closed: usize,
}

async fn presence_run(kit: &Kit, broker: bool, events: bool, n: usize) -> Result<Joining> {
    let tls = client::tls(&kit.cert);
    let redis = if broker { Some(Redis::start()?) } else { None };
    let config = redis.as_ref().map_or_else(|| BIG.to_owned(), Redis::broker) + ENGINE + PRESENCE_ROUTE;
    let server = Server::wasmsock_with(kit, &config, "warn", &["presence=rooms"])?;
    let url = server.url(if events { "/presence" } else { "/rooms" });
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let batch = (n - clients.len()).min(64);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let (url, port, tls) = (url.clone(), server.port, tls.clone());
                tokio::spawn(async move { client::connect(&url, port, &tls).await })
            })
            .collect();
        for t in tasks {
            clients.push(t.await??);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis_cpu = || redis.as_ref().map_or(0, Redis::cpu_ns);
    let (cpu0, redis0) = (server.cpu_ns(), redis_cpu());
    let subscribed = Arc::new(AtomicUsize::new(0));
    let joins = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut ws in clients {
        let (subscribed, joins) = (subscribed.clone(), joins.clone());
        tasks.push(tokio::spawn(async move {
            client::send_text(&mut ws, json!({"event": "subscribe", "channel": "p"}).to_string()).await?;
            read_on(ws, &subscribed, &joins).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut closed = 0;
    while subscribed.load(Relaxed) + closed < n {
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            match tasks.swap_remove(i).await? {
                Err(e) if closed_by_server(&e) => closed += 1,
                ended => bail!("a client ended while subscribing ({ended:?}); server log:\n{}", server.log_tail(20)),
            }
            continue;
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} subscribed", subscribed.load(Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // Idle again: less than 10 ms of CPU in 200 ms (join events still going out count).
    let mut last = server.cpu_ns();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.cpu_ns();
        if now - last < 10_000_000 || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let cpu = (server.cpu_ns() - cpu0) as f64 / 1e9;
    let redis_cpu = (redis_cpu() - redis0) as f64 / 1e9;
    for t in &tasks {
        t.abort();
    }
    Ok(Joining { secs, cpu, redis_cpu, joins: joins.load(Relaxed), closed })
}

/// Counts the `subscribed` reply and the join events (which keep coming after the reply) until
/// the connection ends, which is an error: the run aborts the task first.
async fn read_on(mut ws: Ws, subscribed: &AtomicUsize, joins: &AtomicUsize) -> Result<()> {
    loop {
        let t = client::expect_text(&mut ws).await?;
        if t.contains("\"subscribed\"") {
            subscribed.fetch_add(1, Relaxed);
        } else if t.contains("\"join\"") {
            joins.fetch_add(1, Relaxed);
        } else if t.contains("\"error\"") {
            bail!("subscribe refused: {t}");
        }
    }
}
