//! Configuration: the TOML file, command-line overrides, and the validated [`Settings`] the
//! server runs on. Everything is checked before anything starts: a bad config exits with a
//! message naming the problem, never a half-started server.

pub(crate) mod defaults;
mod file;
pub mod hosts;
#[cfg(test)]
mod readme;
mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use file::{
    BrokerFile, Builtin, ClientAuth, CompressionFile, ConfigValue, FileConfig, HttpRouteFile, LimitsFile, LogFormat,
    OnError, OriginsFile, PluginFile, SlowConsumer,
};

use file::Overlay;
use units::{ByteSize, Dur};

use crate::origin::OriginPolicy;
use crate::route_path::{Pattern, RoutePath};
use crate::ws::deflate::Config as Compression;

/// The configuration used when no `--config` is given: the example routes over a development
/// certificate on localhost.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Overrides from the command line; each set field wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub plugin_dir: Option<PathBuf>,
    /// `PATH=PLUGIN[,PLUGIN...]`; replaces a file route with the same path.
    pub routes: Vec<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub plain: bool,
    pub log_format: Option<LogFormat>,
    pub admin: Option<String>,
}

#[derive(Debug, Clone)]
pub enum TlsMode {
    Plain,
    /// A self-signed certificate for localhost, kept in `state_dir`.
    Dev,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_pending_handshakes: usize,
    pub max_pending_handshakes_per_ip: usize,
    /// Bytes held for peers (partial messages, outgoing queues) over all connections; beyond,
    /// the biggest holders are shed (1013).
    pub max_buffered_bytes: usize,
    pub tls_handshake_timeout: Duration,
    pub ws_handshake_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub close_timeout: Duration,
    pub nofile_limit: u64,
    /// Connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
    /// Close reasons and refusal bodies name the failing plugin and its error, instead of a
    /// generic `internal error` / `unavailable` (development only: internals reach clients).
    pub detailed_errors: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: defaults::server::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::server::MAX_CONNECTIONS_PER_IP,
            max_pending_handshakes: defaults::server::MAX_PENDING_HANDSHAKES,
            max_pending_handshakes_per_ip: defaults::server::MAX_PENDING_HANDSHAKES_PER_IP,
            max_buffered_bytes: defaults::server::MAX_BUFFERED_BYTES,
            tls_handshake_timeout: defaults::server::TLS_HANDSHAKE_TIMEOUT,
            ws_handshake_timeout: defaults::server::WS_HANDSHAKE_TIMEOUT,
            max_header_bytes: defaults::server::MAX_HEADER_BYTES,
            shutdown_grace: defaults::server::SHUTDOWN_GRACE,
            close_timeout: defaults::server::CLOSE_TIMEOUT,
            nofile_limit: defaults::server::NOFILE_LIMIT,
            proxy_protocol: defaults::server::PROXY_PROTOCOL,
            detailed_errors: defaults::server::DETAILED_ERRORS,
        }
    }
}

/// Per-connection limits of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub write_timeout: Duration,
    /// `None`: connections may stay idle forever (the heartbeat still finds dead peers).
    pub idle_timeout: Option<Duration>,
    pub outbox_messages: usize,
    pub outbox_bytes: usize,
    pub slow_consumer: SlowConsumer,
    /// `None` disables pings.
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    /// From a message's first byte to its last (fragments, and frames trickled in).
    pub message_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: defaults::limits::MAX_MESSAGE_SIZE,
            max_frame_size: defaults::limits::MAX_MESSAGE_SIZE,
            write_timeout: defaults::limits::WRITE_TIMEOUT,
            idle_timeout: defaults::limits::IDLE_TIMEOUT,
            outbox_messages: defaults::limits::OUTBOX_MESSAGES,
            outbox_bytes: defaults::limits::OUTBOX_BYTES,
            slow_consumer: defaults::limits::SLOW_CONSUMER,
            ping_interval: Some(defaults::limits::PING_INTERVAL),
            pong_timeout: defaults::limits::PONG_TIMEOUT,
            message_timeout: defaults::limits::MESSAGE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub path: String,
    pub plugins: Vec<String>,
    pub builtin: Option<Builtin>,
    pub origins: OriginPolicy,
    pub limits: Limits,
    /// permessage-deflate.
    pub compression: Compression,
}

/// A plain HTTP route (`[[http_routes]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRouteSettings {
    /// Serves this path and every path below it (`/api` serves `/api/publish`).
    pub path: String,
    pub plugin: String,
    pub max_body_size: usize,
    pub max_concurrent: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

impl HttpRouteSettings {
    pub fn new(path: &str, plugin: &str) -> HttpRouteSettings {
        HttpRouteSettings {
            path: path.to_owned(),
            plugin: plugin.to_owned(),
            max_body_size: defaults::http::MAX_BODY_SIZE,
            max_concurrent: defaults::http::MAX_CONCURRENT,
            request_timeout: defaults::http::REQUEST_TIMEOUT,
            idle_timeout: defaults::http::IDLE_TIMEOUT,
        }
    }

    /// Whether this route serves `path`: the prefix itself or a path below it.
    pub fn serves(&self, path: &str) -> bool {
        let prefix = self.path.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub deadline: Duration,
    /// Calls slower than this are logged; zero: never.
    pub slow_call: Duration,
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub on_error: OnError,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub quarantine: Duration,
    pub max_sends_per_call: u32,
    pub max_send_bytes_per_call: usize,
    /// The plugin's share of `[host] max_memory`; `None`: the total divided by the plugins.
    pub max_host_memory: Option<usize>,
    pub max_log_bytes: usize,
    pub max_idle_instances: usize,
    /// Timers the plugin may hold armed at once.
    pub max_timers: usize,
    /// The plugin whose rooms and users this one reaches (itself when `None`).
    pub act_as: Option<String>,
    pub config: HashMap<String, String>,
    /// What the plugin may call over HTTP (see `plugin::outbound`).
    pub http: HttpSettings,
    /// How the host batches, sends and retries the plugin's webhooks (see `plugin::webhooks`).
    pub webhooks: WebhookSettings,
}

/// A plugin's outbound HTTP policy: deny unless `allowed_hosts` names the backend.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub allowed_hosts: Vec<hosts::HostPattern>,
    /// Whole request: connecting, sending, the answer's head and body.
    pub timeout: Duration,
    /// Largest response body; a longer one is cut and the plugin gets an error.
    pub max_response: usize,
    /// Requests of this plugin in flight at once; more fail at once (`connection-limit-reached`).
    pub max_concurrent: usize,
    /// PEM file of the CAs trusted for `https://`; `None`: the system's trust store.
    pub ca: Option<PathBuf>,
    /// Names in `allowed_hosts` may resolve to loopback, private, link-local, unspecified or
    /// multicast addresses (off: such a request is refused; an entry that is itself an IP
    /// address is always taken at its word).
    pub allow_private: bool,
}

