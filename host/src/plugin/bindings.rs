//! Host-side bindings generated from `wit/`, the single source of truth shared with the guest
//! SDK. Everything outside `plugin/` uses host types; conversion happens here and in `host_api`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use self::wasmsock::plugin::types::{Connect, ErrorCode, Flow, Identity, LogLevel, Message, Request};
