//! An in-memory host for unit-testing plugins natively with plain `cargo test`.
//!
//! On targets other than wasm32 every host call of the SDK goes to the [`TestHost`] of the
//! current thread. It follows the server's rules (close codes, attachment and room limits,
//! rooms per plugin, membership dropped on close) and records what the plugin did.
//!
//! ```
//! use wasmsock_sdk::{testing::TestHost, Conn, Flow, Message, Plugin};
//!
//! #[derive(Default)]
//! struct Upper;
//! impl Plugin for Upper {
//!     fn on_message(&self, conn: Conn, msg: Message) -> Flow {
//!         let _ = conn.send_text(&msg.as_text().unwrap_or_default().to_uppercase());
//!         Flow::Done
//!     }
//! }
//!
//! let host = TestHost::new();
//! let conn = host.open("/upper");
//! assert_eq!(host.message(&Upper, conn, "hi".into()), Flow::Done);
//! assert_eq!(host.sent(conn), vec![Message::from("HI")]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use crate::log::Level;
use crate::{Conn, Connect, Flow, Identity, Message, Plugin, Request};

/// Size and count limits, defaulting to the server's defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest attachment in bytes.
    pub max_attachment: usize,
    /// Most rooms one connection may be in.
    pub max_rooms_per_conn: usize,
    /// Longest room name in bytes.
    pub max_room_name: usize,
    /// Largest key/value value in bytes.
    pub max_kv_value: usize,
    /// Longest key/value key in bytes.
    pub max_kv_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachment: 16 * 1024,
            max_rooms_per_conn: 64,
            max_room_name: 128,
            max_kv_value: 64 * 1024,
            max_kv_key: 256,
        }
    }
}

/// The test host of the current thread; dropping it discards all recorded state.
pub struct TestHost {
    _not_send: PhantomData<*const ()>,
}

#[derive(Default)]
struct ConnState {
    route: String,
    identity: Option<Identity>,
    attachment: Option<Vec<u8>>,
    sent: Vec<Message>,
    rooms: BTreeSet<String>,
    closing: Option<(u16, String)>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    limits: Limits,
    conns: BTreeMap<u64, ConnState>,
    closed: BTreeMap<u64, (u16, String)>,
    rooms: BTreeMap<String, BTreeSet<u64>>,
    kv: BTreeMap<String, Vec<u8>>,
    config: BTreeMap<String, String>,
    logs: Vec<(Level, String)>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let state = s.as_mut().expect("wasmsock_sdk host call outside a TestHost: create one with TestHost::new()");
        f(state)
    })
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// Installs a fresh test host for this thread.
    pub fn new() -> Self {
        STATE.with(|s| *s.borrow_mut() = Some(State { next_id: 1, ..State::default() }));
        TestHost { _not_send: PhantomData }
    }

    /// Sets a plugin setting, as `[plugins.<name>.config]` would on the server.
    pub fn config(self, key: &str, value: &str) -> Self {
        with(|s| s.config.insert(key.into(), value.into()));
        self
    }

    /// Replaces the limits.
    pub fn limits(self, limits: Limits) -> Self {
        with(|s| s.limits = limits);
        self
    }

    /// Opens an accepted connection on `route` without running `on_connect`.
    pub fn open(&self, route: &str) -> Conn {
        self.register(route, None)
    }

    /// Opens an accepted connection carrying `identity`.
    pub fn open_as(&self, route: &str, identity: Identity) -> Conn {
        self.register(route, Some(identity))
    }

    /// Runs `plugin.on_connect` for `req`; an accepted connection is opened with the identity
    /// the plugin returned (or the one in `req`).
    pub fn connect<P: Plugin>(&self, plugin: &P, req: Request) -> (Conn, Connect) {
        let id = with(|s| {
            let id = s.next_id;
            s.next_id += 1;
            id
        });
        let conn = Conn::from_raw(id);
        let answer = plugin.on_connect(conn, &req);
        if let Connect::Accept { identity, .. } = &answer {
            let identity = identity.clone().or(req.identity);
            with(|s| s.conns.insert(id, ConnState { route: req.route, identity, ..ConnState::default() }));
        }
        (conn, answer)
    }

    /// Delivers a message to `plugin.on_message`.
    pub fn message<P: Plugin>(&self, plugin: &P, conn: Conn, msg: Message) -> Flow {
        plugin.on_message(conn, msg)
    }

    /// Ends a connection as the server would: `on_close` runs, then the connection leaves its
    /// rooms and is forgotten.
    pub fn close<P: Plugin>(&self, plugin: &P, conn: Conn, code: u16, reason: &str) {
        plugin.on_close(conn, code, reason);
        with(|s| {
            if let Some(state) = s.conns.remove(&conn.id()) {
                for room in state.rooms {
                    remove_member(s, &room, conn.id());
                }
                let closing = state.closing.unwrap_or((code, reason.to_owned()));
                s.closed.insert(conn.id(), closing);
            }
        });
    }

    /// Takes the messages queued to `conn` so far.
    pub fn sent(&self, conn: Conn) -> Vec<Message> {
        with(|s| s.conns.get_mut(&conn.id()).map(|c| std::mem::take(&mut c.sent)).unwrap_or_default())
    }

    /// The close code and reason the plugin asked for, if it closed `conn`.
    pub fn close_requested(&self, conn: Conn) -> Option<(u16, String)> {
        with(|s| match s.conns.get(&conn.id()) {
            Some(c) => c.closing.clone(),
            None => s.closed.get(&conn.id()).cloned(),
        })
    }

    /// True while `conn` is open.
    pub fn is_open(&self, conn: Conn) -> bool {
        with(|s| s.conns.contains_key(&conn.id()))
    }

    /// Members of `room`, in id order.
    pub fn members(&self, room: &str) -> Vec<Conn> {
        with(|s| s.rooms.get(room).map(|m| m.iter().copied().map(Conn::from_raw).collect()).unwrap_or_default())
    }

    /// The stored value of `key`.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|s| s.kv.get(key).cloned())
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        with(|s| s.logs.clone())
    }

    fn register(&self, route: &str, identity: Option<Identity>) -> Conn {
        with(|s| {
            let id = s.next_id;
            s.next_id += 1;
            s.conns.insert(id, ConnState { route: route.into(), identity, ..ConnState::default() });
            Conn::from_raw(id)
        })
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        STATE.with(|s| *s.borrow_mut() = None);
    }
}

