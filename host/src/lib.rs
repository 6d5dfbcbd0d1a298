//! wasmsock: a WebSocket-over-TLS server whose application logic runs as sandboxed
//! WebAssembly components.
//!
//! The host terminates TLS, speaks RFC 6455, enforces limits, keeps connections, rooms and
//! per-connection state, and calls plugins' `on-connect`, `on-message` and `on-close` exports.
//! Plugins are reloaded live when their files change.
//!
//! The library's API is what the binary, the integration tests and the benchmarks use:
//! [`Settings`] and [`Overrides`] to configure, [`Server`] to bind and run, [`cli::main`], and
//! [`plugin::LoadOutcome`] and [`plugin::overhead`] for tests and benchmarks. Everything else is
//! internal. A connection's life reads top-down from `conn/mod.rs`.

mod admin;
mod broker;
mod build;
pub mod cli;
mod clock;
mod config;
mod conn;
mod ctx;
mod guest_lang;
mod http;
mod hub;
mod metrics;
mod origin;
pub mod plugin;
mod proxy_protocol;
mod route_path;
mod router;
mod scaffold;
pub mod server;
mod static_files;
mod tls;
mod transport;
mod ws;

pub use config::{Overrides, Settings};
pub use server::Server;
