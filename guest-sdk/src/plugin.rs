use crate::{Conn, HttpRequest, HttpResponse, Identity, Message, Request};

/// A wasmsock plugin. Every method has a default, so implement only what you need.
///
/// One value of the type is created (with [`Default`]) per plugin instance and serves many
/// connections; the host may replace the instance at any time, so durable state belongs in
/// [`Conn::set_attachment`] or [`kv`](crate::kv). The methods take `&self` because a call
/// must not rely on having seen earlier ones.
///
/// ```
/// use wasmsock_sdk::{Conn, Connect, Flow, Message, Plugin, Request, export_plugin};
///
/// /// Lets in clients that know the password, and greets everyone in the room.
/// #[derive(Default)]
/// struct Lobby;
///
/// impl Plugin for Lobby {
///     fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
///         match (req.query_param("password"), wasmsock_sdk::config("password")) {
///             (Some(given), Some(wanted)) if given == wanted => Connect::accept(),
///             _ => Connect::reject(403, "wrong password"),
///         }
///     }
///
///     fn on_message(&self, conn: Conn, msg: Message) -> Flow {
///         if conn.join("lobby").is_ok() {
///             let _ = wasmsock_sdk::rooms::publish("lobby", msg, Some(conn));
///         }
///         Flow::Done
///     }
/// }
///
/// export_plugin!(Lobby);
///
/// // The same plugin, tested natively:
/// let host = wasmsock_sdk::testing::TestHost::new().config("password", "sesame");
/// let req = |query: &str| Request { route: "/lobby".into(), query: query.into(), ..Request::default() };
/// assert_eq!(host.connect(&Lobby, req("password=nope")).1, Connect::reject(403, "wrong password"));
/// let (a, _) = host.connect(&Lobby, req("password=sesame"));
/// let (b, _) = host.connect(&Lobby, req("password=sesame"));
/// host.message(&Lobby, a, "hi".into());
/// host.message(&Lobby, b, "hello".into());
/// assert_eq!(host.sent(a), vec![Message::from("hello")]);
/// ```
pub trait Plugin: Default + 'static {
    /// A client asks to open a connection on a route this plugin serves. Runs before the
    /// upgrade is answered; the first plugin of a route's chain that rejects answers the
    /// handshake with its status and reason. Default: accept.
    ///
    /// This is the place for authentication: whatever identity is accepted here is what
    /// [`Conn::identity`] reports for the rest of the connection's life.
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, Connect, Identity, Plugin, Request};
    ///
    /// #[derive(Default)]
    /// struct ApiKey;
    ///
    /// impl Plugin for ApiKey {
    ///     fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
    ///         match req.header("x-api-key") {
    ///             Some(key) if key.starts_with("team-") => Connect::accept_as(Identity::new(key)),
    ///             _ => Connect::reject(401, "missing or bad api key"),
    ///         }
    ///     }
    /// }
    ///
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let req = Request { headers: vec![("x-api-key".into(), "team-red".into())], ..Request::default() };
    /// let (conn, answer) = host.connect(&ApiKey, req);
    /// assert_eq!(answer, Connect::accept_as(Identity::new("team-red")));
    /// assert_eq!(conn.identity().unwrap().id, "team-red");
    /// ```
    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        let _ = (conn, req);
        Connect::accept()
    }

    /// A complete message arrived. Return [`Flow::Done`] when handled, [`Flow::Pass`] to hand it
    /// on unchanged, or [`Flow::Forward`] to hand on a rewritten message. Default: pass.
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, Flow, Message, Plugin};
    ///
    /// /// Answers pings itself and lets later plugins see everything else.
    /// #[derive(Default)]
    /// struct Ping;
    ///
    /// impl Plugin for Ping {
    ///     fn on_message(&self, conn: Conn, msg: Message) -> Flow {
    ///         if msg.as_text() == Some("ping") {
    ///             let _ = conn.send_text("pong");
    ///             return Flow::Done;
    ///         }
    ///         Flow::Pass
    ///     }
    /// }
    ///
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let conn = host.open("/app");
    /// assert_eq!(host.message(&Ping, conn, "ping".into()), Flow::Done);
    /// assert_eq!(host.message(&Ping, conn, "other".into()), Flow::Pass);
    /// assert_eq!(host.sent(conn), vec![Message::from("pong")]);
    /// ```
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let _ = (conn, msg);
        Flow::Pass
    }

    /// The connection ended, whatever ended it: called exactly once for every connection this
    /// plugin accepted. `code` is the WebSocket close code (1006 when there was no close frame).
    ///
    /// This also runs (with 1006) when a later plugin of the chain rejected a handshake this
    /// plugin accepted. Nothing sent to the connection arrives any more, but its attachment
    /// and rooms can still be read (the host removes it from its rooms right after), so this
    /// is the place to tell the others.
    ///
    /// ```
    /// use wasmsock_sdk::{Conn, Message, Plugin, rooms};
    ///
    /// #[derive(Default)]
    /// struct Presence;
    ///
    /// impl Plugin for Presence {
    ///     fn on_close(&self, conn: Conn, _code: u16, _reason: &str) {
    ///         let left = format!("{} left", conn.id());
    ///         for room in conn.rooms() {
    ///             let _ = rooms::publish(&room, Message::from(left.as_str()), Some(conn));
    ///         }
    ///     }
    /// }
    ///
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let (a, b) = (host.open("/chat"), host.open("/chat"));
    /// a.join("lobby").unwrap();
    /// b.join("lobby").unwrap();
    /// host.close(&Presence, a, 1006, "");
    /// assert_eq!(host.sent(b), vec![Message::from(format!("{} left", a.id()))]);
    /// assert_eq!(rooms::count("lobby"), 1);
    /// ```
    fn on_close(&self, conn: Conn, code: u16, reason: &str) {
        let _ = (conn, code, reason);
    }

    /// A plain HTTP request arrived on an HTTP route this plugin serves (`[[http_routes]]`).
    /// Default: 503, this plugin does not serve HTTP.
    ///
    /// There is no connection: reach users with [`users`](crate::users), rooms with
    /// [`rooms`](crate::rooms) (with the server's `act_as` setting, another plugin's rooms).
    ///
    /// ```
    /// use wasmsock_sdk::{HttpRequest, HttpResponse, Plugin, rooms};
    ///
    /// /// `POST /notify/<room>` publishes the body to the room.
    /// #[derive(Default)]
    /// struct Notify;
    ///
    /// impl Plugin for Notify {
    ///     fn on_request(&self, req: &HttpRequest) -> HttpResponse {
    ///         match (req.method.as_str(), req.subpath().strip_prefix('/')) {
    ///             ("POST", Some(room)) if !room.is_empty() => {
    ///                 let text = String::from_utf8_lossy(&req.body).into_owned();
    ///                 match rooms::publish(room, text.into(), None) {
    ///                     Ok(n) => HttpResponse::json(200, &serde_json::json!({ "delivered": n })),
    ///                     Err(e) => HttpResponse::text(400, &e.to_string()),
    ///                 }
    ///             }
    ///             _ => HttpResponse::text(404, "POST /notify/<room>"),
    ///         }
    ///     }
    /// }
    ///
    /// let host = wasmsock_sdk::testing::TestHost::new();
    /// let conn = host.open("/chat");
    /// conn.join("news").unwrap();
    /// let req = HttpRequest { method: "POST".into(), route: "/notify".into(), path: "/notify/news".into(), body: b"hi".to_vec(), ..Default::default() };
    /// assert_eq!(host.request(&Notify, req).body, br#"{"delivered":1}"#);
    /// assert_eq!(host.sent(conn), vec!["hi".into()]);
    /// ```
    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        let _ = req;
        HttpResponse::text(503, "this plugin does not serve HTTP requests")
    }

    /// Timer `key`, armed with [`timers::set`](crate::timers::set) (`conn` is `None`) or
    /// [`timers::set_for`](crate::timers::set_for), came due. Timers are one-shot: set it
    /// again here for periodic work. Default: nothing.
    ///
    /// It runs like any call, under the deadline and with a fresh send budget; the version of
    /// the plugin loaded when the timer comes due gets the call, even if an older one set it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wasmsock_sdk::{Conn, Plugin, rooms, testing::TestHost, timers};
    ///
    /// /// Tells the "lobby" room the time every 10 s, while anyone is there.
    /// #[derive(Default)]
    /// struct Clock;
    ///
    /// impl Plugin for Clock {
    ///     fn on_timer(&self, key: &str, _conn: Option<Conn>) {
    ///         if key == "clock" && rooms::count("lobby") > 0 {
    ///             let _ = rooms::publish("lobby", "tick".into(), None);
    ///             let _ = timers::set("clock", Duration::from_secs(10));
    ///         }
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// host.open("/chat").join("lobby").unwrap();
    /// timers::set("clock", Duration::from_secs(10)).unwrap();
    /// assert_eq!(host.advance(&Clock, Duration::from_secs(30)).len(), 3);
    /// ```
    fn on_timer(&self, key: &str, conn: Option<Conn>) {
        let _ = (key, conn);
    }
}

