//! The host's defaults; the SDK's `TestHost` models them.
//!
//! These are the defaults of the configuration keys that bound what a plugin may do, shared by
//! the two sides that must agree on them: the server (`wasmsock`, which starts from them before
//! it reads the configuration file) and the guest SDK (`wasmsock-sdk`, whose in-memory test host
//! refuses what the server would refuse). Each constant is named after its configuration key.
//! The server's other defaults are in `host/src/config/defaults.rs`; the README's configuration
//! tables are checked against both.
//!
//! This crate has no dependencies and builds for every target, `wasm32-wasip2` included.

#![no_std]

/// `[limits] max_message_size`: largest message, in bytes, a connection may send or be sent.
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// `[plugin_defaults] max_sends_per_call`: sends and publishes one plugin call may make.
pub const MAX_SENDS_PER_CALL: u32 = 10_000;
/// `[plugin_defaults] max_send_bytes_per_call`: bytes one plugin call may send and publish.
pub const MAX_SEND_BYTES_PER_CALL: usize = 64 << 20;

/// `[host] max_attachment`: bytes of one plugin's attachment on one connection.
pub const MAX_ATTACHMENT: usize = 16 << 10;
/// `[host] max_rooms_per_connection`: rooms one connection may be in.
pub const MAX_ROOMS_PER_CONNECTION: usize = 64;
/// `[host] max_room_name`: bytes of a room name.
pub const MAX_ROOM_NAME: usize = 128;
/// `[host] kv_max_keys`: keys in one plugin's key/value store.
pub const KV_MAX_KEYS: usize = 10_000;
/// `[host] kv_max_key`: bytes of a key/value key.
pub const KV_MAX_KEY: usize = 256;
/// `[host] kv_max_value`: bytes of a key/value value.
pub const KV_MAX_VALUE: usize = 64 << 10;
/// `[host] max_memory`: bytes the host keeps for all plugins together (key/value entries,
/// attachments, room memberships, each charged its size plus 64 bytes); a plugin's share is
/// this divided by the number of plugins, unless its `max_host_memory` says otherwise.
pub const MAX_HOST_MEMORY: usize = 256 << 20;
/// Most keys one `kv-list` call returns (not configurable: a page; the plugin asks for the next).
pub const KV_MAX_KEYS_LISTED: u32 = 1000;

/// `[plugin_defaults] max_timers`: timers one plugin may hold armed at once.
pub const MAX_TIMERS: usize = 10_000;
/// Longest timer delay, in milliseconds (a day; not configurable: a plugin that needs longer
/// re-arms).
pub const MAX_TIMER_DELAY_MS: u32 = 24 * 60 * 60 * 1000;
/// Longest timer key, in bytes (not configurable).
pub const MAX_TIMER_KEY: usize = 256;
