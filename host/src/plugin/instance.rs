//! One loaded version of a plugin: its pre-linked component and a pool of warm instances.
//!
//! Instances are reused across connections and calls (an idle connection costs no wasm
//! memory). A call takes an instance from the pool, runs under the plugin's CPU deadline, and
//! returns it; an instance that trapped is dropped and the next call gets a fresh one.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use thiserror::Error;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};

use super::bindings::{Connect, Flow, Message, Plugin, PluginPre, Request};
use super::state::{CallCtx, Limiter, PluginEnv, StoreState};
use super::wasi::{self, Capture};
use crate::hub::ConnShared;
use crate::ws::CloseCode;

/// The plugin exports, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    OnConnect = 0,
    OnMessage = 1,
    OnClose = 2,
}

impl Export {
    pub fn as_str(self) -> &'static str {
        match self {
            Export::OnConnect => "on-connect",
            Export::OnMessage => "on-message",
            Export::OnClose => "on-close",
        }
    }
}

/// Why a plugin call did not return normally.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CallError {
    #[error("CPU deadline of {0} ms exceeded")]
    Deadline(u64),
    #[error("{0}")]
    ResourceLimit(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error("quarantined after repeated failures ({0} ms left)")]
    Quarantined(u64),
    #[error("not loaded")]
    NotLoaded,
}

impl CallError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Deadline(_) => "deadline",
            CallError::ResourceLimit(_) => "resource_limit",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
            CallError::Quarantined(_) => "quarantined",
            CallError::NotLoaded => "not_loaded",
        }
    }
}

struct Instance {
    store: Store<StoreState>,
    api: Plugin,
}

/// Facts about a loaded version, for listings and logs.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub hash: String,
    pub size: usize,
    pub loaded_at: SystemTime,
    pub contract: String,
}

/// A call's epoch deadline: the plugin's CPU deadline, plus an allowance per MiB of the message
/// for the copies a big message costs (into the guest, validated, and a reply out), so that a
/// message the route's size limit admits is not refused for its size alone.
#[derive(Debug, Clone, Copy)]
pub struct Ticks {
    pub base: u64,
    pub per_mib: u64,
}

impl Ticks {
    fn for_message(self, bytes: usize) -> u64 {
        let mib = (bytes as u64).div_ceil(1 << 20);
        self.base.saturating_add(self.per_mib.saturating_mul(mib))
    }
}

pub struct Loaded {
    pub info: VersionInfo,
    env: Arc<PluginEnv>,
    pre: PluginPre<StoreState>,
    ticks: Ticks,
    /// Boxed so taking one out of the pool or putting it back moves a pointer, not the store.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Instance>>>,
}

impl Loaded {
    /// Wraps a pre-linked component and instantiates it once, so a component that cannot
    /// start is refused at load time rather than on the first message.
    pub fn new(
        env: Arc<PluginEnv>,
        pre: PluginPre<StoreState>,
        ticks: Ticks,
        info: VersionInfo,
    ) -> anyhow::Result<Loaded> {
        let loaded = Loaded { info, env, pre, ticks, idle: Mutex::new(Vec::new()) };
        let first = loaded.instantiate().map_err(|e| anyhow::anyhow!("instantiation failed: {e}"))?;
        loaded.idle.lock().push(first);
        Ok(loaded)
    }

    pub fn on_connect(&self, conn: &Arc<ConnShared>, req: &Request) -> Result<Connect, CallError> {
        self.call(conn, Export::OnConnect, 0, |api, store| {
            api.wasmsock_plugin_handler().call_on_connect(store, conn.id, req)
        })
    }

    pub fn on_message(&self, conn: &Arc<ConnShared>, msg: &Message) -> Result<Flow, CallError> {
        self.call(conn, Export::OnMessage, super::host_api::message_len(msg), |api, store| {
            api.wasmsock_plugin_handler().call_on_message(store, conn.id, msg)
        })
    }

    pub fn on_close(&self, conn: &Arc<ConnShared>, code: CloseCode, reason: &str) -> Result<(), CallError> {
        self.call(conn, Export::OnClose, 0, |api, store| {
            api.wasmsock_plugin_handler().call_on_close(store, conn.id, code.get(), reason)
        })
    }

