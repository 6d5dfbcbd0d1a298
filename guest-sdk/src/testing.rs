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

use std::marker::PhantomData;
use std::time::Duration;

use crate::log::Level;
use crate::sys::memory::{self, ConnState, State, with};
use crate::{Conn, Connect, Flow, Identity, Message, Plugin, Request, http};

pub use crate::sys::memory::Limits;
pub use crate::webhook_types::Emitted;

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
        memory::install(Some(State { next_id: 1, ..State::default() }));
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

    /// Keeps the history of the rooms `rooms` names (`*` matches any run of characters), at
    /// most `size` entries each, as a `[[history]]` rule does on the server (first rule that
    /// matches wins). Chains, builder-style.
    ///
    /// ```
    /// use wasmsock_sdk::{history, testing::TestHost};
    /// let _host = TestHost::new().history("orders*", 100);
    /// assert_eq!(history::current("orders:1").unwrap().offset, 0);
    /// assert!(history::current("lobby").is_err());
    /// ```
    pub fn history(self, rooms: &str, size: usize) -> Self {
        with(|s| s.history_rules.push((rooms.to_owned(), size.max(1))));
        self
    }

    /// Loses `room`'s history, as a server restart does: its next use starts a new epoch.
    ///
    /// ```
    /// use wasmsock_sdk::{history, testing::TestHost, Message};
    /// let host = TestHost::new().history("news", 10);
    /// let before = history::publish("news", Message::from("a"), None).unwrap().position;
    /// host.lose_history("news");
    /// let after = history::current("news").unwrap();
    /// assert_ne!(after.epoch, before.epoch);
    /// assert_eq!(after.offset, 0);
    /// ```
    pub fn lose_history(&self, room: &str) {
        with(|s| s.history.remove(room));
    }

    /// Answers outbound HTTP `method url` with `status` and `body` (any number of times).
    /// Requests nobody set an answer for fail with [`http::Error::Denied`], as on a server
    /// whose `http_allowed_hosts` does not list the backend.
    ///
    /// ```
    /// use wasmsock_sdk::{http, testing::TestHost};
    /// let host = TestHost::new().http_answer("GET", "https://api.example.com/price", 200, "42");
    /// assert_eq!(http::get("https://api.example.com/price").unwrap().text().unwrap(), "42");
    /// assert_eq!(http::get("https://elsewhere.example.com/").unwrap_err(), http::Error::Denied);
    /// assert_eq!(host.http_requests().len(), 2);
    /// ```
    pub fn http_answer(self, method: &str, url: &str, status: u16, body: impl Into<Vec<u8>>) -> Self {
        let response = http::Response { status, headers: Vec::new(), body: body.into() };
        self.http_result(method, url, Ok(response))
    }

    /// Makes outbound HTTP `method url` fail with `error` (a timeout, a backend that is down).
    ///
    /// ```
    /// use wasmsock_sdk::{http, testing::TestHost};
    /// let _host = TestHost::new().http_fail("POST", "https://api.example.com/x", http::Error::Timeout);
    /// assert_eq!(http::post("https://api.example.com/x", "hi").unwrap_err(), http::Error::Timeout);
    /// ```
    pub fn http_fail(self, method: &str, url: &str, error: http::Error) -> Self {
        self.http_result(method, url, Err(error))
    }

    /// Sets the outcome of outbound HTTP `method url`; the latest one set wins.
    pub fn http_result(self, method: &str, url: &str, result: Result<http::Response, http::Error>) -> Self {
        with(|s| s.http_answers.insert(0, (method.to_ascii_uppercase(), url.to_owned(), result)));
        self
    }

    /// The outbound HTTP requests the plugin made, in order (answered or not).
    pub fn http_requests(&self) -> Vec<http::Request> {
        with(|s| s.http_requests.clone())
    }

    /// The webhook events the plugin emitted, in order (see [`webhooks`](crate::webhooks)).
    ///
    /// ```
    /// use wasmsock_sdk::{testing::TestHost, webhooks};
    /// let host = TestHost::new();
    /// webhooks::emit("https://api.example.com/hooks", &serde_json::json!({"name": "ping"}), None).unwrap();
    /// assert_eq!(host.webhooks()[0].url, "https://api.example.com/hooks");
    /// assert_eq!(host.webhooks()[0].event, serde_json::json!({"name": "ping"}));
    /// ```
    pub fn webhooks(&self) -> Vec<Emitted> {
        with(|s| s.webhooks.clone())
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

    /// Pretends other nodes of a cluster have `connections` of `user` in `room` (0 removes
    /// them): [`presence`](crate::presence) counts and lists them, and a join or leave of the
    /// user here is not their first or last.
    ///
    /// ```
    /// use wasmsock_sdk::{Identity, presence, testing::TestHost};
    /// let host = TestHost::new();
    /// host.elsewhere("lobby", "ada", 1);
    /// let tab = host.open_as("/chat", Identity::new("ada"));
    /// let joined = presence::join(tab, "lobby").unwrap();
    /// assert_eq!((joined.here, joined.everywhere), (true, Some(false)), "she is on another node");
    /// assert_eq!(presence::count("lobby").connections, 2);
    /// ```
    pub fn elsewhere(&self, room: &str, user: &str, connections: u32) {
        with(|s| {
            let key = (room.to_owned(), user.to_owned());
            if connections == 0 {
                s.elsewhere.remove(&key);
            } else {
                s.elsewhere.insert(key, connections);
            }
        });
    }

    /// Pretends Redis cannot be asked (`true`) or can again: presence answers for this node
    /// only, flagged (`cluster: false`, `everywhere: None`).
    ///
    /// ```
    /// use wasmsock_sdk::{Identity, presence, testing::TestHost};
    /// let host = TestHost::new();
    /// host.presence_unknown(true);
    /// let joined = presence::join(host.open_as("/chat", Identity::new("ada")), "lobby").unwrap();
    /// assert_eq!((joined.everywhere, joined.announce()), (None, true), "falls back on this node");
    /// assert!(!presence::count("lobby").cluster);
    /// ```
    pub fn presence_unknown(&self, unknown: bool) {
        with(|s| s.presence_unknown = unknown);
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
    /// As on the server, the connection exists during `on_connect`: host calls on it from
    /// there work (set its attachment, join rooms, send it a greeting). If the plugin rejects
    /// the connection, it is gone afterwards, with what those calls left (rooms, attachment).
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, Connect, Plugin, Request, testing::TestHost};
    ///
    /// #[derive(Default)]
    /// struct NeedsToken;
    /// impl Plugin for NeedsToken {
    ///     fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
    ///         // Host calls work here, accepted or not.
    ///         conn.join("lobby").unwrap();
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
    /// assert_eq!(host.members("lobby"), vec![conn]);
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
        memory::begin_call();
        let answer = plugin.on_connect(conn, &req);
        match &answer {
            Connect::Accept { identity: Some(identity), .. } => with(|s| {
                if let Some(c) = s.conns.get_mut(&id) {
                    c.identity = Some(identity.clone());
                }
            }),
            Connect::Accept { .. } => {}
            _ => {
                with(|s| memory::forget(s, id));
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
        memory::begin_call();
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
        memory::begin_call();
        plugin.on_close(conn, code, reason);
        with(|s| {
            if let Some(state) = memory::forget(s, conn.id()) {
                let closing = state.closing.unwrap_or((code, reason.to_owned()));
                s.closed.insert(conn.id(), closing);
            }
        });
    }

    /// Delivers an HTTP request to `plugin.on_request` (with a fresh send budget, as on the
    /// server) and returns its response.
    pub fn request<P: Plugin>(&self, plugin: &P, req: crate::HttpRequest) -> crate::HttpResponse {
        memory::begin_call();
        plugin.on_request(&req)
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
        memory::install(None);
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

/// A timer the plugin holds armed, as [`TestHost::timers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Its key.
    pub key: String,
    /// How long until it comes due, on the test host's clock (which moves only with
    /// [`TestHost::advance`]).
    pub due_in: Duration,
    /// The connection it was set for ([`timers::set_for`](crate::timers::set_for)).
    pub conn: Option<Conn>,
}

/// Timers: the test host keeps its own clock, which stands still until a test advances it, so
/// timer tests are exact and instant.
impl TestHost {
    /// The armed timers, earliest first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmsock_sdk::{testing::{TestHost, Timer}, timers};
    /// let host = TestHost::new();
    /// let conn = host.open("/chat");
    /// timers::set("b", Duration::from_secs(2)).unwrap();
    /// timers::set_for(conn, "a", Duration::from_secs(1)).unwrap();
    /// assert_eq!(host.timers(), [
    ///     Timer { key: "a".into(), due_in: Duration::from_secs(1), conn: Some(conn) },
    ///     Timer { key: "b".into(), due_in: Duration::from_secs(2), conn: None },
    /// ]);
    /// ```
    pub fn timers(&self) -> Vec<Timer> {
        with(|s| {
            s.timers_in_order()
                .into_iter()
                .map(|(key, t)| Timer {
                    key,
                    due_in: Duration::from_millis(t.due_ms.saturating_sub(s.now_ms)),
                    conn: t.conn.map(Conn::from_raw),
                })
                .collect()
        })
    }

    /// The keys of the timers the plugin cancelled (that were armed), in order.
    pub fn cancelled_timers(&self) -> Vec<String> {
        with(|s| s.cancelled_timers.clone())
    }

    /// Moves the clock on by `by`, firing every timer that comes due meanwhile through
    /// `plugin.on_timer`, earliest first, each as a call of its own (with a fresh send budget),
    /// with the clock at its due time: a timer set again from `on_timer` fires again if it
    /// comes due within `by`. Returns the keys fired, in order.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmsock_sdk::{Conn, Plugin, testing::TestHost, timers};
    ///
    /// #[derive(Default)]
    /// struct Every100ms;
    /// impl Plugin for Every100ms {
    ///     fn on_timer(&self, key: &str, _conn: Option<Conn>) {
    ///         timers::set(key, Duration::from_millis(100)).unwrap();
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// timers::set("beat", Duration::from_millis(100)).unwrap();
    /// assert!(host.advance(&Every100ms, Duration::from_millis(99)).is_empty());
    /// assert_eq!(host.advance(&Every100ms, Duration::from_millis(301)), ["beat", "beat", "beat", "beat"]);
    /// assert_eq!(host.timers()[0].due_in, Duration::from_millis(100));
    /// ```
    pub fn advance<P: Plugin>(&self, plugin: &P, by: Duration) -> Vec<String> {
        let end = with(|s| s.now_ms.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)));
        let mut fired = Vec::new();
        loop {
            let next = with(|s| {
                let (key, t) = s.timers_in_order().into_iter().next().filter(|(_, t)| t.due_ms <= end)?;
                s.now_ms = s.now_ms.max(t.due_ms);
                s.timers.remove(&key);
                Some((key, t.conn))
            });
            let Some((key, conn)) = next else { break };
            memory::begin_call();
            plugin.on_timer(&key, conn.map(Conn::from_raw));
            fired.push(key);
        }
        with(|s| s.now_ms = end);
        fired
    }

    /// Fires timer `key` now, whenever it was due; false (and no call) if it is not armed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmsock_sdk::{Conn, Plugin, testing::TestHost, timers};
    ///
    /// #[derive(Default)]
    /// struct Expire;
    /// impl Plugin for Expire {
    ///     fn on_timer(&self, _key: &str, conn: Option<Conn>) {
    ///         if let Some(conn) = conn {
    ///             let _ = conn.close(4000, "turn expired");
    ///         }
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// let conn = host.open("/game");
    /// timers::set_for(conn, "turn", Duration::from_secs(30)).unwrap();
    /// assert!(host.fire(&Expire, "turn"));
    /// assert_eq!(host.close_requested(conn), Some((4000, "turn expired".into())));
    /// assert!(!host.fire(&Expire, "turn"), "one-shot");
    /// ```
    pub fn fire<P: Plugin>(&self, plugin: &P, key: &str) -> bool {
        let Some(conn) = with(|s| s.timers.remove(key).map(|t| t.conn)) else {
            return false;
        };
        memory::begin_call();
        plugin.on_timer(key, conn.map(Conn::from_raw));
        true
    }
}

