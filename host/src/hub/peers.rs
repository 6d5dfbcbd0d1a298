//! The other nodes, as the hub sees them: a hook that takes this node's room publishes and
//! key/value writes to them. The hub calls it after the local delivery or write, and knows
//! nothing of how it gets there (the broker installs it, through Redis); a node alone has none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::{AtomicError, Census, Position, RoomKey};
use crate::hub::Outgoing;

pub(crate) trait Peers: Send + Sync {
    /// Takes a room publish to the other nodes (the members on this node already have it).
    fn publish(&self, key: &RoomKey, item: &Outgoing);

    /// Applies a key/value write on this node with `local`, which returns whether it changed
    /// anything, and shares a change with the other nodes (`value` `None` is a delete). The
    /// write itself is this node's: `local` runs exactly once, whether or not it is shared.
    fn kv_write(&self, plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool);

    /// Takes a message to, or the closing of, a user's connections to the other nodes (this
    /// node's connections already have it). Without a broker that carries it: nothing.
    fn user(&self, plugin: &Arc<str>, user: &str, action: UserAction) {
        let _ = (plugin, user, action);
    }

    /// This node's number of connections of `user` that `plugin` may address changed: the
    /// other nodes' view of the user follows.
    fn user_count(&self, plugin: &str, user: &str) {
        let _ = (plugin, user);
    }

    /// How many connections of `user` that `plugin` may address the other live nodes have;
    /// `None` when they cannot be asked now.
    fn user_count_elsewhere(&self, plugin: Arc<str>, user: String) -> CountFuture {
        let _ = (plugin, user);
        Box::pin(async { Some(0) })
    }

    /// This node's presence in a room changed for `user` (`None`: its anonymous members).
    fn room_changed(&self, key: &RoomKey, user: Option<&str>) {
        let _ = (key, user);
    }

    /// Writes this node's number of `user`'s connections in the room and, in the same atomic
    /// step, counts the user's connections there on the other live nodes; `None` when they
    /// cannot be asked now.
    fn room_user_elsewhere(&self, key: RoomKey, user: Arc<str>) -> CountFuture {
        let _ = (key, user);
        Box::pin(async { None })
    }

    /// Who is in the room on every live node; `None` when they cannot be asked now.
    fn room_census(&self, key: RoomKey) -> CensusFuture {
        let _ = key;
        Box::pin(async { None })
    }

    /// A page of the room's identities on every live node; `None` when they cannot be asked.
    fn room_users(&self, key: RoomKey, after: Option<String>, limit: usize) -> PageFuture {
        let _ = (key, after, limit);
        Box::pin(async { None })
    }

    /// The store that decides atomic key/value operations for every node, when the key/value
    /// store is shared; `None`: this node's store decides.
    fn shared_kv(&self) -> Option<&dyn SharedKv> {
        None
    }

    /// Where every node keeps and reads room history, when the broker shares it; `None`: each
    /// node keeps its own.
    fn shared_history(&self) -> Option<Arc<dyn SharedHistory>> {
        None
    }
}

/// What is done to a user's connections on every node.
#[derive(Debug, Clone)]
pub(crate) enum UserAction {
    Send(Outgoing),
    Close(crate::ws::CloseCode, String),
}

/// What a count across nodes waits for.
pub(crate) type CountFuture = Pin<Box<dyn Future<Output = Option<usize>> + Send>>;

/// What a room's census across nodes waits for.
pub(crate) type CensusFuture = Pin<Box<dyn Future<Output = Option<Census>> + Send>>;

/// What a page of a room's identities across nodes waits for.
pub(crate) type PageFuture = Pin<Box<dyn Future<Output = Option<Vec<String>>> + Send>>;

/// What an atomic operation waits for.
pub(crate) type AtomicFuture<T> = Pin<Box<dyn Future<Output = Result<T, AtomicError>> + Send>>;

/// Atomic key/value operations decided by a store every node shares: the result is the shared
/// store's, and every node's copy (this one's included) follows it. Keys are checked already.
pub(crate) trait SharedKv: Send + Sync {
    fn increment(&self, plugin: Arc<str>, key: String, delta: i64) -> AtomicFuture<i64>;
    fn compare_and_set(
        &self,
        plugin: Arc<str>,
        key: String,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> AtomicFuture<bool>;
}

/// Room history every node shares (kept in Redis by the broker). Offsets and epochs are the
/// shared store's; every publish reaches every node's members (this node's included) through
/// the node's subscription, in offset order (see [`crate::hub::Hub::history_deliver`]).
pub(crate) trait SharedHistory: Send + Sync {
    /// Whether the store can be reached now.
    fn up(&self) -> bool;