    /// Idle instances in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().len()
    }

    fn instantiate(&self) -> Result<Box<Instance>, CallError> {
        let s = &self.env.settings;
        let capture = Capture::new(s.max_log_bytes);
        let state = StoreState {
            wasi: wasi::context(&capture),
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: s.max_memory,
                max_table_elements: s.max_table_elements,
                memory: 0,
                hit: false,
            },
            capture,
            env: self.env.clone(),
            call: CallCtx::default(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.ticks.base);
        match self.pre.instantiate(&mut store) {
            Ok(api) => Ok(Box::new(Instance { store, api })),
            Err(e) => Err(classify(&e, &store, self.deadline_ms(), true)),
        }
    }

    fn deadline_ms(&self) -> u64 {
        self.env.settings.deadline.as_millis() as u64
    }

    fn call<R>(
        &self,
        conn: &Arc<ConnShared>,
        export: Export,
        bytes: usize,
        f: impl FnOnce(&Plugin, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let pooled = self.idle.lock().pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.instantiate()?,
        };
        let Instance { store, api } = &mut *inst;
        store.data_mut().call = CallCtx { conn: Some(conn.clone()), ..CallCtx::default() };
        store.set_epoch_deadline(self.ticks.for_message(bytes));
        let span =
            tracing::debug_span!("plugin_call", plugin = %self.env.name, export = export.as_str(), conn = conn.id);
        let started = Instant::now();
        let result = span.in_scope(|| f(api, store));
        let took = started.elapsed();
        self.env.call_seconds[export as usize].observe(took.as_secs_f64());
        let slow = self.env.settings.slow_call;
        if !slow.is_zero() && took >= slow {
            tracing::warn!(
                plugin = %self.env.name, export = export.as_str(), conn = conn.id, route = %conn.route.path,
                took_us = took.as_micros() as u64, "slow plugin call"
            );
        }
        store.data_mut().call.conn = None;
        self.drain_output(store, conn.id);
        match result {
            Ok(v) => {
                let mut idle = self.idle.lock();
                if idle.len() < self.env.settings.max_idle_instances {
                    idle.push(inst);
                }
                Ok(v)
            }
            // The instance may be in any state after a trap: it is dropped here.
            Err(e) => Err(classify(&e, store, self.deadline_ms(), false)),
        }
    }

    /// Logs what the guest printed during the call, line by line, attributed to the plugin.
    fn drain_output(&self, store: &Store<StoreState>, conn: u64) {
        let Some((bytes, dropped)) = store.data().capture.take() else {
            return;
        };
        let plugin = &*self.env.name;
        for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(plugin, conn, stream = "stdout/stderr", "{line}");
        }
        if dropped > 0 {
            tracing::warn!(plugin, conn, dropped, "plugin output over the per-call log limit was dropped");
            self.env
                .hub
                .metrics
                .plugin_log_dropped
                .get_or_create(&crate::metrics::PluginLabel { plugin: plugin.to_owned() })
                .inc_by(dropped as u64);
        }
    }
}

fn classify(e: &wasmtime::Error, store: &Store<StoreState>, deadline_ms: u64, instantiating: bool) -> CallError {
    if store.data().limiter.hit {
        return CallError::ResourceLimit(format!("{}", e.root_cause()));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Deadline(deadline_ms),
        Some(Trap::StackOverflow) => CallError::Trap("stack overflow".into()),
        Some(Trap::UnreachableCodeReached) => CallError::Trap("panicked (unreachable reached)".into()),
        Some(t) => CallError::Trap(t.to_string()),
        // A host-side error (an import that traps, a bad resource handle): its root cause says
        // what happened; the wasm backtrace wrapped around it goes to the debug log.
        None => {
            tracing::debug!(error = ?e, "plugin error with backtrace");
            let cause = e.root_cause().to_string();
            if instantiating { CallError::Instantiate(cause) } else { CallError::Trap(cause) }
        }
    }
}
