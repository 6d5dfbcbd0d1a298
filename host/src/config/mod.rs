//! Configuration: the TOML file, command-line overrides, and the validated [`Settings`] the
//! server runs on. Everything is checked before anything starts: a bad config exits with a
//! message naming the problem, never a half-started server.

mod file;
mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use file::{
    BrokerFile, Builtin, ClientAuth, ConfigValue, FileConfig, LimitsFile, LogFormat, OnError, OriginsFile, PluginFile,
    SlowConsumer,
};
pub use units::{parse_duration, parse_size};

use crate::origin::OriginPolicy;

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
    pub tls_handshake_timeout: Duration,
    pub ws_handshake_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub close_timeout: Duration,
    pub nofile_limit: u64,
    /// Connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
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
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub path: String,
    pub plugins: Vec<String>,
    pub builtin: Option<Builtin>,
    pub origins: OriginPolicy,
    pub limits: Limits,
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
    pub max_log_bytes: usize,
    pub max_idle_instances: usize,
    pub config: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub max_attachment: usize,
    pub max_rooms_per_connection: usize,
    pub max_room_name: usize,
    pub kv_max_keys: usize,
    pub kv_max_key: usize,
    pub kv_max_value: usize,
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub max_instances: u32,
    pub max_memory: usize,
    pub epoch_tick: Duration,
}

#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: String,
    pub password: Option<String>,
    pub prefix: String,
    pub shared_kv: bool,
    pub max_pending: usize,
    pub max_pending_bytes: usize,
    /// CA bundle to trust for `rediss://` instead of the system's.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for Redis.
    pub client_cert: Option<(PathBuf, PathBuf)>,
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
    /// Settings of plugins named in `[plugins.NAME]`.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Settings of every other plugin.
    pub plugin_defaults: PluginSettings,
    pub host: HostLimits,
    pub engine: EngineSettings,
    pub admin: Option<String>,
    pub static_dir: Option<PathBuf>,
    pub broker: Option<BrokerSettings>,
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
        if path.is_none() && file.static_files.as_ref().is_some_and(|s| !s.dir.is_dir()) {
            warnings.push(
                "examples/chat not found here: the chat page is not served (run from the repository root)".into(),
            );
            file.static_files = None;
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

        let listen = o.listen.clone().or(f.listen).unwrap_or_else(|| "127.0.0.1:8443".into());
        let plugin_dir = o.plugin_dir.clone().or(f.plugin_dir.map(rel)).unwrap_or_else(|| "plugins/dist".into());
        let state_dir = f.state_dir.map(rel).unwrap_or_else(|| ".wasmsock".into());

        let tls = resolve_tls(&f.tls, o, &rel)?;
        let server = resolve_server(&f.server)?;
        let limits = merge_limits(&LimitsFile::default(), &f.limits)?;
        let origins = OriginPolicy::new(&OriginsFile::default(), &f.origins).context("[origins]")?;

        let mut routes: Vec<RouteSettings> = Vec::new();
        for r in &f.routes {
            let origins = match &r.origins {
                Some(ro) => OriginPolicy::new(&f.origins, ro).with_context(|| format!("route {}: origins", r.path))?,
                None => origins.clone(),
            };
            let limits = match &r.limits {
                Some(rl) => merge_limits(&f.limits, rl).with_context(|| format!("route {}: limits", r.path))?,
                None => limits.clone(),
            };
            routes.push(RouteSettings {
                path: r.path.clone(),
                plugins: r.plugins.clone(),
                builtin: r.builtin,
                origins,
                limits,
            });
        }
        for spec in &o.routes {
            let (path, plugins) = parse_route_flag(spec)?;
            // `PATH=@echo`: the built-in echo handler.
            let (plugins, builtin) = match plugins.as_slice() {
                [b] if b == "@echo" => (Vec::new(), Some(Builtin::Echo)),
                _ => (plugins, None),
            };
            let route = RouteSettings { path, plugins, builtin, origins: origins.clone(), limits: limits.clone() };
            match routes.iter_mut().find(|r| r.path == route.path) {
                Some(existing) => {
                    existing.plugins = route.plugins;
                    existing.builtin = route.builtin;
                }
                None => routes.push(route),
            }
        }
        validate_routes(&routes)?;

        let plugin_defaults = resolve_plugin("plugin_defaults", &PluginFile::default(), &f.plugin_defaults)?;
        let mut plugins = BTreeMap::new();
        for (name, p) in &f.plugins {
            validate_plugin_name(name).with_context(|| format!("[plugins.{name}]"))?;
            plugins.insert(name.clone(), resolve_plugin(name, &f.plugin_defaults, p)?);
        }

        let host = HostLimits {
            max_attachment: size_or(f.host.max_attachment, 16 << 10),
            max_rooms_per_connection: f.host.max_rooms_per_connection.unwrap_or(64),
            max_room_name: f.host.max_room_name.unwrap_or(128),
            kv_max_keys: f.host.kv_max_keys.unwrap_or(10_000),
            kv_max_key: f.host.kv_max_key.unwrap_or(256),
            kv_max_value: size_or(f.host.kv_max_value, 64 << 10),
        };
        let engine = EngineSettings {
            max_instances: f.engine.max_instances.unwrap_or(256),
            max_memory: size_or(f.engine.max_memory, 256 << 20),
            epoch_tick: f.engine.epoch_tick.map_or(Duration::from_millis(1), |d| d.0),
        };
        if engine.epoch_tick.is_zero() {
            bail!("[engine] epoch_tick must be positive");
        }
        for (name, p) in plugins.iter().map(|(n, p)| (n.as_str(), p)).chain([("plugin_defaults", &plugin_defaults)]) {
            if p.max_memory > engine.max_memory {
                bail!("plugin {name}: max_memory {} exceeds [engine] max_memory {}", p.max_memory, engine.max_memory);
            }
        }

        let admin = match o.admin.clone().or(f.admin.listen) {
            Some(a) if a == "off" => None,
            Some(a) => Some(a),
            None => Some("127.0.0.1:9090".into()),
        };
        let static_dir = f.static_files.map(|s| rel(s.dir));
        if let Some(dir) = &static_dir
            && !dir.is_dir()
        {
            bail!("[static] dir {} is not a directory", dir.display());
        }
        let broker = f.broker.map(|b| resolve_broker(&b, &rel)).transpose().context("[broker]")?;

        Ok(Settings {
            listen,
            plugin_dir,
            state_dir,
            log_format: o.log_format.or(f.log_format).unwrap_or_default(),
            tls,
            server,
            routes,
            plugins,
            plugin_defaults,
            host,
            engine,
            admin,
            static_dir,
            broker,
            warnings: Vec::new(),
        })
    }

    /// Settings for plugin `name`.
    pub fn plugin(&self, name: &str) -> &PluginSettings {
        self.plugins.get(name).unwrap_or(&self.plugin_defaults)
    }
}

