//! Plugins: compiling, validating, pooling and calling wasm components, and reloading them
//! when their files change.

mod bindings;
mod breaker;
mod capacity;
mod contract;
mod engine;
mod history_api;
mod host_api;
mod instance;
mod lanes;
mod outbound;
pub mod overhead;
mod presence_api;
mod registry;
mod state;
mod stop_clock;
mod ticker;
mod timer_driver;
mod timers_api;
mod users_api;
mod wasi;
mod watcher;
mod webhooks;
mod webhooks_api;

pub(crate) use bindings::{Connect, Flow, HttpRequest, HttpResponse, Message, Request};
pub(crate) use contract::{CONTRACT_PACKAGE, CONTRACT_VERSION, is_trapped_import};
pub(crate) use engine::Runtime;
pub(crate) use host_api::{message_len, outgoing};
pub use registry::LoadOutcome;
pub(crate) use registry::{PluginSlot, Registry, check_bytes, plugin_name};
pub(crate) use timer_driver::start as start_timers;
pub(crate) use watcher::{WatchGuard, watch};
