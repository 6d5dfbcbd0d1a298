//! The in-memory host that stands in for the server on targets other than wasm32: the state of
//! the current thread, and the host calls against it (`sys` routes the SDK's calls here).
//! [`TestHost`](crate::testing::TestHost) installs the state, drives the plugin and reads what
//! it did.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::level::Level;
use crate::{Error, Identity, Message};

/// Size and count limits, defaulting to the server's defaults (the very constants the server
/// starts from). Lower them to test how a plugin copes with a refusal without building huge
/// values.
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
/// [`TestHost::connect`]: crate::testing::TestHost::connect
/// [`TestHost::message`]: crate::testing::TestHost::message
/// [`TestHost::close`]: crate::testing::TestHost::close
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
    /// Most sends in one call of `on_connect`, `on_message` or `on_close`; a publish counts
    /// one per member it reaches (at least one).
    pub max_sends_per_call: u32,
    /// Most bytes sent in one call; a publish counts its size once per member it reaches.
    pub max_send_bytes_per_call: usize,
    /// Most bytes the host keeps for the plugin: key/value entries, attachments and room
    /// memberships, each counted as its size plus 64 bytes, as the server counts them (its
    /// `[host] max_memory`, all of which a plugin alone may use). Beyond it, writes return
    /// [`Error::HostMemoryFull`].
    ///
    /// ```
    /// use wasmsock_sdk::{Error, kv, testing::{Limits, TestHost}};
    /// let _host = TestHost::new().limits(Limits { max_host_memory: 200, ..Limits::default() });
    /// kv::set("a", &[0; 100]).unwrap(); // 1 + 100 + 64 bytes
    /// assert!(matches!(kv::set("b", &[0; 100]), Err(Error::HostMemoryFull)));
    /// kv::set("a", &[0; 10]).unwrap(); // a smaller value frees the difference
    /// kv::set("b", &[0; 10]).unwrap();
    /// ```
    pub max_host_memory: usize,
    /// Most timers the plugin may hold armed at once (the server's `max_timers`); beyond it,
    /// [`timers::set`](crate::timers::set) returns [`Error::LimitReached`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmsock_sdk::{Error, testing::{Limits, TestHost}, timers};
    /// let _host = TestHost::new().limits(Limits { max_timers: 1, ..Limits::default() });
    /// timers::set("a", Duration::from_secs(1)).unwrap();
    /// timers::set("a", Duration::from_secs(2)).unwrap(); // replacing needs no room
    /// assert!(matches!(timers::set("b", Duration::from_secs(1)), Err(Error::LimitReached)));
    /// ```
    pub max_timers: usize,
}

impl Default for Limits {
    /// The server's defaults, from the constants the server itself starts from.
    fn default() -> Self {
        use wasmsock_limits as server;
        Limits {
            max_attachment: server::MAX_ATTACHMENT,
            max_rooms_per_conn: server::MAX_ROOMS_PER_CONNECTION,
            max_room_name: server::MAX_ROOM_NAME,
            max_kv_value: server::KV_MAX_VALUE,
            max_kv_key: server::KV_MAX_KEY,
            max_kv_keys: server::KV_MAX_KEYS,
            max_message_size: server::MAX_MESSAGE_SIZE,
            max_sends_per_call: server::MAX_SENDS_PER_CALL,
            max_send_bytes_per_call: server::MAX_SEND_BYTES_PER_CALL,
            max_host_memory: server::MAX_HOST_MEMORY,
            max_timers: server::MAX_TIMERS,
        }
    }
}

