//! The plugin registry: one slot per plugin name, holding the version currently serving.
//!
//! Routes hold slots, not versions, so swapping a version is one atomic pointer store: calls
//! already running finish on the old code, the next call runs the new code, and no connection
//! notices. Failures are accounted here, where the plugin's failure policy is applied.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwapOption;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use super::bindings::{Connect, Flow, HttpRequest, HttpResponse, Message, Request, v0_1, v0_2, v0_2_http, v0_2_timer};
use super::breaker::Breaker;
use super::contract;
use super::engine::Runtime;
use super::instance::{CallError, Export, Loaded, Pre, Ticks, VersionInfo};
use super::outbound::Outbound;
use super::state::PluginEnv;
use super::webhooks::{Shutdown as WebhookShutdown, Webhooks};
use crate::config::{OnError, Settings};
use crate::hub::ConnShared;
use crate::hub::{Due, Hub};
use crate::metrics::{PluginExportLabel, PluginKindLabel, PluginLabel, ReloadLabel};
use crate::ws::CloseCode;

/// Deadline allowance per MiB of a message (see [`Ticks`]): generous for a busy machine, and
/// bounded, since the route's `max_message_size` bounds the message.
const DEADLINE_PER_MIB: std::time::Duration = std::time::Duration::from_millis(10);
/// Execution time after which a call leaves the I/O threads for the slow lane: long enough
/// that ordinary calls (microseconds) never move, short enough that a long one delays the
/// connections sharing its thread by about this much at most.
const SLICE: std::time::Duration = std::time::Duration::from_millis(2);

/// A failed call, and whether the plugin's policy says to carry on without it.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub plugin: Arc<str>,
    pub error: CallError,
    pub bypass: bool,
    /// `[server] detailed_errors`: [`CallFailure::reason`] names the plugin and its error.
    pub detailed: bool,
}

impl CallFailure {
    /// Whether the failure is the plugin's absence (not loaded, quarantined, the server
    /// shutting down): temporary, and not the client's doing.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.error, CallError::Quarantined(_) | CallError::NotLoaded | CallError::Stopped)
    }

    /// What the client is told (a close reason, a refusal body): what it needs to know, no
    /// internals. The details were logged where the failure was recorded.
    pub fn reason(&self) -> String {
        match (self.detailed, self.is_unavailable()) {
            (true, _) => format!("plugin {} {}", self.plugin, self.error),
            (false, true) => "unavailable".to_owned(),
            (false, false) => "internal error".to_owned(),
        }
    }
}

pub struct PluginSlot {
    env: Arc<PluginEnv>,
    current: ArcSwapOption<Loaded>,
    breaker: Breaker,
    calls: AtomicU64,
    errors: AtomicU64,
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot").field("name", &self.env.name).finish()
    }
}

impl PluginSlot {
    pub fn name(&self) -> &str {
        &self.env.name
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    pub async fn on_connect(&self, conn: &Arc<ConnShared>, req: Request) -> Result<Connect, CallFailure> {
        let loaded = self.admit(Export::OnConnect)?;
        let r = loaded.on_connect(conn, req).await;
        self.outcome(Export::OnConnect, conn, r)
    }

    /// Runs `on-message`; the message comes back for the next plugin of the chain.
    pub async fn on_message(&self, conn: &Arc<ConnShared>, msg: Message) -> (Message, Result<Flow, CallFailure>) {
        let loaded = match self.admit(Export::OnMessage) {
            Ok(l) => l,
            Err(f) => return (msg, Err(f)),
        };
        let (msg, r) = loaded.on_message(conn, msg).await;
        (msg, self.outcome(Export::OnMessage, conn, r))
    }

    pub async fn on_close(&self, conn: &Arc<ConnShared>, code: CloseCode, reason: &str) -> Result<(), CallFailure> {
        let loaded = self.admit(Export::OnClose)?;
        let r = loaded.on_close(conn, code, reason).await;
        self.outcome(Export::OnClose, conn, r)
    }

    /// Runs `on-request`; `Ok(None)` when the plugin does not export it.
    pub async fn on_request(
        &self,
        conn: &Arc<ConnShared>,
        req: HttpRequest,
    ) -> Result<Option<HttpResponse>, CallFailure> {
        let loaded = self.admit(Export::OnRequest)?;
        match loaded.on_request(conn, req).await {
            None => Ok(None),
            Some(r) => self.outcome(Export::OnRequest, conn, r).map(Some),
        }
    }

    /// Runs `on-timer` for a timer that came due, with its connection when it was tied to one
    /// (still registered). `Ok(false)`: the version loaded now does not export `on-timer`.
    pub async fn on_timer(&self, due: &Due, conn: Option<&Arc<ConnShared>>) -> Result<bool, CallFailure> {
        let loaded = self.admit(Export::OnTimer)?;
        match loaded.on_timer(due.key.clone(), conn).await {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(error)) => {
                self.record_failure(Export::OnTimer, About::Timer(due), &error);
                Err(self.failure(error))
            }
        }
    }

