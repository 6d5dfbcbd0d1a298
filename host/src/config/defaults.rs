//! Every default of the configuration, in one place, named after its key and grouped by the
//! file's sections. The resolved settings' `Default` impls are built from these, the resolve
//! functions overlay the file's values on those, and a test checks the README's tables against
//! them.
//!
//! The limits the guest SDK's `TestHost` models too (sizes and counts a plugin meets) come from
//! the `wasmsock-limits` crate, which both sides depend on.

use crate::config::file::LogFormat;

pub(crate) const LISTEN: &str = "127.0.0.1:8443";
pub(crate) const PLUGIN_DIR: &str = "plugins/dist";
pub(crate) const STATE_DIR: &str = ".wasmsock";
pub(crate) const LOG_FORMAT: LogFormat = LogFormat::Text;

/// `[tls]`. Without `client_auth`, it is `required` when `client_ca` is set, else `off`.
pub(crate) mod tls {
    pub(crate) const PLAIN: bool = false;
}

/// `[origins]`. Without `allow`, only same-origin requests pass.
pub(crate) mod origins {
    pub(crate) const ALLOW_MISSING: bool = true;
}

/// `[limits]`, per connection. Without `max_frame_size`, it is `max_message_size`.
pub(crate) mod limits {
    use std::time::Duration;

    use crate::config::file::SlowConsumer;

    pub(crate) use wasmsock_limits::MAX_MESSAGE_SIZE;
    pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Off: connections may stay idle forever (the heartbeat still finds dead peers).
    pub(crate) const IDLE_TIMEOUT: Option<Duration> = None;
    pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(30);
    pub(crate) const PONG_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long one message may take to arrive, from its first byte to its last.
    pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const OUTBOX_MESSAGES: usize = 1024;
    pub(crate) const OUTBOX_BYTES: usize = 4 << 20;
    pub(crate) const SLOW_CONSUMER: SlowConsumer = SlowConsumer::Close;
}

/// `[compression]`, permessage-deflate, and a route's `compression`. Chosen by measurement (see
/// README "Compression"): level 1 costs a third of level 6's CPU for most of its ratio on JSON,
/// and no context takeover keeps idle connections free of compression state.
pub(crate) mod compression {
    pub(crate) const ENABLED: bool = true;
    pub(crate) const CONTEXT_TAKEOVER: bool = false;
    pub(crate) const WINDOW_BITS: u8 = 15;
    /// Below this a message hardly shrinks (and the frame header is the same size).
    pub(crate) const MIN_SIZE: usize = 256;
    pub(crate) const LEVEL: u32 = 1;
}

/// `[server]`, the listener.
pub(crate) mod server {
    use std::time::Duration;

    pub(crate) const MAX_CONNECTIONS: usize = 100_000;
    pub(crate) const MAX_CONNECTIONS_PER_IP: usize = 10_000;
    pub(crate) const MAX_PENDING_HANDSHAKES: usize = 4096;
    pub(crate) const MAX_PENDING_HANDSHAKES_PER_IP: usize = 64;
    /// Bytes held for peers (partial messages and outgoing queues) over all connections.
    pub(crate) const MAX_BUFFERED_BYTES: usize = 1 << 30;
    pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const MAX_HEADER_BYTES: usize = 16 << 10;
    pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
    pub(crate) const NOFILE_LIMIT: u64 = 1 << 20;
    pub(crate) const PROXY_PROTOCOL: bool = false;
    /// Clients are told `internal error` or `unavailable`, never a plugin's name or trap.
    pub(crate) const DETAILED_ERRORS: bool = false;
}

/// `[[http_routes]]`.
pub(crate) mod http {
    use std::time::Duration;

    pub(crate) const MAX_BODY_SIZE: usize = 1 << 20;
    pub(crate) const MAX_CONCURRENT: usize = 64;
    pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
}

/// `[admin]`.
pub(crate) mod admin {
    pub(crate) const LISTEN: &str = "127.0.0.1:9090";
}

/// `[plugin_defaults]`, and so every `[plugins.NAME]`.
pub(crate) mod plugin {
    use std::time::Duration;

    use crate::config::file::OnError;