/// A plugin's webhooks: batched per (URL, signing), sent under its HTTP policy, retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// How long the first event of a batch waits for others.
    pub flush_delay: Duration,
    /// A batch is sent at once when it holds this many events ...
    pub max_batch_events: usize,
    /// ... or this many bytes of events (also the largest single event).
    pub max_batch_bytes: usize,
    /// Events (and their bytes) queued or being delivered, per plugin; more are refused.
    pub max_queued_events: usize,
    pub max_queued_bytes: usize,
    /// Tries per batch (the first included) on 5xx, connection failures and timeouts.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles with each further one, up to `MAX_BACKOFF`.
    pub retry_backoff: Duration,
    /// Batches of the plugin being delivered at once (each (URL, signing) sends one at a time).
    pub max_concurrent: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        use defaults::plugin as d;
        WebhookSettings {
            flush_delay: d::WEBHOOK_FLUSH_DELAY,
            max_batch_events: d::WEBHOOK_MAX_BATCH_EVENTS,
            max_batch_bytes: d::WEBHOOK_MAX_BATCH_BYTES,
            max_queued_events: d::WEBHOOK_MAX_QUEUED_EVENTS,
            max_queued_bytes: d::WEBHOOK_MAX_QUEUED_BYTES,
            max_attempts: d::WEBHOOK_MAX_ATTEMPTS,
            retry_backoff: d::WEBHOOK_RETRY_BACKOFF,
            max_concurrent: d::WEBHOOK_MAX_CONCURRENT,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            allowed_hosts: defaults::plugin::HTTP_ALLOWED_HOSTS
                .iter()
                .filter_map(|h| hosts::HostPattern::parse(h).ok())
                .collect(),
            timeout: defaults::plugin::HTTP_TIMEOUT,
            max_response: defaults::plugin::HTTP_MAX_RESPONSE,
            max_concurrent: defaults::plugin::HTTP_MAX_CONCURRENT,
            ca: defaults::plugin::HTTP_CA.map(PathBuf::from),
            allow_private: defaults::plugin::HTTP_ALLOW_PRIVATE,
        }
    }
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            deadline: defaults::plugin::DEADLINE,
            slow_call: defaults::plugin::slow_call(defaults::plugin::DEADLINE),
            max_memory: defaults::plugin::MAX_MEMORY,
            max_table_elements: defaults::plugin::MAX_TABLE_ELEMENTS,
            on_error: defaults::plugin::ON_ERROR,
            max_failures: defaults::plugin::MAX_FAILURES,
            failure_window: defaults::plugin::FAILURE_WINDOW,
            quarantine: defaults::plugin::QUARANTINE,
            max_sends_per_call: defaults::plugin::MAX_SENDS_PER_CALL,
            max_send_bytes_per_call: defaults::plugin::MAX_SEND_BYTES_PER_CALL,
            max_host_memory: defaults::plugin::MAX_HOST_MEMORY,
            max_log_bytes: defaults::plugin::MAX_LOG_BYTES,
            max_idle_instances: defaults::plugin::MAX_IDLE_INSTANCES,
            max_timers: defaults::plugin::MAX_TIMERS,
            act_as: None,
            config: HashMap::new(),
            http: HttpSettings::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub max_attachment: usize,
    pub max_rooms_per_connection: usize,
    pub max_room_name: usize,
    pub kv_max_keys: usize,
    pub kv_max_key: usize,
    pub kv_max_value: usize,
    /// Bytes the host keeps for all plugins together.
    pub max_memory: usize,
    /// Bytes of room history kept for all rooms together.
    pub max_history_memory: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_attachment: defaults::host::MAX_ATTACHMENT,
            max_rooms_per_connection: defaults::host::MAX_ROOMS_PER_CONNECTION,
            max_room_name: defaults::host::MAX_ROOM_NAME,
            kv_max_keys: defaults::host::KV_MAX_KEYS,
            kv_max_key: defaults::host::KV_MAX_KEY,
            kv_max_value: defaults::host::KV_MAX_VALUE,
            max_memory: defaults::host::MAX_HOST_MEMORY,
            max_history_memory: defaults::history_memory::MAX_HISTORY_MEMORY,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub max_instances: u32,
    pub max_memory: usize,
    pub epoch_tick: Duration,
    /// Plugin files larger than this are refused from their size, without being read.
    pub max_plugin_size: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: defaults::engine::MAX_INSTANCES,
            max_memory: defaults::engine::MAX_MEMORY,
            epoch_tick: defaults::engine::EPOCH_TICK,
            max_plugin_size: defaults::engine::MAX_PLUGIN_SIZE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The Redis URL; with Sentinel, a description of the sentinels for logs.
    pub url: String,
    /// Redis Sentinel: where the master is asked for.
    pub sentinel: Option<SentinelSettings>,
    pub password: Option<String>,
    pub prefix: String,
    pub shared_kv: bool,
    pub max_pending: usize,
    pub max_pending_bytes: usize,
    /// A node without a heartbeat for this long drops out of the cluster's user counts.
    pub node_ttl: Duration,
    /// CA bundle to trust for `rediss://` instead of the system's.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for Redis.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// `host:port` of each sentinel.
    pub addrs: Vec<String>,
    pub master_name: String,
    pub password: Option<String>,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub plugin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_format: LogFormat,
    pub tls: TlsSettings,
    pub server: ServerLimits,
    pub routes: Vec<RouteSettings>,
    pub http_routes: Vec<HttpRouteSettings>,
    /// Settings of plugins named in `[plugins.NAME]`.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Settings of every other plugin.
    pub plugin_defaults: PluginSettings,
    pub host: HostLimits,
    pub engine: EngineSettings,
    pub admin: Option<String>,
    pub static_dir: Option<PathBuf>,
    pub broker: Option<BrokerSettings>,
    /// Rooms whose history is kept (`[[history]]`), first match wins.
    pub history: Vec<crate::hub::HistoryRule>,
    /// Things worth a warning at start-up (logged once logging is set up).
    pub warnings: Vec<String>,
}