    /// The plugin's settings.
    pub fn settings(&self) -> &crate::config::PluginSettings {
        &self.env.settings
    }

    /// Whether the loaded version exports `on-request` (false when none is loaded).
    pub fn serves_http(&self) -> bool {
        self.current.load().as_ref().is_some_and(|l| l.serves_http())
    }

    fn failure(&self, error: CallError) -> CallFailure {
        CallFailure {
            plugin: self.env.name.clone(),
            bypass: self.env.settings.on_error == OnError::Bypass,
            detailed: self.env.detailed_errors,
            error,
        }
    }

    /// The version to call, unless the plugin is absent or quarantined.
    fn admit(&self, export: Export) -> Result<Arc<Loaded>, CallFailure> {
        let Some(loaded) = self.current.load_full() else {
            return Err(self.failure(CallError::NotLoaded));
        };
        // on-close still runs in quarantine: it is owed exactly once per accepted connection
        // (a plugin's bookkeeping depends on it), and it is at most one call per connection.
        if self.breaker.is_open() && export != Export::OnClose {
            return Err(self.failure(CallError::Quarantined(self.breaker.quarantined_for_ms())));
        }
        self.calls.fetch_add(1, Relaxed);
        Ok(loaded)
    }

    fn outcome<R>(&self, export: Export, conn: &ConnShared, r: Result<R, CallError>) -> Result<R, CallFailure> {
        r.map_err(|error| {
            self.record_failure(export, About::Conn(conn), &error);
            self.failure(error)
        })
    }

    fn record_failure(&self, export: Export, about: About<'_>, error: &CallError) {
        if *error == CallError::Stopped {
            return; // shutdown's doing, not the plugin's
        }
        self.errors.fetch_add(1, Relaxed);
        let m = &self.env.hub.metrics;
        let plugin = self.env.name.to_string();
        m.plugin_failures.get_or_create(&PluginKindLabel { plugin: plugin.clone(), kind: error.kind() }).inc();
        if matches!(error, CallError::Deadline(_)) {
            m.plugin_deadline_hits.get_or_create(&PluginLabel { plugin: plugin.clone() }).inc();
        }
        match about {
            About::Conn(conn) => tracing::warn!(
                plugin = %self.env.name, export = export.as_str(), conn = conn.id, remote = %conn.remote,
                route = %conn.route.path, error = %error, "plugin call failed"
            ),
            About::Timer(due) => tracing::warn!(
                plugin = %self.env.name, export = export.as_str(), timer = %due.key, conn = due.conn,
                error = %error, "plugin call failed"
            ),
        }
        if self.breaker.failure(&self.env.settings, about.breaker_id()) {
            m.plugin_quarantines.get_or_create(&PluginLabel { plugin }).inc();
            tracing::error!(
                plugin = %self.env.name,
                failures = self.env.settings.max_failures,
                window_ms = self.env.settings.failure_window.as_millis() as u64,
                quarantine_ms = self.env.settings.quarantine.as_millis() as u64,
                policy = ?self.env.settings.on_error,
                "plugin quarantined: it keeps failing"
            );
        }
    }
}

/// What a failed call was about, for its log line and the failure breaker.
#[derive(Clone, Copy)]
enum About<'a> {
    Conn(&'a ConnShared),
    /// A timer's fire (the host calls on its own).
    Timer(&'a Due),
}

impl About<'_> {
    /// Who the breaker counts the failure against (once per window each): the connection, a
    /// timer's connection, or for a timer tied to none, that fire (ids no connection has: the
    /// plugin's own timers failing again and again are its own doing, and count each time).
    fn breaker_id(self) -> u64 {
        match self {
            About::Conn(c) => c.id,
            About::Timer(Due { conn: Some(id), .. }) => *id,
            About::Timer(due) => (1 << 63) | due.seq,
        }
    }
}

/// What happened to a file in the plugin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    Loaded { name: String, hash: String, replaced: bool },
    Unchanged { name: String },
    Failed { name: String, error: String },
    Unloaded { name: String },
    Ignored { path: PathBuf },
}

