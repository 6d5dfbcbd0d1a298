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

/// Size and count limits, defaulting to the server's defaults. Lower them to test how a plugin
/// copes with a refusal without building huge values.
///
/// ```
/// use wasmsock_sdk::{Error, testing::{Limits, TestHost}};
///
/// let host = TestHost::new().limits(Limits { max_rooms_per_conn: 1, ..Limits::default() });
/// let conn = host.open("/chat");
/// conn.join("a").unwrap();
/// assert!(matches!(conn.join("b"), Err(Error::LimitReached)));
/// ```
///
/// The send budget is per call, as on the server: each [`TestHost::connect`],
/// [`TestHost::message`] and [`TestHost::close`] starts a fresh one.
///
/// ```
/// use wasmsock_sdk::{Conn, Error, Flow, Message, Plugin, testing::{Limits, TestHost}};
///
/// /// Answers every message three times, and says how it went.
/// #[derive(Default)]
/// struct Chatty;
/// impl Plugin for Chatty {
///     fn on_message(&self, conn: Conn, _msg: Message) -> Flow {
///         let refused = (0..3).filter(|_| conn.send_text("again").is_err()).count();
///         wasmsock_sdk::kv::set("refused", refused.to_string().as_bytes()).unwrap();
///         Flow::Done
///     }
/// }
///
/// let host = TestHost::new().limits(Limits { max_sends_per_call: 2, max_message_size: 8, ..Limits::default() });
/// let conn = host.open("/chat");
/// for _ in 0..2 {
///     host.message(&Chatty, conn, "hi".into());
///     assert_eq!(host.sent(conn).len(), 2);
///     assert_eq!(host.kv("refused").as_deref(), Some(&b"1"[..]));
/// }
/// assert!(matches!(conn.send_text("longer than eight"), Err(Error::TooLarge)));
/// ```
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
    /// Most keys in the plugin's key/value store.
    pub max_kv_keys: usize,
    /// Largest message a plugin may send to one connection, in bytes (the route's
    /// `max_message_size` on the server).
    pub max_message_size: usize,
    /// Most sends and publishes in one call of `on_connect`, `on_message` or `on_close`.
    pub max_sends_per_call: u32,
    /// Most bytes sent and published in one call.
    pub max_send_bytes_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachment: 16 * 1024,
            max_rooms_per_conn: 64,
            max_room_name: 128,
            max_kv_value: 64 * 1024,
            max_kv_key: 256,
            max_kv_keys: 10_000,
            max_message_size: 1 << 20,
            max_sends_per_call: 10_000,
            max_send_bytes_per_call: 64 << 20,
        }
    }
}

/// The test host of the current thread; dropping it discards all recorded state.
///
/// Host calls made while no `TestHost` is alive panic with a hint to create one. The state is
/// per thread (so parallel tests don't see each other) and the handle is not `Send`. Keep one
/// host per test: [`TestHost::new`] replaces the thread's state, and dropping any handle
/// clears it.
///
/// ```
/// use wasmsock_sdk::testing::TestHost;
///
/// let host = TestHost::new().config("greeting", "hi");
/// let conn = host.open("/chat");
/// conn.send_text(&wasmsock_sdk::config("greeting").unwrap()).unwrap();
/// assert_eq!(host.sent(conn), vec!["hi".into()]);
/// drop(host);
/// assert!(std::panic::catch_unwind(|| wasmsock_sdk::config("greeting")).is_err());
/// ```
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
    /// Sends and bytes charged to the current call (reset when the next call starts).
    spent: (u32, usize),
}