/// The answer to [`Plugin::on_connect`]. Build it with the constructors rather than the
/// variants: they fill in the defaults.
///
/// ```
/// use wasmsock_sdk::{Connect, Identity};
///
/// let open = Connect::accept();
/// let known = Connect::accept_as(Identity::new("ada")).with_protocol("chat.v2");
/// let closed = Connect::reject(403, "not on the list");
///
/// assert_eq!(open, Connect::Accept { identity: None, protocol: None });
/// assert!(matches!(known, Connect::Accept { protocol: Some(ref p), .. } if p == "chat.v2"));
/// assert!(matches!(closed, Connect::Reject { status: 403, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// Let the connection in.
    Accept {
        /// Identity to attach to the connection; later plugins and the server log see it.
        identity: Option<Identity>,
        /// Subprotocol to answer with (one the client offered in `Sec-WebSocket-Protocol`).
        protocol: Option<String>,
    },
    /// Refuse the upgrade with an HTTP status (for example 401 or 403) and a short reason.
    Reject {
        /// HTTP status code, 400-599 (the host answers 403 for anything else).
        status: u16,
        /// Short reason, sent as the response body (the host keeps the first 200 bytes and drops
        /// control characters). Clients can read it; don't put secrets in it.
        reason: String,
    },
}

impl Connect {
    /// Accept without an identity (an identity set by an earlier plugin of the chain stays).
    ///
    /// ```
    /// let yes = wasmsock_sdk::Connect::accept();
    /// assert_eq!(yes, wasmsock_sdk::Connect::Accept { identity: None, protocol: None });
    /// ```
    pub fn accept() -> Self {
        Connect::Accept { identity: None, protocol: None }
    }