impl Settings {
    /// Reads `path` (or the built-in default) and applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).with_context(|| format!("cannot read config file {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (DEFAULT_CONFIG.to_owned(), "built-in default config".to_owned()),
        };
        let file: FileConfig = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let base = path.and_then(Path::parent).unwrap_or(Path::new(""));
        let mut file = file;
        let mut warnings = Vec::new();
        // The built-in configuration is used from anywhere; its example page only exists in a
        // checkout of the repository.
        // `--route` without a file asks for those routes alone: the built-in ones (and the
        // chat page, which needs `/chat`) would make readiness wait for plugins nobody wanted.
        if path.is_none() && !overrides.routes.is_empty() {
            file.routes.clear();
            file.static_files = None;
        }
        if path.is_none() && file.static_files.as_ref().is_some_and(|s| !s.dir.is_dir()) {
            warnings.push(
                "examples/chat not found here: the chat page is not served (run from the repository root)".into(),
            );
            file.static_files = None;
        }
        if path.is_none() && overrides.routes.is_empty() {
            builtin_api(&mut file, &mut warnings, std::env::var(API_KEY_VAR).ok());
        }
        let mut settings =
            Self::resolve(file, base, overrides).with_context(|| format!("invalid configuration ({origin})"))?;
        settings.warnings = warnings;
        Ok(settings)
    }

    /// Parses TOML text (for tests and embedding).
    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Settings> {
        let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Self::resolve(file, Path::new(""), overrides)
    }

    fn resolve(f: FileConfig, base: &Path, o: &Overrides) -> Result<Settings> {
        let rel = |p: PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() { base.join(p) } else { p }
        };

        let listen = o.listen.clone().or(f.listen).unwrap_or_else(|| defaults::LISTEN.into());
        let plugin_dir = o.plugin_dir.clone().or(f.plugin_dir.map(rel)).unwrap_or_else(|| defaults::PLUGIN_DIR.into());
        let state_dir = f.state_dir.map(rel).unwrap_or_else(|| defaults::STATE_DIR.into());

        let tls = resolve_tls(&f.tls, o, &rel)?;
        let server = resolve_server(&f.server)?;
        let limits = resolve_limits(&f.limits)?;
        let origins = resolve_origins(&f.origins).context("[origins]")?;
        let compression = resolve_compression(&f.compression).context("[compression]")?;

        let mut routes: Vec<RouteSettings> = Vec::new();
        for r in &f.routes {
            let origins = match &r.origins {
                Some(ro) => {
                    resolve_origins(&ro.over(&f.origins)).with_context(|| format!("route {}: origins", r.path))?
                }
                None => origins.clone(),
            };
            let limits = match &r.limits {
                Some(rl) => resolve_limits(&rl.over(&f.limits)).with_context(|| format!("route {}: limits", r.path))?,
                None => limits.clone(),
            };
            let compression = match &r.compression {
                Some(rc) => resolve_compression(&rc.over(&f.compression))
                    .with_context(|| format!("route {}: compression", r.path))?,
                None => compression,
            };
            routes.push(RouteSettings {
                path: r.path.clone(),
                plugins: r.plugins.clone(),
                builtin: r.builtin,
                origins,
                limits,
                compression,
            });
        }
        for spec in &o.routes {
            let (path, plugins) = parse_route_flag(spec)?;
            // `PATH=@echo`: the built-in echo handler.
            let (plugins, builtin) = match plugins.as_slice() {
                [b] if b == "@echo" => (Vec::new(), Some(Builtin::Echo)),
                _ => (plugins, None),
            };
            let route =
                RouteSettings { path, plugins, builtin, origins: origins.clone(), limits: limits.clone(), compression };
            match routes.iter_mut().find(|r| r.path == route.path) {
                Some(existing) => {
                    existing.plugins = route.plugins;
                    existing.builtin = route.builtin;
                }
                None => routes.push(route),
            }
        }
        validate_routes(&routes)?;
        let http_routes = f.http_routes.iter().map(resolve_http_route).collect::<Result<Vec<_>>>()?;
        validate_http_routes(&http_routes)?;

        let plugin_defaults = resolve_plugin("plugin_defaults", &f.plugin_defaults)?;
        let mut plugins = BTreeMap::new();
        for (name, p) in &f.plugins {
            validate_plugin_name(name).with_context(|| format!("[plugins.{name}]"))?;
            plugins.insert(name.clone(), resolve_plugin(name, &p.over(&f.plugin_defaults))?);
        }

        let host = resolve_host(&f.host);
        let engine = resolve_engine(&f.engine)?;
        for (name, p) in plugins.iter().map(|(n, p)| (n.as_str(), p)).chain([("plugin_defaults", &plugin_defaults)]) {
            if p.max_memory > engine.max_memory {
                bail!("plugin {name}: max_memory {} exceeds [engine] max_memory {}", p.max_memory, engine.max_memory);
            }
        }

        let admin = match o.admin.clone().or(f.admin.listen) {
            Some(a) if a == "off" => None,
            Some(a) => Some(a),
            None => Some(defaults::admin::LISTEN.into()),
        };
        let static_dir = f.static_files.map(|s| rel(s.dir));
        if let Some(dir) = &static_dir
            && !dir.is_dir()
        {
            bail!("[static] dir {} is not a directory", dir.display());
        }
        let broker = f.broker.map(|b| resolve_broker(&b, &rel)).transpose().context("[broker]")?;
        let history = f
            .history
            .iter()
            .map(|h| resolve_history(h).with_context(|| format!("[[history]] rooms = {:?}", h.rooms)))
            .collect::<Result<Vec<_>>>()?;

        Ok(Settings {
            listen,
            plugin_dir,
            state_dir,
            log_format: o.log_format.or(f.log_format).unwrap_or(defaults::LOG_FORMAT),
            tls,
            server,
            routes,
            http_routes,
            plugins,
            plugin_defaults,
            host,
            engine,
            admin,
            static_dir,
            broker,
            history,
            warnings: Vec::new(),
        })
    }

    /// Settings for plugin `name`.
    pub fn plugin(&self, name: &str) -> &PluginSettings {
        self.plugins.get(name).unwrap_or(&self.plugin_defaults)
    }
}

