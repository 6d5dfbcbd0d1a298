//! Host-side bindings generated from `wit/`, the single source of truth shared with the guest
//! SDK, for every contract version this host serves: the current one (`wit/wasmsock.wit`) and
//! the frozen older ones (`wit/v0.1.0/`). The rest of the host uses the host types below;
//! conversion to and from each version's generated types happens here, at the edge.
//!
//! Calls into plugins are async (they run on a fiber, so a long one can yield and a call that
//! waits holds no thread); the host functions plugins import are plain calls, except the
//! atomic key/value operations and the cluster's user counts, which may wait for Redis.

pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
        exports: { default: async },
    });
}

pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
        // With a shared store, atomic operations are decided by Redis: the call waits for its
        // answer without holding a thread.
        imports: {
            "wasmsock:plugin/host.kv-increment": async,
            "wasmsock:plugin/host.kv-compare-and-set": async,
            "wasmsock:plugin/users.user-connections-everywhere": async,
            "wasmsock:plugin/presence.join": async,
            "wasmsock:plugin/presence.leave": async,
            "wasmsock:plugin/presence.count": async,
            "wasmsock:plugin/presence.users": async,
            "wasmsock:plugin/history.publish": async,
            "wasmsock:plugin/history.read": async,
            "wasmsock:plugin/history.current": async,
            "wasmsock:plugin/history.join": async,
        },
    });
}

/// The optional `http` export of contract 0.2.0 (world `http-plugin`): only its export is used;
/// the imports and types are those of [`v0_2`], so a plugin exporting it is linked and called
/// like any 0.2.0 plugin, and `on-request` is looked up on its instance when present.
pub(crate) mod v0_2_http {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "http-plugin",
        exports: { default: async },
        with: {
            "wasmsock:plugin/types": super::v0_2::wasmsock::plugin::types,
            "wasmsock:plugin/host": super::v0_2::wasmsock::plugin::host,
            "wasmsock:plugin/users": super::v0_2::wasmsock::plugin::users,
            "wasmsock:plugin/presence": super::v0_2::wasmsock::plugin::presence,
            "wasmsock:plugin/webhooks": super::v0_2::wasmsock::plugin::webhooks,
            "wasmsock:plugin/timers": super::v0_2::wasmsock::plugin::timers,
            "wasmsock:plugin/history": super::v0_2::wasmsock::plugin::history,
        },
    });

    pub(crate) use exports::wasmsock::plugin::http::{Guest as Http, GuestIndices as HttpIndices};
    use exports::wasmsock::plugin::http::{HttpRequest as WitRequest, HttpResponse as WitResponse};

    impl From<super::HttpRequest> for WitRequest {
        fn from(r: super::HttpRequest) -> Self {
            WitRequest {
                method: r.method,
                route: r.route,
                path: r.path,
                query: r.query,
                headers: r.headers,
                body: r.body,
                remote_addr: r.remote_addr,
                client_cert_subject: r.client_cert_subject,
            }
        }
    }

    impl From<WitResponse> for super::HttpResponse {
        fn from(r: WitResponse) -> Self {
            super::HttpResponse { status: r.status, headers: r.headers, body: r.body }
        }
    }
}

/// The optional `timer` export of contract 0.2.0 (world `timer-plugin`), found like `http`:
/// `on-timer` is looked up on a plugin's instance when the plugin exports it.
pub(crate) mod v0_2_timer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "timer-plugin",
        exports: { default: async },
        with: {
            "wasmsock:plugin/types": super::v0_2::wasmsock::plugin::types,
            "wasmsock:plugin/host": super::v0_2::wasmsock::plugin::host,
            "wasmsock:plugin/users": super::v0_2::wasmsock::plugin::users,
            "wasmsock:plugin/presence": super::v0_2::wasmsock::plugin::presence,
            "wasmsock:plugin/webhooks": super::v0_2::wasmsock::plugin::webhooks,
            "wasmsock:plugin/timers": super::v0_2::wasmsock::plugin::timers,
            "wasmsock:plugin/history": super::v0_2::wasmsock::plugin::history,
        },
    });

    pub(crate) use exports::wasmsock::plugin::timer::{Guest as Timer, GuestIndices as TimerIndices};
}

/// A plain HTTP request for `on-request`.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub route: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_addr: String,
    pub client_cert_subject: Option<String>,
}