#[derive(Default)]
pub(crate) struct ConnState {
    pub(crate) route: String,
    pub(crate) identity: Option<Identity>,
    pub(crate) attachment: Option<Vec<u8>>,
    pub(crate) sent: Vec<Message>,
    pub(crate) rooms: BTreeSet<String>,
    pub(crate) closing: Option<(u16, String)>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) next_id: u64,
    pub(crate) limits: Limits,
    pub(crate) conns: BTreeMap<u64, ConnState>,
    pub(crate) closed: BTreeMap<u64, (u16, String)>,
    pub(crate) rooms: BTreeMap<String, BTreeSet<u64>>,
    pub(crate) kv: BTreeMap<String, Vec<u8>>,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) logs: Vec<(Level, String)>,
    /// Sends and bytes charged to the current call (reset when the next call starts).
    pub(crate) spent: (u32, usize),
    /// Answers for outbound HTTP, by method and URL; requests with none are denied.
    pub(crate) http_answers: Vec<(String, String, Result<crate::http_types::Response, crate::http_types::Error>)>,
    /// Outbound HTTP requests made, in order.
    pub(crate) http_requests: Vec<crate::http_types::Request>,
    /// Timers: the test host's clock (milliseconds since it was created; it moves only when a
    /// test advances it), the armed timers by key, and the keys cancelled, in order.
    pub(crate) now_ms: u64,
    pub(crate) timers: BTreeMap<String, TimerState>,
    pub(crate) timer_seq: u64,
    pub(crate) cancelled_timers: Vec<String>,
    /// Webhook events emitted, in order.
    pub(crate) webhooks: Vec<crate::webhook_types::Emitted>,
    /// `[[history]]` rules (room pattern, size), the rooms' logs, and epochs drawn so far.
    pub(crate) history_rules: Vec<(String, usize)>,
    pub(crate) history: BTreeMap<String, TestLog>,
    pub(crate) epochs: u64,
    /// Presence on pretend other nodes: connections per (room, user) there.
    pub(crate) elsewhere: BTreeMap<(String, String), u32>,
    /// Pretend Redis cannot be asked: presence answers for this node only.
    pub(crate) presence_unknown: bool,
}

/// An armed timer: when it comes due (on the test host's clock), its connection, and when it
/// was set (timers due together fire in the order they were set, as on the server).
#[derive(Debug, Clone)]
pub(crate) struct TimerState {
    pub(crate) due_ms: u64,
    pub(crate) conn: Option<u64>,
    pub(crate) seq: u64,
}

impl State {
    /// The armed timers, earliest first.
    pub(crate) fn timers_in_order(&self) -> Vec<(String, TimerState)> {
        let mut all: Vec<_> = self.timers.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        all.sort_by_key(|(_, t)| (t.due_ms, t.seq));
        all
    }
}

/// A webhook event, recorded for [`crate::testing::TestHost::webhooks`] after the checks the
/// server makes at `emit` (an http(s) URL, JSON text, a usable signing).
pub(crate) fn webhook_emit(
    url: &str,
    event: &str,
    signing: Option<&crate::webhook_types::Signing>,
) -> Result<(), Error> {
    crate::http_types::split_url(url).map_err(|_| Error::InvalidArgument)?;
    let event: serde_json::Value = serde_json::from_str(event).map_err(|_| Error::InvalidArgument)?;
    if signing.is_some_and(|s| s.secret().is_empty() || s.signature_header().is_empty()) {
        return Err(Error::InvalidArgument);
    }
    with(|s| s.webhooks.push(crate::webhook_types::Emitted { url: url.to_owned(), event, signing: signing.cloned() }));
    Ok(())
}

/// Outbound HTTP, answered from the fakes set on the [`crate::testing::TestHost`]: like the
/// server's deny-by-default policy, a request nobody set an answer for fails with `Denied`.
pub(crate) fn http_send(
    req: crate::http_types::Request,
) -> Result<crate::http_types::Response, crate::http_types::Error> {
    crate::http_types::split_url(&req.url)?;
    with(|s| {
        let answer =
            s.http_answers.iter().find(|(m, u, _)| *m == req.method && *u == req.url).map(|(_, _, a)| a.clone());
        s.http_requests.push(req);
        answer.unwrap_or(Err(crate::http_types::Error::Denied))
    })
}

/// Starts a plugin call: a fresh send budget, as on the server.
pub(crate) fn begin_call() {
    with(|s| s.spent = (0, 0));
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Replaces this thread's state (`None`: no host, so host calls panic).
pub(crate) fn install(state: Option<State>) {
    STATE.with(|s| *s.borrow_mut() = state);
}

pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let state = s.as_mut().expect("wasmsock_sdk host call outside a TestHost: create one with TestHost::new()");
        f(state)
    })
}

