//! One loaded version of a plugin: its pre-linked component and a pool of warm instances.
//!
//! Instances are reused across connections and calls (an idle connection costs no wasm
//! memory). A call takes an instance from the pool, runs under the plugin's deadline, and
//! returns it; an instance that trapped is dropped and the next call gets a fresh one.
//!
//! Calls are async: wasm runs on a fiber. The deadline counts epoch ticks of the call's own
//! execution (a call that waits, later on the network, does not use it up), and a call that
//! runs past a short slice moves to the slow lane ([`super::lanes`]) so it cannot hold up the
//! I/O threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use thiserror::Error;
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{Connect, Flow, HttpRequest, HttpResponse, Message, Request, v0_1, v0_2, v0_2_http, v0_2_timer};
use super::capacity::{Capacity, Slot};
use super::lanes::Lanes;
use super::state::{CallCtx, Limiter, PluginEnv, StoreState};
use super::stop_clock::StopClock;
use super::wasi::{self, Capture};
use crate::hub::ConnShared;
use crate::ws::CloseCode;

/// The plugin exports, for metrics and logs (named as in the contract: `on-...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Export {
    OnConnect = 0,
    OnMessage = 1,
    OnClose = 2,
    OnRequest = 3,
    OnTimer = 4,
}

/// How many exports there are (per-export tables are this long).
pub const EXPORTS: usize = 5;

impl Export {
    pub fn as_str(self) -> &'static str {
        match self {
            Export::OnConnect => "on-connect",
            Export::OnMessage => "on-message",
            Export::OnClose => "on-close",
            Export::OnRequest => "on-request",
            Export::OnTimer => "on-timer",
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
    #[error("stopped: the server is shutting down")]
    Stopped,
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
            CallError::Stopped => "stopped",
        }
    }
}

/// A component pre-linked for the contract version it was built for.
pub(crate) enum Pre {
    V0_1(v0_1::PluginPre<StoreState>),
    /// With the indices of its exports, and of the optional `http` export when it has one
    /// (the instance is made from the `InstancePre` so both can be loaded from it).
    V0_2 {
        pre: v0_2::PluginPre<StoreState>,
        indices: v0_2::PluginIndices,
        http: Option<v0_2_http::HttpIndices>,
        /// The optional `timer` export, likewise.
        timer: Option<v0_2_timer::TimerIndices>,
    },
}

impl Pre {
    /// Whether the plugin exports `on-request` (contract 0.2.0's optional `http` export).
    pub(crate) fn serves_http(&self) -> bool {
        matches!(self, Pre::V0_2 { http: Some(_), .. })
    }

    /// Whether the plugin exports `on-timer` (contract 0.2.0's optional `timer` export).
    pub(crate) fn serves_timers(&self) -> bool {
        matches!(self, Pre::V0_2 { timer: Some(_), .. })
    }
}

/// An instance's exports, in the contract version it was built for.
enum Api {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
}

/// Runs `$body` with `$p` bound to the instance's exports, whatever their version; the body's
/// conversions to and from the version's types are inferred per version.
macro_rules! each_version {
    ($api:expr, $p:ident => $body:expr) => {
        match $api {
            Api::V0_1($p) => $body,
            Api::V0_2($p) => $body,
        }
    };
}

struct Instance {
    store: Store<StoreState>,
    api: Api,
    /// `on-request`, when the plugin exports it.
    http: Option<v0_2_http::Http>,
    /// `on-timer`, when the plugin exports it.
    timer: Option<v0_2_timer::Timer>,
    /// Its slot of `[engine] max_instances`, given back when the instance is dropped.
    _slot: Slot,
}

/// Facts about a loaded version, for listings and logs.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub hash: String,
    pub size: usize,
    pub loaded_at: SystemTime,
    pub contract: String,
}

/// A call's budget in epoch ticks: the plugin's deadline, plus an allowance per MiB of the
/// message for the copies a big message costs (into the guest, validated, and a reply out), so
/// that a message the route's size limit admits is not refused for its size alone; and the
/// slice after which a call leaves the I/O threads.
#[derive(Debug, Clone, Copy)]
pub struct Ticks {
    pub base: u64,
    pub per_mib: u64,
    pub slice: u64,
}

impl Ticks {
    fn for_message(self, bytes: usize) -> u64 {
        let mib = (bytes as u64).div_ceil(1 << 20);
        self.base.saturating_add(self.per_mib.saturating_mul(mib))
    }
}

