//! The wasmtime engine: pooling allocator, epoch-based CPU deadlines and the base linker.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceType};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::{v0_1, v0_2};
use super::capacity::Capacity;
use super::lanes::Lanes;
use super::state::StoreState;
use super::ticker::Ticker;
use super::wasi;
use crate::config::EngineSettings;
use crate::config::defaults::engine::MAX_TABLE_ELEMENTS;

/// The engine, the linker every plugin is checked against, and the thread that advances the
/// epoch.
pub struct Runtime {
    pub engine: Engine,
    /// Where long calls finish (see `lanes`).
    pub(crate) lanes: Arc<Lanes>,
    /// The instance slots, shared fairly between plugins.
    pub(crate) capacity: Arc<Capacity>,
    /// Set at the end of shutdown's grace period (see `Registry::stop_calls`).
    pub(crate) stopping: Arc<AtomicBool>,
    linker: Linker<StoreState>,
    pub tick: Duration,
    /// Advances the epoch while plugin code runs (stopped on drop).
    pub(crate) ticker: Ticker,
}

impl Runtime {
    pub fn new(settings: &EngineSettings) -> Result<Runtime> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            // Calls run on fibers: a stack per running call, reused by the instance's store.
            .async_stack_size(1 << 20)
            .memory_init_cow(true);

        // Pooled slots make (re)instantiation after a trap or reload a few microseconds, and
        // cap the total memory plugins can ever map.
        let n = settings.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // A wasip2 component is its module plus the WASI adapter and a few shims.
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(16)
            .max_memory_size(settings.max_memory)
            .table_elements(MAX_TABLE_ELEMENTS)
            .total_stacks(n)
            .max_unused_warm_slots(n.min(64));
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(anyhow::Error::from).context("creating the wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        // Every contract version this host serves, each under its own versioned name.
        v0_1::Plugin::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the wasmsock host interface 0.1")?;
        v0_2::Plugin::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the wasmsock host interface 0.2")?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let lanes = Arc::new(Lanes::new(threads)?);

        let ticker = Ticker::start(engine.clone(), settings.epoch_tick)?;
        let capacity = Capacity::new(n);
        let stopping = Arc::new(AtomicBool::new(false));
        Ok(Runtime { engine, lanes, capacity, stopping, linker, tick: settings.epoch_tick, ticker })
    }

    /// Compiles a component (CPU-heavy: call it off the async runtime).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component> {
        Ok(Component::from_binary(&self.engine, bytes)?)
    }

    /// A linker for `component`: the host and WASI interfaces, plus traps for any other
    /// interface it imports (sockets, HTTP, ...), so such a plugin loads but cannot reach out.
    ///
    /// (wasmtime's `define_unknown_imports_as_traps` matches versions exactly, so it would also
    /// shadow the WASI interfaces we do provide when the plugin targets an older 0.2.x.)
    pub fn linker_for(&self, component: &Component) -> Result<Linker<StoreState>> {
        let mut linker = self.linker.clone();
        let ty = component.component_type();
        // Resources the plugin gets from interfaces we provide (streams, pollables): a stubbed
        // interface that re-exports one must name the very same host type.
        let mut provided = Vec::new();
        for (name, item) in ty.imports(&self.engine) {
            let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
            if super::contract::is_trapped_import(name) {
                continue;
            }
            for (export, item) in instance.exports(&self.engine) {
                if let ComponentItem::Resource(r) = item.ty
                    && let Some(host) = wasi::host_resource(name, export)
                {
                    provided.push((r, host));
                }
            }
        }
        for (name, item) in ty.imports(&self.engine) {
            let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
            if !super::contract::is_trapped_import(name) {
                continue;
            }
            let mut stubs = linker.instance(name).map_err(anyhow::Error::from)?;
            for (export, item) in instance.exports(&self.engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        let what = format!("{name}#{export}");
                        stubs
                            .func_new(export, move |_, _, _, _| {
                                wasmtime::bail!("plugins have no access to {what} (no network, no host resources)")
                            })
                            .map_err(anyhow::Error::from)?;
                    }
                    ComponentItem::Resource(r) => {
                        let host =
                            provided.iter().find(|(p, _)| *p == r).map_or(ResourceType::host::<()>(), |(_, h)| *h);
                        stubs.resource(export, host, |_, _| Ok(())).map_err(anyhow::Error::from)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(linker)
    }

    /// Epoch ticks for a deadline (at least one).
    pub fn ticks(&self, deadline: Duration) -> u64 {
        (deadline.as_nanos() / self.tick.as_nanos().max(1)).max(1) as u64
    }
}