    /// Accept as `identity`, which later plugins see in [`Request::identity`] and
    /// [`Conn::identity`].
    ///
    /// ```
    /// use wasmsock_sdk::{Connect, Identity};
    /// let who = Identity::with_claims("ada", &serde_json::json!({"role": "admin"})).unwrap();
    /// let yes = Connect::accept_as(who.clone());
    /// assert_eq!(yes, Connect::Accept { identity: Some(who), protocol: None });
    /// ```
    pub fn accept_as(identity: Identity) -> Self {
        Connect::Accept { identity: Some(identity), protocol: None }
    }

    /// Refuse with an HTTP status (400-599) and a reason; later plugins of the chain are not
    /// asked.
    ///
    /// ```
    /// let no = wasmsock_sdk::Connect::reject(401, "missing token");
    /// assert!(matches!(no, wasmsock_sdk::Connect::Reject { status: 401, .. }));
    /// ```
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Connect::Reject { status, reason: reason.into() }
    }

    /// Answer the handshake with subprotocol `protocol` (ignored on a rejection). Pick one of
    /// [`Request::protocols`]: the host refuses the handshake (500) when the chosen protocol is
    /// not one the client offered. When several plugins of a chain choose one, the last wins.
    ///
    /// ```
    /// use wasmsock_sdk::{Connect, Request};
    /// let req = Request {
    ///     headers: vec![("sec-websocket-protocol".into(), "chat.v1, chat.v2".into())],
    ///     ..Request::default()
    /// };
    /// let answer = match req.protocols().into_iter().find(|p| p.starts_with("chat.")) {
    ///     Some(p) => Connect::accept().with_protocol(p),
    ///     None => Connect::reject(400, "no supported subprotocol"),
    /// };
    /// assert_eq!(answer, Connect::Accept { identity: None, protocol: Some("chat.v1".into()) });
    /// assert_eq!(Connect::reject(403, "no").with_protocol("chat.v1"), Connect::reject(403, "no"));
    /// ```
    pub fn with_protocol(self, protocol: impl Into<String>) -> Self {
        match self {
            Connect::Accept { identity, .. } => Connect::Accept { identity, protocol: Some(protocol.into()) },
            reject => reject,
        }
    }
}

