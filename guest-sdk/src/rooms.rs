//! Rooms: named groups of connections kept by the host, per plugin.
//!
//! A connection joins with [`Conn::join`](crate::Conn::join); it leaves all rooms when it
//! closes. A publish is queued to every member without calling any plugin per receiver, and
//! with a message broker configured it reaches members on every node.
//!
//! ```
//! # let host = wasmsock_sdk::testing::TestHost::new();
//! # let (a, b) = (host.open("/chat"), host.open("/chat"));
//! a.join("orders").unwrap();
//! b.join("orders").unwrap();
//! let queued = wasmsock_sdk::rooms::publish("orders", "new order".into(), Some(a)).unwrap();
//! assert_eq!(queued, 1); // b only
//! # assert_eq!(host.sent(b), vec![wasmsock_sdk::Message::from("new order")]);
//! ```

use crate::{Conn, Error, Message, sys};

/// Queues `msg` to every member of `room` except `except`; returns the number of local members
/// it was queued to.
///
/// Pass the sender as `except` to keep it from hearing its own message. The count covers this
/// node only (members on other nodes get it through the broker), and members whose queue is full
/// are skipped rather than failing the whole publish. Publishing to an empty room is not an error.
///
/// A publish is charged to the call's send budget (`max_sends_per_call`,
/// `max_send_bytes_per_call`) once per member it reaches, as that many sends would be (and at
/// least once). When what is left of the budget does not cover every member, nobody gets the
/// message and the call returns [`Error::LimitReached`]; when the message is larger than the
/// members' `max_message_size`, [`Error::TooLarge`].
///
/// ```
/// use wasmsock_sdk::{Error, Message, rooms, testing::{Limits, TestHost}};
/// let host = TestHost::new().limits(Limits { max_sends_per_call: 3, ..Limits::default() });
/// let (a, b) = (host.open("/chat"), host.open("/chat"));
/// a.join("lobby").unwrap();
/// b.join("lobby").unwrap();
/// assert_eq!(rooms::publish("lobby", Message::from("1"), None).unwrap(), 2);
/// // One send left, two members: refused whole.
/// assert!(matches!(rooms::publish("lobby", Message::from("2"), None), Err(Error::LimitReached)));
/// assert_eq!(rooms::publish("lobby", Message::from("3"), Some(a)).unwrap(), 1);
/// assert_eq!(host.sent(b), vec![Message::from("1"), Message::from("3")]);
/// ```
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let (me, other) = (host.open("/chat"), host.open("/chat"));
/// use wasmsock_sdk::{Message, rooms};
/// me.join("lobby").unwrap();
/// other.join("lobby").unwrap();
/// assert_eq!(rooms::publish("lobby", Message::from("to all"), None).unwrap(), 2);
/// assert_eq!(rooms::publish("lobby", Message::from("to the others"), Some(me)).unwrap(), 1);
/// assert_eq!(rooms::publish("nobody-here", Message::from("..."), None).unwrap(), 0);
/// assert_eq!(host.sent(other), vec![Message::from("to all"), Message::from("to the others")]);
/// ```
pub fn publish(room: &str, msg: Message, except: Option<Conn>) -> Result<u32, Error> {
    sys::publish(room, msg, except.map(Conn::id))
}

/// Up to `limit` members of `room` on this node (the host caps `limit` at 10,000). Members on
/// other nodes are not listed; to reach everyone, [`publish`].
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let (a, b) = (host.open("/chat"), host.open("/chat"));
/// a.join("lobby").unwrap();
/// b.join("lobby").unwrap();
/// let mut members = wasmsock_sdk::rooms::members("lobby", 100);
/// members.sort(); // the order is up to the host
/// assert_eq!(members, [a, b]);
/// assert_eq!(wasmsock_sdk::rooms::members("lobby", 1).len(), 1);
/// ```
pub fn members(room: &str, limit: u32) -> Vec<Conn> {
    sys::members(room, limit).into_iter().map(Conn::from_raw).collect()
}

/// The number of members of `room` on this node; cheaper than [`members`] when only the size
/// matters (for example a "3 online" presence line).
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let conn = host.open("/chat");
/// use wasmsock_sdk::rooms;
/// assert_eq!(rooms::count("lobby"), 0);
/// conn.join("lobby").unwrap();
/// assert_eq!(rooms::count("lobby"), 1);
/// ```
pub fn count(room: &str) -> u32 {
    sys::member_count(room)
}
