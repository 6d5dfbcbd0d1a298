//! Plugins: compiling, validating, pooling and calling wasm components, and reloading them
//! when their files change.

mod bindings;
mod breaker;
mod contract;
mod engine;
mod host_api;
mod instance;
pub mod overhead;
mod registry;
mod state;
mod wasi;
mod watcher;

pub use bindings::{Connect, Flow, Message, Request};
pub use contract::{CONTRACT_PACKAGE, CONTRACT_VERSION, ComponentSummary, inspect, is_trapped_import};
pub use engine::Runtime;
pub(crate) use host_api::outgoing;
pub use instance::{CallError, Export, Loaded};
pub use registry::{CallFailure, LoadOutcome, PluginListing, PluginSlot, Registry, check_bytes, plugin_name};
pub use watcher::{WatchGuard, watch};
