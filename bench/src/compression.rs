//! permessage-deflate against the Go peer with gorilla's compression: echo of 4 KiB JSON (CPU
//! per message, bytes on the wire), idle memory with compression negotiated, and fan-out of a
//! 2 KiB message to compressed subscribers against the same fan-out uncompressed.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::echo::wsload;
use crate::kit::Kit;
use crate::server::Server;

/// A chat-like JSON record; wsload repeats it to the message size.
const JSON: &str =
    r#"{"id":18231,"user":"guest-4812","room":"lobby","text":"see you at the standup tomorrow","ts":1764672000123},"#;

/// Bytes the process wrote to and read from files and sockets (`/proc/PID/io` `wchar`, `rchar`):
/// for these servers, the TLS records on the wire.
fn io_bytes(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field =
        |name: &str| io.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (field("wchar:"), field("rchar:"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

pub fn scenarios(kit: &Kit, quick: bool) -> Result<()> {
    echo(kit, quick)?;
    idle(kit, quick)?;
    fanout(kit, quick)
}

/// Echo of 4 KiB JSON, compressed both ways, through the echo plugin; the Go peer with
/// `-compress`, and wasmsock without compression for scale.
fn echo(kit: &Kit, quick: bool) -> Result<()> {
    let go = kit.go_server.as_deref().context("the Go peer")?;
    let repeats = if quick { 1 } else { 3 };
    println!(
        "## Compression: echo of 4 KiB JSON, 100 conns × 500 (server on CPU 0, wsload on CPU 1, median of {repeats})\n"
    );
    println!(
        "| server | msgs/s | p99 | server CPU/msg | CPU/msg vs Go | bytes the server wrote per message | read per message |"
    );
    println!("|---|---|---|---|---|---|---|");
    let base = ["-c", "100", "-n", "500", "-s", "4096", "-payload", JSON];
    let mut go_cpu = None;
    for (name, compress) in [
        ("Go gin+gorilla -compress", true),
        ("wasmsock, echo plugin", true),
        ("wasmsock, echo plugin, uncompressed", false),
    ] {
        let mut runs = Vec::new();
        for _ in 0..repeats {
            let server = if name.starts_with("Go") {
                Server::go_with(kit, go, &["-compress"])?
            } else {
                Server::wasmsock(kit, "", "warn")?
            };
            let mut args = base.to_vec();
            if compress {
                args.push("-compress");
            }
            let (w0, r0) = io_bytes(server.pid());
            let mut v = wsload(kit, &server, "/echo", &args)?;
            let (w1, r1) = io_bytes(server.pid());
            let msgs = f(&v, "msgs").max(1.0);
            v["wrote_per_msg"] = ((w1 - w0) as f64 / msgs).into();
            v["read_per_msg"] = ((r1 - r0) as f64 / msgs).into();
            runs.push(v);
        }
        runs.sort_by(|a, b| f(a, "server_cpu_us_per_msg").total_cmp(&f(b, "server_cpu_us_per_msg")));
        let m = &runs[runs.len() / 2];
        let cpu = f(m, "server_cpu_us_per_msg");
        if name.starts_with("Go") {
            go_cpu = Some(cpu);
        }
        println!(
            "| {name} | {:.0} | {} µs | {cpu:.2} µs | {} | {:.0} B | {:.0} B |",
            f(m, "msgs_per_sec"),
            m["p99_us"],
            go_cpu.map_or("—".into(), |g| format!("{:.2}", cpu / g.max(1e-9))),
            f(m, "wrote_per_msg"),
            f(m, "read_per_msg"),
        );
        println!("<!-- {name}: {} -->", serde_json::to_string(&runs)?);
    }
    println!();
    Ok(())
}

/// Server memory per idle connection with permessage-deflate negotiated.
fn idle(kit: &Kit, quick: bool) -> Result<()> {
    let go = kit.go_server.as_deref().context("the Go peer")?;
    let conns = if quick { 2000 } else { 10_000 };
    println!("## Compression: idle memory, {conns} wss connections with permessage-deflate negotiated\n");
    println!("| server | RSS before | RSS with {conns} idle | per connection |");
    println!("|---|---|---|---|");
    let n = conns.to_string();
    let args = ["-c", &n, "-n", "1", "-s", "1024", "-payload", JSON, "-hold", "3s", "-compress"];
    for name in ["Go gin+gorilla -compress", "wasmsock (echo plugin route)"] {
        let server = if name.starts_with("Go") {
            Server::go_with(kit, go, &["-compress"])?
        } else {
            Server::wasmsock(kit, "[server]\nmax_connections_per_ip = 100000\n", "warn")?
        };
        let v = wsload(kit, &server, "/echo", &args)?;
        println!(
            "| {name} | {} MB | {} MB | {:.1} KB |",
            v["rss_kb_before"].as_u64().unwrap_or(0) / 1024,
            v["rss_kb_hold"].as_u64().unwrap_or(0) / 1024,
            f(&v, "rss_per_conn_kb")
        );
    }
    println!();
    Ok(())
}

/// One publish of a 2 KiB message to every member of a room, compressed subscribers against
/// uncompressed ones: compressing once keeps the cost per delivery close.
fn fanout(kit: &Kit, quick: bool) -> Result<()> {
    let subs = if quick { 1000 } else { 10_000 };
    let rounds = if quick { 5 } else { 20 };
    println!("## Compression: fan-out of a 2 KiB message to {subs} subscribers ({rounds} publishes)\n");
    println!("| subscribers | last delivery (median) | server CPU per delivery | vs uncompressed |");
    println!("|---|---|---|---|");
    let (s, r) = (subs.to_string(), rounds.to_string());
    let mut plain_cpu = None;
    for compress in [false, true] {
        let server = Server::wasmsock(
            kit,
            "[server]\nmax_connections_per_ip = 100000\n[limits]\nping_interval = \"0s\"\n",
            "warn",
        )?;
        let mut args = vec!["-mode", "fanout", "-c", &s, "-n", &r, "-s", "2048"];
        if compress {
            args.push("-compress");
        }
        let v = wsload(kit, &server, "/rooms", &args)?;
        let cpu = f(&v, "server_cpu_us_per_delivery");
        if !compress {
            plain_cpu = Some(cpu);
        }
        println!(
            "| {subs} {} | {:.1} ms | {cpu:.2} µs | {} |",
            if compress { "compressed" } else { "uncompressed" },
            f(&v, "last_delivery_p50_us") / 1e3,
            plain_cpu.map_or("—".into(), |p| format!("{:.2}", cpu / p.max(1e-9))),
        );
        println!("<!-- fanout compress={compress}: {v} -->");
    }
    println!();
    Ok(())
}