/// Drops a connection and its room memberships, as the server does when it ends.
pub(crate) fn forget(s: &mut State, conn: u64) -> Option<ConnState> {
    let mut state = s.conns.remove(&conn)?;
    // Its timers go with it (after its on_close, which may still have set one).
    s.timers.retain(|_, t| t.conn != Some(conn));
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

// The host calls, each the twin of one in `sys` on wasm32.

fn open_conn(s: &mut State, conn: u64) -> Result<&mut ConnState, Error> {
    match s.conns.get_mut(&conn) {
        Some(c) if c.closing.is_none() => Ok(c),
        _ => Err(Error::UnknownConnection),
    }
}

/// What the server charges an entry it keeps for a plugin on top of its contents.
const ENTRY_OVERHEAD: usize = 64;

/// Bytes the host keeps for the plugin now, counted as the server counts them.
fn host_bytes(s: &State) -> usize {
    let kv: usize = s.kv.iter().map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD).sum();
    let conns: usize = s
        .conns
        .values()
        .map(|c| {
            let attachment = c.attachment.as_ref().map_or(0, |a| a.len() + ENTRY_OVERHEAD);
            attachment + c.rooms.iter().map(|r| r.len() + ENTRY_OVERHEAD).sum::<usize>()
        })
        .sum();
    kv + conns
}

/// Refuses a write that would take what the host keeps from `old` to `new` bytes past the bound.
fn fits_host_memory(s: &State, old: usize, new: usize) -> Result<(), Error> {
    if new > old && host_bytes(s) - old + new > s.limits.max_host_memory {
        return Err(Error::HostMemoryFull);
    }
    Ok(())
}

/// Charges one send of `len` bytes to the current call's budget.
fn charge(s: &mut State, len: usize) -> Result<(), Error> {
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

/// The open connections with identity `user`.
fn user_conns(s: &State, user: &str) -> Vec<u64> {
    s.conns
        .iter()
        .filter(|(_, c)| c.closing.is_none() && c.identity.as_ref().is_some_and(|i| i.id == user))
        .map(|(id, _)| *id)
        .collect()
}

pub(crate) fn send_to_user(user: &str, msg: Message) -> Result<u32, Error> {
    with(|s| {
        if user.is_empty() {
            return Err(Error::InvalidArgument);
        }
        let conns = user_conns(s, user);
        let (sends, bytes) = s.spent;
        let copies = conns.len().max(1);
        let left = (
            s.limits.max_sends_per_call.saturating_sub(sends) as usize,
            s.limits.max_send_bytes_per_call.saturating_sub(bytes),
        );
        if copies > left.0 || copies.saturating_mul(msg.len()) > left.1 {
            return Err(Error::LimitReached);
        }
        if !conns.is_empty() && msg.len() > s.limits.max_message_size {
            return Err(Error::TooLarge);
        }
        for id in &conns {
            if let Some(c) = s.conns.get_mut(id) {
                c.sent.push(msg.clone());
            }
        }
        s.spent = (sends + copies as u32, bytes + copies * msg.len());
        Ok(conns.len() as u32)
    })
}

pub(crate) fn close_user(user: &str, code: u16, reason: &str) -> Result<u32, Error> {
    if user.is_empty() || !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) || reason.len() > 123 {
        return Err(Error::InvalidArgument);
    }
    with(|s| {
        let conns = user_conns(s, user);
        for id in &conns {
            if let Some(c) = s.conns.get_mut(id) {
                c.closing = Some((code, reason.to_owned()));
            }
        }
        Ok(conns.len() as u32)
    })
}

pub(crate) fn user_connections(user: &str) -> u32 {
    with(|s| user_conns(s, user).len() as u32)
}

/// The test host is one node: everywhere is here.
pub(crate) fn user_connections_everywhere(user: &str) -> Option<u32> {
    Some(user_connections(user))
}

/// The identity's connections in `room` here.
fn room_user_conns(s: &State, room: &str, user: &str) -> usize {
    s.rooms.get(room).map_or(0, |m| {
        m.iter().filter(|id| s.conns.get(id).and_then(|c| c.identity.as_ref()).is_some_and(|i| i.id == user)).count()
    })
}

/// A join or leave's change: `edge` is the user's connections in the room here that make it
/// their first (1, after a join) or last (0, after a leave).
fn presence_change(s: &State, conn: u64, room: &str, edge: usize) -> crate::presence::Change {
    let Some(user) = s.conns.get(&conn).and_then(|c| c.identity.as_ref()).map(|i| i.id.clone()) else {
        return crate::presence::Change { here: true, everywhere: Some(true) };
    };
    let here = room_user_conns(s, room, &user) == edge;
    let elsewhere = s.elsewhere.get(&(room.to_owned(), user)).copied().unwrap_or(0);
    let everywhere = if !here {
        Some(false)
    } else if s.presence_unknown {
        None
    } else {
        Some(elsewhere == 0)
    };
    crate::presence::Change { here, everywhere }
}