/// A plugin's answer to `on-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Default for Message {
    fn default() -> Self {
        Message::Text(String::new())
    }
}

pub use crate::hub::Identity;

/// The upgrade request as `on-connect` sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub route: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    pub client_cert_subject: Option<String>,
    pub identity: Option<Identity>,
}

/// A plugin's answer to `on-connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    Accept { identity: Option<Identity>, protocol: Option<String> },
    Reject { status: u16, reason: String },
}

/// What happens to a message after a plugin has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Pass,
    Forward(Message),
    Done,
}

/// Why a host call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UnknownConnection,
    NotPermitted,
    QueueFull,
    TooLarge,
    LimitReached,
    InvalidArgument,
    /// The plugin's share of host memory is full.
    HostMemoryFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Conversions between the host types and one contract version's generated types, whose
/// shapes are the same in every version this host serves.
///
/// `$full` is what `host-memory-full` becomes: versions before 0.2.0 have no such code.
macro_rules! convert {
    ($v:ident, $m:ident, host_memory_full: $full:ident) => {
        mod $m {
            use super::$v::wasmsock::plugin::types as wit;
            use super::*;

            impl From<Message> for wit::Message {
                fn from(m: Message) -> Self {
                    match m {
                        Message::Text(t) => wit::Message::Text(t),
                        Message::Binary(b) => wit::Message::Binary(b),
                    }
                }
            }

            impl From<wit::Message> for Message {
                fn from(m: wit::Message) -> Self {
                    match m {
                        wit::Message::Text(t) => Message::Text(t),
                        wit::Message::Binary(b) => Message::Binary(b),
                    }
                }
            }

            impl From<Identity> for wit::Identity {
                fn from(i: Identity) -> Self {
                    wit::Identity { id: i.id, claims: i.claims }
                }
            }

            impl From<wit::Identity> for Identity {
                fn from(i: wit::Identity) -> Self {
                    Identity { id: i.id, claims: i.claims }
                }
            }

            impl From<Request> for wit::Request {
                fn from(r: Request) -> Self {
                    wit::Request {
                        route: r.route,
                        path: r.path,
                        query: r.query,
                        headers: r.headers,
                        remote_addr: r.remote_addr,
                        client_cert_subject: r.client_cert_subject,
                        identity: r.identity.map(Into::into),
                    }
                }
            }

            impl From<wit::Connect> for Connect {
                fn from(c: wit::Connect) -> Self {
                    match c {
                        wit::Connect::Accept(a) => {
                            Connect::Accept { identity: a.identity.map(Into::into), protocol: a.protocol }
                        }
                        wit::Connect::Reject(r) => Connect::Reject { status: r.status, reason: r.reason },
                    }
                }
            }

            impl From<wit::Flow> for Flow {
                fn from(f: wit::Flow) -> Self {
                    match f {
                        wit::Flow::Pass => Flow::Pass,
                        wit::Flow::Forward(m) => Flow::Forward(m.into()),
                        wit::Flow::Done => Flow::Done,
                    }
                }
            }

            impl From<ErrorCode> for wit::ErrorCode {
                fn from(e: ErrorCode) -> Self {
                    match e {
                        ErrorCode::UnknownConnection => wit::ErrorCode::UnknownConnection,
                        ErrorCode::NotPermitted => wit::ErrorCode::NotPermitted,
                        ErrorCode::QueueFull => wit::ErrorCode::QueueFull,
                        ErrorCode::TooLarge => wit::ErrorCode::TooLarge,
                        ErrorCode::LimitReached => wit::ErrorCode::LimitReached,
                        ErrorCode::InvalidArgument => wit::ErrorCode::InvalidArgument,
                        ErrorCode::HostMemoryFull => wit::ErrorCode::$full,
                    }
                }
            }

            impl From<wit::LogLevel> for LogLevel {
                fn from(l: wit::LogLevel) -> Self {
                    match l {
                        wit::LogLevel::Trace => LogLevel::Trace,
                        wit::LogLevel::Debug => LogLevel::Debug,
                        wit::LogLevel::Info => LogLevel::Info,
                        wit::LogLevel::Warn => LogLevel::Warn,
                        wit::LogLevel::Error => LogLevel::Error,
                    }
                }
            }
        }
    };
}

convert!(v0_1, convert_v0_1, host_memory_full: LimitReached);
convert!(v0_2, convert_v0_2, host_memory_full: HostMemoryFull);