/// A row of the plugin listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginListing {
    pub name: String,
    pub loaded: bool,
    pub hash: Option<String>,
    pub size: Option<usize>,
    pub contract: Option<String>,
    pub loaded_at_unix_ms: Option<u64>,
    pub routes: Vec<String>,
    pub calls: u64,
    pub errors: u64,
    pub quarantined_ms: u64,
    pub idle_instances: usize,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    hub: Arc<Hub>,
    settings: Arc<Settings>,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// What each plugin file looked like when last read, so that it is read, compiled and
    /// reported only when its content changed (by name; one entry per file in the directory).
    seen: Mutex<HashMap<String, Seen>>,
    dir: PathBuf,
    /// Every plugin's webhooks hear shutdown through this.
    webhooks: WebhookShutdown,
    /// The server's runtime, where webhook deliveries run.
    handle: Option<tokio::runtime::Handle>,
}

/// A plugin file as last read: its stamp, and the hash of its content if it could be read.
struct Seen {
    stamp: Stamp,
    hash: Option<String>,
}

/// What the file system says about a file without reading it. Any write changes it (size,
/// modification or change time; a rename over it changes the inode); reading does not (the
/// access time is not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, hub: Arc<Hub>, settings: Arc<Settings>) -> Registry {
        let dir = settings.plugin_dir.clone();
        Registry {
            runtime,
            hub,
            settings,
            slots: RwLock::new(BTreeMap::new()),
            seen: Mutex::default(),
            dir,
            webhooks: WebhookShutdown::default(),
            handle: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Shutdown has begun: every plugin's queued webhooks go now, without their delay.
    pub fn flush_webhooks(&self) {
        self.webhooks.flush.cancel();
    }

    /// Resolves when no webhook is queued or being delivered (after `flush_webhooks`, within
    /// the grace period; after `stop_calls`, what is left is dropped, counted, at once).
    pub async fn webhooks_idle(&self) {
        self.webhooks.tasks.wait_idle().await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// From now on every plugin call, running or still owed (`on-close`), runs at most a stop
    /// allowance of its own CPU time more (shutdown's grace period is over): calls owed are made,
    /// each gets to do its bookkeeping, and none is waited for long.
    pub fn stop_calls(&self) {
        self.runtime.stopping.store(true, Relaxed);
        self.runtime.lanes.stop();
    }

    /// The slot for `name`, if it was ever created (by a route, or a file in the directory).
    pub fn existing(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.read().get(name).cloned()
    }

    /// The slot for `name`, created empty if new.
    pub fn slot(&self, name: &str) -> Arc<PluginSlot> {
        if let Some(s) = self.slots.read().get(name) {
            return s.clone();
        }
        let mut slots = self.slots.write();
        slots
            .entry(name.to_owned())
            .or_insert_with(|| {
                let settings = self.settings.plugin(name).clone();
                let name: Arc<str> = Arc::from(name);
                // Counted among the plugins sharing the host's memory from its first load on.
                self.hub.memory.register(&name, settings.max_host_memory);
                let m = &self.hub.metrics;
                let histogram = |export: Export| {
                    m.plugin_calls
                        .get_or_create(&PluginExportLabel { plugin: name.to_string(), export: export.as_str() })
                        .clone()
                };
                let stop = self.runtime.lanes.stop_token();
                let outbound = Arc::new(Outbound::new(name.clone(), settings.http.clone(), m, stop.clone()));
                let webhooks = Arc::new(Webhooks::new(
                    outbound.clone(),
                    settings.webhooks.clone(),
                    m,
                    self.webhooks.clone(),
                    stop,
                    self.handle.clone(),
                ));
                Arc::new(PluginSlot {
                    env: Arc::new(PluginEnv {
                        scope: settings.act_as.as_deref().map_or_else(|| name.clone(), Arc::from),
                        name: name.clone(),
                        config: settings.config.clone(),
                        settings,
                        host_limits: self.settings.host,
                        detailed_errors: self.settings.server.detailed_errors,
                        hub: self.hub.clone(),
                        call_seconds: [
                            histogram(Export::OnConnect),
                            histogram(Export::OnMessage),
                            histogram(Export::OnClose),
                            histogram(Export::OnRequest),
                            histogram(Export::OnTimer),
                        ],
                        stopping: self.runtime.stopping.clone(),
                        ticking: self.runtime.ticker.ticking,
                        outbound,
                        webhooks,
                    }),
                    current: ArcSwapOption::empty(),
                    breaker: Breaker::default(),
                    calls: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Loads every `*.wasm` in the plugin directory (blocking; compiles).
    pub fn load_all(&self) -> Result<Vec<LoadOutcome>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create plugin directory {}", self.dir.display()))?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read plugin directory {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| plugin_name(p).is_some())
            .collect();
        paths.sort();
        Ok(paths.iter().map(|p| self.sync_path(p)).collect())
    }

    /// Brings the registry in line with `path`: loads it if it exists and its content changed
    /// since it was last read, unloads it if it is gone. A file whose stamp did not change is
    /// not even read (the watcher also hears about reads, ours included), and content already
    /// tried (loaded or refused) is not compiled or reported again: a broken file is reported
    /// once per change. Blocking (reads and compiles): call it off the async runtime.
    pub fn sync_path(&self, path: &Path) -> LoadOutcome {
        let Some(name) = plugin_name(path) else {
            return LoadOutcome::Ignored { path: path.to_owned() };
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            _ => {
                self.seen.lock().remove(&name);
                return self.unload(&name);
            }
        };
        let stamp = Stamp::of(&meta);
        if self.seen.lock().get(&name).is_some_and(|s| s.stamp == stamp) {
            return LoadOutcome::Unchanged { name };
        }
        let started = Instant::now();
        let outcome = match self.load(&name, path, stamp) {
            Ok(outcome) => outcome,
            Err(e) => LoadOutcome::Failed { name: name.clone(), error: format!("{e:#}") },
        };
        let m = &self.hub.metrics;
        match &outcome {
            LoadOutcome::Loaded { name, hash, replaced } => {
                m.plugin_reloads.get_or_create(&ReloadLabel { plugin: name.clone(), result: "ok" }).inc();
                tracing::info!(
                    plugin = %name, hash = %hash, replaced, ms = started.elapsed().as_millis() as u64,
                    "plugin {}", if *replaced { "reloaded" } else { "loaded" }
                );
            }
            LoadOutcome::Failed { name, error } => {
                m.plugin_reloads.get_or_create(&ReloadLabel { plugin: name.clone(), result: "failed" }).inc();
                let serving = self.slots.read().get(name).is_some_and(|s| s.is_loaded());
                tracing::error!(
                    plugin = %name, path = %path.display(), error = %error,
                    "plugin failed to load; {}", if serving { "the previous version keeps serving" } else { "it is not available" }
                );
            }
            _ => {}
        }
        outcome
    }

    fn load(&self, name: &str, path: &Path, stamp: Stamp) -> Result<LoadOutcome> {
        // Remembered before reading: a file that cannot be read or is too big is retried when
        // it changes, not on every event.
        let tried = self.seen.lock().insert(name.to_owned(), Seen { stamp, hash: None }).and_then(|s| s.hash);
        let max = self.settings.engine.max_plugin_size;
        if stamp.len > max as u64 {
            bail!("the file is {} bytes, more than [engine] max_plugin_size ({max} bytes); it was not read", stamp.len);
        }
        let bytes = read_at_most(path, max).with_context(|| format!("cannot read {}", path.display()))?;
        self.hub.metrics.plugin_file_bytes_read.inc_by(bytes.len() as u64);
        let hash = hex16(&Sha256::digest(&bytes));
        if let Some(seen) = self.seen.lock().get_mut(name) {
            seen.hash = Some(hash.clone());
        }
        let slot = self.slot(name);
        let previous = slot.current();
        if tried.as_deref() == Some(hash.as_str()) || previous.as_ref().is_some_and(|p| p.info.hash == hash) {
            return Ok(LoadOutcome::Unchanged { name: name.to_owned() });
        }
        self.hub.metrics.plugin_compiles.get_or_create(&PluginLabel { plugin: name.to_owned() }).inc();
        let (pre, summary) = prepare(&self.runtime, &bytes)?;
        let contract = summary.contract.unwrap_or_default();
        let info = VersionInfo { hash: hash.clone(), size: bytes.len(), loaded_at: SystemTime::now(), contract };
        let ticks = Ticks {
            base: self.runtime.ticks(slot.env.settings.deadline),
            per_mib: self.runtime.ticks(DEADLINE_PER_MIB),
            slice: self.runtime.ticks(SLICE),
        };
        // Reserved before the first instance is made, so a plugin arriving on a busy engine
        // still gets one.
        let capacity = &self.runtime.capacity;
        capacity.set_loaded(&slot.env.name, true);
        let loaded = Loaded::new(slot.env.clone(), pre, ticks, self.runtime.lanes.clone(), capacity.clone(), info)
            .inspect_err(|_| capacity.set_loaded(&slot.env.name, slot.is_loaded()))?;
        slot.current.store(Some(Arc::new(loaded)));
        slot.breaker.reset();
        Ok(LoadOutcome::Loaded { name: name.to_owned(), hash, replaced: previous.is_some() })
    }

    fn unload(&self, name: &str) -> LoadOutcome {
        let slot = self.slots.read().get(name).cloned();
        if let Some(slot) = slot
            && slot.current.swap(None).is_some()
        {
            self.runtime.capacity.set_loaded(&slot.env.name, false);
            self.hub
                .metrics
                .plugin_reloads
                .get_or_create(&ReloadLabel { plugin: name.to_owned(), result: "unloaded" })
                .inc();
            tracing::warn!(plugin = %name, "plugin file removed: plugin unloaded; its routes answer 503");
            return LoadOutcome::Unloaded { name: name.to_owned() };
        }
        LoadOutcome::Ignored { path: self.dir.join(format!("{name}.wasm")) }
    }

    pub fn list(&self, routes: &[(String, Vec<String>)]) -> Vec<PluginListing> {
        self.slots
            .read()
            .values()
            .map(|s| {
                let cur = s.current();
                PluginListing {
                    name: s.name().to_owned(),
                    loaded: cur.is_some(),
                    hash: cur.as_ref().map(|c| c.info.hash.clone()),
                    size: cur.as_ref().map(|c| c.info.size),
                    contract: cur.as_ref().map(|c| c.info.contract.clone()),
                    loaded_at_unix_ms: cur.as_ref().and_then(|c| {
                        c.info.loaded_at.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
                    }),
                    routes: routes
                        .iter()
                        .filter(|(_, chain)| chain.iter().any(|p| p == s.name()))
                        .map(|(path, _)| path.clone())
                        .collect(),
                    calls: s.calls.load(Relaxed),
                    errors: s.errors.load(Relaxed),
                    quarantined_ms: if s.breaker.is_open() { s.breaker.quarantined_for_ms() } else { 0 },
                    idle_instances: cur.as_ref().map_or(0, |c| c.idle_instances()),
                }
            })
            .collect()
    }
}

/// Validates a plugin file exactly as loading does, without loading it (`wasmsock check`).
pub fn check_bytes(runtime: &Runtime, bytes: &[u8]) -> Result<contract::ComponentSummary> {
    prepare(runtime, bytes).map(|(_, summary)| summary)
}

/// Compiles `bytes`, checks the contract version and links it (imports satisfiable, handler
/// export with the right types) for the contract version it was built for.
fn prepare(runtime: &Runtime, bytes: &[u8]) -> Result<(Pre, contract::ComponentSummary)> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("not a WebAssembly file (bad magic number)");
    }
    let component = runtime.compile(bytes).map_err(|e| anyhow::anyhow!("not a valid wasm component: {e:#}"))?;
    let summary = contract::inspect(&runtime.engine, &component);
    summary.check()?;
    let linker = runtime.linker_for(&component)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
    let mismatch = |e: wasmtime::Error| anyhow::anyhow!("exports do not match the contract: {e:#}");
    let pre = match summary.contract.as_deref() {
        Some(v) if contract::compatible(v, "0.1.0") => Pre::V0_1(v0_1::PluginPre::new(instance_pre).map_err(mismatch)?),
        _ => {
            let indices = v0_2::PluginIndices::new(&instance_pre).map_err(mismatch)?;
            // Optional: a plugin without it loads, and its HTTP routes answer 503.
            let http = v0_2_http::HttpIndices::new(&instance_pre).ok();
            // Optional as well: a plugin without it loads, and may not set timers.
            let timer = v0_2_timer::TimerIndices::new(&instance_pre).ok();
            Pre::V0_2 { pre: v0_2::PluginPre::new(instance_pre).map_err(mismatch)?, indices, http, timer }
        }
    };
    Ok((pre, summary))
}

/// The plugin name of a `NAME.wasm` path (hidden and temporary files are not plugins).
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.starts_with('.') || crate::config::validate_plugin_name(stem).is_err() {
        return None;
    }
    Some(stem.to_owned())
}

/// Reads a file of at most `max` bytes; a file that grew past it since its size was checked is
/// refused without reading more than that.
fn read_at_most(path: &Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        bail!("the file grew past [engine] max_plugin_size ({max} bytes) while being read");
    }
    Ok(bytes)
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