pub(crate) fn presence_join(conn: u64, room: &str) -> Result<crate::presence::Change, Error> {
    let was = with(|s| s.conns.get(&conn).is_some_and(|c| c.rooms.contains(room)));
    join(conn, room)?;
    if was {
        return Ok(crate::presence::Change { here: false, everywhere: Some(false) });
    }
    Ok(with(|s| presence_change(s, conn, room, 1)))
}

pub(crate) fn presence_leave(conn: u64, room: &str) -> Option<crate::presence::Change> {
    leave(conn, room).then(|| with(|s| presence_change(s, conn, room, 0)))
}

pub(crate) fn presence_count(room: &str) -> crate::presence::Census {
    with(|s| {
        let mut users = BTreeSet::new();
        let (mut connections, mut anonymous) = (0u32, 0u32);
        for id in s.rooms.get(room).into_iter().flatten() {
            connections += 1;
            match s.conns.get(id).and_then(|c| c.identity.as_ref()) {
                Some(i) => drop(users.insert(i.id.clone())),
                None => anonymous += 1,
            }
        }
        if !s.presence_unknown {
            for ((r, user), n) in &s.elsewhere {
                if r == room && *n > 0 {
                    connections += n;
                    users.insert(user.clone());
                }
            }
        }
        crate::presence::Census { connections, users: users.len() as u32, anonymous, cluster: !s.presence_unknown }
    })
}

pub(crate) fn presence_users(room: &str, after: Option<&str>, limit: u32) -> crate::presence::UserPage {
    with(|s| {
        let mut users = BTreeSet::new();
        for id in s.rooms.get(room).into_iter().flatten() {
            if let Some(i) = s.conns.get(id).and_then(|c| c.identity.as_ref()) {
                users.insert(i.id.clone());
            }
        }
        if !s.presence_unknown {
            users.extend(s.elsewhere.iter().filter(|((r, _), n)| r == room && **n > 0).map(|((_, u), _)| u.clone()));
        }
        let limit = limit.min(1000) as usize;
        let mut page: Vec<String> =
            users.into_iter().filter(|u| after.is_none_or(|a| u.as_str() > a)).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().cloned().unwrap_or_default()
        });
        crate::presence::UserPage { users: page, next, cluster: !s.presence_unknown }
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
        let c = s.conns.get(&conn).ok_or(Error::UnknownConnection)?;
        if data.len() > max {
            return Err(Error::TooLarge);
        }
        let old = c.attachment.as_ref().map_or(0, |a| a.len() + ENTRY_OVERHEAD);
        fits_host_memory(s, old, if data.is_empty() { 0 } else { data.len() + ENTRY_OVERHEAD })?;
        let c = s.conns.get_mut(&conn).ok_or(Error::UnknownConnection)?;
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
        if c.rooms.contains(room) {
            return Ok(());
        }
        if c.rooms.len() >= max {
            return Err(Error::LimitReached);
        }
        fits_host_memory(s, 0, room.len() + ENTRY_OVERHEAD)?;
        open_conn(s, conn)?.rooms.insert(room.to_owned());
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
        // As on the server: one send per member (each is a copy the server writes), at least
        // one, and nothing at all when the budget left does not cover every member.
        let members: Vec<u64> =
            s.rooms.get(room).map(|m| m.iter().copied().filter(|id| Some(*id) != except).collect()).unwrap_or_default();
        let (sends, bytes) = s.spent;
        let copies = members.len().max(1);
        let left = (
            s.limits.max_sends_per_call.saturating_sub(sends) as usize,
            s.limits.max_send_bytes_per_call.saturating_sub(bytes),
        );
        if copies > left.0 || copies.saturating_mul(msg.len()) > left.1 {
            return Err(Error::LimitReached);
        }
        if !members.is_empty() && msg.len() > s.limits.max_message_size {
            return Err(Error::TooLarge);
        }
        let mut queued = 0;
        for id in members {
            if let Ok(c) = open_conn(s, id) {
                c.sent.push(msg.clone());
                queued += 1;
            }
        }
        let charged = queued.max(1);
        s.spent = (sends + charged, bytes + charged as usize * msg.len());
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
        let old = s.kv.get(key).map_or(0, |v| key.len() + v.len() + ENTRY_OVERHEAD);
        fits_host_memory(s, old, key.len() + value.len() + ENTRY_OVERHEAD)?;
        s.kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    })
}