// Each resolve function below starts from the defaults and overlays what the file sets.

fn size(s: ByteSize) -> usize {
    s.0 as usize
}

fn dur(d: Dur) -> Duration {
    d.0
}

/// `"0s"` turns it off.
fn off_if_zero(d: Dur) -> Option<Duration> {
    Some(d.0).filter(|d| !d.is_zero())
}

fn resolve_tls(t: &file::TlsFile, o: &Overrides, rel: &dyn Fn(PathBuf) -> PathBuf) -> Result<TlsSettings> {
    let plain = o.plain || t.plain.unwrap_or(defaults::tls::PLAIN);
    let cert = o.cert.clone().or(t.cert.clone().map(rel));
    let key = o.key.clone().or(t.key.clone().map(rel));
    let mode = match (plain, cert, key) {
        (true, _, _) => TlsMode::Plain,
        (false, Some(cert), Some(key)) => {
            for (what, p) in [("certificate", &cert), ("private key", &key)] {
                std::fs::metadata(p).with_context(|| format!("TLS {what} file {} is not readable", p.display()))?;
            }
            TlsMode::Files { cert, key }
        }
        (false, None, None) => TlsMode::Dev,
        (false, Some(_), None) => {
            bail!("[tls] cert is set but key is not (give both, or neither for a dev certificate)")
        }
        (false, None, Some(_)) => {
            bail!("[tls] key is set but cert is not (give both, or neither for a dev certificate)")
        }
    };
    let client_auth =
        t.client_auth.unwrap_or(if t.client_ca.is_some() { ClientAuth::Required } else { ClientAuth::Off });
    let client_ca = t.client_ca.clone().map(rel);
    match (&client_ca, client_auth) {
        (None, ClientAuth::Optional | ClientAuth::Required) => {
            bail!("[tls] client_auth = {client_auth:?} needs client_ca (a PEM bundle of client CAs)")
        }
        (Some(ca), _) => {
            std::fs::metadata(ca).with_context(|| format!("[tls] client_ca {} is not readable", ca.display()))?;
        }
        _ => {}
    }
    if matches!(mode, TlsMode::Plain) && client_auth != ClientAuth::Off {
        bail!("[tls] client_auth needs TLS, but plain (ws://) serving is on");
    }
    Ok(TlsSettings { mode, client_ca, client_auth })
}

fn resolve_server(s: &file::ServerFile) -> Result<ServerLimits> {
    let d = ServerLimits::default();
    let limits = ServerLimits {
        max_connections: s.max_connections.unwrap_or(d.max_connections),
        max_connections_per_ip: s.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
        max_pending_handshakes: s.max_pending_handshakes.unwrap_or(d.max_pending_handshakes),
        max_pending_handshakes_per_ip: s.max_pending_handshakes_per_ip.unwrap_or(d.max_pending_handshakes_per_ip),
        max_buffered_bytes: s.max_buffered_bytes.map_or(d.max_buffered_bytes, size),
        tls_handshake_timeout: s.tls_handshake_timeout.map_or(d.tls_handshake_timeout, dur),
        ws_handshake_timeout: s.ws_handshake_timeout.map_or(d.ws_handshake_timeout, dur),
        max_header_bytes: s.max_header_bytes.map_or(d.max_header_bytes, size),
        shutdown_grace: s.shutdown_grace.map_or(d.shutdown_grace, dur),
        close_timeout: s.close_timeout.map_or(d.close_timeout, dur),
        nofile_limit: s.nofile_limit.unwrap_or(d.nofile_limit),
        proxy_protocol: s.proxy_protocol.unwrap_or(d.proxy_protocol),
        detailed_errors: s.detailed_errors.unwrap_or(d.detailed_errors),
    };
    for (name, v) in [
        ("tls_handshake_timeout", limits.tls_handshake_timeout),
        ("ws_handshake_timeout", limits.ws_handshake_timeout),
        ("close_timeout", limits.close_timeout),
    ] {
        if v.is_zero() {
            bail!("[server] {name} must be positive");
        }
    }
    if limits.max_connections == 0
        || limits.max_connections_per_ip == 0
        || limits.max_pending_handshakes == 0
        || limits.max_pending_handshakes_per_ip == 0
    {
        bail!("[server] connection limits must be at least 1");
    }
    if limits.max_header_bytes < 1024 {
        bail!("[server] max_header_bytes must be at least 1KiB");
    }
    if limits.max_buffered_bytes == 0 {
        bail!("[server] max_buffered_bytes must be positive");
    }
    Ok(limits)
}

fn resolve_origins(o: &OriginsFile) -> Result<OriginPolicy> {
    OriginPolicy::new(
        o.allow.as_deref().unwrap_or_default(),
        o.public.as_deref().unwrap_or_default(),
        o.allow_missing.unwrap_or(defaults::origins::ALLOW_MISSING),
    )
}

/// A route's limits are its own table overlaid on `[limits]`.
fn resolve_limits(l: &LimitsFile) -> Result<Limits> {
    let d = Limits::default();
    let max_message_size = l.max_message_size.map_or(d.max_message_size, size);
    let limits = Limits {
        max_message_size,
        max_frame_size: l.max_frame_size.map_or(max_message_size, size),
        write_timeout: l.write_timeout.map_or(d.write_timeout, dur),
        idle_timeout: l.idle_timeout.map_or(d.idle_timeout, off_if_zero),
        outbox_messages: l.outbox_messages.unwrap_or(d.outbox_messages),
        outbox_bytes: l.outbox_bytes.map_or(d.outbox_bytes, size),
        slow_consumer: l.slow_consumer.unwrap_or(d.slow_consumer),
        ping_interval: l.ping_interval.map_or(d.ping_interval, off_if_zero),
        pong_timeout: l.pong_timeout.map_or(d.pong_timeout, dur),
        message_timeout: l.message_timeout.map_or(d.message_timeout, dur),
    };
    if limits.max_message_size == 0 || limits.max_frame_size == 0 {
        bail!("max_message_size and max_frame_size must be positive");
    }
    if limits.max_frame_size > limits.max_message_size {
        bail!("max_frame_size ({}) exceeds max_message_size ({})", limits.max_frame_size, limits.max_message_size);
    }
    if limits.write_timeout.is_zero() {
        bail!("write_timeout must be positive");
    }
    if limits.outbox_messages == 0 || limits.outbox_bytes == 0 {
        bail!("outbox_messages and outbox_bytes must be positive");
    }
    if limits.pong_timeout.is_zero() {
        bail!("pong_timeout must be positive");
    }
    if limits.message_timeout.is_zero() {
        bail!("message_timeout must be positive");
    }
    Ok(limits)
}