fn size_or(v: Option<units::ByteSize>, default: u64) -> usize {
    v.map_or(default, |s| s.0) as usize
}

fn resolve_tls(t: &file::TlsFile, o: &Overrides, rel: &dyn Fn(PathBuf) -> PathBuf) -> Result<TlsSettings> {
    let plain = o.plain || t.plain.unwrap_or(false);
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
    let d = |v: Option<units::Dur>, default: u64| v.map_or(Duration::from_secs(default), |d| d.0);
    let limits = ServerLimits {
        max_connections: s.max_connections.unwrap_or(100_000),
        max_connections_per_ip: s.max_connections_per_ip.unwrap_or(10_000),
        max_pending_handshakes: s.max_pending_handshakes.unwrap_or(4096),
        tls_handshake_timeout: d(s.tls_handshake_timeout, 10),
        ws_handshake_timeout: d(s.ws_handshake_timeout, 10),
        max_header_bytes: size_or(s.max_header_bytes, 16 << 10),
        shutdown_grace: d(s.shutdown_grace, 10),
        close_timeout: d(s.close_timeout, 3),
        nofile_limit: s.nofile_limit.unwrap_or(1 << 20),
        proxy_protocol: s.proxy_protocol.unwrap_or(false),
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
    if limits.max_connections == 0 || limits.max_connections_per_ip == 0 || limits.max_pending_handshakes == 0 {
        bail!("[server] connection limits must be at least 1");
    }
    if limits.max_header_bytes < 1024 {
        bail!("[server] max_header_bytes must be at least 1KiB");
    }
    Ok(limits)
}

/// `over` on top of `base` on top of the built-in defaults.
fn merge_limits(base: &LimitsFile, over: &LimitsFile) -> Result<Limits> {
    macro_rules! pick {
        ($f:ident) => {
            over.$f.or(base.$f)
        };
    }
    let max_message_size = pick!(max_message_size).map_or(1 << 20, |s| s.0 as usize);
    let max_frame_size = pick!(max_frame_size).map_or(max_message_size as u64, |s| s.0) as usize;
    let write_timeout = pick!(write_timeout).map_or(Duration::from_secs(10), |d| d.0);
    let idle_timeout = pick!(idle_timeout).map(|d| d.0).filter(|d| !d.is_zero());
    let ping_interval = match pick!(ping_interval) {
        Some(d) if d.0.is_zero() => None,
        Some(d) => Some(d.0),
        None => Some(Duration::from_secs(30)),
    };
    let limits = Limits {
        max_message_size,
        max_frame_size,
        write_timeout,
        idle_timeout,
        outbox_messages: pick!(outbox_messages).unwrap_or(1024),
        outbox_bytes: pick!(outbox_bytes).map_or(4 << 20, |s| s.0 as usize),
        slow_consumer: pick!(slow_consumer).unwrap_or_default(),
        ping_interval,
        pong_timeout: pick!(pong_timeout).map_or(Duration::from_secs(30), |d| d.0),
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
    Ok(limits)
}

fn resolve_plugin(name: &str, base: &PluginFile, p: &PluginFile) -> Result<PluginSettings> {
    macro_rules! pick {
        ($f:ident) => {
            p.$f.or(base.$f)
        };
    }
    let deadline = pick!(deadline).map_or(Duration::from_millis(50), |d| d.0);
    if deadline.is_zero() {
        bail!("plugin {name}: deadline must be positive");
    }
    let max_tables = crate::plugin::MAX_TABLE_ELEMENTS;
    if pick!(max_table_elements).is_some_and(|n| n as usize > max_tables) {
        bail!("plugin {name}: max_table_elements can be at most {max_tables} (the engine's per-instance table size)");
    }
    let mut config = HashMap::new();
    // Keys of `[plugin_defaults.config]` apply to every plugin; its own table overrides them.
    let mut merged: BTreeMap<&String, &ConfigValue> = base.config.iter().flatten().collect();
    merged.extend(p.config.iter().flatten());
    for (key, value) in merged {
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
        slow_call: pick!(slow_call).map_or(deadline / 5, |d| d.0),
        max_memory: pick!(max_memory).map_or(64 << 20, |s| s.0 as usize),
        max_table_elements: pick!(max_table_elements).unwrap_or(100_000) as usize,
        on_error: pick!(on_error).unwrap_or_default(),
        max_failures: pick!(max_failures).unwrap_or(10),
        failure_window: pick!(failure_window).map_or(Duration::from_secs(10), |d| d.0),
        quarantine: pick!(quarantine).map_or(Duration::from_secs(30), |d| d.0),
        max_sends_per_call: pick!(max_sends_per_call).unwrap_or(10_000),
        max_send_bytes_per_call: pick!(max_send_bytes_per_call).map_or(64 << 20, |s| s.0 as usize),
        max_log_bytes: pick!(max_log_bytes).map_or(4096, |s| s.0 as usize),
        max_idle_instances: pick!(max_idle_instances).unwrap_or(8),
        config,
    })
}

fn resolve_broker(b: &BrokerFile, rel: &dyn Fn(PathBuf) -> PathBuf) -> Result<BrokerSettings> {
    if !(b.url.starts_with("redis://") || b.url.starts_with("rediss://")) {
        bail!("url must start with redis:// or rediss:// (got {:?})", b.url);
    }
    let (ca, cert, key) = (b.ca.clone().map(rel), b.cert.clone().map(rel), b.key.clone().map(rel));
    if !b.url.starts_with("rediss://") && (ca.is_some() || cert.is_some() || key.is_some()) {
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
    let password = match &b.password {
        None => None,
        Some(ConfigValue::Text(s)) => Some(s.clone()),
        Some(ConfigValue::Env { env, default }) => Some(
            std::env::var(env)
                .ok()
                .or_else(|| default.clone())
                .with_context(|| format!("password reads environment variable {env}, which is not set"))?,
        ),
        Some(_) => bail!("password must be a string or {{ env = \"VAR\" }}"),
    };
    Ok(BrokerSettings {
        url: b.url.clone(),
        password,
        prefix: b.prefix.clone().unwrap_or_else(|| "wasmsock".into()),
        shared_kv: b.shared_kv.unwrap_or(false),
        max_pending: b.max_pending.unwrap_or(10_000),
        max_pending_bytes: b.max_pending_bytes.map_or(16 << 20, |s| s.0 as usize),
        ca,
        client_cert,
    })
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
    for r in routes {
        if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) {
            bail!("route path {:?} must start with '/' and contain no '?', '#' or spaces", r.path);
        }
        if !seen.insert(&r.path) {
            bail!("route {} is defined twice", r.path);
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

    fn err(text: &str) -> String {
        format!("{:#}", Settings::from_toml(text, &Overrides::default()).unwrap_err())
    }

    #[test]
    fn default_config_is_valid() {
        // (Unit tests run in host/, where the example page is not: a warning, not an error.)
        let s = Settings::load(None, &Overrides::default()).unwrap();
        assert!(s.routes.iter().any(|r| r.path == "/echo" && r.plugins == ["echo"]));
        assert!(s.static_dir.is_none() && s.warnings.len() == 1);
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