#[cfg(test)]
mod timer_tests {
    use std::time::Duration;

    use super::{TestHost, Timer};
    use crate::{Conn, Error, Plugin, timers};

    /// Records its calls in the key/value store, and re-arms `again` once.
    #[derive(Default)]
    struct Recorder;
    impl Plugin for Recorder {
        fn on_timer(&self, key: &str, conn: Option<Conn>) {
            let seen = crate::kv::get("seen").map(|v| String::from_utf8(v).unwrap()).unwrap_or_default();
            let entry = format!("{seen}{key}@{};", conn.map_or(0, |c| c.id()));
            crate::kv::set("seen", entry.as_bytes()).unwrap();
            if key == "again" && !seen.contains("again") {
                timers::set("again", Duration::from_millis(10)).unwrap();
            }
        }
    }

    fn seen(host: &TestHost) -> String {
        host.kv("seen").map(|v| String::from_utf8(v).unwrap()).unwrap_or_default()
    }

    #[test]
    fn advance_fires_in_due_order_with_the_connection_and_re_armed_timers_fire_again() {
        let host = TestHost::new();
        let conn = host.open("/x");
        timers::set("late", Duration::from_millis(50)).unwrap();
        timers::set_for(conn, "early", Duration::from_millis(5)).unwrap();
        timers::set("again", Duration::from_millis(20)).unwrap();
        timers::set("tie", Duration::from_millis(20)).unwrap();
        assert_eq!(host.advance(&Recorder, Duration::from_millis(4)), Vec::<String>::new());
        let fired = host.advance(&Recorder, Duration::from_millis(46));
        assert_eq!(fired, ["early", "again", "tie", "again", "late"]);
        assert_eq!(seen(&host), format!("early@{};again@0;tie@0;again@0;late@0;", conn.id()));
        assert!(host.timers().is_empty());
    }