/// A route's compression is its own table overlaid on `[compression]`.
fn resolve_compression(c: &CompressionFile) -> Result<Compression> {
    use defaults::compression as d;
    let compression = Compression {
        enabled: c.enabled.unwrap_or(d::ENABLED),
        context_takeover: c.context_takeover.unwrap_or(d::CONTEXT_TAKEOVER),
        window_bits: c.window_bits.unwrap_or(d::WINDOW_BITS),
        min_size: c.min_size.map_or(d::MIN_SIZE, size),
        level: c.level.unwrap_or(d::LEVEL),
    };
    if !(9..=15).contains(&compression.window_bits) {
        bail!("window_bits must be 9 to 15 (zlib has no 8-bit window), not {}", compression.window_bits);
    }
    if !(1..=9).contains(&compression.level) {
        bail!("level must be 1 to 9, not {}", compression.level);
    }
    Ok(compression)
}

/// A plugin's settings are its `[plugins.NAME]` table overlaid on `[plugin_defaults]`.
fn resolve_plugin(name: &str, p: &PluginFile) -> Result<PluginSettings> {
    let d = PluginSettings::default();
    let deadline = p.deadline.map_or(d.deadline, dur);
    if deadline.is_zero() {
        bail!("plugin {name}: deadline must be positive");
    }
    let max_tables = defaults::engine::MAX_TABLE_ELEMENTS;
    if p.max_table_elements.is_some_and(|n| n as usize > max_tables) {
        bail!("plugin {name}: max_table_elements can be at most {max_tables} (the engine's per-instance table size)");
    }
    let mut config = HashMap::new();
    for (key, value) in &p.config {
        let text = match value {
            ConfigValue::Text(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(x) => x.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Env { env, default } => match std::env::var(env) {
                Ok(v) => v,
                Err(_) => match default {
                    Some(d) => d.clone(),
                    None => {
                        bail!("plugin {name}: config key {key:?} reads environment variable {env}, which is not set")
                    }
                },
            },
        };
        config.insert(key.clone(), text);
    }
    Ok(PluginSettings {
        deadline,
        slow_call: p.slow_call.map_or(defaults::plugin::slow_call(deadline), dur),
        max_memory: p.max_memory.map_or(d.max_memory, size),
        max_table_elements: p.max_table_elements.map_or(d.max_table_elements, |n| n as usize),
        on_error: p.on_error.unwrap_or(d.on_error),
        max_failures: p.max_failures.unwrap_or(d.max_failures),
        failure_window: p.failure_window.map_or(d.failure_window, dur),
        quarantine: p.quarantine.map_or(d.quarantine, dur),
        max_sends_per_call: p.max_sends_per_call.unwrap_or(d.max_sends_per_call),
        max_send_bytes_per_call: p.max_send_bytes_per_call.map_or(d.max_send_bytes_per_call, size),
        max_host_memory: p.max_host_memory.map(size).or(d.max_host_memory),
        max_log_bytes: p.max_log_bytes.map_or(d.max_log_bytes, size),
        max_idle_instances: p.max_idle_instances.unwrap_or(d.max_idle_instances),
        max_timers: p.max_timers.unwrap_or(d.max_timers),
        act_as: match &p.act_as {
            Some(other) => {
                validate_plugin_name(other).with_context(|| format!("plugin {name}: act_as"))?;
                Some(other.clone())
            }
            None => None,
        },
        config,
        http: resolve_http(name, p)?,
        webhooks: resolve_webhooks(name, p)?,
    })
}

fn resolve_http(name: &str, p: &PluginFile) -> Result<HttpSettings> {
    let d = HttpSettings::default();
    let allowed_hosts = p
        .http_allowed_hosts
        .iter()
        .flatten()
        .map(|h| hosts::HostPattern::parse(h))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("plugin {name}: http_allowed_hosts"))?;
    let timeout = p.http_timeout.map_or(d.timeout, dur);
    if timeout.is_zero() {
        bail!("plugin {name}: http_timeout must be positive");
    }
    let max_concurrent = p.http_max_concurrent.unwrap_or(d.max_concurrent);
    if max_concurrent == 0 {
        bail!(
            "plugin {name}: http_max_concurrent must be at least 1 (an empty http_allowed_hosts denies every request)"
        );
    }
    Ok(HttpSettings {
        allowed_hosts,
        timeout,
        max_response: p.http_max_response.map_or(d.max_response, size),
        max_concurrent,
        ca: p.http_ca.clone().or(d.ca),
        allow_private: p.http_allow_private.unwrap_or(d.allow_private),
    })
}

fn resolve_webhooks(name: &str, p: &PluginFile) -> Result<WebhookSettings> {
    let d = WebhookSettings::default();
    let s = WebhookSettings {
        flush_delay: p.webhook_flush_delay.map_or(d.flush_delay, dur),
        max_batch_events: p.webhook_max_batch_events.unwrap_or(d.max_batch_events),
        max_batch_bytes: p.webhook_max_batch_bytes.map_or(d.max_batch_bytes, size),
        max_queued_events: p.webhook_max_queued_events.unwrap_or(d.max_queued_events),
        max_queued_bytes: p.webhook_max_queued_bytes.map_or(d.max_queued_bytes, size),
        max_attempts: p.webhook_max_attempts.unwrap_or(d.max_attempts),
        retry_backoff: p.webhook_retry_backoff.map_or(d.retry_backoff, dur),
        max_concurrent: p.webhook_max_concurrent.unwrap_or(d.max_concurrent),
    };
    if s.max_batch_events == 0 || s.max_batch_bytes == 0 || s.max_attempts == 0 || s.max_concurrent == 0 {
        bail!(
            "plugin {name}: webhook_max_batch_events, webhook_max_batch_bytes, webhook_max_attempts and \
             webhook_max_concurrent must be at least 1"
        );
    }
    Ok(s)
}

