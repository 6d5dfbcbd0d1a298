//! What a plugin call adds per message, measured in-process: a plugin's `on-message` (which,
//! for the echo plugin, sends the message back through the host) against the same send done
//! natively. Public for the benchmarks (`wasmsock-bench calls`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::{Message, Registry, Runtime, outgoing};
use crate::hub::{ConnShared, Hub, KvLimits};
use crate::metrics::Metrics;
use crate::{Overrides, Settings};

/// Nanoseconds per message for one message size.
#[derive(Debug, Clone, Copy)]
pub struct CallCost {
    pub size: usize,
    /// The plugin's `on-message`, host calls included.
    pub plugin_ns: f64,
    /// The same send, without a plugin.
    pub native_ns: f64,
}

/// Loads `plugin` (an echo-like plugin file) and times `calls` messages of each size through it
/// and natively, after a tenth as many to warm up. Blocking: call it off any async runtime.
pub fn measure(plugin: &Path, work_dir: &Path, sizes: &[usize], calls: usize) -> Result<Vec<CallCost>> {
    std::fs::create_dir_all(work_dir)?;
    std::fs::copy(plugin, work_dir.join("probe.wasm")).context("copying the plugin")?;
    let settings = Settings::from_toml(
        &format!(
            "plugin_dir = {work_dir:?}\nstate_dir = {:?}\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n",
            work_dir.join("state")
        ),
        &Overrides::default(),
    )?;
    let metrics = Arc::new(Metrics::new());
    let hub =
        Arc::new(Hub::new(KvLimits { max_key: 256, max_value: 1 << 16, max_keys: 100 }, 1 << 20, metrics.clone()));
    let runtime = Arc::new(Runtime::new(&settings.engine)?);
    let registry = Arc::new(Registry::new(runtime, hub.clone(), Arc::new(settings.clone())));
    registry.load_all()?;
    let route = Arc::new(settings.routes.first().context("route")?.clone());
    let addr: SocketAddr = "127.0.0.1:1".parse()?;
    let conn = Arc::new(ConnShared::new(1, route, addr, metrics.outbox_drops.clone()));
    hub.register(conn.clone());
    let slot = registry.slot("probe");
    // One thread, as a connection's task runs on one of the server's.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut drained = Vec::with_capacity(512);
    let mut costs = Vec::new();
    for &size in sizes {
        let msg = Message::Text("x".repeat(size));
        // The timed loop runs inside one task, as a connection's task awaits its calls (entering
        // the runtime once per call would be timed too otherwise).
        let mut run = |native: bool| -> Result<f64> {
            rt.block_on(async {
                let mut msg = msg.clone();
                let mut per_call = 0.0;
                for count in [calls / 10, calls] {
                    let started = Instant::now();
                    for i in 0..count {
                        if native {
                            let _ = conn.send(outgoing(msg.clone()));
                        } else {
                            let (given_back, r) = slot.on_message(&conn, std::mem::take(&mut msg)).await;
                            msg = given_back;
                            r.map_err(|f| anyhow::anyhow!("{}", f.error))?;
                        }
                        if i % 256 == 255 {
                            drained.clear();
                            conn.take_outgoing(&mut drained, 1024);
                        }
                    }
                    per_call = started.elapsed().as_nanos() as f64 / count.max(1) as f64;
                }
                Ok(per_call)
            })
        };
        let plugin_ns = run(false)?;
        let native_ns = run(true)?;
        costs.push(CallCost { size, plugin_ns, native_ns });
    }
    Ok(costs)
}
