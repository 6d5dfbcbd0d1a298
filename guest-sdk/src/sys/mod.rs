//! The one place that talks to the host: WIT imports on wasm32, the in-memory test host elsewhere.
//!
//! Everything above this module uses SDK types only, so plugin code is identical in both worlds.

/// The WIT bindings, generated from `../wit` (the same file the host's `bindgen!` reads).
///
/// `export_plugin!` expands in the *plugin's* crate, so the generated export glue must reach
/// the bindings and the wit-bindgen runtime through paths that resolve there: hence
/// `default_bindings_module` and `runtime_path` name public (doc-hidden) paths of this crate,
/// and plugins need no direct wit-bindgen dependency.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "full-plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmsock_sdk::__private::bindings",
        runtime_path: "wasmsock_sdk::__private::wit_bindgen::rt",
    });
}

#[cfg(target_arch = "wasm32")]
pub use bindings::export;

/// The real host calls: thin wrappers converting between SDK types and WIT types. Each
/// function has a twin of the same signature in `memory`; keep the two in step.
#[cfg(target_arch = "wasm32")]
mod imp {
    use super::bindings::wasmsock::plugin::{history, host, presence, timers, types, users, webhooks};
    use crate::level::Level;
    use crate::{Error, Identity, Message};

    pub(crate) fn send(conn: u64, msg: Message) -> Result<(), Error> {
        host::send(conn, &msg.into()).map_err(Error::from)
    }
    pub(crate) fn close(conn: u64, code: u16, reason: &str) -> Result<(), Error> {
        host::close(conn, code, reason).map_err(Error::from)
    }
    pub(crate) fn identity(conn: u64) -> Option<Identity> {
        host::identity_of(conn).map(Identity::from)
    }
    pub(crate) fn attachment(conn: u64) -> Option<Vec<u8>> {
        host::attachment(conn)
    }
    pub(crate) fn set_attachment(conn: u64, data: &[u8]) -> Result<(), Error> {
        host::set_attachment(conn, data).map_err(Error::from)
    }
    pub(crate) fn join(conn: u64, room: &str) -> Result<(), Error> {
        host::join(conn, room).map_err(Error::from)
    }
    pub(crate) fn leave(conn: u64, room: &str) -> bool {
        host::leave(conn, room)
    }
    pub(crate) fn rooms(conn: u64) -> Vec<String> {
        host::rooms(conn)
    }
    pub(crate) fn publish(room: &str, msg: Message, except: Option<u64>) -> Result<u32, Error> {
        host::publish(room, &msg.into(), except).map_err(Error::from)
    }
    pub(crate) fn members(room: &str, limit: u32) -> Vec<u64> {
        host::members(room, limit)
    }
    pub(crate) fn member_count(room: &str) -> u32 {
        host::member_count(room)
    }
    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        host::kv_get(key)
    }
    pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), Error> {
        host::kv_set(key, value).map_err(Error::from)
    }
    pub(crate) fn kv_delete(key: &str) -> bool {
        host::kv_delete(key)
    }
    pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, Error> {
        host::kv_increment(key, delta).map_err(Error::from)
    }
    pub(crate) fn kv_compare_and_set(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, Error> {
        host::kv_compare_and_set(key, expected, new).map_err(Error::from)
    }
    pub(crate) fn kv_list(prefix: &str, after: Option<&str>, limit: u32) -> crate::kv::Page {
        let page = host::kv_list(prefix, after, limit);
        crate::kv::Page { keys: page.keys, next: page.next }
    }

    impl From<host::KvError> for Error {
        fn from(e: host::KvError) -> Self {
            match e {
                host::KvError::InvalidKey => Error::InvalidArgument,
                host::KvError::TooLarge => Error::TooLarge,
                host::KvError::LimitReached => Error::LimitReached,
                host::KvError::NotANumber => Error::NotANumber,
                host::KvError::Unavailable => Error::Unavailable,
            }
        }
    }
    pub(crate) fn config(key: &str) -> Option<String> {
        host::config(key)
    }
    pub(crate) fn send_to_user(user: &str, msg: Message) -> Result<u32, Error> {
        users::send_to_user(user, &msg.into()).map_err(Error::from)
    }
    pub(crate) fn close_user(user: &str, code: u16, reason: &str) -> Result<u32, Error> {
        users::close_user(user, code, reason).map_err(Error::from)
    }
    pub(crate) fn user_connections(user: &str) -> u32 {
        users::user_connections(user)
    }
    pub(crate) fn user_connections_everywhere(user: &str) -> Option<u32> {
        users::user_connections_everywhere(user)
    }
    pub(crate) fn presence_join(conn: u64, room: &str) -> Result<crate::presence::Change, Error> {
        presence::join(conn, room).map(change).map_err(Error::from)
    }
    pub(crate) fn presence_leave(conn: u64, room: &str) -> Option<crate::presence::Change> {
        presence::leave(conn, room).map(change)
    }
    pub(crate) fn presence_count(room: &str) -> crate::presence::Census {
        let c = presence::count(room);
        crate::presence::Census {
            connections: c.connections,
            users: c.users,
            anonymous: c.anonymous,
            cluster: c.cluster,
        }
    }
    pub(crate) fn presence_users(room: &str, after: Option<&str>, limit: u32) -> crate::presence::UserPage {
        let p = presence::users(room, after, limit);
        crate::presence::UserPage { users: p.users, next: p.next, cluster: p.cluster }
    }
    fn change(c: presence::Change) -> crate::presence::Change {
        crate::presence::Change { here: c.here, everywhere: c.everywhere }
    }
    pub(crate) fn set_timer(key: &str, delay_ms: u32, conn: Option<u64>) -> Result<(), Error> {
        timers::set_timer(key, delay_ms, conn).map_err(Error::from)
    }
    pub(crate) fn cancel_timer(key: &str) -> bool {
        timers::cancel_timer(key)
    }
    pub(crate) fn webhook_emit(
        url: &str,
        event: &str,
        signing: Option<&crate::webhook_types::Signing>,
    ) -> Result<(), Error> {
        let signing = signing.map(|s| webhooks::Signing {
            secret: s.secret().to_owned(),
            header: s.signature_header().to_owned(),
            headers: s.headers().to_vec(),
        });
        webhooks::emit(url, event, signing.as_ref()).map_err(Error::from)
    }
    pub(crate) fn history_publish(
        room: &str,
        msg: Message,
        except: Option<u64>,
    ) -> Result<crate::history::Published, Error> {
        let p = history::publish(room, &msg.into(), except).map_err(Error::from)?;
        Ok(crate::history::Published { queued: p.queued, position: p.position.into() })
    }
    pub(crate) fn history_read(
        room: &str,
        after: Option<&crate::history::Position>,
        limit: u32,
    ) -> Result<crate::history::Page, Error> {
        let page = history::read(room, after.map(wit_position).as_ref(), limit).map_err(Error::from)?;
        Ok(crate::history::Page {
            entries: page
                .entries
                .into_iter()
                .map(|e| crate::history::Entry { offset: e.offset, msg: e.msg.into() })
                .collect(),
            complete: page.complete,
            more: page.more,
            top: page.top.into(),
        })
    }
    pub(crate) fn history_current(room: &str) -> Result<crate::history::Position, Error> {
        history::current(room).map(Into::into).map_err(Error::from)
    }
    pub(crate) fn history_join(
        conn: u64,
        room: &str,
        after: Option<&crate::history::Position>,
    ) -> Result<crate::history::Recovery, Error> {
        let r = history::join(conn, room, after.map(wit_position).as_ref()).map_err(Error::from)?;
        Ok(crate::history::Recovery { recovered: r.recovered, replayed: r.replayed, top: r.top.into() })
    }
    fn wit_position(p: &crate::history::Position) -> history::Position {
        history::Position { offset: p.offset, epoch: p.epoch.clone() }
    }
    impl From<history::Position> for crate::history::Position {
        fn from(p: history::Position) -> Self {
            crate::history::Position { offset: p.offset, epoch: p.epoch }
        }
    }
    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => types::LogLevel::Trace,
            Level::Debug => types::LogLevel::Debug,
            Level::Info => types::LogLevel::Info,
            Level::Warn => types::LogLevel::Warn,
            Level::Error => types::LogLevel::Error,
        };
        host::log(level, message)
    }

    impl From<types::ErrorCode> for Error {
        fn from(code: types::ErrorCode) -> Self {
            match code {
                types::ErrorCode::UnknownConnection => Error::UnknownConnection,
                types::ErrorCode::NotPermitted => Error::NotPermitted,
                types::ErrorCode::QueueFull => Error::QueueFull,
                types::ErrorCode::TooLarge => Error::TooLarge,
                types::ErrorCode::LimitReached => Error::LimitReached,
                types::ErrorCode::InvalidArgument => Error::InvalidArgument,
                types::ErrorCode::HostMemoryFull => Error::HostMemoryFull,
            }
        }
    }

    impl From<Message> for types::Message {
        fn from(msg: Message) -> Self {
            match msg {
                Message::Text(t) => types::Message::Text(t),
                Message::Binary(b) => types::Message::Binary(b),
            }
        }
    }

    impl From<types::Message> for Message {
        fn from(msg: types::Message) -> Self {
            match msg {
                types::Message::Text(t) => Message::Text(t),
                types::Message::Binary(b) => Message::Binary(b),
            }
        }
    }

    impl From<types::Identity> for Identity {
        fn from(id: types::Identity) -> Self {
            Identity { id: id.id, claims: id.claims }
        }
    }

    impl From<Identity> for types::Identity {
        fn from(id: Identity) -> Self {
            types::Identity { id: id.id, claims: id.claims }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod memory;

#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
pub(crate) use http::http_send;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use memory::http_send;

#[cfg(target_arch = "wasm32")]
pub(crate) use imp::*;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use memory::{
    attachment, close, close_user, config, identity, join, kv_compare_and_set, kv_delete, kv_get, kv_increment,
    kv_list, kv_set, leave, log, member_count, members, presence_count, presence_join, presence_leave, presence_users,
    publish, rooms, send, send_to_user, set_attachment, user_connections, user_connections_everywhere, webhook_emit,
};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use memory::{cancel_timer, set_timer};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use memory::{history_current, history_join, history_publish, history_read};
