//! Users: every connection that carries an identity (set at connect time). Reach a user on
//! every tab and device, on this node and, when the server runs with a broker, on every node.
//!
//! A plugin reaches the users of the routes it serves, or of the plugin its `act_as` setting
//! names (so an HTTP plugin can reach the users of a WebSocket one).
//!
//! ```
//! use wasmsock_sdk::{Identity, Message, testing::TestHost, users};
//!
//! let host = TestHost::new();
//! let (a, b) = (host.open_as("/app", Identity::new("ada")), host.open_as("/app", Identity::new("ada")));
//! assert_eq!(users::connections("ada"), 2);
//! assert_eq!(users::send("ada", Message::from("hello")).unwrap(), 2);
//! assert_eq!(host.sent(a), vec![Message::from("hello")]);
//! assert_eq!(users::close("ada", 4000, "bye").unwrap(), 2);
//! assert_eq!(host.close_requested(b), Some((4000, "bye".into())));
//! ```

use crate::{Error, Message, sys};

/// Queues `msg` to every connection of `user`; returns how many connections on this node it
/// was queued to (other nodes get it through the broker). Charged to the call's send budget
/// once per connection (at least once).
pub fn send(user: &str, msg: impl Into<Message>) -> Result<u32, Error> {
    sys::send_to_user(user, msg.into())
}

/// Closes every connection of `user` with a WebSocket close code and reason; returns how many
/// on this node.
pub fn close(user: &str, code: u16, reason: &str) -> Result<u32, Error> {
    sys::close_user(user, code, reason)
}

/// How many open connections `user` has on this node.
pub fn connections(user: &str) -> u32 {
    sys::user_connections(user)
}

/// How many open connections `user` has on every node: this node's now, plus what each other
/// live node last told the broker (a node silent for the broker's `node_ttl` no longer
/// counts). Without a broker, this node's. `None` when the broker cannot be asked now (Redis
/// down or slow): fall back on [`connections`] if this node's number will do.
///
/// ```
/// use wasmsock_sdk::{Identity, testing::TestHost, users};
///
/// let host = TestHost::new();
/// host.open_as("/app", Identity::new("ada"));
/// assert_eq!(users::connections_everywhere("ada"), Some(1), "the test host is one node");
/// ```
pub fn connections_everywhere(user: &str) -> Option<u32> {
    sys::user_connections_everywhere(user)
}