fn resolve_host(h: &file::HostFile) -> HostLimits {
    let d = HostLimits::default();
    HostLimits {
        max_attachment: h.max_attachment.map_or(d.max_attachment, size),
        max_rooms_per_connection: h.max_rooms_per_connection.unwrap_or(d.max_rooms_per_connection),
        max_room_name: h.max_room_name.unwrap_or(d.max_room_name),
        kv_max_keys: h.kv_max_keys.unwrap_or(d.kv_max_keys),
        kv_max_key: h.kv_max_key.unwrap_or(d.kv_max_key),
        kv_max_value: h.kv_max_value.map_or(d.kv_max_value, size),
        max_memory: h.max_memory.map_or(d.max_memory, size),
        max_history_memory: h.max_history_memory.map_or(d.max_history_memory, size),
    }
}

fn resolve_history(h: &file::HistoryFile) -> Result<crate::hub::HistoryRule> {
    let entries = h.size.unwrap_or(defaults::history::SIZE);
    if entries == 0 || entries > defaults::history::MAX_SIZE {
        bail!("size {entries}: from 1 to {}", defaults::history::MAX_SIZE);
    }
    if h.rooms.is_empty() {
        bail!("rooms: empty (use \"*\" for every room)");
    }
    if let Some(p) = &h.plugin {
        validate_plugin_name(p).context("plugin")?;
    }
    let ttl = h.ttl.map_or(defaults::history::TTL, |d| d.0);
    if ttl.is_zero() {
        bail!("ttl: must be more than 0s");
    }
    Ok(crate::hub::HistoryRule {
        rooms: h.rooms.clone(),
        plugin: h.plugin.clone(),
        size: entries,
        ttl,
        max_bytes: h.max_bytes.map_or(defaults::history::MAX_BYTES, size),
    })
}

fn resolve_engine(e: &file::EngineFile) -> Result<EngineSettings> {
    let d = EngineSettings::default();
    let engine = EngineSettings {
        max_instances: e.max_instances.unwrap_or(d.max_instances),
        max_memory: e.max_memory.map_or(d.max_memory, size),
        epoch_tick: e.epoch_tick.map_or(d.epoch_tick, dur),
        max_plugin_size: e.max_plugin_size.map_or(d.max_plugin_size, size),
    };
    if engine.epoch_tick.is_zero() {
        bail!("[engine] epoch_tick must be positive");
    }
    Ok(engine)
}

fn resolve_broker(b: &BrokerFile, rel: &dyn Fn(PathBuf) -> PathBuf) -> Result<BrokerSettings> {
    let secret = |what: &str, v: &Option<ConfigValue>| -> Result<Option<String>> {
        match v {
            None => Ok(None),
            Some(ConfigValue::Text(s)) => Ok(Some(s.clone())),
            Some(ConfigValue::Env { env, default }) => Ok(Some(
                std::env::var(env)
                    .ok()
                    .or_else(|| default.clone())
                    .with_context(|| format!("{what} reads environment variable {env}, which is not set"))?,
            )),
            Some(_) => bail!("{what} must be a string or {{ env = \"VAR\" }}"),
        }
    };
    let (url, sentinel) = match (&b.url, &b.sentinels) {
        (Some(_), Some(_)) => bail!("give url or sentinels, not both"),
        (None, None) => bail!("url (one Redis) or sentinels (Redis Sentinel) is required"),
        (Some(url), None) => {
            if b.master_name.is_some() || b.sentinel_password.is_some() {
                bail!("master_name and sentinel_password go with sentinels, not url");
            }
            (url.clone(), None)
        }
        (None, Some(addrs)) => {
            if addrs.is_empty() {
                bail!("sentinels is empty: list at least one sentinel's host:port");
            }
            for a in addrs {
                let port = a.rsplit_once(':').and_then(|(h, p)| (!h.is_empty()).then_some(p));
                if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                    bail!("sentinels: {a:?} is not host:port");
                }
            }
            let Some(master_name) = b.master_name.clone().filter(|m| !m.is_empty()) else {
                bail!("sentinels need master_name: the name the sentinels monitor the master under");
            };
            if b.ca.is_some() || b.cert.is_some() || b.key.is_some() {
                bail!("ca, cert and key (TLS) are not supported with sentinels yet: use url with rediss://");
            }
            let url = format!("sentinel://{}/{master_name}", addrs.join(","));
            let password = secret("sentinel_password", &b.sentinel_password)?;
            (url, Some(SentinelSettings { addrs: addrs.clone(), master_name, password }))
        }
    };
    if sentinel.is_none() && !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        bail!("url must start with redis:// or rediss:// (got {url:?})");
    }
    let (ca, cert, key) = (b.ca.clone().map(rel), b.cert.clone().map(rel), b.key.clone().map(rel));
    if sentinel.is_none() && !url.starts_with("rediss://") && (ca.is_some() || cert.is_some() || key.is_some()) {
        bail!("ca, cert and key are for TLS: the url must start with rediss://");
    }
    for (what, p) in [("ca", &ca), ("cert", &cert), ("key", &key)] {
        if let Some(p) = p {
            std::fs::metadata(p).with_context(|| format!("{what} {} is not readable", p.display()))?;
        }
    }
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("cert and key go together: give both or neither"),
    };
    let password = secret("password", &b.password)?;
    Ok(BrokerSettings {
        url,
        sentinel,
        password,
        prefix: b.prefix.clone().unwrap_or_else(|| defaults::broker::PREFIX.into()),
        shared_kv: b.shared_kv.unwrap_or(defaults::broker::SHARED_KV),
        max_pending: b.max_pending.unwrap_or(defaults::broker::MAX_PENDING),
        max_pending_bytes: b.max_pending_bytes.map_or(defaults::broker::MAX_PENDING_BYTES, size),
        node_ttl: match b.node_ttl.map(dur) {
            Some(d) if d < Duration::from_millis(500) => bail!("node_ttl must be at least 500ms"),
            d => d.unwrap_or(defaults::broker::NODE_TTL),
        },
        ca,
        client_cert,
    })
}

/// The environment variable that turns on the built-in configuration's HTTP API.
pub const API_KEY_VAR: &str = "WASMSOCK_API_KEY";