    /// Publishes `template` (see `history::render`) to the room with the next offset.
    fn publish(&self, key: RoomKey, bounds: Bounds, template: Outgoing, except: Option<u64>) -> SharedFuture<Position>;

    /// The room's position and up to `limit` entries after offset `after` (`None`: from the
    /// oldest kept), as templates. With `probe`, answers only once this node's subscription has
    /// delivered every publish made before the read, and none after (the room's mirror is
    /// seeded there: see [`crate::hub::Hub::history_seed`]).
    fn read(&self, key: RoomKey, bounds: Bounds, after: Option<u64>, limit: usize, probe: bool)
    -> SharedFuture<Remote>;
}

/// A room's bounds in the shared store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub size: usize,
    pub ttl: std::time::Duration,
    /// The largest entry (checked before a publish reaches the store).
    pub max_bytes: usize,
}

/// The shared store could not be asked (or did not answer in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreachable;

/// What a call on the shared history waits for.
pub(crate) type SharedFuture<T> = Pin<Box<dyn Future<Output = Result<T, Unreachable>> + Send>>;

/// A read of the shared history: the room's epoch and top offset, and entries (offset and
/// template, oldest first).
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub epoch: Arc<str>,
    pub top: u64,
    pub entries: Vec<(u64, Outgoing)>,
}

impl Remote {
    /// Whether the entries are exactly those from right after `after` to the top, in the
    /// room's epoch: nothing between `after` and now is missing.
    pub fn continues(&self, after: &Position) -> bool {
        *after.epoch == *self.epoch
            && after.offset <= self.top
            && self.entries.len() as u64 == self.top - after.offset
            && self.entries.iter().zip(after.offset + 1..).all(|((o, _), want)| *o == want)
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::hub::{Allowance, Hub, KvError, KvLimits};

    /// Records what reaches the other nodes, and applies the local writes as a broker does.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Peers for Recorder {
        fn publish(&self, key: &RoomKey, _item: &Outgoing) {
            self.0.lock().push(format!("publish {}", key.name));
        }

        fn kv_write(&self, _plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool) {
            let changed = local();
            let op = if value.is_some() { "set" } else { "delete" };
            self.0.lock().push(format!("{op} {key} changed={changed}"));
        }
    }

    #[test]
    fn the_hub_hands_each_publish_and_key_value_write_to_its_peers_once() {
        let hub = Hub::new(KvLimits { max_key: 8, max_value: 8, max_keys: 8 }, 1 << 20, Arc::default());
        let plugin: Arc<str> = Arc::from("p");
        assert_eq!(hub.kv_set(&plugin, "alone", Bytes::from_static(b"v")), Ok(()), "a node alone writes locally");
        let peers = Arc::new(Recorder::default());
        hub.set_peers(peers.clone()).unwrap();
        assert!(hub.set_peers(peers.clone()).is_err(), "installed once");

        let hi = Outgoing::Text(Bytes::from_static(b"hi"));
        let delivery = hub.publish(&RoomKey::new(&plugin, "lobby"), &hi, None, Allowance::UNLIMITED);
        assert_eq!(delivery.map(|d| d.queued), Ok(0), "no local members");
        assert_eq!(hub.kv_set(&plugin, "k", Bytes::from_static(b"v")), Ok(()));
        assert_eq!(hub.kv.get("p", "k").as_deref(), Some(&b"v"[..]));
        assert_eq!(hub.kv_set(&plugin, "", Bytes::new()), Err(KvError::InvalidKey));
        assert!(hub.kv_delete(&plugin, "k"));
        assert!(!hub.kv_delete(&plugin, "k"));
        assert_eq!(
            *peers.0.lock(),
            [
                "publish lobby",
                "set k changed=true",
                "set  changed=false",
                "delete k changed=true",
                "delete k changed=false"
            ]
        );
        assert_eq!(hub.metrics.publishes.get(), 1);
    }
}
