//! Prometheus metrics, one registry per server. Hot-path handles are resolved once (a counter increment is one atomic
//! add); label families are used only where the label set is open-ended and the event rare.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// Bounded: see [`crate::ws::CloseCode::metric_label`].
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginExportLabel {
    pub plugin: String,
    pub export: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginKindLabel {
    pub plugin: String,
    pub kind: &'static str,
}

/// An HTTP route's answers: the route as configured (a bounded set) and the status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpStatusLabel {
    pub route: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginReasonLabel {
    pub plugin: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub plugin: String,
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub handshake_rejects: Family<ReasonLabel, Counter>,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub closes: Family<CodeLabel, Counter>,
    pub plugin_calls: Family<PluginExportLabel, Histogram>,
    pub plugin_failures: Family<PluginKindLabel, Counter>,
    pub plugin_deadline_hits: Family<PluginLabel, Counter>,
    pub plugin_reloads: Family<ReloadLabel, Counter>,
    pub plugin_compiles: Family<PluginLabel, Counter>,
    pub plugin_file_bytes_read: Counter,
    pub plugin_quarantines: Family<PluginLabel, Counter>,
    pub plugin_log_dropped: Family<PluginLabel, Counter>,
    /// Outbound HTTP requests of plugins (denied ones included), failures by kind, latency.
    pub plugin_http_requests: Family<PluginLabel, Counter>,
    pub plugin_http_errors: Family<PluginKindLabel, Counter>,
    pub plugin_http_seconds: Family<PluginLabel, Histogram>,
    /// Webhooks: events queued, batches delivered, retries, events dropped by reason.
    pub plugin_webhook_events: Family<PluginLabel, Counter>,
    pub plugin_webhook_batches: Family<PluginLabel, Counter>,
    pub plugin_webhook_retries: Family<PluginLabel, Counter>,
    pub plugin_webhook_dropped: Family<PluginReasonLabel, Counter>,
    /// Requests answered on HTTP routes, by route and status class, and their time from the
    /// request's head to the answer written.
    pub http_requests: Family<HttpStatusLabel, Counter>,
    pub http_request_seconds: Family<RouteLabel, Histogram>,
    pub rooms: Gauge,
    pub room_members: Gauge,
    /// Bytes the host keeps for plugins (key/value, attachments, memberships), and their bounds.
    pub plugin_host_bytes: Family<PluginLabel, Gauge>,
    pub plugin_host_limit: Family<PluginLabel, Gauge>,
    pub host_memory: Gauge,
    pub host_memory_limit: Gauge,
    pub outbox_drops: Counter,
    /// Bytes held for peers (partial messages and outgoing queues), as last counted.
    pub buffered_bytes: Gauge,
    /// Connections shed because the bytes held exceeded `max_buffered_bytes`.
    pub buffered_sheds: Counter,
    /// Connections closed because a message was not complete within `message_timeout`.
    pub message_timeouts: Counter,
    pub publishes: Counter,
    /// Messages compressed for permessage-deflate (a shared message once per parameter set).
    pub compressions: Counter,
    pub broker_published: Counter,
    pub broker_received: Counter,
    pub broker_errors: Counter,
    pub broker_reconnects: Counter,
    pub broker_connected: Gauge,
    pub broker_dropped: Counter,
    pub broker_pending: Gauge,
    pub timers: TimerMetrics,
    pub history: HistoryMetrics,
}

/// Room history (`[[history]]`): what is kept now over all rooms, its bound, and the entries
/// evicted, by reason (`size`, `ttl`, `bytes`: a room's bounds; `total`: `[host]
/// max_history_memory`; `unkept`: a publish the full total left out of history).
#[derive(Default)]
pub struct HistoryMetrics {
    pub rooms: Gauge,
    pub entries: Gauge,
    pub bytes: Gauge,
    pub limit: Gauge,
    pub evictions: Family<ReasonLabel, Counter>,
    /// With a broker: publishes numbered by this node because Redis was out of reach.
    pub local_publishes: Counter,
}

impl HistoryMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("history_rooms", "Rooms with a history kept", self.rooms.clone());
        r.register("history_entries", "Publishes kept in room histories", self.entries.clone());
        r.register("history_bytes", "Bytes kept in room histories (payloads and overhead)", self.bytes.clone());
        r.register("history_bytes_limit", "[host] max_history_memory", self.limit.clone());
        r.register("history_evictions", "History entries evicted, by reason", self.evictions.clone());
        r.register(
            "history_local_publishes",
            "Publishes to rooms with history numbered by this node because Redis was out of reach",
            self.local_publishes.clone(),
        );
    }

    pub(crate) fn evicted(&self, reason: &str, n: u64) {
        if n > 0 {
            self.evictions.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc_by(n);
        }
    }
}

