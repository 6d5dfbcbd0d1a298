//! What a plugin's store carries: its WASI context, limits, the plugin's host environment and
//! the context of the call in progress.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::outbound::{Hooks, Outbound};
use super::stop_clock::StopClock;
use super::wasi::Capture;
use super::webhooks::Webhooks;
use crate::config::{HostLimits, PluginSettings};
use crate::hub::ConnShared;
use crate::hub::Hub;

/// Everything about a plugin that outlives its versions: name, settings, config and the hub.
pub struct PluginEnv {
    pub name: Arc<str>,
    /// The plugin whose rooms and users this one reaches: itself, or its `act_as`.
    pub scope: Arc<str>,
    pub settings: PluginSettings,
    pub config: HashMap<String, String>,
    pub host_limits: HostLimits,
    /// `[server] detailed_errors`: failures tell clients what failed.
    pub detailed_errors: bool,
    pub hub: Arc<Hub>,
    /// Call latency histograms by export (on-connect, on-message, on-close, on-request,
    /// on-timer), resolved once.
    pub call_seconds: [Histogram; super::instance::EXPORTS],
    /// Set when shutdown's grace period is over: every call stops at its stop allowance.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The epoch ticker, touched before plugin code runs (see `ticker`).
    pub ticking: &'static super::ticker::Ticking,
    /// Outbound HTTP: policy, requests in flight, metrics.
    pub outbound: Arc<Outbound>,
    /// Webhooks: the plugin's queues and delivery tasks (kept across reloads).
    pub webhooks: Arc<Webhooks>,
}

/// Per-call budget and the connection the call is about.
#[derive(Default)]
pub struct CallCtx {
    pub conn: Option<Arc<ConnShared>>,
    pub sends: u32,
    pub send_bytes: usize,
    pub logs: u32,
    /// Epoch ticks of this call's own execution so far, its budget, and the slice after which
    /// it leaves the I/O threads.
    pub ticks: u64,
    pub budget: u64,
    pub slice: u64,
    /// Its own CPU time since shutdown stopped plugin calls: since its start, or its first tick
    /// after the stop if it was running then (see `Registry::stop_calls`).
    pub since_stop: Option<StopClock>,
    /// A timer refused for the plugin's bound was logged in this call (once per call is enough).
    pub timer_refusal_logged: bool,
}

pub struct StoreState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub capture: Capture,
    pub env: Arc<PluginEnv>,
    pub call: CallCtx,
    /// Set by the epoch callback when the running call should move to the slow lane; shared
    /// with the code awaiting the call, which does the moving.
    pub move_to_lane: Arc<std::sync::atomic::AtomicBool>,
    pub http: WasiHttpCtx,
    /// Sends the plugin's `wasi:http` requests under its policy.
    pub http_hooks: Hooks,
    /// The instance's version exports `on-timer` (a plugin that does not may not set timers).
    pub serves_timers: bool,
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps an instance's total linear memory (all its memories together) and table sizes, and
/// remembers whether a cap was hit so the trap can be reported as what it is.
pub struct Limiter {
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub memory: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory + (desired - current);
        if total > self.max_memory {
            self.hit = true;
            wasmtime::bail!("plugin memory limit of {} bytes reached", self.max_memory);
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.hit = true;
            wasmtime::bail!("plugin table limit of {} elements reached", self.max_table_elements);
        }
        Ok(true)
    }
}