pub(crate) fn kv_delete(key: &str) -> bool {
    with(|s| s.kv.remove(key).is_some())
}

fn kv_check(s: &State, key: &str, value: Option<&[u8]>) -> Result<(), Error> {
    if key.is_empty() || key.len() > s.limits.max_kv_key {
        return Err(Error::InvalidArgument);
    }
    if value.is_some_and(|v| v.len() > s.limits.max_kv_value) {
        return Err(Error::TooLarge);
    }
    if value.is_some() && !s.kv.contains_key(key) && s.kv.len() >= s.limits.max_kv_keys {
        return Err(Error::LimitReached);
    }
    Ok(())
}

pub(crate) fn kv_increment(key: &str, delta: i64) -> Result<i64, Error> {
    with(|s| {
        kv_check(s, key, Some(b""))?;
        let current = match s.kv.get(key) {
            Some(v) => std::str::from_utf8(v).ok().and_then(|v| v.parse::<i64>().ok()).ok_or(Error::NotANumber)?,
            None => 0,
        };
        let new = current.checked_add(delta).ok_or(Error::NotANumber)?;
        s.kv.insert(key.to_owned(), new.to_string().into_bytes());
        Ok(new)
    })
}

pub(crate) fn kv_compare_and_set(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, Error> {
    with(|s| {
        kv_check(s, key, new)?;
        if s.kv.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(v) => s.kv.insert(key.to_owned(), v.to_vec()),
            None => s.kv.remove(key),
        };
        Ok(true)
    })
}

pub(crate) fn kv_list(prefix: &str, after: Option<&str>, limit: u32) -> crate::kv::Page {
    with(|s| {
        let limit = limit.min(wasmsock_limits::KV_MAX_KEYS_LISTED) as usize;
        let mut keys: Vec<String> =
            s.kv.range::<str, _>((
                after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(prefix))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more { keys.last().cloned() } else { None };
        crate::kv::Page { keys, next }
    })
}

pub(crate) fn config(key: &str) -> Option<String> {
    with(|s| s.config.get(key).cloned())
}

pub(crate) fn log(level: Level, message: &str) {
    with(|s| s.logs.push((level, message.to_owned())))
}

pub(crate) fn set_timer(key: &str, delay_ms: u32, conn: Option<u64>) -> Result<(), Error> {
    with(|s| {
        if key.is_empty()
            || key.len() > wasmsock_limits::MAX_TIMER_KEY
            || delay_ms > wasmsock_limits::MAX_TIMER_DELAY_MS
        {
            return Err(Error::InvalidArgument);
        }
        // As on the server: a connection that ended (or was never opened) has no timers; one
        // that is closing still takes them, until it ends.
        if conn.is_some_and(|c| !s.conns.contains_key(&c)) {
            return Err(Error::UnknownConnection);
        }
        if !s.timers.contains_key(key) && s.timers.len() >= s.limits.max_timers {
            return Err(Error::LimitReached);
        }
        let seq = s.timer_seq;
        s.timer_seq += 1;
        s.timers.insert(key.to_owned(), TimerState { due_ms: s.now_ms + u64::from(delay_ms), conn, seq });
        Ok(())
    })
}

pub(crate) fn cancel_timer(key: &str) -> bool {
    with(|s| {
        let was = s.timers.remove(key).is_some();
        if was {
            s.cancelled_timers.push(key.to_owned());
        }
        was
    })
}

/// A room's history on the test host: like the server's, bounded by entries only (no ttl,
/// no bytes), in one epoch until [`crate::testing::TestHost::lose_history`].
#[derive(Default)]
pub(crate) struct TestLog {
    pub(crate) epoch: String,
    pub(crate) top: u64,
    pub(crate) entries: std::collections::VecDeque<(u64, Message)>,
}

impl TestLog {
    /// Offsets up to this one are not kept.
    fn floor(&self) -> u64 {
        self.entries.front().map_or(self.top, |(o, _)| o - 1)
    }

    fn resume(&self, after: &crate::history::Position) -> Option<usize> {
        (after.epoch == self.epoch && after.offset <= self.top && after.offset >= self.floor())
            .then(|| (after.offset - self.floor()) as usize)
    }

    fn position(&self) -> crate::history::Position {
        crate::history::Position { offset: self.top, epoch: self.epoch.clone() }
    }
}

/// `*` matches any run of characters, as in the server's `[[history]] rooms`.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .any(|i| name.is_char_boundary(head.len() + i) && glob(rest, &name[head.len() + i..]))
        }
    }
}

