//! Everything the host holds across connections: the connection table and what it knows of
//! each connection, rooms, the plugin key/value store and connection admission.

mod admission;
mod conn;
mod kv;
mod outbox;
mod peers;
mod rooms;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::Notify;

pub use admission::{Admission, AdmitGuard};
pub use conn::{ConnShared, Identity, Kill};
pub use kv::{Kv, KvError, KvLimits};
pub use outbox::{Outgoing, PushError};
pub(crate) use peers::Peers;
pub use rooms::{Delivery, RoomKey, Rooms};

const SHARDS: usize = 16;

pub struct Hub {
    shards: Vec<RwLock<HashMap<u64, Arc<ConnShared>>>>,
    next_id: AtomicU64,
    pub rooms: Rooms,
    pub kv: Kv,
    pub admission: Arc<Admission>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Notified whenever a connection is unregistered (shutdown waits on it).
    pub departed: Notify,
    /// The other nodes, when a broker connects this node to them (installed once, at start).
    peers: OnceLock<Arc<dyn Peers>>,
}

impl Hub {
    pub fn new(kv_limits: KvLimits, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(1),
            rooms: Rooms::new(),
            kv: Kv::new(kv_limits),
            admission: Arc::default(),
            metrics,
            departed: Notify::new(),
            peers: OnceLock::new(),
        }
    }

    /// Connects this hub to other nodes: its publishes and key/value writes go to `peers` too.
    pub(crate) fn set_peers(&self, peers: Arc<dyn Peers>) -> anyhow::Result<()> {
        self.peers.set(peers).map_err(|_| anyhow::anyhow!("the hub is already connected to other nodes"))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    fn shard(&self, id: u64) -> &RwLock<HashMap<u64, Arc<ConnShared>>> {
        &self.shards[(id as usize) % SHARDS]
    }

    pub fn register(&self, conn: Arc<ConnShared>) {
        self.shard(conn.id).write().insert(conn.id, conn);
    }

    pub fn get(&self, id: u64) -> Option<Arc<ConnShared>> {
        self.shard(id).read().get(&id).cloned()
    }

    /// Removes a connection and its room memberships.
    pub fn unregister(&self, conn: &ConnShared) {
        self.shard(conn.id).write().remove(&conn.id);
        let rooms = {
            let mut data = conn.data.lock();
            data.gone = true;
            data.attachments = Vec::new();
            std::mem::take(&mut data.rooms)
        };
        for key in rooms {
            self.rooms.remove(&key, conn.id);
        }
        self.departed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Calls `f` for each connection, one shard at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<ConnShared>)) {
        for shard in &self.shards {
            let conns: Vec<_> = shard.read().values().cloned().collect();
            conns.iter().for_each(&mut f);
        }
    }

    /// Adds `conn` to a room, refusing once the connection is gone or at its room limit.
    pub fn join(&self, conn: &Arc<ConnShared>, key: RoomKey, max_rooms: usize) -> Result<(), JoinError> {
        let mut data = conn.data.lock();
        if data.gone {
            return Err(JoinError::Gone);
        }
        if data.rooms.contains(&key) {
            return Ok(());
        }
        if data.rooms.len() >= max_rooms {
            return Err(JoinError::Limit);
        }
        // Inserted while holding the connection's data lock, so `unregister` (which marks the
        // connection gone under the same lock) always sees this membership and removes it.
        self.rooms.insert(&key, conn);
        data.rooms.push(key);
        Ok(())
    }

    pub fn leave(&self, conn: &ConnShared, key: &RoomKey) -> bool {
        let mut data = conn.data.lock();
        let Some(i) = data.rooms.iter().position(|k| k == key) else {
            return false;
        };
        data.rooms.swap_remove(i);
        self.rooms.remove(key, conn.id);
        true
    }

    /// Publishes `item` to a room: queued to its members on this node but `except`, then taken
    /// to the other nodes. The delivery counts this node's members.
    pub(crate) fn publish(&self, key: &RoomKey, item: &Outgoing, except: Option<u64>) -> Delivery {
        self.metrics.publishes.inc();
        // Shared by every member, so it is compressed once per parameter set, not per member.
        let delivery = self.rooms.publish(key, &item.to_shared(), except);
        if let Some(peers) = self.peers.get() {
            peers.publish(key, item);
        }
        delivery
    }

    /// Sets a plugin's key on this node and, with a shared store, on the other nodes.
    pub(crate) fn kv_set(&self, plugin: &Arc<str>, key: &str, value: Bytes) -> Result<(), KvError> {
        let mut result = Ok(());
        self.kv_write(plugin, key, Some(value.clone()), &mut || {
            result = self.kv.set(plugin, key, value.clone());
            result.is_ok()
        });
        result
    }

    /// Deletes a plugin's key on this node and, with a shared store, on the other nodes; whether
    /// this node had it.
    pub(crate) fn kv_delete(&self, plugin: &Arc<str>, key: &str) -> bool {
        let mut had = false;
        self.kv_write(plugin, key, None, &mut || {
            had = self.kv.delete(plugin, key);
            had
        });
        had
    }

    fn kv_write(&self, plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool) {
        match self.peers.get() {
            Some(peers) => peers.kv_write(plugin, key, value, local),
            None => {
                local();
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    Gone,
    Limit,
}
