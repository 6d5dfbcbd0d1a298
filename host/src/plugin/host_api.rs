//! The `host` interface plugins import. Every call is checked: a plugin addresses only
//! connections of routes it serves, and sizes and counts are bounded.
//!
//! The calls are written once, on host types, as methods of [`StoreState`]; each contract
//! version's generated `Host` trait is implemented by converting at the edge (`contract_host!`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::bindings::{ErrorCode, Identity, LogLevel, Message, v0_1, v0_2};
use super::state::{PluginEnv, StoreState};
use crate::hub::{
    Allowance, AtomicError, AttachError, ConnShared, Delivery, JoinError, KvError, KvPage, Outgoing, OverBudget,
    PushError, RoomKey,
};
use crate::ws::CloseCode;

/// Most members returned by one `members` call.
const MAX_MEMBERS_LISTED: u32 = 10_000;
/// Most keys returned by one `kv-list` call (a page: the plugin asks for the next).
const MAX_KEYS_LISTED: u32 = wasmsock_limits::KV_MAX_KEYS_LISTED;
/// Most log lines one call may write, and the longest line kept.
const MAX_LOG_LINES: u32 = 100;
const MAX_LOG_LINE: usize = 2048;

impl StoreState {
    /// The connection `id`, if this plugin may address it.
    pub(super) fn target(&self, id: u64) -> Result<Arc<ConnShared>, ErrorCode> {
        if let Some(c) = &self.call.conn
            && c.id == id
        {
            return Ok(c.clone());
        }
        let conn = self.env.hub.get(id).ok_or(ErrorCode::UnknownConnection)?;
        if !conn.serves(&self.env.name) && !conn.serves(&self.env.scope) {
            return Err(ErrorCode::NotPermitted);
        }
        Ok(conn)
    }

    /// Charges one send of `len` bytes to this call's budget.
    pub(super) fn charge(&mut self, len: usize) -> Result<(), ErrorCode> {
        if !self.allowance().covers(1, len) {
            return Err(ErrorCode::LimitReached);
        }
        self.charge_copies(1, len);
        Ok(())
    }

    /// What is left of this call's send budget.
    pub(super) fn allowance(&self) -> Allowance {
        let s = &self.env.settings;
        Allowance {
            copies: s.max_sends_per_call.saturating_sub(self.call.sends),
            bytes: s.max_send_bytes_per_call.saturating_sub(self.call.send_bytes),
        }
    }

    /// A message to many connections (a room's members, a user's connections): costs one send
    /// per connection it is queued to, and at least one (with a broker it also goes to the
    /// other nodes); refused whole when the budget left does not cover every connection.
    /// `target` names them in the log.
    pub(super) fn fan_out(
        &mut self,
        len: usize,
        target: &str,
        deliver: impl FnOnce(&PluginEnv, Allowance) -> Result<Delivery, OverBudget>,
    ) -> Result<u32, ErrorCode> {
        if !self.allowance().covers(1, len) {
            return Err(ErrorCode::LimitReached);
        }
        let d = deliver(&self.env, self.allowance()).map_err(|over| {
            tracing::debug!(
                plugin = &*self.env.name,
                target,
                conns = over.members,
                "fan-out over the call's send budget"
            );
            ErrorCode::LimitReached
        })?;
        self.charge_copies(d.queued.max(1), len);
        if d.queued == 0 && d.too_large > 0 {
            return Err(ErrorCode::TooLarge);
        }
        Ok(d.queued)
    }

    pub(super) fn charge_copies(&mut self, copies: u32, len: usize) {
        self.call.sends = self.call.sends.saturating_add(copies);
        self.call.send_bytes = self.call.send_bytes.saturating_add((copies as usize).saturating_mul(len));
    }

