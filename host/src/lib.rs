//! wasmsock: a WebSocket-over-TLS server whose application logic runs as sandboxed
//! WebAssembly components.
//!
//! The host terminates TLS, speaks RFC 6455, enforces limits, keeps connections, rooms and
//! per-connection state, and calls plugins' `on-connect`, `on-message` and `on-close` exports.
//! Plugins are reloaded live when their files change.

pub mod admin;
mod broker;
pub mod build;
pub mod cli;
mod clock;
pub mod config;
pub mod conn;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod origin;
pub mod plugin;
pub mod proxy_protocol;
pub mod router;
pub mod scaffold;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod transport;
pub mod ws;

pub use config::{Overrides, Settings};
pub use server::Server;
