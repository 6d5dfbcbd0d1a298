//! Presence: who is in a room, on every node of a cluster (identities counted once however
//! many connections they have; connections without an identity counted as anonymous), and
//! joins and leaves that say whether they are a user's first or last connection in the room,
//! so that a plugin announces a user once, not once per tab.
//!
//! With a broker (Redis), the answers cover every live node: a node silent for the broker's
//! `node_ttl` (killed, cut off) no longer counts. Without one, this node is the cluster. When
//! Redis cannot be asked, the calls still answer, for this node only, and say so
//! ([`Census::cluster`] false, [`Change::everywhere`] `None`); they never fail a join.
//!
//! ```
//! use wasmsock_sdk::{Identity, presence, testing::TestHost};
//!
//! let host = TestHost::new();
//! let (tab1, tab2) = (host.open_as("/chat", Identity::new("ada")), host.open_as("/chat", Identity::new("ada")));
//! assert!(presence::join(tab1, "lobby").unwrap().announce(), "ada's first tab: announce her");
//! assert!(!presence::join(tab2, "lobby").unwrap().announce(), "her second: she is there already");
//! let census = presence::count("lobby");
//! assert_eq!((census.connections, census.users, census.cluster), (2, 1, true));
//! assert!(!presence::leave(tab1, "lobby").unwrap().announce(), "one tab left: still there");
//! assert!(presence::leave(tab2, "lobby").unwrap().announce(), "the last: announce she left");
//! assert!(presence::leave(tab2, "lobby").is_none(), "not a member any more");
//! ```

use crate::{Conn, Error, sys};

/// Who is in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Open connections in the room.
    pub connections: u32,
    /// Distinct identities among them.
    pub users: u32,
    /// Connections without an identity.
    pub anonymous: u32,
    /// True: every live node's members; false: Redis could not be asked, this node's only.
    pub cluster: bool,
}

/// A page of a room's identities, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPage {
    /// The identities.
    pub users: Vec<String>,
    /// Pass as `after` for the next page; `None` when this page is the last.
    pub next: Option<String>,
    /// As in [`Census::cluster`].
    pub cluster: bool,
}

/// What a join or leave means for the connection's user in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Join: the user's first connection in the room on this node; leave: the last. Always
    /// true for a connection without an identity.
    pub here: bool,
    /// The same on every live node, decided atomically by Redis; `None` when Redis cannot be
    /// asked now.
    pub everywhere: Option<bool>,
}

impl Change {
    /// Whether to announce the join (or leave): everywhere's answer, or this node's when Redis
    /// cannot be asked (a user on two nodes may then be announced twice, never not at all).
    pub fn announce(&self) -> bool {
        self.everywhere.unwrap_or(self.here)
    }
}

/// Adds `conn` to `room`, as [`Conn::join`] does (same errors); the change is `false` both
/// ways when it was a member already.
pub fn join(conn: Conn, room: &str) -> Result<Change, Error> {
    sys::presence_join(conn.id(), room)
}

/// Removes `conn` from `room`, as [`Conn::leave`] does; `None` if it was not a member.
pub fn leave(conn: Conn, room: &str) -> Option<Change> {
    sys::presence_leave(conn.id(), room)
}

/// Who is in `room`.
pub fn count(room: &str) -> Census {
    sys::presence_count(room)
}

/// Up to `limit` identities in `room` after `after` (`None`: from the first), in byte order;
/// the host caps `limit` at 1000.
///
/// ```
/// use wasmsock_sdk::{Identity, presence, testing::TestHost};
///
/// let host = TestHost::new();
/// for user in ["cy", "ada", "bo"] {
///     presence::join(host.open_as("/chat", Identity::new(user)), "lobby").unwrap();
/// }
/// presence::join(host.open("/chat"), "lobby").unwrap(); // anonymous: counted, not listed
/// let page = presence::users("lobby", None, 2);
/// assert_eq!((page.users, page.next.as_deref()), (vec!["ada".to_owned(), "bo".to_owned()], Some("bo")));
/// assert_eq!(presence::users("lobby", Some("bo"), 2).users, ["cy"]);
/// assert_eq!(presence::count("lobby").anonymous, 1);
/// ```
pub fn users(room: &str, after: Option<&str>, limit: u32) -> UserPage {
    sys::presence_users(room, after, limit)
}