    /// Refuses a write past the plugin's share of host memory (at debug level: a plugin can
    /// make many in one call; `wasmsock_plugin_host_bytes` shows who is full).
    pub(super) fn host_memory_full(&self) -> ErrorCode {
        let memory = &self.env.hub.memory;
        tracing::debug!(
            plugin = &*self.env.name,
            used = memory.used(&self.env.name),
            total = memory.total(),
            "plugin host memory full: key/value, attachment or room write refused"
        );
        ErrorCode::HostMemoryFull
    }

    pub(super) fn room(&self, name: &str) -> Result<RoomKey, ErrorCode> {
        if name.is_empty() || name.len() > self.env.host_limits.max_room_name {
            return Err(ErrorCode::InvalidArgument);
        }
        Ok(RoomKey::new(&self.env.scope, name))
    }
}

/// A WIT message as an outgoing frame (no copy: the strings and vectors are moved).
pub(crate) fn outgoing(msg: Message) -> Outgoing {
    match msg {
        Message::Text(t) => Outgoing::Text(Bytes::from(t.into_bytes())),
        Message::Binary(b) => Outgoing::Binary(Bytes::from(b)),
    }
}

/// A close's code and reason as a plugin gives them: a code a peer may receive, and a reason
/// that fits a close frame (123 bytes).
pub(super) fn close_args(code: u16, reason: &str) -> Result<CloseCode, ErrorCode> {
    let code = CloseCode::from_wire(code).ok_or(ErrorCode::InvalidArgument)?;
    if reason.len() > 123 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(code)
}

pub(crate) fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
    }
}

fn push_error(e: PushError) -> ErrorCode {
    match e {
        PushError::Full => ErrorCode::QueueFull,
        PushError::Closed => ErrorCode::UnknownConnection,
    }
}

/// The host calls, on host types.
impl StoreState {
    pub(super) fn send(&mut self, conn: u64, msg: Message) -> Result<(), ErrorCode> {
        let target = self.target(conn)?;
        let len = message_len(&msg);
        if len > target.route.limits.max_message_size {
            return Err(ErrorCode::TooLarge);
        }
        self.charge(len)?;
        target.send(outgoing(msg)).map_err(push_error)
    }

    pub(super) fn close(&mut self, conn: u64, code: u16, reason: String) -> Result<(), ErrorCode> {
        let code = close_args(code, &reason)?;
        let target = self.target(conn)?;
        target.close(code, &reason);
        Ok(())
    }

    pub(super) fn identity_of(&mut self, conn: u64) -> Option<Identity> {
        let target = self.target(conn).ok()?;
        target.identity().map(|i| Identity { id: i.id.clone(), claims: i.claims.clone() })
    }

    pub(super) fn attachment(&mut self, conn: u64) -> Option<Vec<u8>> {
        self.target(conn).ok()?.attachment(&self.env.name)
    }

    pub(super) fn set_attachment(&mut self, conn: u64, data: Vec<u8>) -> Result<(), ErrorCode> {
        if data.len() > self.env.host_limits.max_attachment {
            return Err(ErrorCode::TooLarge);
        }
        let target = self.target(conn)?;
        self.env.hub.set_attachment(&target, &self.env.name, data).map_err(|e| match e {
            AttachError::Gone => ErrorCode::UnknownConnection,
            AttachError::HostMemoryFull => self.host_memory_full(),
        })
    }

    pub(super) fn join(&mut self, conn: u64, room: String) -> Result<(), ErrorCode> {
        let key = self.room(&room)?;
        let target = self.target(conn)?;
        self.env.hub.join(&target, key, self.env.host_limits.max_rooms_per_connection).map_err(|e| match e {
            JoinError::Gone => ErrorCode::UnknownConnection,
            JoinError::Limit => ErrorCode::LimitReached,
            JoinError::HostMemoryFull => self.host_memory_full(),
        })
    }

    pub(super) fn leave(&mut self, conn: u64, room: String) -> bool {
        let (Ok(key), Ok(target)) = (self.room(&room), self.target(conn)) else {
            return false;
        };
        self.env.hub.leave(&target, &key)
    }