/// Starts a plugin call: a fresh send budget, as on the server.
fn begin_call() {
    with(|s| s.spent = (0, 0));
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
    /// Installs a fresh test host for this thread, with default [`Limits`], no settings and
    /// no connections.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// assert_eq!(wasmsock_sdk::kv::get("anything"), None);
    /// # drop(host);
    /// ```
    pub fn new() -> Self {
        STATE.with(|s| *s.borrow_mut() = Some(State { next_id: 1, ..State::default() }));
        TestHost { _not_send: PhantomData }
    }

    /// Sets a plugin setting, as `[plugins.<name>.config]` would on the server; read it with
    /// [`config`](crate::config). Chains, builder-style.
    ///
    /// ```
    /// use wasmsock_sdk::testing::TestHost;
    /// let _host = TestHost::new().config("room", "lobby").config("max", "10");
    /// assert_eq!(wasmsock_sdk::config("max").as_deref(), Some("10"));
    /// ```
    pub fn config(self, key: &str, value: &str) -> Self {
        with(|s| s.config.insert(key.into(), value.into()));
        self
    }

    /// Replaces the limits (see the example on [`Limits`]).
    ///
    /// ```
    /// use wasmsock_sdk::{Error, kv, testing::{Limits, TestHost}};
    /// let _host = TestHost::new().limits(Limits { max_kv_value: 4, ..Limits::default() });
    /// assert!(matches!(kv::set("k", b"12345"), Err(Error::TooLarge)));
    /// ```
    pub fn limits(self, limits: Limits) -> Self {
        with(|s| s.limits = limits);
        self
    }

    /// Opens an accepted connection on `route` without running `on_connect`: the quick way to
    /// get a [`Conn`] for testing `on_message` and `on_close`.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let (a, b) = (host.open("/chat"), host.open("/chat"));
    /// assert_ne!(a, b);
    /// assert!(host.is_open(a));
    /// assert_eq!(a.identity(), None);
    /// ```
    pub fn open(&self, route: &str) -> Conn {
        self.register(route, None)
    }

    /// Opens an accepted connection carrying `identity`, as if an auth plugin earlier in the
    /// chain had accepted it.
    ///
    /// ```
    /// use wasmsock_sdk::{Identity, testing::TestHost};
    /// let host = TestHost::new();
    /// let admin = Identity::with_claims("ada", &serde_json::json!({"admin": true})).unwrap();
    /// let conn = host.open_as("/chat", admin.clone());
    /// assert_eq!(conn.identity(), Some(admin));
    /// ```
    pub fn open_as(&self, route: &str, identity: Identity) -> Conn {
        self.register(route, Some(identity))
    }

    /// Runs `plugin.on_connect` for `req`; an accepted connection is opened with the identity
    /// the plugin returned (or the one in `req`). Returns the connection (not open when
    /// rejected) and the plugin's answer.
    ///
    /// The connection is registered only after `on_connect` returns, so host calls on it from
    /// inside `on_connect` fail here with [`Error::UnknownConnection`](crate::Error::UnknownConnection).
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, Connect, Plugin, Request, testing::TestHost};
    ///
    /// #[derive(Default)]
    /// struct NeedsToken;
    /// impl Plugin for NeedsToken {
    ///     fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
    ///         if req.query_param("token").is_some() { Connect::accept() } else { Connect::reject(401, "no token") }
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// let (conn, answer) = host.connect(&NeedsToken, Request::default());
    /// assert_eq!(answer, Connect::reject(401, "no token"));
    /// assert!(!host.is_open(conn));
    /// let (conn, _) = host.connect(&NeedsToken, Request { query: "token=t".into(), ..Request::default() });
    /// assert!(host.is_open(conn));
    /// ```
    pub fn connect<P: Plugin>(&self, plugin: &P, req: Request) -> (Conn, Connect) {
        let id = with(|s| {
            let id = s.next_id;
            s.next_id += 1;
            id
        });
        let conn = Conn::from_raw(id);
        // As on the server, the connection exists during `on_connect` (a plugin may set its
        // attachment or join rooms there) and is gone again if the plugin refuses it.
        let state = ConnState { route: req.route.clone(), identity: req.identity.clone(), ..ConnState::default() };
        with(|s| s.conns.insert(id, state));
        begin_call();
        let answer = plugin.on_connect(conn, &req);
        match &answer {
            Connect::Accept { identity: Some(identity), .. } => with(|s| {
                if let Some(c) = s.conns.get_mut(&id) {
                    c.identity = Some(identity.clone());
                }
            }),
            Connect::Accept { .. } => {}
            _ => {
                with(|s| forget(s, id));
            }
        }
        (conn, answer)
    }

    /// Delivers a message to `plugin.on_message` and returns its [`Flow`]. Unlike the server
    /// there is no chain: nothing happens to a passed or forwarded message.
    ///
    /// ```
    /// use wasmsock_sdk::{Flow, Plugin, testing::TestHost};
    /// #[derive(Default)]
    /// struct Nothing;
    /// impl Plugin for Nothing {}
    ///
    /// let host = TestHost::new();
    /// let conn = host.open("/x");
    /// assert_eq!(host.message(&Nothing, conn, "hi".into()), Flow::Pass);
    /// ```
    pub fn message<P: Plugin>(&self, plugin: &P, conn: Conn, msg: Message) -> Flow {
        begin_call();
        plugin.on_message(conn, msg)
    }

    /// Ends a connection as the server would: `on_close` runs, then the connection leaves its
    /// rooms and is forgotten. Use 1006 (no close frame) to simulate a dropped network.
    ///
    /// ```
    /// use wasmsock_sdk::{Plugin, testing::TestHost};
    /// #[derive(Default)]
    /// struct Nothing;
    /// impl Plugin for Nothing {}
    ///
    /// let host = TestHost::new();
    /// let conn = host.open("/chat");
    /// conn.join("lobby").unwrap();
    /// host.close(&Nothing, conn, 1006, "");
    /// assert!(!host.is_open(conn));
    /// assert!(host.members("lobby").is_empty());
    /// assert!(conn.send_text("late").is_err());
    /// ```
    pub fn close<P: Plugin>(&self, plugin: &P, conn: Conn, code: u16, reason: &str) {
        begin_call();
        plugin.on_close(conn, code, reason);
        with(|s| {
            if let Some(state) = forget(s, conn.id()) {
                let closing = state.closing.unwrap_or((code, reason.to_owned()));
                s.closed.insert(conn.id(), closing);
            }
        });
    }

    /// Takes the messages queued to `conn` so far (by [`Conn::send`] or a room publish), oldest
    /// first. Taking, not peeking, lets a test check each step's output on its own.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let conn = host.open("/chat");
    /// conn.send_text("one").unwrap();
    /// assert_eq!(host.sent(conn), vec!["one".into()]);
    /// assert!(host.sent(conn).is_empty());
    /// ```
    pub fn sent(&self, conn: Conn) -> Vec<Message> {
        with(|s| s.conns.get_mut(&conn.id()).map(|c| std::mem::take(&mut c.sent)).unwrap_or_default())
    }

    /// The close code and reason the plugin asked for, if it closed `conn` with [`Conn::close`].
    /// After [`TestHost::close`] this is the close that ended the connection: the plugin's
    /// request if it made one, otherwise the code and reason given to `TestHost::close`.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let conn = host.open("/chat");
    /// assert_eq!(host.close_requested(conn), None);
    /// conn.close(4000, "kicked").unwrap();
    /// assert_eq!(host.close_requested(conn), Some((4000, "kicked".into())));
    /// assert!(host.is_open(conn)); // closing, until the server ends it
    /// ```
    pub fn close_requested(&self, conn: Conn) -> Option<(u16, String)> {
        with(|s| match s.conns.get(&conn.id()) {
            Some(c) => c.closing.clone(),
            None => s.closed.get(&conn.id()).cloned(),
        })
    }

    /// True while `conn` is open: opened or accepted, and not yet ended by [`TestHost::close`].
    /// A connection the plugin asked to close stays open until then.
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, testing::TestHost};
    /// let host = TestHost::new();
    /// assert!(host.is_open(host.open("/chat")));
    /// assert!(!host.is_open(Conn::from_raw(999)));
    /// ```
    pub fn is_open(&self, conn: Conn) -> bool {
        with(|s| s.conns.contains_key(&conn.id()))
    }

    /// Members of `room`, in id order (all of them, unlike [`rooms::members`](crate::rooms::members),
    /// and in a stable order for assertions).
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let (a, b) = (host.open("/chat"), host.open("/chat"));
    /// b.join("lobby").unwrap();
    /// a.join("lobby").unwrap();
    /// assert_eq!(host.members("lobby"), [a, b]);
    /// ```
    pub fn members(&self, room: &str) -> Vec<Conn> {
        with(|s| s.rooms.get(room).map(|m| m.iter().copied().map(Conn::from_raw).collect()).unwrap_or_default())
    }

    /// The stored value of `key`, as [`kv::get`](crate::kv::get) would return it; handy to check
    /// the raw bytes a plugin wrote.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// wasmsock_sdk::kv::set_json("count", &2).unwrap();
    /// assert_eq!(host.kv("count").as_deref(), Some(&b"2"[..]));
    /// ```
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|s| s.kv.get(key).cloned())
    }

    /// The log lines written so far, oldest first (not taken: they accumulate).
    ///
    /// ```
    /// use wasmsock_sdk::log::Level;
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// wasmsock_sdk::warn!("slow consumer {}", 7);
    /// assert_eq!(host.logs(), [(Level::Warn, "slow consumer 7".to_owned())]);
    /// ```
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
    /// The route a connection was opened on; `None` once it has ended.
    ///
    /// ```
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let conn = host.open("/chat");
    /// assert_eq!(host.route(conn).as_deref(), Some("/chat"));
    /// ```
    pub fn route(&self, conn: Conn) -> Option<String> {
        with(|s| s.conns.get(&conn.id()).map(|c| c.route.clone()))
    }
}