/// The room's log (created on first use), or `NotPermitted` when no rule names it.
fn test_log<'a>(s: &'a mut State, room: &str) -> Result<&'a mut TestLog, Error> {
    if room.is_empty() || room.len() > s.limits.max_room_name {
        return Err(Error::InvalidArgument);
    }
    let size = s.history_rules.iter().find(|(p, _)| glob(p, room)).map(|(_, n)| *n).ok_or(Error::NotPermitted)?;
    let epochs = &mut s.epochs;
    let log = s.history.entry(room.to_owned()).or_insert_with(|| {
        *epochs += 1;
        TestLog { epoch: format!("test{epochs}"), ..TestLog::default() }
    });
    while log.entries.len() > size {
        log.entries.pop_front();
    }
    Ok(log)
}

fn history_size(s: &State, room: &str) -> usize {
    s.history_rules.iter().find(|(p, _)| glob(p, room)).map_or(1, |(_, n)| *n)
}

pub(crate) fn history_publish(
    room: &str,
    msg: Message,
    except: Option<u64>,
) -> Result<crate::history::Published, Error> {
    let (offset, epoch) = with(|s| test_log(s, room).map(|l| (l.top + 1, l.epoch.clone())))?;
    let msg = match msg {
        Message::Text(t) => {
            Message::Text(t.replace(crate::history::OFFSET, &offset.to_string()).replace(crate::history::EPOCH, &epoch))
        }
        binary => binary,
    };
    let queued = publish(room, msg.clone(), except)?;
    with(|s| {
        let size = history_size(s, room);
        let log = test_log(s, room)?;
        log.top = offset;
        log.entries.push_back((offset, msg));
        while log.entries.len() > size {
            log.entries.pop_front();
        }
        Ok(crate::history::Published { queued, position: log.position() })
    })
}

pub(crate) fn history_read(
    room: &str,
    after: Option<&crate::history::Position>,
    limit: u32,
) -> Result<crate::history::Page, Error> {
    with(|s| {
        let log = test_log(s, room)?;
        let (from, complete) = match after {
            Some(a) => log.resume(a).map_or((0, false), |i| (i, true)),
            None => (0, log.floor() == 0),
        };
        let limit = (limit as usize).min(1000);
        let entries: Vec<crate::history::Entry> = log
            .entries
            .iter()
            .skip(from)
            .take(limit)
            .map(|(offset, msg)| crate::history::Entry { offset: *offset, msg: msg.clone() })
            .collect();
        let more = from + entries.len() < log.entries.len();
        Ok(crate::history::Page { entries, complete, more, top: log.position() })
    })
}

pub(crate) fn history_current(room: &str) -> Result<crate::history::Position, Error> {
    with(|s| test_log(s, room).map(|l| l.position()))
}

pub(crate) fn history_join(
    conn: u64,
    room: &str,
    after: Option<&crate::history::Position>,
) -> Result<crate::history::Recovery, Error> {
    with(|s| test_log(s, room).map(|_| ()))?;
    join(conn, room)?;
    with(|s| {
        let log = test_log(s, room)?;
        let top = log.position();
        let missed: Option<Vec<Message>> = after
            .and_then(|a| log.resume(a))
            .map(|from| log.entries.iter().skip(from).map(|(_, m)| m.clone()).collect());
        let Some(missed) = missed else {
            return Ok(crate::history::Recovery { recovered: false, replayed: 0, top });
        };
        let (sends, bytes) = s.spent;
        let len: usize = missed.iter().map(Message::len).sum();
        let left = s.limits.max_sends_per_call.saturating_sub(sends) as usize;
        if missed.len() > left || bytes + len > s.limits.max_send_bytes_per_call {
            return Ok(crate::history::Recovery { recovered: false, replayed: 0, top });
        }
        s.spent = (sends + missed.len() as u32, bytes + len);
        let replayed = missed.len() as u32;
        open_conn(s, conn)?.sent.extend(missed);
        Ok(crate::history::Recovery { recovered: true, replayed, top })
    })
}
