use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Identity, Message, sys};

/// A connection, as a cheap copyable handle. Calls on a closed connection fail with
/// [`Error::UnknownConnection`]; a plugin may address only connections of routes it serves.
///
/// The handle is just the host's connection id, so it can be stored anywhere (an attachment,
/// the [`kv`](crate::kv) store, a room listing) and turned back into a `Conn` with
/// [`Conn::from_raw`]. Ids are never reused while the server process runs.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let conn = host.open("/chat");
/// // `conn` is what the host hands to `on_connect`, `on_message` and `on_close`.
/// conn.send_text("welcome").unwrap();
/// conn.join("lobby").unwrap();
/// assert_eq!(conn.rooms(), ["lobby"]);
/// # assert_eq!(host.sent(conn), vec![wasmsock_sdk::Message::from("welcome")]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn(u64);

impl Conn {
    /// The handle for a raw connection id (as received from the host or stored earlier).
    ///
    /// No check happens here: a stale or foreign id only shows up as an error on the first
    /// host call.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let peer = host.open("/chat");
    /// use wasmsock_sdk::{Conn, kv};
    /// // Remember who is on duty, across plugin reloads...
    /// kv::set_json("on-duty", &peer.id()).unwrap();
    /// // ...and address them later.
    /// let id: u64 = kv::get_json("on-duty").unwrap().unwrap();
    /// assert_eq!(Conn::from_raw(id), peer);
    /// let stale = Conn::from_raw(u64::MAX);
    /// assert!(matches!(stale.send_text("hi"), Err(wasmsock_sdk::Error::UnknownConnection)));
    /// ```
    pub const fn from_raw(id: u64) -> Self {
        Conn(id)
    }

    /// The raw connection id, the inverse of [`Conn::from_raw`]. Also handy in log lines.
    ///
    /// ```
    /// let conn = wasmsock_sdk::Conn::from_raw(42);
    /// assert_eq!(conn.id(), 42);
    /// assert_eq!(u64::from(conn), 42);
    /// ```
    pub const fn id(self) -> u64 {
        self.0
    }

    /// Queues a message to this connection.
    ///
    /// The call returns as soon as the message is queued; it never waits for the peer. It fails
    /// with [`Error::QueueFull`] when the peer is not reading fast enough, which most plugins
    /// simply ignore (the host deals with slow consumers).
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/echo");
    /// use wasmsock_sdk::Message;
    /// conn.send("text").unwrap(); // anything `Into<Message>`: &str, String, Vec<u8>, &[u8]
    /// conn.send(vec![1u8, 2, 3]).unwrap();
    /// assert_eq!(host.sent(conn), vec![Message::from("text"), Message::Binary(vec![1, 2, 3])]);
    /// ```
    pub fn send(self, msg: impl Into<Message>) -> Result<(), Error> {
        sys::send(self.0, msg.into())
    }

    /// Queues a text message; shorthand for `send(Message::Text(text.to_owned()))`.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/echo");
    /// conn.send_text("hello").unwrap();
    /// assert_eq!(host.sent(conn), vec![wasmsock_sdk::Message::from("hello")]);
    /// ```
    pub fn send_text(self, text: &str) -> Result<(), Error> {
        self.send(Message::Text(text.to_owned()))
    }