    pub(super) fn rooms(&mut self, conn: u64) -> Vec<String> {
        let Ok(target) = self.target(conn) else {
            return Vec::new();
        };
        let data = target.data.lock();
        data.rooms.iter().filter(|k| k.plugin == self.env.scope).map(|k| k.name.to_string()).collect()
    }

    /// A publish is charged as a fan-out ([`StoreState::fan_out`]): each member is a copy the
    /// server encrypts and writes.
    pub(super) fn publish(&mut self, room: String, msg: Message, except: Option<u64>) -> Result<u32, ErrorCode> {
        let key = self.room(&room)?;
        let len = message_len(&msg);
        let item = outgoing(msg);
        self.fan_out(len, &room, |env, allowance| env.hub.publish(&key, &item, except, allowance))
    }

    pub(super) fn members(&mut self, room: String, limit: u32) -> Vec<u64> {
        let Ok(key) = self.room(&room) else {
            return Vec::new();
        };
        self.env.hub.rooms.members(&key, limit.min(MAX_MEMBERS_LISTED) as usize)
    }

    pub(super) fn member_count(&mut self, room: String) -> u32 {
        let Ok(key) = self.room(&room) else { return 0 };
        self.env.hub.rooms.count(&key) as u32
    }

    pub(super) fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.env.hub.kv.get(&self.env.name, &key).map(|b| b.to_vec())
    }

    pub(super) fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), ErrorCode> {
        self.env.hub.kv_set(&self.env.name, &key, Bytes::from(value)).map_err(|e| match e {
            KvError::InvalidKey => ErrorCode::InvalidArgument,
            KvError::TooLarge => ErrorCode::TooLarge,
            KvError::TooManyKeys => ErrorCode::LimitReached,
            KvError::HostMemoryFull => self.host_memory_full(),
        })
    }

    pub(super) fn kv_delete(&mut self, key: String) -> bool {
        self.env.hub.kv_delete(&self.env.name, &key)
    }

    /// The call waits for the shared store when there is one; it holds nothing of the store
    /// meanwhile (the future owns what it needs).
    pub(super) fn kv_increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> impl Future<Output = Result<i64, AtomicError>> + Send + 'static {
        let (hub, plugin) = (self.env.hub.clone(), self.env.name.clone());
        async move { hub.kv_increment(&plugin, &key, delta).await }
    }

    pub(super) fn kv_compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<bool, AtomicError>> + Send + 'static {
        let (hub, plugin) = (self.env.hub.clone(), self.env.name.clone());
        async move { hub.kv_compare_and_set(&plugin, &key, expected.map(Bytes::from), new.map(Bytes::from)).await }
    }

    pub(super) fn kv_list(&mut self, prefix: String, after: Option<String>, limit: u32) -> KvPage {
        self.env.hub.kv.list(&self.env.name, &prefix, after.as_deref(), limit.min(MAX_KEYS_LISTED) as usize)
    }

    pub(super) fn config(&mut self, key: String) -> Option<String> {
        self.env.config.get(&key).cloned()
    }

    pub(super) fn log(&mut self, level: LogLevel, message: String) {
        self.call.logs += 1;
        if self.call.logs > MAX_LOG_LINES {
            return;
        }
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        let plugin = &*self.env.name;
        let conn = self.call.conn.as_ref().map(|c| c.id);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, conn, "{msg}"),
            LogLevel::Debug => tracing::debug!(plugin, conn, "{msg}"),
            LogLevel::Info => tracing::info!(plugin, conn, "{msg}"),
            LogLevel::Warn => tracing::warn!(plugin, conn, "{msg}"),
            LogLevel::Error => tracing::error!(plugin, conn, "{msg}"),
        }
    }
}