/// In the built-in configuration, the `api` plugin serves `/api` (publishing to the rooms of
/// `rooms`) when [`API_KEY_VAR`] is set; without it, start-up says the API is off.
fn builtin_api(file: &mut FileConfig, warnings: &mut Vec<String>, key: Option<String>) {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        warnings.push(format!("{API_KEY_VAR} is not set: the HTTP API (/api, plugin api) is off"));
        return;
    };
    file.http_routes.push(HttpRouteFile {
        path: "/api".into(),
        plugin: "api".into(),
        max_body_size: None,
        max_concurrent: None,
        request_timeout: None,
        idle_timeout: None,
    });
    let api = file.plugins.entry("api".into()).or_default();
    api.act_as = Some("rooms".into());
    api.config.insert("api_key".into(), ConfigValue::Text(key));
}

/// `PATH=PLUGIN[,PLUGIN...]`
pub fn parse_route_flag(spec: &str) -> Result<(String, Vec<String>)> {
    let Some((path, chain)) = spec.split_once('=') else {
        bail!("--route {spec:?}: expected PATH=PLUGIN[,PLUGIN...]");
    };
    let plugins: Vec<String> = chain.split(',').map(|s| s.trim().to_owned()).collect();
    Ok((path.trim().to_owned(), plugins))
}

fn validate_routes(routes: &[RouteSettings]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut patterns: Vec<(&str, Pattern)> = Vec::new();
    for r in routes {
        let path = RoutePath::parse(&r.path)?;
        if !seen.insert(&r.path) {
            bail!("route {} is defined twice", r.path);
        }
        if let RoutePath::Pattern(p) = path {
            if let Some((other, _)) = patterns.iter().find(|(_, q)| q.ties_with(&p)) {
                bail!("routes {other} and {} can match the same path and neither is more specific", r.path);
            }
            patterns.push((&r.path, p));
        }
        match (r.plugins.is_empty(), r.builtin) {
            (true, None) => bail!("route {} has no plugins", r.path),
            (false, Some(_)) => bail!("route {} has both plugins and a builtin handler", r.path),
            _ => {}
        }
        for p in &r.plugins {
            validate_plugin_name(p).with_context(|| format!("route {}", r.path))?;
        }
    }
    Ok(())
}

fn resolve_http_route(r: &HttpRouteFile) -> Result<HttpRouteSettings> {
    let d = HttpRouteSettings::new(&r.path, &r.plugin);
    let s = HttpRouteSettings {
        max_body_size: r.max_body_size.map_or(d.max_body_size, size),
        max_concurrent: r.max_concurrent.unwrap_or(d.max_concurrent),
        request_timeout: r.request_timeout.map_or(d.request_timeout, dur),
        idle_timeout: r.idle_timeout.map_or(d.idle_timeout, dur),
        ..d
    };
    if s.max_concurrent == 0 || s.request_timeout.is_zero() || s.idle_timeout.is_zero() {
        bail!("http route {}: max_concurrent, request_timeout and idle_timeout must be positive", r.path);
    }
    Ok(s)
}

fn validate_http_routes(routes: &[HttpRouteSettings]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for r in routes {
        if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) {
            bail!("http route path {:?} must start with '/' and contain no '?', '#' or spaces", r.path);
        }
        if !seen.insert(r.path.trim_end_matches('/')) {
            bail!("http route {} is defined twice", r.path);
        }
        validate_plugin_name(&r.plugin).with_context(|| format!("http route {}", r.path))?;
    }
    Ok(())
}