/// What happens to a message after [`Plugin::on_message`].
///
/// A route can chain several plugins (say auth, then a filter, then the application); the
/// message travels down the chain until a plugin returns [`Flow::Done`]. If it falls off the
/// end, nothing more happens to it.
///
/// ```
/// use wasmsock_sdk::{Flow, Message};
///
/// // A filter that masks a word and lets the next plugin handle the rest.
/// fn mask(msg: Message) -> Flow {
///     match msg.as_text() {
///         Some(text) if text.contains("secret") => Flow::Forward(text.replace("secret", "******").into()),
///         Some(_) => Flow::Pass,
///         None => Flow::Done, // drop binary messages
///     }
/// }
///
/// assert_eq!(mask("my secret".into()), Flow::Forward("my ******".into()));
/// assert_eq!(mask("hello".into()), Flow::Pass);
/// assert_eq!(mask(vec![0u8].into()), Flow::Done);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Hand the same message to the next plugin of the chain.
    Pass,
    /// Hand this message to the next plugin of the chain instead.
    Forward(Message),
    /// Handled: later plugins of the chain do not see the message.
    Done,
}

/// Conversions between the WIT bindings and SDK types, called by [`export_plugin!`](crate::export_plugin).
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
pub(crate) mod glue {
    use super::{Connect, Flow, Plugin};
    use crate::sys::bindings::exports::wasmsock::plugin::http;
    use crate::sys::bindings::wasmsock::plugin::types as wit;
    use crate::{Conn, Request};

    pub fn on_connect<P: Plugin>(plugin: &P, conn: u64, req: wit::Request) -> wit::Connect {
        let req = Request {
            route: req.route,
            path: req.path,
            query: req.query,
            headers: req.headers,
            remote_addr: req.remote_addr,
            client_cert_subject: req.client_cert_subject,
            identity: req.identity.map(Into::into),
        };
        match plugin.on_connect(Conn::from_raw(conn), &req) {
            Connect::Accept { identity, protocol } => {
                wit::Connect::Accept(wit::Accept { identity: identity.map(Into::into), protocol })
            }
            Connect::Reject { status, reason } => wit::Connect::Reject(wit::Reject { status, reason }),
        }
    }

    pub fn on_message<P: Plugin>(plugin: &P, conn: u64, msg: wit::Message) -> wit::Flow {
        match plugin.on_message(Conn::from_raw(conn), msg.into()) {
            Flow::Pass => wit::Flow::Pass,
            Flow::Forward(m) => wit::Flow::Forward(m.into()),
            Flow::Done => wit::Flow::Done,
        }
    }

    pub fn on_close<P: Plugin>(plugin: &P, conn: u64, code: u16, reason: String) {
        plugin.on_close(Conn::from_raw(conn), code, &reason)
    }

    pub fn on_request<P: Plugin>(plugin: &P, req: http::HttpRequest) -> http::HttpResponse {
        let req = crate::HttpRequest {
            method: req.method,
            route: req.route,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            remote_addr: req.remote_addr,
            client_cert_subject: req.client_cert_subject,
        };
        let r = plugin.on_request(&req);
        http::HttpResponse { status: r.status, headers: r.headers, body: r.body }
    }

    pub fn on_timer<P: Plugin>(plugin: &P, key: String, conn: Option<u64>) {
        plugin.on_timer(&key, conn.map(Conn::from_raw))
    }
}