/// Implements one contract version's `host` interface by converting to the calls above: the
/// calls every version has, then `$extra`, the ones only that version has (a call added to the
/// current contract goes there, in the `v0_2` invocation).
macro_rules! contract_host {
    ($v:ident { $($extra:item)* }) => {
        impl $v::wasmsock::plugin::types::Host for StoreState {}

        impl $v::wasmsock::plugin::host::Host for StoreState {
            $($extra)*

            fn send(
                &mut self,
                conn: u64,
                msg: $v::wasmsock::plugin::types::Message,
            ) -> Result<(), $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::send(self, conn, msg.into()).map_err(Into::into)
            }
            fn close(
                &mut self,
                conn: u64,
                code: u16,
                reason: String,
            ) -> Result<(), $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::close(self, conn, code, reason).map_err(Into::into)
            }
            fn identity_of(&mut self, conn: u64) -> Option<$v::wasmsock::plugin::types::Identity> {
                StoreState::identity_of(self, conn).map(Into::into)
            }
            fn attachment(&mut self, conn: u64) -> Option<Vec<u8>> {
                StoreState::attachment(self, conn)
            }
            fn set_attachment(
                &mut self,
                conn: u64,
                data: Vec<u8>,
            ) -> Result<(), $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::set_attachment(self, conn, data).map_err(Into::into)
            }
            fn join(&mut self, conn: u64, room: String) -> Result<(), $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::join(self, conn, room).map_err(Into::into)
            }
            fn leave(&mut self, conn: u64, room: String) -> bool {
                StoreState::leave(self, conn, room)
            }
            fn rooms(&mut self, conn: u64) -> Vec<String> {
                StoreState::rooms(self, conn)
            }
            fn publish(
                &mut self,
                room: String,
                msg: $v::wasmsock::plugin::types::Message,
                except: Option<u64>,
            ) -> Result<u32, $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::publish(self, room, msg.into(), except).map_err(Into::into)
            }
            fn members(&mut self, room: String, limit: u32) -> Vec<u64> {
                StoreState::members(self, room, limit)
            }
            fn member_count(&mut self, room: String) -> u32 {
                StoreState::member_count(self, room)
            }
            fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
                StoreState::kv_get(self, key)
            }
            fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), $v::wasmsock::plugin::types::ErrorCode> {
                StoreState::kv_set(self, key, value).map_err(Into::into)
            }
            fn kv_delete(&mut self, key: String) -> bool {
                StoreState::kv_delete(self, key)
            }
            fn config(&mut self, key: String) -> Option<String> {
                StoreState::config(self, key)
            }
            fn log(&mut self, level: $v::wasmsock::plugin::types::LogLevel, message: String) {
                StoreState::log(self, level.into(), message)
            }
        }
    };
}

contract_host!(v0_1 {});
contract_host!(v0_2 {
    async fn kv_increment(&mut self, key: String, delta: i64) -> Result<i64, v0_2::wasmsock::plugin::host::KvError> {
        StoreState::kv_increment(self, key, delta).await.map_err(Into::into)
    }
    async fn kv_compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, v0_2::wasmsock::plugin::host::KvError> {
        StoreState::kv_compare_and_set(self, key, expected, new).await.map_err(Into::into)
    }
    fn kv_list(&mut self, prefix: String, after: Option<String>, limit: u32) -> v0_2::wasmsock::plugin::host::KvPage {
        let KvPage { keys, next } = StoreState::kv_list(self, prefix, after, limit);
        v0_2::wasmsock::plugin::host::KvPage { keys, next }
    }
});

impl From<AtomicError> for v0_2::wasmsock::plugin::host::KvError {
    fn from(e: AtomicError) -> Self {
        use v0_2::wasmsock::plugin::host::KvError as E;
        match e {
            AtomicError::Kv(KvError::InvalidKey) => E::InvalidKey,
            AtomicError::Kv(KvError::TooLarge) => E::TooLarge,
            AtomicError::Kv(KvError::TooManyKeys | KvError::HostMemoryFull) => E::LimitReached,
            AtomicError::NotANumber => E::NotANumber,
            AtomicError::Unavailable => E::Unavailable,
        }
    }
}