/// Plugin names are file stems: letters, digits, `-` and `_`.
pub fn validate_plugin_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("invalid plugin name {name:?}: use 1-64 letters, digits, '-' or '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_config_serves_the_api_at_api_only_with_a_key() {
        let with = |key: Option<&str>| {
            let mut file: FileConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
            file.static_files = None;
            let mut warnings = Vec::new();
            builtin_api(&mut file, &mut warnings, key.map(str::to_owned));
            (Settings::resolve(file, Path::new(""), &Overrides::default()).unwrap(), warnings)
        };
        let (s, warnings) = with(Some("k"));
        assert!(warnings.is_empty());
        assert_eq!(s.http_routes, [HttpRouteSettings::new("/api", "api")]);
        let api = s.plugin("api");
        assert_eq!((api.act_as.as_deref(), api.config.get("api_key").map(String::as_str)), (Some("rooms"), Some("k")));
        for key in [None, Some("")] {
            let (s, warnings) = with(key);
            assert!(s.http_routes.is_empty());
            assert!(warnings[0].contains(API_KEY_VAR), "{warnings:?}");
        }
    }

    #[test]
    fn http_routes_serve_their_prefix_and_are_validated() {
        let r = HttpRouteSettings::new("/api", "api");
        assert!(r.serves("/api") && r.serves("/api/publish") && r.serves("/api/"));
        assert!(!r.serves("/apix") && !r.serves("/ap") && !r.serves("/"));
        assert!(HttpRouteSettings::new("/", "x").serves("/anything"));
        let s = Settings::from_toml(
            "[[http_routes]]\npath = \"/api\"\nplugin = \"api\"\nmax_body_size = \"2KiB\"\nmax_concurrent = 3",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!((s.http_routes[0].max_body_size, s.http_routes[0].max_concurrent), (2048, 3));
        assert!(err("[[http_routes]]\npath = \"api\"\nplugin = \"api\"").contains("must start with '/'"));
        assert!(
            err("[[http_routes]]\npath = \"/a\"\nplugin = \"a\"\n[[http_routes]]\npath = \"/a/\"\nplugin = \"b\"")
                .contains("twice")
        );
        assert!(err("[[http_routes]]\npath = \"/a\"\nplugin = \"a\"\nmax_concurrent = 0").contains("positive"));
        assert!(err("[plugins.a]\nact_as = \"no good\"").contains("act_as"));
    }

    fn err(text: &str) -> String {
        format!("{:#}", Settings::from_toml(text, &Overrides::default()).unwrap_err())
    }

    #[test]
    fn default_config_is_valid() {
        // (Unit tests run in host/, where the example page is not: a warning, not an error.)
        let s = Settings::load(None, &Overrides::default()).unwrap();
        assert!(s.routes.iter().any(|r| r.path == "/echo" && r.plugins == ["echo"]));
        assert!(s.static_dir.is_none() && s.warnings.iter().any(|w| w.contains("examples/chat")), "{:?}", s.warnings);
        assert!(matches!(s.tls.mode, TlsMode::Dev));
    }

    #[test]
    fn bad_configs_name_the_problem() {
        assert!(err("listen = \"x\"\nbogus = 1").contains("unknown field `bogus`"));
        assert!(err("[[routes]]\npath = \"echo\"\nplugins = [\"echo\"]").contains("must start with '/'"));
        assert!(
            err("[[routes]]\npath = \"/a\"\nplugins = [\"e\"]\n[[routes]]\npath = \"/a\"\nplugins = [\"e\"]")
                .contains("defined twice")
        );
        let two = |a: &str, b: &str| {
            err(&format!(
                "[[routes]]\npath = \"{a}\"\nplugins = [\"e\"]\n[[routes]]\npath = \"{b}\"\nplugins = [\"e\"]"
            ))
        };
        assert!(two("/app/{key}", "/app/{id}").contains("neither is more specific"));
        assert!(two("/{t}/ws", "/app/{key}").contains("neither is more specific"));
        assert!(err("[[routes]]\npath = \"/app/{k}/{*r}/x\"\nplugins = [\"e\"]").contains("only be the last"));
        let s = Settings::from_toml(
            "[[routes]]\npath = \"/app/{key}\"\nplugins = [\"e\"]\n[[routes]]\npath = \"/app/{*rest}\"\nplugins = [\"e\"]\n[[routes]]\npath = \"/app/x\"\nplugins = [\"e\"]",
            &Overrides::default(),
        );
        assert!(s.is_ok(), "patterns of different specificity and an exact route load: {s:?}");
        assert!(err("[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"").contains("not readable"));
        assert!(err("[tls]\ncert = \"/nonexistent/c.pem\"").contains("key is not"));
        assert!(err("[tls]\nclient_auth = \"required\"").contains("needs client_ca"));
        assert!(err("[tls]\nclient_ca = \"/nonexistent/ca.pem\"").contains("not readable"));
        assert!(err("[broker]\nurl = \"http://r\"").contains("redis:// or rediss://"));
        assert!(err("[broker]\nurl = \"redis://r\"\nca = \"/etc/hostname\"").contains("must start with rediss://"));
        assert!(
            err("[broker]\nurl = \"rediss://r\"\nca = \"/nonexistent/ca.pem\"")
                .contains("ca /nonexistent/ca.pem is not readable")
        );
        assert!(err("[broker]\nurl = \"rediss://r\"\ncert = \"/etc/hostname\"").contains("give both or neither"));
        assert!(err("[limits]\nwrite_timeout = \"10\"").contains("needs a unit"));
        assert!(
            err("[plugins.a]\nconfig = { s = { env = \"WASMSOCK_SURELY_UNSET_VAR\" } }")
                .contains("WASMSOCK_SURELY_UNSET_VAR")
        );
        assert!(err("[[routes]]\npath = \"/a\"\nplugins = [\"../x\"]").contains("invalid plugin name"));
        let broker = |b: &str| err(&format!("[broker]\n{b}"));
        assert!(broker("prefix = \"x\"").contains("url (one Redis) or sentinels"));
        assert!(broker("url = \"redis://a:1\"\nsentinels = [\"a:1\"]").contains("not both"));
        assert!(broker("sentinels = [\"a:1\"]").contains("need master_name"));
        assert!(broker("sentinels = []\nmaster_name = \"m\"").contains("at least one"));
        assert!(broker("sentinels = [\"a\"]\nmaster_name = \"m\"").contains("not host:port"));
        assert!(broker("url = \"redis://a:1\"\nmaster_name = \"m\"").contains("go with sentinels"));
        assert!(
            broker("sentinels = [\"a:1\"]\nmaster_name = \"m\"\nca = \"x.pem\"")
                .contains("not supported with sentinels")
        );
        let ok = Settings::from_toml(
            "[broker]\nsentinels = [\"127.0.0.1:26379\", \"[::1]:26380\"]\nmaster_name = \"main\"\nsentinel_password = \"p\"",
            &Overrides::default(),
        )
        .unwrap();
        let b = ok.broker.unwrap();
        let s = b.sentinel.unwrap();
        assert_eq!((s.addrs.len(), s.master_name.as_str(), s.password.as_deref()), (2, "main", Some("p")));
        assert_eq!(b.url, "sentinel://127.0.0.1:26379,[::1]:26380/main");
    }

    #[test]
    fn route_flags_override_and_route_limits_merge() {
        let o = Overrides { routes: vec!["/echo=upper,echo".into(), "/new=x".into()], ..Overrides::default() };
        let s = Settings::from_toml(
            "[limits]\nmax_message_size = \"2MiB\"\n[[routes]]\npath = \"/echo\"\nplugins = [\"echo\"]\nlimits = { write_timeout = \"5s\" }",
            &o,
        )
        .unwrap();
        let echo = s.routes.iter().find(|r| r.path == "/echo").unwrap();
        assert_eq!(echo.plugins, ["upper", "echo"]);
        assert_eq!(echo.limits.max_message_size, 2 << 20);
        assert_eq!(echo.limits.write_timeout, Duration::from_secs(5));
        assert!(s.routes.iter().any(|r| r.path == "/new"));
    }

    #[test]
    fn route_flags_without_a_config_file_serve_only_those_routes() {
        let o = Overrides { routes: vec!["/x=@echo".into(), "/y=shout".into()], ..Overrides::default() };
        let s = Settings::load(None, &o).unwrap();
        let paths: Vec<&str> = s.routes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/x", "/y"]);
        assert!(s.static_dir.is_none());
        // Without flags, the built-in routes.
        let s = Settings::load(None, &Overrides::default()).unwrap();
        assert!(s.routes.iter().any(|r| r.path == "/chat"));
    }

    #[test]
    fn the_example_configurations_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Settings::load(Some(&path), &Overrides::default())
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                loaded += 1;
            }
        }
        assert!(loaded >= 3, "{loaded} example configurations");
    }

    #[test]
    fn plugin_config_merges_over_the_defaults() {
        let s = Settings::from_toml(
            "[plugin_defaults.config]\nregion = \"eu\"\ntier = \"free\"\n[plugins.auth.config]\ntier = \"pro\"\n",
            &Overrides::default(),
        )
        .unwrap();
        let auth = &s.plugin("auth").config;
        assert_eq!((auth["region"].as_str(), auth["tier"].as_str()), ("eu", "pro"));
        let bad = Settings::from_toml("[plugins.x]\nmax_table_elements = 200000\n", &Overrides::default());
        assert!(format!("{:#}", bad.unwrap_err()).contains("at most 100000"));
    }
}