/// Plugin timers, by plugin: set, fired, refused (by reason), dropped when due (by reason),
/// and armed now.
#[derive(Default)]
pub struct TimerMetrics {
    pub set: Family<PluginLabel, Counter>,
    pub fired: Family<PluginLabel, Counter>,
    pub refused: Family<PluginKindLabel, Counter>,
    pub dropped: Family<PluginKindLabel, Counter>,
    pub active: Family<PluginLabel, Gauge>,
}

impl TimerMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("plugin_timers_set", "Timers plugins armed (a key set again counts again)", self.set.clone());
        r.register("plugin_timers_fired", "Timers that came due and called the plugin's on-timer", self.fired.clone());
        r.register("plugin_timers_refused", "Timers refused to plugins, by reason", self.refused.clone());
        r.register(
            "plugin_timers_dropped",
            "Timers that came due without a call (plugin not loaded or quarantined, no on-timer, connection gone), by reason",
            self.dropped.clone(),
        );
        r.register("plugin_timers_active", "Timers plugins hold armed", self.active.clone());
    }
}

fn http_histogram() -> Histogram {
    // 1 ms .. ~33 s: a backend on the same host answers in a millisecond, timeouts are seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-3, 2.0, 16))
}

fn request_histogram() -> Histogram {
    // 100 µs .. ~6.5 s: an answer from a plugin is sub-millisecond, a slow backend behind it seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 17))
}

fn call_histogram() -> Histogram {
    // 1 µs .. ~1 s: plugin calls are usually microseconds, deadlines are milliseconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-6, 4.0, 11))
}

impl Metrics {
    /// The metrics of a node without a broker: no `broker_*` series (a `broker_connected 0`
    /// would read as a broker that is down).
    pub fn new() -> Self {
        Self::build(false)
    }

    /// The metrics of a node with a broker: the `broker_*` series too.
    pub fn with_broker() -> Self {
        Self::build(true)
    }

