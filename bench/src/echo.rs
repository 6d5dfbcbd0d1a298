//! Echo throughput and latency, idle memory and handshake rate, against the Go peer.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::client;
use crate::kit::{Kit, median};
use crate::server::{Server, proc_cpu_ticks};

/// `sysconf(_SC_CLK_TCK)`: 100 on Linux.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// One wsload run (the Go load client, pinned to CPU 1) against `server`, with the server's
/// user and kernel CPU over the whole run (handshakes included) added, per message
/// (`user_us_per_msg`, `kernel_us_per_msg`): their ratio is where the server's time goes.
pub(crate) fn wsload(kit: &Kit, server: &Server, path: &str, args: &[&str]) -> Result<Value> {
    wsload_at(kit.wsload.as_deref(), &kit.cert, &server.url(path), server.pid(), args)
}

/// [`wsload`] on a blocking thread, so the tasks of this process that load the server in other
/// ways (burners, waiting connections) keep running meanwhile.
pub(crate) async fn wsload_beside(kit: &Kit, server: &Server, path: &str, args: &[&str]) -> Result<Value> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (wsload_bin, cert, url, pid) = (kit.wsload.clone(), kit.cert.clone(), server.url(path), server.pid());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wsload_at(wsload_bin.as_deref(), &cert, &url, pid, &args)
    })
    .await?
}

/// [`wsload`] against any URL (a proxy in front of the server, say), the server's CPU taken
/// from process `pid`.
pub(crate) fn wsload_at(wsload: Option<&Path>, cert: &Path, url: &str, pid: u32, args: &[&str]) -> Result<Value> {
    let Some(wsload) = wsload else { bail!("no Go load client") };
    let (u0, k0) = proc_cpu_ticks(pid);
    let out = Command::new("taskset")
        .args(["-c", "1"])
        .arg(wsload)
        .args(["-url", url, "-cacert"])
        .arg(cert)
        .args(["-server-pid", &pid.to_string()])
        .args(args)
        .output()
        .context("running wsload")?;
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("wsload said: {line} {}", String::from_utf8_lossy(&out.stderr)))?;
    if v["errors"].as_u64() != Some(0) || !out.status.success() {
        bail!("wsload reported errors: {v} {}", String::from_utf8_lossy(&out.stderr));
    }
    let (u1, k1) = proc_cpu_ticks(pid);
    let mut v = v;
    if let Some(msgs) = v["msgs"].as_f64().filter(|m| *m > 0.0) {
        let tick_us = 1e6 / CLOCK_TICKS_PER_SEC;
        v["user_us_per_msg"] = ((u1 - u0) as f64 * tick_us / msgs).into();
        v["kernel_us_per_msg"] = ((k1 - k0) as f64 * tick_us / msgs).into();
    }
    Ok(v)
}

struct Row {
    server: String,
    runs: Vec<Value>,
}