    #[test]
    fn cancel_and_replace_are_recorded_and_closing_a_connection_drops_its_timers() {
        let host = TestHost::new();
        let (a, b) = (host.open("/x"), host.open("/x"));
        timers::set_for(a, "a", Duration::from_secs(1)).unwrap();
        timers::set_for(b, "b", Duration::from_secs(1)).unwrap();
        timers::set("k", Duration::from_secs(1)).unwrap();
        timers::set("k", Duration::from_secs(3)).unwrap();
        assert!(timers::cancel("b"));
        assert!(!timers::cancel("never"));
        assert_eq!(host.cancelled_timers(), ["b"]);
        host.close(&Recorder, a, 1000, "");
        assert_eq!(host.timers(), [Timer { key: "k".into(), due_in: Duration::from_secs(3), conn: None }]);
        assert!(matches!(timers::set_for(a, "a", Duration::ZERO), Err(Error::UnknownConnection)));
        assert!(host.advance(&Recorder, Duration::from_secs(2)).is_empty());
        assert_eq!(host.advance(&Recorder, Duration::from_secs(1)), ["k"]);
    }

    #[test]
    fn bounds_are_the_servers() {
        let host = TestHost::new();
        let long = "k".repeat(wasmsock_limits::MAX_TIMER_KEY + 1);
        assert!(matches!(timers::set(&long, Duration::ZERO), Err(Error::InvalidArgument)));
        assert!(matches!(timers::set("day", Duration::from_secs(86_400)), Ok(())));
        assert!(matches!(timers::set("day+", Duration::from_millis(86_400_001)), Err(Error::InvalidArgument)));
        let max = wasmsock_limits::MAX_TIMERS;
        for i in 1..max {
            timers::set(&i.to_string(), Duration::from_secs(1)).unwrap();
        }
        assert!(matches!(timers::set("one too many", Duration::from_secs(1)), Err(Error::LimitReached)));
        assert_eq!(host.timers().len(), max);
        assert!(host.fire(&Recorder, "day"));
        timers::set("room again", Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn the_send_budget_is_fresh_for_each_fire() {
        #[derive(Default)]
        struct Sender;
        impl Plugin for Sender {
            fn on_timer(&self, _key: &str, conn: Option<Conn>) {
                if let Some(c) = conn {
                    let _ = c.send_text("x");
                    let _ = c.send_text("x");
                }
            }
        }
        let host = TestHost::new().limits(super::Limits { max_sends_per_call: 2, ..Default::default() });
        let conn = host.open("/x");
        for key in ["a", "b"] {
            timers::set_for(conn, key, Duration::ZERO).unwrap();
        }
        host.advance(&Sender, Duration::ZERO);
        assert_eq!(host.sent(conn).len(), 4);
    }
}