    /// Queues `value` as a JSON text message. Fails with [`Error::Json`] before anything is
    /// queued if `value` cannot be serialised.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.send_json(&serde_json::json!({"event": "joined", "room": "lobby"})).unwrap();
    /// let sent = host.sent(conn);
    /// assert_eq!(sent[0].as_text(), Some(r#"{"event":"joined","room":"lobby"}"#));
    /// ```
    pub fn send_json<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.send(Message::json(value)?)
    }

    /// Closes the connection with `code` (1000-1003, 1007-1014, or an application code 3000-4999) and a reason
    /// (at most 123 bytes, the room a close frame has). Messages queued before are delivered
    /// first, and `on_close` still runs when the connection has ended.
    ///
    /// A bad code or an over-long reason fails with [`Error::InvalidArgument`].
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.send_text("too many messages, bye").unwrap();
    /// conn.close(4008, "rate limited").unwrap();
    /// assert_eq!(host.close_requested(conn), Some((4008, "rate limited".into())));
    /// // Once closing, the connection takes no more messages.
    /// assert!(conn.send_text("late").is_err());
    /// ```
    pub fn close(self, code: u16, reason: &str) -> Result<(), Error> {
        sys::close(self.0, code, reason)
    }

    /// The identity a plugin attached at connect time (see [`Connect::accept_as`]), typically
    /// by an authentication plugin earlier in the route's chain.
    ///
    /// [`Connect::accept_as`]: crate::Connect::accept_as
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// use wasmsock_sdk::Identity;
    /// let conn = host.open_as("/chat", Identity::new("ada"));
    /// assert_eq!(conn.identity().map(|who| who.id).as_deref(), Some("ada"));
    /// ```
    pub fn identity(self) -> Option<Identity> {
        sys::identity(self.0)
    }

    /// This plugin's attachment on the connection: bytes the host keeps for the plugin across
    /// calls and reloads, freed when the connection closes. Each plugin sees only its own.
    ///
    /// This is where per-connection state belongs, since the plugin instance (and everything
    /// in its fields) may be replaced between two calls.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// assert_eq!(conn.attachment(), None);
    /// conn.set_attachment(b"nick=ada").unwrap();
    /// assert_eq!(conn.attachment().as_deref(), Some(&b"nick=ada"[..]));
    /// ```
    pub fn attachment(self) -> Option<Vec<u8>> {
        sys::attachment(self.0)
    }

    /// Replaces this plugin's attachment (size-limited by the host: [`Error::TooLarge`]);
    /// empty removes it.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.set_attachment(&[1, 2, 3]).unwrap();
    /// conn.set_attachment(&[]).unwrap();
    /// assert_eq!(conn.attachment(), None);
    /// ```
    pub fn set_attachment(self, data: &[u8]) -> Result<(), Error> {
        sys::set_attachment(self.0, data)
    }

    /// The attachment parsed from JSON; `Ok(None)` when there is none.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Session { nick: String, messages: u32 }
    ///
    /// assert_eq!(conn.attachment_json::<Session>().unwrap(), None);
    /// conn.set_attachment_json(&Session { nick: "ada".into(), messages: 1 }).unwrap();
    /// let session: Session = conn.attachment_json().unwrap().unwrap();
    /// assert_eq!(session.nick, "ada");
    /// ```
    pub fn attachment_json<T: DeserializeOwned>(self) -> Result<Option<T>, Error> {
        match self.attachment() {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` as JSON in the attachment, replacing what was there.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// // Count messages per connection; the count survives plugin reloads.
    /// let seen: u32 = conn.attachment_json().unwrap().unwrap_or(0);
    /// conn.set_attachment_json(&(seen + 1)).unwrap();
    /// assert_eq!(conn.attachment_json::<u32>().unwrap(), Some(1));
    /// ```
    pub fn set_attachment_json<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.set_attachment(&serde_json::to_vec(value)?)
    }

    /// Adds the connection to `room` (rooms are per plugin; see [`rooms`](crate::rooms)).
    /// Joining a room twice is not an error.
    ///
    /// Fails with [`Error::InvalidArgument`] for an empty or over-long room name and with
    /// [`Error::LimitReached`] when the connection is already in too many rooms.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.join("lobby").unwrap();
    /// conn.join("lobby").unwrap();
    /// assert_eq!(wasmsock_sdk::rooms::count("lobby"), 1);
    /// assert!(matches!(conn.join(""), Err(wasmsock_sdk::Error::InvalidArgument)));
    /// ```
    pub fn join(self, room: &str) -> Result<(), Error> {
        sys::join(self.0, room)
    }

    /// Removes the connection from `room`; false if it was not a member. There is no need to
    /// leave rooms on close: the host does that.
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.join("lobby").unwrap();
    /// assert!(conn.leave("lobby"));
    /// assert!(!conn.leave("lobby"));
    /// ```
    pub fn leave(self, room: &str) -> bool {
        sys::leave(self.0, room)
    }

    /// The rooms of this plugin the connection is in (rooms of other plugins are not visible).
    ///
    /// ```
    /// # let host = wasmsock_sdk::testing::TestHost::new();
    /// # let conn = host.open("/chat");
    /// conn.join("b").unwrap();
    /// conn.join("a").unwrap();
    /// let mut rooms = conn.rooms();
    /// rooms.sort(); // the order is up to the host
    /// assert_eq!(rooms, ["a", "b"]);
    /// ```
    pub fn rooms(self) -> Vec<String> {
        sys::rooms(self.0)
    }
}

impl From<Conn> for u64 {
    fn from(c: Conn) -> u64 {
        c.0
    }
}