impl Row {
    /// The run with the median throughput.
    fn median(&self) -> &Value {
        let m = median(self.runs.iter().map(|r| r["msgs_per_sec"].as_f64().unwrap_or(0.0)).collect());
        self.runs
            .iter()
            .min_by(|a, b| {
                let d = |v: &Value| (v["msgs_per_sec"].as_f64().unwrap_or(0.0) - m).abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(&self.runs[0])
    }
}

/// Scenarios 1 and 2: echo through the plugin and through the built-in (no wasm) route, with
/// the Go peer in the same run.
pub fn throughput(kit: &Kit, quick: bool) -> Result<()> {
    let repeats = if quick { 1 } else { 3 };
    let cases: &[(&str, usize, usize, usize)] = &[
        ("100 conns × 1000 × 64 B", 100, 1000, 64),
        ("100 conns × 500 × 4 KiB", 100, 500, 4096),
        ("1000 conns × 100 × 64 B", 1000, 100, 64),
    ];
    println!("## Echo over wss (server on CPU 0, wsload on CPU 1, median of {repeats})\n");
    println!(
        "| load | server | msgs/s | p50 | p99 | server CPU/msg | of it in the kernel | msgs/s vs Go | p99 vs Go | CPU/msg vs Go |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, c, n, s) in cases {
        let args = ["-c".to_owned(), c.to_string(), "-n".into(), n.to_string(), "-s".into(), s.to_string()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut rows = Vec::new();
        let mut targets: Vec<(&str, &str)> = Vec::new();
        if kit.go_server.is_some() && kit.wsload.is_some() {
            targets.push(("Go gin+gorilla", "/echo"));
        }
        targets.push(("wasmsock, echo plugin", "/echo"));
        targets.push(("wasmsock, built-in echo", "/native"));
        for (name, path) in &targets {
            let mut row = Row { server: name.to_string(), runs: Vec::new() };
            for _ in 0..repeats {
                let server = match *name {
                    "Go gin+gorilla" => Server::go(kit, kit.go_server.as_deref().context("go")?)?,
                    _ => Server::wasmsock(kit, "", "warn")?,
                };
                row.runs.push(wsload(kit, &server, path, &args)?);
            }
            rows.push(row);
        }
        let go = rows.iter().find(|r| r.server.starts_with("Go")).map(|r| r.median().clone());
        for r in &rows {
            let m = r.median();
            let ratio = |k: &str| {
                go.as_ref().map_or("—".into(), |g| {
                    format!("{:.2}", m[k].as_f64().unwrap_or(0.0) / g[k].as_f64().unwrap_or(1.0).max(1e-9))
                })
            };
            let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
            let kernel = f("kernel_us_per_msg") / (f("user_us_per_msg") + f("kernel_us_per_msg")).max(1e-9);
            println!(
                "| {label} | {} | {:.0} | {} µs | {} µs | {:.2} µs | {:.0}% | {} | {} | {} |",
                r.server,
                f("msgs_per_sec"),
                m["p50_us"],
                m["p99_us"],
                f("server_cpu_us_per_msg"),
                kernel * 100.0,
                ratio("msgs_per_sec"),
                ratio("p99_us"),
                ratio("server_cpu_us_per_msg")
            );
            println!("<!-- {} {label}: {} -->", r.server, serde_json::to_string(&r.runs)?);
        }
    }
    println!();
    Ok(())
}

/// Scenario 3: server memory per idle wss connection.
pub fn idle_memory(kit: &Kit, quick: bool) -> Result<()> {
    let conns = if quick { 2000 } else { 10_000 };
    println!("## Idle memory: {conns} open wss connections\n");
    println!("| server | RSS before | RSS with {conns} idle | per connection |");
    println!("|---|---|---|---|");
    let args = ["-c".to_owned(), conns.to_string(), "-n".into(), "1".into(), "-hold".into(), "3s".into()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut servers: Vec<(&str, Server)> = Vec::new();
    if let Some(go) = &kit.go_server {
        servers.push(("Go gin+gorilla", Server::go(kit, go)?));
    }
    servers.push(("wasmsock (echo plugin route)", Server::wasmsock(kit, "", "warn")?));
    for (name, server) in servers {
        let v = wsload(kit, &server, "/echo", &args)?;
        let idle = Idle::of(&v, conns).with_context(|| format!("{name}: idle memory"))?;
        println!("| {name} | {} MB | {} MB | {:.1} KB |", idle.before_kb / 1024, idle.hold_kb / 1024, idle.per_conn_kb);
    }
    println!();
    Ok(())
}

/// Server memory with `conns` idle connections, from a wsload `-hold` run: checked, since a
/// figure from a run where connections failed says nothing (wsload counts the RSS of the
/// connections that did open).
pub(crate) struct Idle {
    pub before_kb: u64,
    pub hold_kb: u64,
    pub per_conn_kb: f64,
}

impl Idle {
    pub fn of(v: &Value, conns: usize) -> Result<Idle> {
        let (before_kb, hold_kb) = (v["rss_kb_before"].as_u64().unwrap_or(0), v["rss_kb_hold"].as_u64().unwrap_or(0));
        // Every connection was open through the hold and echoed once after it.
        let msgs = v["msgs"].as_u64().unwrap_or(0);
        if v["errors"].as_u64() != Some(0) || msgs != conns as u64 {
            bail!("{msgs} of {conns} connections were open and answered: {v}");
        }
        if before_kb == 0 || hold_kb <= before_kb {
            bail!("no RSS figures for the server (before {before_kb} KB, holding {hold_kb} KB): {v}");
        }
        Ok(Idle { before_kb, hold_kb, per_conn_kb: (hold_kb - before_kb) as f64 / conns as f64 })
    }
}

/// Scenario 4: TLS handshake + WebSocket upgrade rate (the same Rust client for both servers).
pub async fn handshakes(kit: &Kit, quick: bool) -> Result<()> {
    let total = if quick { 500 } else { 3000 };
    let concurrency = 32;
    println!(
        "## TLS handshake + upgrade rate ({total} connections, {concurrency} at a time, TLS 1.3, P-256 certificate)\n"
    );
    println!("| server | handshakes/s | server CPU per handshake |");
    println!("|---|---|---|");
    let tls = client::tls(&kit.cert);
    let mut servers: Vec<(&str, Server)> = Vec::new();
    if let Some(go) = &kit.go_server {
        servers.push(("Go gin+gorilla", Server::go(kit, go)?));
    }
    servers.push(("wasmsock", Server::wasmsock(kit, "", "warn")?));
    for (name, server) in servers {
        let (rate, cpu) = handshake_rate(&server, &tls, "/echo", total, concurrency).await?;
        println!("| {name} | {rate:.0} | {cpu:.0} µs |");
    }
    println!();
    Ok(())
}

/// `total` handshakes (each connection closed at once), `concurrency` at a time, to `path`:
/// handshakes per second and the server's CPU per handshake in µs.
pub async fn handshake_rate(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
    total: usize,
    concurrency: usize,
) -> Result<(f64, f64)> {
    let url = Arc::new(server.url(path));
    let cpu0 = server.cpu_ns();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (url, tls, next, port) = (url.clone(), tls.clone(), next.clone(), server.port);
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let mut ws = client::connect(&url, port, &tls).await?;
                ws.close(None).await.ok();
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((total as f64 / secs, (server.cpu_ns() - cpu0) as f64 / 1e3 / total as f64))
}
