//! The TOML configuration file, exactly as written by the user. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::units::{ByteSize, Dur};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. "0.0.0.0:8443"; a host name binds every address it resolves to.
    pub listen: Option<String>,
    /// Directory watched for `*.wasm` plugins.
    pub plugin_dir: Option<PathBuf>,
    /// Where the development certificate is kept.
    pub state_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub origins: OriginsFile,
    #[serde(default)]
    pub compression: CompressionFile,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Plain HTTP routes served by a plugin's `on-request`.
    #[serde(default)]
    pub http_routes: Vec<HttpRouteFile>,
    #[serde(default)]
    pub plugin_defaults: PluginFile,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginFile>,
    #[serde(default)]
    pub host: HostFile,
    #[serde(default)]
    pub engine: EngineFile,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(rename = "static")]
    pub static_files: Option<StaticFile>,
    pub broker: Option<BrokerFile>,
    /// Rooms whose last publishes the host keeps, for clients that come back.
    #[serde(default)]
    pub history: Vec<HistoryFile>,
}

/// A `[[history]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    /// Room names (`*` matches any run of characters), e.g. "orders*".
    pub rooms: String,
    /// Only the rooms of this plugin (default: of every plugin).
    pub plugin: Option<String>,
    /// Most entries a room keeps.
    pub size: Option<usize>,
    /// Oldest entry a room keeps.
    pub ttl: Option<Dur>,
    /// Most bytes a room keeps (payloads plus 96 bytes per entry).
    pub max_bytes: Option<ByteSize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain. Without cert and key a development certificate is generated.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// PEM bundle of CAs that sign client certificates (mutual TLS).
    pub client_ca: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    /// Serve ws:// without TLS (behind a TLS-terminating proxy, or for conformance tools).
    pub plain: Option<bool>,
}

/// Limits of the listener itself (not per route).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    /// TCP connections still in the TLS or HTTP handshake; beyond it, new ones are dropped.
    pub max_pending_handshakes: Option<usize>,
    /// Handshakes in flight from one client address.
    pub max_pending_handshakes_per_ip: Option<usize>,
    /// Bytes held for peers over all connections (partial messages and outgoing queues).
    pub max_buffered_bytes: Option<ByteSize>,
    pub tls_handshake_timeout: Option<Dur>,
    pub ws_handshake_timeout: Option<Dur>,
    pub max_header_bytes: Option<ByteSize>,
    /// How long shutdown waits for clients to finish the close handshake.
    pub shutdown_grace: Option<Dur>,
    /// How long a close handshake may take before the socket is dropped.
    pub close_timeout: Option<Dur>,
    /// Raise the open-files limit to this (or the hard limit, if lower) at start.
    pub nofile_limit: Option<u64>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header from a load balancer.
    pub proxy_protocol: Option<bool>,
    /// Close reasons and refusal bodies name the plugin and its error (development only).
    pub detailed_errors: Option<bool>,
}

/// Per-connection limits; `[limits]` sets defaults, a route's `limits` table overrides them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_message_size: Option<ByteSize>,
    pub max_frame_size: Option<ByteSize>,
    pub write_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub outbox_messages: Option<usize>,
    pub outbox_bytes: Option<ByteSize>,
    pub slow_consumer: Option<SlowConsumer>,
    pub ping_interval: Option<Dur>,
    pub pong_timeout: Option<Dur>,
    /// How long one message may take to arrive, from its first byte to its last.
    pub message_timeout: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builtin {
    /// Sends every message back, without any plugin.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Close the connection (1008) when its outgoing queue is full.
    Close,
    /// Drop the message that does not fit, keep the connection.
    Drop,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginsFile {
    /// Exact origins (`"https://app.example.com"`) or patterns ("https://*.example.com",
    /// "*.example.com" for any scheme), or "*" for every origin. Absent or empty: same-origin
    /// only (the Origin's host must equal the Host header), as gorilla's default `CheckOrigin`.
    pub allow: Option<Vec<String>>,
    /// Whether a request without an Origin header (non-browser clients) is allowed.
    pub allow_missing: Option<bool>,
    /// The server's own public origins (`"https://app.example.com"`): with an empty `allow`,
    /// "same origin" means one of these, whatever `Host` header the client sends.
    pub public: Option<Vec<String>>,
}

/// permessage-deflate (RFC 7692); `[compression]` sets defaults, a route's `compression` table
/// overrides them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionFile {
    /// Accept clients' permessage-deflate offers.
    pub enabled: Option<bool>,
    /// Keep the compression window between messages, both ways.
    pub context_takeover: Option<bool>,
    /// Our compressor's LZ77 window, 9 to 15 bits.
    pub window_bits: Option<u8>,
    /// Messages shorter than this go uncompressed.
    pub min_size: Option<ByteSize>,
    /// zlib level, 1 (fastest) to 9 (smallest).
    pub level: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub path: String,
    #[serde(default)]
    pub plugins: Vec<String>,
    /// A handler built into the host instead of plugins (`"echo"`): a baseline for benchmarks
    /// and a smoke test for load balancers.
    pub builtin: Option<Builtin>,
    pub origins: Option<OriginsFile>,
    pub limits: Option<LimitsFile>,
    pub compression: Option<CompressionFile>,
}

