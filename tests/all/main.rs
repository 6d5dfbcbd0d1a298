//! Integration tests, one binary (one link): the real server in-process on port 0, real TLS,
//! real wasm plugins built by `build.rs`, and real clients.

// Helpers as well as tests: an unwrap on the test's own setup is how it fails.
#![allow(clippy::unwrap_used)]

mod harness;

mod api;
mod architecture;
mod auth;
mod broker;
mod broker_history;
mod broker_presence;
mod browser;
mod compression;
mod contract;
mod core;
mod devtools;
mod edge;
mod history;
mod hostile;
mod http_routes;
mod idle_memory;
mod lang;
mod observability;
mod outbound;
mod process;
mod proxy;
mod pusher;
mod pusher_api;
mod rooms;
mod sandbox;
mod state;
mod timers;
mod webhooks;
