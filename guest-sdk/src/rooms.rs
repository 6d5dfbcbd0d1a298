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
pub fn publish(room: &str, msg: Message, except: Option<Conn>) -> Result<u32, Error> {
    sys::publish(room, msg, except.map(Conn::id))
}

/// Up to `limit` members of `room` on this node.
pub fn members(room: &str, limit: u32) -> Vec<Conn> {
    sys::members(room, limit).into_iter().map(Conn::from_raw).collect()
}

/// The number of members of `room` on this node.
pub fn count(room: &str) -> u32 {
    sys::member_count(room)
}