/// What a call's future gives back: the instance (to pool or drop), what the caller lent the
/// call and wants back whatever happens (the message, for the next plugin of a chain), and the
/// result.
type Outcome<K, R> = (Box<Instance>, K, wasmtime::Result<R>);
type CallFuture<K, R> = Pin<Box<dyn Future<Output = Outcome<K, R>> + Send>>;

pub struct Loaded {
    pub info: VersionInfo,
    env: Arc<PluginEnv>,
    pre: Pre,
    ticks: Ticks,
    lanes: Arc<Lanes>,
    capacity: Arc<Capacity>,
    /// Per export: its last call ran past the slice. The next one then starts on the slow lane
    /// at once, instead of taking a slice of an I/O thread first (many long calls arriving
    /// together would otherwise add up their slices there).
    runs_long: [AtomicBool; EXPORTS],
    /// Boxed so taking one out of the pool or putting it back moves a pointer, not the store.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Instance>>>,
}

impl Loaded {
    /// Wraps a pre-linked component and instantiates it once, so a component that cannot
    /// start is refused at load time rather than on the first message. Blocking (called where
    /// plugins are compiled, off the async runtime).
    pub(crate) fn new(
        env: Arc<PluginEnv>,
        pre: Pre,
        ticks: Ticks,
        lanes: Arc<Lanes>,
        capacity: Arc<Capacity>,
        info: VersionInfo,
    ) -> anyhow::Result<Loaded> {
        let runs_long = Default::default();
        let loaded = Loaded { info, env, pre, ticks, lanes, capacity, runs_long, idle: Mutex::new(Vec::new()) };
        let slot = loaded
            .capacity
            .try_take(&loaded.env.name)
            .ok_or_else(|| anyhow::anyhow!("no instance slot free ([engine] max_instances)"))?;
        let first = block_on(loaded.instantiate(slot)).map_err(|e| anyhow::anyhow!("instantiation failed: {e}"))?;
        loaded.idle.lock().push(first);
        Ok(loaded)
    }

    pub async fn on_connect(&self, conn: &Arc<ConnShared>, req: Request) -> Result<Connect, CallError> {
        let id = conn.id;
        let call = move |mut inst: Box<Instance>, (): ()| -> CallFuture<(), Connect> {
            Box::pin(async move {
                let Instance { store, api, .. } = &mut *inst;
                let r = each_version!(api, p => {
                    p.wasmsock_plugin_handler().call_on_connect(&mut *store, id, &req.into()).await.map(Connect::from)
                });
                (inst, (), r)
            })
        };
        self.call(Some(conn), Export::OnConnect, 0, (), call).await.1
    }

    /// Runs `on-message`; gives the message back, for the next plugin of the chain.
    pub async fn on_message(&self, conn: &Arc<ConnShared>, msg: Message) -> (Message, Result<Flow, CallError>) {
        let (id, bytes) = (conn.id, super::host_api::message_len(&msg));
        let call = move |mut inst: Box<Instance>, msg: Message| -> CallFuture<Message, Flow> {
            Box::pin(async move {
                let Instance { store, api, .. } = &mut *inst;
                let (msg, r) = each_version!(api, p => {
                    let wit = msg.into();
                    let r = p.wasmsock_plugin_handler().call_on_message(&mut *store, id, &wit).await;
                    (Message::from(wit), r.map(Flow::from))
                });
                (inst, msg, r)
            })
        };
        self.call(Some(conn), Export::OnMessage, bytes, msg, call).await
    }

    pub async fn on_close(&self, conn: &Arc<ConnShared>, code: CloseCode, reason: &str) -> Result<(), CallError> {
        let (id, reason) = (conn.id, reason.to_owned());
        let call = move |mut inst: Box<Instance>, (): ()| -> CallFuture<(), ()> {
            Box::pin(async move {
                let Instance { store, api, .. } = &mut *inst;
                let r = each_version!(api, p => {
                    p.wasmsock_plugin_handler().call_on_close(&mut *store, id, code.get(), &reason).await
                });
                (inst, (), r)
            })
        };
        self.call(Some(conn), Export::OnClose, 0, (), call).await.1
    }

    /// Runs `on-request`; `None` when the plugin does not export it.
    pub async fn on_request(
        &self,
        conn: &Arc<ConnShared>,
        req: HttpRequest,
    ) -> Option<Result<HttpResponse, CallError>> {
        if !self.pre.serves_http() {
            return None;
        }
        let bytes = req.body.len();
        let call = move |mut inst: Box<Instance>, (): ()| -> CallFuture<(), HttpResponse> {
            Box::pin(async move {
                let Instance { store, http, .. } = &mut *inst;
                let r = match http {
                    Some(h) => h.call_on_request(&mut *store, &req.into()).await.map(HttpResponse::from),
                    None => Err(wasmtime::format_err!("the instance has no on-request export")),
                };
                (inst, (), r)
            })
        };
        Some(self.call(Some(conn), Export::OnRequest, bytes, (), call).await.1)
    }

