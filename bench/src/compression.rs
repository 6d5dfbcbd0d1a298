//! permessage-deflate against the Go peer with gorilla's compression: echo of 4 KiB JSON (CPU
//! per message, bytes on the wire), idle memory with compression negotiated, and fan-out of a
//! 2 KiB message to compressed subscribers against the same fan-out uncompressed.

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::echo::{Idle, wsload, wsload_at};
use crate::kit::Kit;
use crate::proxy::CountingProxy;
use crate::server::Server;

/// A chat-like JSON record; wsload repeats it to the message size.
const JSON: &str =
    r#"{"id":18231,"user":"guest-4812","room":"lobby","text":"see you at the standup tomorrow","ts":1764672000123},"#;

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

pub fn scenarios(kit: &Kit, quick: bool) -> Result<()> {
    echo(kit, quick)?;
    wire(kit, quick)?;
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
    println!("| server | msgs/s | p99 | server CPU/msg | CPU/msg vs Go |");
    println!("|---|---|---|---|---|");
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
            runs.push(wsload(kit, &server, "/echo", &args)?);
        }
        runs.sort_by(|a, b| f(a, "server_cpu_us_per_msg").total_cmp(&f(b, "server_cpu_us_per_msg")));
        let m = &runs[runs.len() / 2];
        let cpu = f(m, "server_cpu_us_per_msg");
        if name.starts_with("Go") {
            go_cpu = Some(cpu);
        }
        println!(
            "| {name} | {:.0} | {} µs | {cpu:.2} µs | {} |",
            f(m, "msgs_per_sec"),
            m["p99_us"],
            go_cpu.map_or("—".into(), |g| format!("{:.2}", cpu / g.max(1e-9))),
        );
        println!("<!-- {name}: {} -->", serde_json::to_string(&runs)?);
    }
    println!();
    Ok(())
}

/// Bytes on the wire per echoed message, counted by a TCP proxy between wsload and the server:
/// a run with handshakes only, then the same connections with `n` echoes each; the difference
/// divided by the echoes is what one message costs each way (TLS records and frame headers
/// included).
fn wire(kit: &Kit, quick: bool) -> Result<()> {
    let go = kit.go_server.as_deref().context("the Go peer")?;
    let (conns, n) = (20, if quick { 50 } else { 200 });
    println!(
        "## Compression: bytes on the wire per echoed 4 KiB JSON message ({conns} conns × {n}, counted by a TCP proxy)\n"
    );
    println!(
        "| server | client offers compression | server → client | client → server | server → client vs uncompressed |"
    );
    println!("|---|---|---|---|---|");
    let (c, msgs) = (conns.to_string(), n.to_string());
    let mut plain = None;
    for (name, compress) in [
        ("wasmsock, echo plugin", false),
        ("wasmsock, echo plugin", true),
        ("Go gin+gorilla -compress", false),
        ("Go gin+gorilla -compress", true),
    ] {
        let server = if name.starts_with("Go") {
            Server::go_with(kit, go, &["-compress"])?
        } else {
            Server::wasmsock(kit, "", "warn")?
        };
        let proxy = CountingProxy::start(server.port)?;
        let url = format!("wss://localhost:{}/echo", proxy.port);
        let run = |n: &str| -> Result<(u64, u64)> {
            let mut args = vec!["-c", &c, "-n", n, "-s", "4096", "-payload", JSON];
            if compress {
                args.push("-compress");
            }
            let v = wsload_at(kit.wsload.as_deref(), &kit.cert, &url, server.pid(), &args)?;
            if v["msgs"].as_u64() != Some((conns * n.parse::<usize>()?) as u64) {
                bail!("not every echo came back: {v}");
            }
            Ok(proxy.settle())
        };
        let (down0, up0) = run("0")?;
        let (down1, up1) = run(&msgs)?;
        let echoes = (conns * n) as f64;
        // The second run's bytes less its handshakes and closes (the first run's bytes).
        let per = |before: u64, after: u64| (after.saturating_sub(2 * before)) as f64 / echoes;
        let (down, up) = (per(down0, down1), per(up0, up1));
        if !name.starts_with("Go") && !compress {
            plain = Some(down);
        }
        println!(
            "| {name} | {} | {down:.0} B | {up:.0} B | {} |",
            if compress { "yes" } else { "no" },
            plain.map_or("—".into(), |p| format!("{:.3}", down / p.max(1.0)))
        );
    }
    println!();
    Ok(())
}

/// Server memory per idle connection with permessage-deflate negotiated, against the same
/// server without it in the same run (the per-connection figure is the growth over the RSS
/// before the connections, so only figures of one run compare). wsload holds the connections
/// idle right after their handshakes, then each echoes one message.
fn idle(kit: &Kit, quick: bool) -> Result<()> {
    let go = kit.go_server.as_deref().context("the Go peer")?;
    let conns = if quick { 2000 } else { 10_000 };
    println!("## Compression: idle memory, {conns} wss connections with permessage-deflate negotiated\n");
    println!("| server | client offers compression | RSS before | RSS with {conns} idle | per connection |");
    println!("|---|---|---|---|---|");
    let n = conns.to_string();
    for (name, compress) in [
        ("Go gin+gorilla -compress", true),
        ("wasmsock (echo plugin route)", false),
        ("wasmsock (echo plugin route)", true),
    ] {
        let server = if name.starts_with("Go") {
            Server::go_with(kit, go, &["-compress"])?
        } else {
            Server::wasmsock(kit, "[server]\nmax_connections_per_ip = 100000\n", "warn")?
        };
        let mut args = vec!["-c", &n, "-n", "1", "-s", "1024", "-payload", JSON, "-hold", "3s"];
        if compress {
            args.push("-compress");
        }
        let v = wsload(kit, &server, "/echo", &args)?;
        let idle = Idle::of(&v, conns).with_context(|| format!("{name}: idle memory"))?;
        println!(
            "| {name} | {} | {} MB | {} MB | {:.1} KB |",
            if compress { "yes" } else { "no" },
            idle.before_kb / 1024,
            idle.hold_kb / 1024,
            idle.per_conn_kb
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