impl TestHost {
    /// The route a connection was opened on.
    pub fn route(&self, conn: Conn) -> Option<String> {
        with(|s| s.conns.get(&conn.id()).map(|c| c.route.clone()))
    }
}

fn remove_member(s: &mut State, room: &str, conn: u64) {
    if let Some(members) = s.rooms.get_mut(room) {
        members.remove(&conn);
        if members.is_empty() {
            s.rooms.remove(room);
        }
    }
}

/// The host calls, as `sys` sees them.
pub(crate) mod host {
    use super::{remove_member, with};
    use crate::log::Level;
    use crate::{Error, Identity, Message};

    fn open_conn(s: &mut super::State, conn: u64) -> Result<&mut super::ConnState, Error> {
        match s.conns.get_mut(&conn) {
            Some(c) if c.closing.is_none() => Ok(c),
            _ => Err(Error::UnknownConnection),
        }
    }

    pub(crate) fn send(conn: u64, msg: Message) -> Result<(), Error> {
        with(|s| open_conn(s, conn).map(|c| c.sent.push(msg)))
    }

    pub(crate) fn close(conn: u64, code: u16, reason: &str) -> Result<(), Error> {
        if !(code == 1000 || (3000..=4999).contains(&code)) || reason.len() > 123 {
            return Err(Error::InvalidArgument);
        }
        with(|s| open_conn(s, conn).map(|c| c.closing = Some((code, reason.to_owned()))))
    }

    pub(crate) fn identity(conn: u64) -> Option<Identity> {
        with(|s| s.conns.get(&conn).and_then(|c| c.identity.clone()))
    }

    pub(crate) fn attachment(conn: u64) -> Option<Vec<u8>> {
        with(|s| s.conns.get(&conn).and_then(|c| c.attachment.clone()))
    }

    pub(crate) fn set_attachment(conn: u64, data: &[u8]) -> Result<(), Error> {
        with(|s| {
            let max = s.limits.max_attachment;
            let c = s.conns.get_mut(&conn).ok_or(Error::UnknownConnection)?;
            if data.len() > max {
                return Err(Error::TooLarge);
            }
            c.attachment = (!data.is_empty()).then(|| data.to_vec());
            Ok(())
        })
    }

    pub(crate) fn join(conn: u64, room: &str) -> Result<(), Error> {
        with(|s| {
            if room.is_empty() || room.len() > s.limits.max_room_name {
                return Err(Error::InvalidArgument);
            }
            let max = s.limits.max_rooms_per_conn;
            let c = open_conn(s, conn)?;
            if !c.rooms.contains(room) && c.rooms.len() >= max {
                return Err(Error::LimitReached);
            }
            c.rooms.insert(room.to_owned());
            s.rooms.entry(room.to_owned()).or_default().insert(conn);
            Ok(())
        })
    }

    pub(crate) fn leave(conn: u64, room: &str) -> bool {
        with(|s| {
            let was = s.conns.get_mut(&conn).is_some_and(|c| c.rooms.remove(room));
            if was {
                remove_member(s, room, conn);
            }
            was
        })
    }

    pub(crate) fn rooms(conn: u64) -> Vec<String> {
        with(|s| s.conns.get(&conn).map(|c| c.rooms.iter().cloned().collect()).unwrap_or_default())
    }

    pub(crate) fn publish(room: &str, msg: Message, except: Option<u64>) -> Result<u32, Error> {
        with(|s| {
            let members: Vec<u64> = s.rooms.get(room).map(|m| m.iter().copied().collect()).unwrap_or_default();
            let mut queued = 0;
            for id in members.into_iter().filter(|id| Some(*id) != except) {
                if let Ok(c) = open_conn(s, id) {
                    c.sent.push(msg.clone());
                    queued += 1;
                }
            }
            Ok(queued)
        })
    }

    pub(crate) fn members(room: &str, limit: u32) -> Vec<u64> {
        with(|s| s.rooms.get(room).map(|m| m.iter().copied().take(limit as usize).collect()).unwrap_or_default())
    }

    pub(crate) fn member_count(room: &str) -> u32 {
        with(|s| s.rooms.get(room).map_or(0, |m| m.len() as u32))
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        with(|s| s.kv.get(key).cloned())
    }

    pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), Error> {
        with(|s| {
            if key.is_empty() || key.len() > s.limits.max_kv_key {
                return Err(Error::InvalidArgument);
            }
            if value.len() > s.limits.max_kv_value {
                return Err(Error::TooLarge);
            }
            s.kv.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub(crate) fn kv_delete(key: &str) -> bool {
        with(|s| s.kv.remove(key).is_some())
    }

    pub(crate) fn config(key: &str) -> Option<String> {
        with(|s| s.config.get(key).cloned())
    }

    pub(crate) fn log(level: Level, message: &str) {
        with(|s| s.logs.push((level, message.to_owned())))
    }
}