    /// Runs `on-timer` for timer `key` (tied to `conn`, when it was set with one); `None` when
    /// the plugin does not export it. A timer without a connection is a call about none, as
    /// the host calls it on its own.
    pub async fn on_timer(&self, key: String, conn: Option<&Arc<ConnShared>>) -> Option<Result<(), CallError>> {
        if !self.pre.serves_timers() {
            return None;
        }
        let conn_id = conn.map(|c| c.id);
        let bytes = key.len();
        let call = move |mut inst: Box<Instance>, (): ()| -> CallFuture<(), ()> {
            Box::pin(async move {
                let Instance { store, timer, .. } = &mut *inst;
                let r = match timer {
                    Some(t) => t.call_on_timer(&mut *store, &key, conn_id).await,
                    None => Err(wasmtime::format_err!("the instance has no on-timer export")),
                };
                (inst, (), r)
            })
        };
        Some(self.call(conn, Export::OnTimer, bytes, (), call).await.1)
    }

    /// Whether this version exports `on-request`.
    pub fn serves_http(&self) -> bool {
        self.pre.serves_http()
    }

    /// Idle instances in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().len()
    }

    /// An instance for a call: an idle one, or a new one if the plugin may have another slot
    /// (see `capacity`), or, after waiting up to the plugin's deadline, an idle one another
    /// call gave back or a slot freed meanwhile.
    async fn instance(&self) -> Result<Box<Instance>, CallError> {
        if let Some(inst) = self.idle.lock().pop() {
            return Ok(inst);
        }
        let name = &self.env.name;
        let slot = match self.capacity.try_take(name) {
            Some(slot) => slot,
            None => match self.capacity.wait_for(name, self.env.settings.deadline, || self.idle.lock().pop()).await {
                Some(Ok(inst)) => return Ok(inst),
                Some(Err(slot)) => slot,
                None => return Err(CallError::Instantiate("no instance slot free ([engine] max_instances)".into())),
            },
        };
        self.instantiate(slot).await
    }

    async fn instantiate(&self, slot: Slot) -> Result<Box<Instance>, CallError> {
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
            move_to_lane: Arc::new(AtomicBool::new(false)),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: super::outbound::Hooks(self.env.outbound.clone()),
            serves_timers: self.pre.serves_timers(),
        };
        let engine = match &self.pre {
            Pre::V0_1(p) => p.engine(),
            Pre::V0_2 { pre, .. } => pre.engine(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(on_tick);
        // Start functions run under the plugin's deadline too.
        let since_stop = self.env.stopping.load(Relaxed).then(StopClock::start);
        store.data_mut().call = CallCtx { budget: self.ticks.base, slice: u64::MAX, since_stop, ..CallCtx::default() };
        store.set_epoch_deadline(1);
        self.env.ticking.touch();
        let api = match &self.pre {
            Pre::V0_1(p) => p.instantiate_async(&mut store).await.map(|p| (Api::V0_1(p), None, None)),
            Pre::V0_2 { pre, indices, http, timer } => match pre.instance_pre().instantiate_async(&mut store).await {
                Ok(instance) => indices.load(&mut store, &instance).and_then(|api| {
                    let http = http.as_ref().map(|h| h.load(&mut store, &instance)).transpose()?;
                    let timer = timer.as_ref().map(|t| t.load(&mut store, &instance)).transpose()?;
                    Ok((Api::V0_2(api), http, timer))
                }),
                Err(e) => Err(e),
            },
        };
        match api {
            Ok((api, http, timer)) => Ok(Box::new(Instance { store, api, http, timer, _slot: slot })),
            Err(e) => Err(classify(&e, &store, self.deadline_ms(), true)),
        }
    }

    fn deadline_ms(&self) -> u64 {
        self.env.settings.deadline.as_millis() as u64
    }

    /// Runs one call: an instance from the pool, the call's budget, the call itself (moved to
    /// the slow lane if it runs long), then accounting, the plugin's output, and the instance
    /// back to the pool (or dropped after a trap).
    async fn call<K: Default + Send + Unpin + 'static, R: Send + 'static>(
        &self,
        conn: Option<&Arc<ConnShared>>,
        export: Export,
        bytes: usize,
        lent: K,
        make: impl FnOnce(Box<Instance>, K) -> CallFuture<K, R> + Send + Unpin + 'static,
    ) -> (K, Result<R, CallError>) {
        let mut inst = match self.instance().await {
            Ok(i) => i,
            Err(e) => return (lent, Err(e)),
        };
        let lane = inst.store.data().move_to_lane.clone();
        lane.store(false, Relaxed);
        inst.store.data_mut().call = CallCtx {
            conn: conn.cloned(),
            budget: self.ticks.for_message(bytes),
            slice: self.ticks.slice,
            ..CallCtx::default()
        };
        let conn_id = conn.map(|c| c.id);
        let span =
            tracing::debug_span!("plugin_call", plugin = %self.env.name, export = export.as_str(), conn = conn_id);
        let started = Instant::now();
        // Every poll may run plugin code, so each first makes sure the epoch ticks. The call
        // is made, and its epoch deadline set, at the first poll, not here: a call that waited
        // for the slow lane would otherwise take a tick at its first instruction and, made
        // under shutdown's stop allowance, could be stopped before it did anything.
        let ticking = self.env.ticking;
        let mut start = Some((inst, lent, make));
        let mut running: Option<CallFuture<K, R>> = None;
        let mut call = std::future::poll_fn(move |cx| {
            ticking.touch();
            let call = running.get_or_insert_with(|| {
                let (mut inst, lent, make) = start.take().expect("made at the first poll only");
                inst.store.set_epoch_deadline(1);
                if inst.store.data().env.stopping.load(Relaxed) {
                    inst.store.data_mut().call.since_stop = Some(StopClock::start());
                }
                make(inst, lent)
            });
            call.as_mut().poll(cx)
        });
        let runs_long = &self.runs_long[export as usize];
        // Inline until the call asks to leave the I/O threads (a call that waits on something
        // else stays with its connection), unless this export's calls run long lately.
        let inline = match runs_long.load(Relaxed) && !self.env.stopping.load(Relaxed) {
            true => {
                lane.store(true, Relaxed); // it starts there: no yield to move it
                None
            }
            false => {
                std::future::poll_fn(|cx| match Pin::new(&mut call).poll(cx) {
                    Poll::Ready(out) => Poll::Ready(Some(out)),
                    Poll::Pending if lane.load(Relaxed) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                })
                .instrument(span.clone())
                .await
            }
        };
        let (mut inst, kept, result) = match inline {
            Some(out) => out,
            None => match self.on_lane(call.instrument(span)).await {
                Ok(out) => out,
                Err(e) => return (K::default(), Err(e)),
            },
        };
        runs_long.store(inst.store.data().call.ticks >= self.ticks.slice, Relaxed);
        let took = started.elapsed();
        self.env.call_seconds[export as usize].observe(took.as_secs_f64());
        let slow = self.env.settings.slow_call;
        if !slow.is_zero() && took >= slow {
            tracing::warn!(
                plugin = %self.env.name, export = export.as_str(), conn = conn_id,
                route = conn.map(|c| &*c.route.path), took_us = took.as_micros() as u64, "slow plugin call"
            );
        }
        inst.store.data_mut().call.conn = None;
        self.drain_output(&inst.store, conn_id);
        let result = match result {
            Ok(v) => {
                {
                    let mut idle = self.idle.lock();
                    if idle.len() < self.env.settings.max_idle_instances {
                        idle.push(inst);
                    }
                }
                // Back in the pool (or its slot freed): a call waiting for one can go on.
                self.capacity.returned();
                Ok(v)
            }
            // The instance may be in any state after a trap: it is dropped here.
            Err(e) => Err(classify(&e, &inst.store, self.deadline_ms(), false)),
        };
        (kept, result)
    }

    /// Logs what the guest printed during the call, line by line, attributed to the plugin.
    fn drain_output(&self, store: &Store<StoreState>, conn: Option<u64>) {
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

impl Loaded {
    /// Runs a call on the slow lane. When shutdown stops plugin calls, one still waiting for its
    /// first turn is taken back and made here, on the I/O threads, under the stop allowance: a
    /// call owed (on-close) is made, and not at the slow lane's low priority. One already
    /// running there is waited for: it stops at its allowance too, which counts its own CPU
    /// time, so it gets it although its thread runs behind busy I/O threads (an outbound request
    /// it waits on fails at the stop).
    async fn on_lane<O: Send + 'static>(&self, call: impl Future<Output = O> + Send + 'static) -> Result<O, CallError> {
        let waiting = Arc::new(Mutex::new(Some(call)));
        let on_lane = {
            let (waiting, stopping) = (waiting.clone(), self.env.stopping.clone());
            async move {
                if stopping.load(Relaxed) {
                    return None;
                }
                let call = waiting.lock().take();
                match call {
                    Some(call) => Some(call.await),
                    None => None,
                }
            }
        };
        let Some(mut task) = self.lanes.spawn(on_lane) else {
            return Err(CallError::Stopped);
        };
        let joined = tokio::select! {
            biased;
            out = &mut task => out,
            _ = self.lanes.stopped() => {
                let unstarted = waiting.lock().take();
                if let Some(call) = unstarted {
                    task.abort();
                    return Ok(call.await);
                }
                task.await
            }
        };
        match joined {
            Ok(Some(out)) => Ok(out),
            // The lane saw the stop before the call's turn came.
            Ok(None) => {
                let unstarted = waiting.lock().take();
                match unstarted {
                    Some(call) => Ok(call.await),
                    None => Err(CallError::Stopped),
                }
            }
            // The host panicked: the instance and what the call held are gone with it.
            Err(e) => Err(CallError::Trap(format!("the call's task failed: {e}"))),
        }
    }
}

/// Own CPU time a call still gets once shutdown stopped plugin calls, counted from its start if
/// it was made after the stop (an on-close still owed), else from its first tick after it. It
/// stops at the first tick past this (at the default tick, about 1 ms of CPU on average): enough
/// for an on-close that does its bookkeeping and returns, not for one that runs long, and small
/// enough that hundreds of on-close calls still owed fit in the shutdown margin. CPU time, not
/// ticks: see [`super::stop_clock`].
const STOP_ALLOWANCE: Duration = Duration::from_micros(500);

/// The epoch callback: one more tick of this call's own execution. Past its budget (or, once
/// shutdown stopped calls, its allowance) the call is stopped.
fn on_tick(mut cx: wasmtime::StoreContextMut<'_, StoreState>) -> wasmtime::Result<UpdateDeadline> {
    let state = cx.data_mut();
    state.env.ticking.touch();
    let call = &mut state.call;
    call.ticks += 1;
    if call.ticks >= call.budget {
        return Ok(UpdateDeadline::Interrupt);
    }
    if state.env.stopping.load(Relaxed) {
        // No move to the slow lane once stopping: its low priority would only slow the end down.
        let spent = call.since_stop.get_or_insert_with(StopClock::start).spent();
        return Ok(if spent >= STOP_ALLOWANCE { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) });
    }
    // Past the slice, yield once: the code awaiting the call then moves it to the slow lane,
    // where it runs on to its end (calls there take their turns, first come first served).
    if call.ticks >= call.slice && !state.move_to_lane.swap(true, Relaxed) {
        return Ok(UpdateDeadline::Yield(1));
    }
    Ok(UpdateDeadline::Continue(1))
}