/// Drops a connection and its room memberships, as the server does when it ends.
fn forget(s: &mut State, conn: u64) -> Option<ConnState> {
    let mut state = s.conns.remove(&conn)?;
    for room in std::mem::take(&mut state.rooms) {
        remove_member(s, &room, conn);
    }
    Some(state)
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

    /// Charges one send of `len` bytes to the current call's budget.
    fn charge(s: &mut super::State, len: usize) -> Result<(), Error> {
        let (sends, bytes) = s.spent;
        if sends >= s.limits.max_sends_per_call || bytes + len > s.limits.max_send_bytes_per_call {
            return Err(Error::LimitReached);
        }
        s.spent = (sends + 1, bytes + len);
        Ok(())
    }

    pub(crate) fn send(conn: u64, msg: Message) -> Result<(), Error> {
        with(|s| {
            open_conn(s, conn)?;
            if msg.len() > s.limits.max_message_size {
                return Err(Error::TooLarge);
            }
            charge(s, msg.len())?;
            open_conn(s, conn).map(|c| c.sent.push(msg))
        })
    }

    pub(crate) fn close(conn: u64, code: u16, reason: &str) -> Result<(), Error> {
        // The codes the server accepts from a plugin (those a peer may legitimately send).
        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) || reason.len() > 123 {
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
            if room.is_empty() || room.len() > s.limits.max_room_name {
                return Err(Error::InvalidArgument);
            }
            charge(s, msg.len())?;
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
            if !s.kv.contains_key(key) && s.kv.len() >= s.limits.max_kv_keys {
                return Err(Error::LimitReached);
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