    pub(crate) use wasmsock_limits::{MAX_SEND_BYTES_PER_CALL, MAX_SENDS_PER_CALL};
    pub(crate) const DEADLINE: Duration = Duration::from_millis(50);
    /// A fifth of the plugin's deadline.
    pub(crate) fn slow_call(deadline: Duration) -> Duration {
        deadline / 5
    }
    pub(crate) const MAX_MEMORY: usize = 64 << 20;
    /// As many as the engine reserves, which is also the most a plugin may set.
    pub(crate) const MAX_TABLE_ELEMENTS: usize = super::engine::MAX_TABLE_ELEMENTS;
    pub(crate) const ON_ERROR: OnError = OnError::Close;
    pub(crate) const MAX_FAILURES: u32 = 10;
    pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(10);
    pub(crate) const QUARANTINE: Duration = Duration::from_secs(30);
    pub(crate) const MAX_LOG_BYTES: usize = 4096;
    pub(crate) const MAX_IDLE_INSTANCES: usize = 8;
    /// Timers one plugin may hold armed at once.
    pub(crate) use wasmsock_limits::MAX_TIMERS;
    /// Off: the plugin's share of `[host] max_memory` is the total divided by the number of
    /// plugins.
    pub(crate) const MAX_HOST_MEMORY: Option<usize> = None;
    /// Outbound HTTP: no host is allowed unless listed (`http_allowed_hosts`).
    pub(crate) const HTTP_ALLOWED_HOSTS: &[&str] = &[];
    pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
    pub(crate) const HTTP_MAX_RESPONSE: usize = 1 << 20;
    pub(crate) const HTTP_MAX_CONCURRENT: usize = 64;
    /// Off: the system's trust store.
    pub(crate) const HTTP_CA: Option<&str> = None;
    /// Off: a name in `http_allowed_hosts` that resolves to an internal address is refused.
    pub(crate) const HTTP_ALLOW_PRIVATE: bool = false;
    pub(crate) const WEBHOOK_FLUSH_DELAY: Duration = Duration::from_millis(200);
    pub(crate) const WEBHOOK_MAX_BATCH_EVENTS: usize = 50;
    pub(crate) const WEBHOOK_MAX_BATCH_BYTES: usize = 256 << 10;
    pub(crate) const WEBHOOK_MAX_QUEUED_EVENTS: usize = 10_000;
    pub(crate) const WEBHOOK_MAX_QUEUED_BYTES: usize = 8 << 20;
    pub(crate) const WEBHOOK_MAX_ATTEMPTS: u32 = 5;
    pub(crate) const WEBHOOK_RETRY_BACKOFF: Duration = Duration::from_millis(500);
    pub(crate) const WEBHOOK_MAX_CONCURRENT: usize = 4;
}

/// `[host]`, what plugins may keep in the host.
pub(crate) mod host {
    pub(crate) use wasmsock_limits::{
        KV_MAX_KEY, KV_MAX_KEYS, KV_MAX_VALUE, MAX_ATTACHMENT, MAX_HOST_MEMORY, MAX_ROOM_NAME, MAX_ROOMS_PER_CONNECTION,
    };
}

/// `[host] max_history_memory`: room history kept for all rooms together.
pub(crate) mod history_memory {
    pub(crate) const MAX_HISTORY_MEMORY: usize = 64 << 20;
}

/// `[[history]]`, per rule (`rooms` has no default).
pub(crate) mod history {
    use std::time::Duration;

    pub(crate) const SIZE: usize = 100;
    pub(crate) const TTL: Duration = Duration::from_secs(300);
    pub(crate) const MAX_BYTES: usize = 1 << 20;
    /// Not configurable beyond: a room's log is a queue in memory.
    pub(crate) const MAX_SIZE: usize = 100_000;
}

/// `[engine]`, the wasm engine.
pub(crate) mod engine {
    use std::time::Duration;

    pub(crate) const MAX_INSTANCES: u32 = 256;
    pub(crate) const MAX_MEMORY: usize = 256 << 20;
    pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);
    /// Far above any plugin seen (a few MiB with a full standard library), far below what
    /// reading and compiling a stray big file would cost.
    pub(crate) const MAX_PLUGIN_SIZE: usize = 64 << 20;
    /// Table slots every pooled instance reserves (not configurable): the ceiling of a plugin's
    /// `max_table_elements`.
    pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
}

/// `[broker]` (`url` has no default: without it there is no broker).
pub(crate) mod broker {
    pub(crate) const PREFIX: &str = "wasmsock";
    pub(crate) const SHARED_KV: bool = false;
    pub(crate) const MAX_PENDING: usize = 10_000;
    pub(crate) const MAX_PENDING_BYTES: usize = 16 << 20;
    /// A node that has not said it is alive for this long no longer counts (its users'
    /// connections drop out of the cluster's counts); it says so every fifth of it.
    pub(crate) const NODE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
}