    fn build(broker: bool) -> Self {
        let mut r = Registry::with_prefix("wasmsock");
        let traffic = Family::<DirectionLabel, Counter>::default();
        let bytes = Family::<DirectionLabel, Counter>::default();
        // One statement each: `get_or_create` holds the family's lock until the statement ends.
        let messages_in = traffic.get_or_create(&DirectionLabel { direction: "in" }).clone();
        let messages_out = traffic.get_or_create(&DirectionLabel { direction: "out" }).clone();
        let bytes_in = bytes.get_or_create(&DirectionLabel { direction: "in" }).clone();
        let bytes_out = bytes.get_or_create(&DirectionLabel { direction: "out" }).clone();
        let m = Metrics {
            connections: Gauge::default(),
            connections_total: Counter::default(),
            handshake_rejects: Family::default(),
            messages_in,
            messages_out,
            bytes_in,
            bytes_out,
            closes: Family::default(),
            plugin_calls: Family::new_with_constructor(call_histogram),
            plugin_failures: Family::default(),
            plugin_deadline_hits: Family::default(),
            plugin_reloads: Family::default(),
            plugin_compiles: Family::default(),
            plugin_file_bytes_read: Counter::default(),
            plugin_quarantines: Family::default(),
            plugin_log_dropped: Family::default(),
            plugin_http_requests: Family::default(),
            plugin_http_errors: Family::default(),
            plugin_http_seconds: Family::new_with_constructor(http_histogram),
            plugin_webhook_events: Family::default(),
            plugin_webhook_batches: Family::default(),
            plugin_webhook_retries: Family::default(),
            plugin_webhook_dropped: Family::default(),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(request_histogram),
            rooms: Gauge::default(),
            room_members: Gauge::default(),
            plugin_host_bytes: Family::default(),
            plugin_host_limit: Family::default(),
            host_memory: Gauge::default(),
            host_memory_limit: Gauge::default(),
            outbox_drops: Counter::default(),
            buffered_bytes: Gauge::default(),
            buffered_sheds: Counter::default(),
            message_timeouts: Counter::default(),
            publishes: Counter::default(),
            compressions: Counter::default(),
            broker_published: Counter::default(),
            broker_received: Counter::default(),
            broker_errors: Counter::default(),
            broker_reconnects: Counter::default(),
            broker_connected: Gauge::default(),
            broker_dropped: Counter::default(),
            broker_pending: Gauge::default(),
            timers: TimerMetrics::default(),
            history: HistoryMetrics::default(),
            registry: Registry::default(),
        };
        m.timers.register(&mut r);
        m.history.register(&mut r);
        r.register("connections", "Open WebSocket connections", m.connections.clone());
        r.register("connections_accepted", "WebSocket connections accepted", m.connections_total.clone());
        r.register("handshake_rejects", "Handshakes refused, by reason", m.handshake_rejects.clone());
        r.register("messages", "Data messages, by direction", traffic);
        r.register("bytes", "Data message payload bytes, by direction", bytes);
        r.register("closes", "Connections closed, by close code", m.closes.clone());
        r.register("plugin_call_seconds", "Plugin export call latency", m.plugin_calls.clone());
        r.register("plugin_failures", "Plugin calls that failed, by kind", m.plugin_failures.clone());
        r.register("plugin_deadline_hits", "Plugin calls cut off at the CPU deadline", m.plugin_deadline_hits.clone());
        r.register("plugin_reloads", "Plugin loads and reloads, by result", m.plugin_reloads.clone());
        r.register("plugin_compiles", "Plugin files compiled (loads and failed loads)", m.plugin_compiles.clone());
        r.register(
            "plugin_file_read_bytes",
            "Bytes read from plugin files (only when a file's content may have changed)",
            m.plugin_file_bytes_read.clone(),
        );
        r.register("plugin_quarantines", "Times a plugin was quarantined for failing", m.plugin_quarantines.clone());
        r.register(
            "plugin_log_dropped_bytes",
            "Plugin stdout/stderr bytes over the log limit",
            m.plugin_log_dropped.clone(),
        );
        r.register(
            "plugin_http_requests",
            "Outbound HTTP requests plugins made (denied ones included)",
            m.plugin_http_requests.clone(),
        );
        r.register(
            "plugin_http_errors",
            "Outbound HTTP requests of plugins that failed, by kind",
            m.plugin_http_errors.clone(),
        );
        r.register(
            "plugin_http_seconds",
            "Outbound HTTP latency of plugins, until the answer's head or the failure",
            m.plugin_http_seconds.clone(),
        );
        r.register(
            "http_requests",
            "Requests answered on HTTP routes, by route and status class (host refusals included)",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_seconds",
            "Time from an HTTP route request's head to its answer written",
            m.http_request_seconds.clone(),
        );
        r.register("plugin_webhook_events", "Webhook events plugins queued", m.plugin_webhook_events.clone());
        r.register(
            "plugin_webhook_batches",
            "Webhook batches delivered (answered 2xx)",
            m.plugin_webhook_batches.clone(),
        );
        r.register(
            "plugin_webhook_retries",
            "Webhook deliveries tried again after a 5xx, a connection failure or a timeout",
            m.plugin_webhook_retries.clone(),
        );
        r.register(
            "plugin_webhook_dropped",
            "Webhook events dropped, by reason (refused at emit, rejected or failed delivery, shutdown)",
            m.plugin_webhook_dropped.clone(),
        );
        r.register("rooms", "Rooms with at least one member", m.rooms.clone());
        r.register("room_members", "Room memberships", m.room_members.clone());
        r.register(
            "plugin_host_bytes",
            "Bytes the host keeps for a plugin: key/value entries, attachments, room memberships",
            m.plugin_host_bytes.clone(),
        );
        r.register("plugin_host_limit_bytes", "A plugin's share of [host] max_memory", m.plugin_host_limit.clone());
        r.register("host_memory_bytes", "Bytes the host keeps for all plugins", m.host_memory.clone());
        r.register("host_memory_limit_bytes", "[host] max_memory", m.host_memory_limit.clone());
        r.register("outbox_drops", "Messages refused by full outgoing queues", m.outbox_drops.clone());
        r.register(
            "buffered_bytes",
            "Bytes held for peers: partial messages and outgoing queues",
            m.buffered_bytes.clone(),
        );
        r.register(
            "buffered_sheds",
            "Connections closed (1013) because the bytes held exceeded max_buffered_bytes",
            m.buffered_sheds.clone(),
        );
        r.register(
            "message_timeouts",
            "Connections closed (1008) because a message was not complete within message_timeout",
            m.message_timeouts.clone(),
        );
        r.register("publishes", "Room publishes", m.publishes.clone());
        r.register(
            "compressions",
            "Messages compressed with permessage-deflate (a room publish once per parameter set, not per member)",
            m.compressions.clone(),
        );
        if broker {
            Self::register_broker(&mut r, &m);
        }
        Metrics { registry: r, ..m }
    }

    fn register_broker(r: &mut Registry, m: &Metrics) {
        r.register("broker_published", "Publishes sent to the broker", m.broker_published.clone());
        r.register("broker_received", "Publishes received from the broker", m.broker_received.clone());
        r.register("broker_errors", "Broker errors", m.broker_errors.clone());
        r.register("broker_reconnects", "Broker reconnections", m.broker_reconnects.clone());
        r.register(
            "broker_connected",
            "1 while both broker connections (publishing and subscribed) are up",
            m.broker_connected.clone(),
        );
        r.register("broker_dropped", "Publishes not sent to the broker (queue full or down)", m.broker_dropped.clone());
        r.register(
            "broker_pending",
            "Publishes and key/value writes Redis has not yet taken (queued or in flight)",
            m.broker_pending.clone(),
        );
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reject(&self, reason: &str) {
        self.handshake_rejects.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// Counts an answer on an HTTP route, and its time when it answered a whole request.
    pub fn http_answered(&self, route: &str, status: u16, took: Option<std::time::Duration>) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests.get_or_create(&HttpStatusLabel { route: route.to_owned(), status: class }).inc();
        if let Some(took) = took {
            self.http_request_seconds
                .get_or_create(&RouteLabel { route: route.to_owned() })
                .observe(took.as_secs_f64());
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