fn classify(e: &wasmtime::Error, store: &Store<StoreState>, deadline_ms: u64, instantiating: bool) -> CallError {
    if store.data().env.stopping.load(Relaxed) && matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::Stopped;
    }
    if store.data().limiter.hit {
        return CallError::ResourceLimit(format!("{}", e.root_cause()));
    }
    let trap = |cause: &str| CallError::Trap(with_backtrace(cause, e));
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Deadline(deadline_ms),
        Some(Trap::StackOverflow) => trap("stack overflow"),
        Some(Trap::UnreachableCodeReached) => trap("panicked (unreachable reached)"),
        Some(t) => trap(&t.to_string()),
        // A host-side error (an import that traps, a bad resource handle): its root cause says
        // what happened.
        None => {
            let cause = with_backtrace(&e.root_cause().to_string(), e);
            if instantiating { CallError::Instantiate(cause) } else { CallError::Trap(cause) }
        }
    }
}

/// Longest backtrace kept in a failure (it goes to the log, in the failure's one line).
const MAX_BACKTRACE: usize = 2048;

/// The cause with the wasm backtrace, on one line (the failure is logged as one line, and
/// only there: clients are told a generic reason, see `CallFailure::reason`).
fn with_backtrace(cause: &str, e: &wasmtime::Error) -> String {
    let cause = one_line(cause);
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return cause;
    };
    let mut frames = one_line(&bt.to_string());
    if frames.len() > MAX_BACKTRACE {
        let mut end = MAX_BACKTRACE;
        while !frames.is_char_boundary(end) {
            end -= 1;
        }
        frames.truncate(end);
        frames.push_str(" ...");
    }
    if frames.is_empty() { cause } else { format!("{cause} [{frames}]") }
}

/// Lines joined with ` | `, blank ones and indentation dropped.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// Runs a future to completion on this thread (for instantiating at load time, which happens
/// off the async runtime). A yielding start function is polled again when it wakes us.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
