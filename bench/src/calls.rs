//! Scenario 5: what a plugin call adds per message, measured inside the host: the echo plugin's
//! `on-message` (which sends the message back through the host) against the same send done
//! natively.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmsock::conn::ConnShared;
use wasmsock::hub::{Hub, KvLimits};
use wasmsock::metrics::Metrics;
use wasmsock::plugin::{Message, Registry, Runtime, outgoing};
use wasmsock::router::Router;
use wasmsock::{Overrides, Settings};

use crate::kit::Kit;

pub fn plugin_call_overhead(kit: &Kit, quick: bool) -> Result<()> {
    let dir = kit.work.join("calls");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(kit.plugin("echo"), dir.join("echo.wasm"))?;
    let settings = Settings::from_toml(
        &format!(
            "plugin_dir = {dir:?}\nstate_dir = {:?}\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\n",
            dir.join("state")
        ),
        &Overrides::default(),
    )?;
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(KvLimits { max_key: 256, max_value: 1 << 16, max_keys: 100 }, metrics.clone()));
    let runtime = Arc::new(Runtime::new(&settings.engine)?);
    let registry = Arc::new(Registry::new(runtime, hub.clone(), Arc::new(settings.clone())));
    registry.load_all()?;
    let router = Router::new(&settings.routes, &registry);
    let route = router.get("/echo").context("route")?.clone();
    let addr: SocketAddr = "127.0.0.1:1".parse()?;
    let conn = Arc::new(ConnShared::new(1, route.clone(), addr, metrics.outbox_drops.clone()));
    hub.register(conn.clone());
    let slot = route.chain[0].clone();
    let n = if quick { 50_000 } else { 500_000 };

    println!("## Plugin call overhead per message (in-process, one core)\n");
    println!("| message | echo plugin `on-message` (wasm call + host send) | same send, native | wasm layer |");
    println!("|---|---|---|---|");
    for size in [64usize, 4096] {
        let msg = Message::Text("x".repeat(size));
        let mut drained = Vec::with_capacity(512);
        let mut run = |native: bool| -> Result<f64> {
            // Warm up, then measure.
            for round in 0..2 {
                let count = if round == 0 { n / 10 } else { n };
                let started = Instant::now();
                for i in 0..count {
                    if native {
                        let copy = match &msg {
                            Message::Text(t) => Message::Text(t.clone()),
                            Message::Binary(b) => Message::Binary(b.clone()),
                        };
                        let _ = conn.send(outgoing(copy));
                    } else {
                        slot.on_message(&conn, &msg).map_err(|f| anyhow::anyhow!("{}", f.error))?;
                    }
                    if i % 256 == 255 {
                        drained.clear();
                        conn.take_outgoing(&mut drained, 1024);
                    }
                }
                if round == 1 {
                    return Ok(started.elapsed().as_nanos() as f64 / count as f64);
                }
            }
            unreachable!()
        };
        let wasm = run(false)?;
        let native = run(true)?;
        println!("| {size} B text | {wasm:.0} ns | {native:.0} ns | {:.0} ns |", wasm - native);
    }
    println!();
    Ok(())
}
