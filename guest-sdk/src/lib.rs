//! Write [wasmsock](https://github.com/wasmsock/wasmsock) plugins.
//!
//! A plugin is a type implementing [`Plugin`] (every method is optional) plus one
//! [`export_plugin!`] line. Build the crate for `wasm32-wasip2` and drop the `.wasm` file into
//! the server's plugin directory: it is live at once, and replaced live when the file changes.
//!
//! ```
//! use wasmsock_sdk::{export_plugin, Conn, Flow, Message, Plugin};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn on_message(&self, conn: Conn, msg: Message) -> Flow {
//!         // A full queue or a vanished peer is not this plugin's problem: drop the reply.
//!         let _ = conn.send(msg);
//!         Flow::Done
//!     }
//! }
//!
//! export_plugin!(Echo);
//! ```
//!
//! # The execution model, in short
//! The host owns sockets, rooms, per-connection attachments and a key/value store. A plugin
//! instance is reused for many connections and may be replaced at any time (hot reload, or after
//! a trap), so keep anything that must last in [`Conn::set_attachment`] or [`kv`], not in fields
//! of your type. Fields are fine for caches derived from [`config`] (parsed keys and the like):
//! the value of your type is created once per instance with [`Default`].
//!
//! Every call runs under a CPU deadline and a memory cap. Plugins cannot block a thread: there
//! is no filesystem, no sockets and no sleeping; outbound HTTP ([`http`]) to the backends the
//! server allows suspends the call without holding a thread. Output written to stdout/stderr
//! goes to the server log.
//!
//! # What is where
//! - [`Plugin`], [`Connect`], [`Flow`]: what the host calls and what a plugin answers.
//! - [`Conn`]: send, close, identity, per-connection attachments and room membership.
//! - [`Message`], [`Request`], [`Identity`]: the data a plugin is handed.
//! - [`rooms`], [`kv`], [`log`], [`config`]: the host's other services.
//! - [`http`]: calls to the application's backend (allowed hosts only).
//! - [`presence`]: who is in a room on every node; joins and leaves announced once per user.
//! - [`timers`]: one-shot timers the host holds, calling [`Plugin::on_timer`].
//! - [`history`]: rooms' last publishes, with positions, for clients that come back.
//! - [`webhooks`]: events for the backend, batched, signed and retried by the host.
//! - [`Error`]: why a host call failed.
//!
//! # Testing plugins natively
// (A plain link: `testing` is not built for wasm32, where an intra-doc link would not resolve.)
//! On targets other than wasm32, the host calls go to
//! [`testing::TestHost`](testing/struct.TestHost.html), an in-memory host that records what a
//! plugin sent, published, stored and closed, so plugin logic is unit-tested with plain
//! `cargo test`. The examples in these docs run that way.

#![warn(missing_docs)]

// The generated bindings name this crate by its public path, also from inside it.
extern crate self as wasmsock_sdk;

mod conn;
mod error;
pub mod history;
pub mod http;
mod http_types;
pub mod kv;
mod level;
pub mod log;
mod message;
mod plugin;
pub mod presence;
mod request;
pub mod rooms;
mod serve;
mod sys;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod timers;
pub mod users;
mod webhook_types;
pub mod webhooks;

pub use conn::Conn;
pub use error::Error;
pub use message::Message;
pub use plugin::{Connect, Flow, Plugin};
pub use request::{Identity, Request};
pub use serve::{HttpRequest, HttpResponse};

/// The version of the WIT contract (`wasmsock:plugin`) this SDK builds plugins for.
///
/// The host links plugins built for a semver-compatible contract (0.2.x with 0.2.y), still serves
/// plugins built for the older contracts it keeps (0.1.x), and refuses
/// others at load time; logging this from a plugin helps when tracking down such a refusal.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// wasmsock_sdk::info!("built for wasmsock:plugin@{}", wasmsock_sdk::CONTRACT_VERSION);
/// # assert_eq!(host.logs()[0].1, format!("built for wasmsock:plugin@{}", wasmsock_sdk::CONTRACT_VERSION));
/// ```
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A setting of this plugin from the host configuration (`[plugins.<name>.config]`), including
/// secrets the host resolved from environment variables. `None` when unset.
///
/// Settings are strings; parse them yourself. Caching the parsed form in a field of the plugin
/// type is fine: the field lives exactly as long as one instance, and a new instance reads the
/// settings afresh.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new().config("greeting", "hi");
/// let greeting = wasmsock_sdk::config("greeting").unwrap_or_else(|| "hello".into());
/// assert_eq!(greeting, "hi");
/// ```
pub fn config(key: &str) -> Option<String> {
    sys::config(key)
}

/// Exports a [`Plugin`] type as the plugin's entry points. Use it exactly once per crate.
///
/// The type must implement [`Default`]; one value is created per plugin instance.
///
/// ```
/// #[derive(Default)]
/// struct Quiet;
/// impl wasmsock_sdk::Plugin for Quiet {}
/// wasmsock_sdk::export_plugin!(Quiet);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmsockExport;
            fn __wasmsock_plugin() -> &'static $plugin {
                static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
                PLUGIN.get_or_init(<$plugin as ::core::default::Default>::default)
            }
            impl $crate::__private::Guest for __WasmsockExport {
                fn on_connect(conn: u64, req: $crate::__private::WitRequest) -> $crate::__private::WitConnect {
                    $crate::__private::on_connect(__wasmsock_plugin(), conn, req)
                }
                fn on_message(conn: u64, msg: $crate::__private::WitMessage) -> $crate::__private::WitFlow {
                    $crate::__private::on_message(__wasmsock_plugin(), conn, msg)
                }
                fn on_close(conn: u64, code: u16, reason: ::std::string::String) {
                    $crate::__private::on_close(__wasmsock_plugin(), conn, code, reason)
                }
            }
            impl $crate::__private::HttpGuest for __WasmsockExport {
                fn on_request(req: $crate::__private::WitHttpRequest) -> $crate::__private::WitHttpResponse {
                    $crate::__private::on_request(__wasmsock_plugin(), req)
                }
            }
            impl $crate::__private::TimerGuest for __WasmsockExport {
                fn on_timer(key: ::std::string::String, conn: ::core::option::Option<u64>) {
                    $crate::__private::on_timer(__wasmsock_plugin(), key, conn)
                }
            }
    $crate::__private::export!(__WasmsockExport with_types_in $crate::__private::bindings);
        };
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::plugin::glue::{on_close, on_connect, on_message, on_request, on_timer};
    pub use crate::sys::bindings;
    pub use crate::sys::bindings::exports::wasmsock::plugin::handler::Guest;
    pub use crate::sys::bindings::exports::wasmsock::plugin::http::{
        Guest as HttpGuest, HttpRequest as WitHttpRequest, HttpResponse as WitHttpResponse,
    };
    pub use crate::sys::bindings::exports::wasmsock::plugin::timer::Guest as TimerGuest;
    pub use crate::sys::bindings::wasmsock::plugin::types::{
        Connect as WitConnect, Flow as WitFlow, Message as WitMessage, Request as WitRequest,
    };
    pub use crate::sys::export;
    pub use wit_bindgen;
}

#[cfg(test)]
mod tests {
    /// The constant must name the package version the bindings are generated from.
    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit = include_str!("../../wit/wasmsock.wit");
        let expected = format!("package wasmsock:plugin@{};", super::CONTRACT_VERSION);
        assert!(wit.lines().any(|l| l.trim() == expected), "wit/wasmsock.wit does not declare {expected}");
    }
}