/// A plain HTTP route: every request for `path` or below it goes to `plugin`'s `on-request`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteFile {
    pub path: String,
    pub plugin: String,
    /// Largest request body; beyond it the answer is 413.
    pub max_body_size: Option<ByteSize>,
    /// Requests of this route in flight at once; beyond it the answer is 503.
    pub max_concurrent: Option<usize>,
    /// How long a request may take to arrive (headers and body) once it started.
    pub request_timeout: Option<Dur>,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Option<Dur>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginFile {
    /// CPU deadline of one call.
    pub deadline: Option<Dur>,
    /// A call that takes longer is logged (warn, with plugin, export, connection and route),
    /// so a slow plugin is found by name; "0s" turns it off. Default: a fifth of the deadline.
    pub slow_call: Option<Dur>,
    /// Linear memory cap of one instance.
    pub max_memory: Option<ByteSize>,
    pub max_table_elements: Option<u32>,
    /// What a failing call does: close the connection / refuse the handshake, or bypass the
    /// plugin (the message passes on, the handshake goes on).
    pub on_error: Option<OnError>,
    /// Failures within `failure_window` that quarantine the plugin.
    pub max_failures: Option<u32>,
    pub failure_window: Option<Dur>,
    /// How long a quarantined plugin is not called (the failure policy applies instead).
    pub quarantine: Option<Dur>,
    pub max_sends_per_call: Option<u32>,
    pub max_send_bytes_per_call: Option<ByteSize>,
    /// This plugin's share of `[host] max_memory` (default: the total divided by the number of
    /// plugins).
    pub max_host_memory: Option<ByteSize>,
    /// Bytes of stdout/stderr logged per call; the rest is counted and dropped.
    pub max_log_bytes: Option<ByteSize>,
    /// Idle instances kept warm.
    pub max_idle_instances: Option<usize>,
    /// Timers the plugin may hold armed at once; more are refused (`limit-reached`).
    pub max_timers: Option<usize>,
    /// Backends the plugin may call (`scheme://host[:port]`, `*.domain`, port `*`); none: no
    /// outbound HTTP at all.
    pub http_allowed_hosts: Option<Vec<String>>,
    /// Time one outbound request may take, answer included.
    pub http_timeout: Option<Dur>,
    /// Largest response body a plugin reads.
    pub http_max_response: Option<ByteSize>,
    /// Outbound requests of the plugin in flight at once.
    pub http_max_concurrent: Option<usize>,
    /// PEM bundle of the CAs trusted for `https://` (default: the system's trust store).
    pub http_ca: Option<PathBuf>,
    /// Let names in `http_allowed_hosts` resolve to loopback, private, link-local, unspecified
    /// or multicast addresses (an entry that is an IP address is always taken at its word).
    pub http_allow_private: Option<bool>,
    /// How long the first event of a webhook batch waits for others.
    pub webhook_flush_delay: Option<Dur>,
    /// Events in one webhook batch (sent at once when reached).
    pub webhook_max_batch_events: Option<usize>,
    /// Bytes of events in one webhook batch (sent at once when reached; the largest event).
    pub webhook_max_batch_bytes: Option<ByteSize>,
    /// Webhook events of the plugin queued or being delivered; more are refused and counted.
    pub webhook_max_queued_events: Option<usize>,
    pub webhook_max_queued_bytes: Option<ByteSize>,
    /// Tries per webhook batch on 5xx, connection failures and timeouts (the first included).
    pub webhook_max_attempts: Option<u32>,
    /// Wait before the first webhook retry, doubling with each further one.
    pub webhook_retry_backoff: Option<Dur>,
    /// Webhook batches of the plugin in flight at once.
    pub webhook_max_concurrent: Option<usize>,
    /// Another plugin whose rooms and users this one reaches as its own (for example an HTTP
    /// API plugin publishing to the rooms of `rooms`).
    pub act_as: Option<String>,
    /// Settings the plugin reads with `config(key)`: a string, a number or boolean, or
    /// `{ env = "VAR" }` / `{ env = "VAR", default = "..." }` to take it from the environment.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Close,
    Bypass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Env { env: String, default: Option<String> },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    pub max_attachment: Option<ByteSize>,
    pub max_rooms_per_connection: Option<usize>,
    pub max_room_name: Option<usize>,
    pub kv_max_keys: Option<usize>,
    pub kv_max_key: Option<usize>,
    pub kv_max_value: Option<ByteSize>,
    /// Bytes the host keeps for all plugins together: key/value entries, attachments, room
    /// memberships.
    pub max_memory: Option<ByteSize>,
    /// Bytes of room history (`[[history]]`) kept for all rooms together.
    pub max_history_memory: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    /// Component instances the pooling allocator can hold at once, across plugins.
    pub max_instances: Option<u32>,
    /// Upper bound of any plugin's `max_memory`.
    pub max_memory: Option<ByteSize>,
    /// Granularity of CPU deadlines.
    pub epoch_tick: Option<Dur>,
    /// Largest plugin file loaded.
    pub max_plugin_size: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Address of the metrics/health listener; "off" disables it.
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFile {
    /// Directory served for plain GET requests that match no WebSocket route.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerFile {
    /// `redis://[:password@]host:port[/db]` or `rediss://` for TLS; or `sentinels`.
    pub url: Option<String>,
    /// Redis Sentinel instead of `url`: the sentinels' `host:port`, asked for the master of
    /// `master_name` at every (re)connection.
    pub sentinels: Option<Vec<String>>,
    /// The name the sentinels monitor the master under.
    pub master_name: Option<String>,
    /// The sentinels' password (or `{ env = "VAR" }`), if they require one.
    pub sentinel_password: Option<ConfigValue>,
    /// Password (or `{ env = "VAR" }`), if not in the URL.
    pub password: Option<ConfigValue>,
    /// Prefix of the Redis channels and keys this cluster uses.
    pub prefix: Option<String>,
    /// Keep plugins' key/value stores in Redis, shared by every node.
    pub shared_kv: Option<bool>,
    /// Publishes buffered while Redis is slow or down; beyond it they are dropped (and counted).
    pub max_pending: Option<usize>,
    /// Bytes of payload buffered while Redis is slow or down (the count above bounds the
    /// number, this the memory); beyond it publishes are dropped (and counted).
    pub max_pending_bytes: Option<ByteSize>,
    /// How long a node counts in the cluster's user counts without a heartbeat.
    pub node_ttl: Option<Dur>,
    /// PEM bundle of the CAs that sign Redis's certificate (`rediss://` only; default: the
    /// system's trust store).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis that requires one (`tls-auth-clients yes`).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

/// A table that falls back, key by key, to a more general one: a route's `limits` and `origins`
/// to `[limits]` and `[origins]`, a `[plugins.NAME]` table to `[plugin_defaults]`.
pub(crate) trait Overlay {
    /// Each key set in `self`, else the key of `base`.
    fn over(&self, base: &Self) -> Self;
}

impl<T: Clone> Overlay for Option<T> {
    fn over(&self, base: &Self) -> Self {
        self.clone().or_else(|| base.clone())
    }
}

/// Plugin settings merge key by key too: `[plugin_defaults.config]` applies to every plugin.
impl Overlay for BTreeMap<String, ConfigValue> {
    fn over(&self, base: &Self) -> Self {
        let mut merged = base.clone();
        merged.extend(self.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }
}

/// `Overlay` for a table: every field, each overlaid on its own (the struct literal names them
/// all, so a new key cannot be forgotten).
macro_rules! overlay_fields {
    ($table:ident { $($key:ident),* $(,)? }) => {
        impl Overlay for $table {
            fn over(&self, base: &Self) -> Self {
                $table { $($key: self.$key.over(&base.$key)),* }
            }
        }
    };
}

overlay_fields!(LimitsFile {
    max_message_size,
    max_frame_size,
    write_timeout,
    idle_timeout,
    outbox_messages,
    outbox_bytes,
    slow_consumer,
    ping_interval,
    pong_timeout,
    message_timeout,
});
overlay_fields!(OriginsFile { allow, allow_missing, public });
overlay_fields!(CompressionFile { enabled, context_takeover, window_bits, min_size, level });
overlay_fields!(PluginFile {
    deadline,
    slow_call,
    max_memory,
    max_table_elements,
    on_error,
    max_failures,
    failure_window,
    quarantine,
    max_sends_per_call,
    max_send_bytes_per_call,
    max_host_memory,
    max_log_bytes,
    max_idle_instances,
    max_timers,
    http_allowed_hosts,
    http_timeout,
    http_max_response,
    http_max_concurrent,
    http_ca,
    http_allow_private,
    webhook_flush_delay,
    webhook_max_batch_events,
    webhook_max_batch_bytes,
    webhook_max_queued_events,
    webhook_max_queued_bytes,
    webhook_max_attempts,
    webhook_retry_backoff,
    webhook_max_concurrent,
    act_as,
    config,
});
