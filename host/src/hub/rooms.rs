//! Rooms: named sets of connections, scoped per plugin.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::conn::{ConnShared, Outgoing};

const SHARDS: usize = 16;

/// A room: `(plugin, name)`. Rooms of different plugins never mix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub plugin: Arc<str>,
    pub name: Arc<str>,
}

impl RoomKey {
    pub fn new(plugin: &Arc<str>, name: &str) -> Self {
        RoomKey { plugin: plugin.clone(), name: Arc::from(name) }
    }
}

/// Ordered by connection id (oldest first), so listing the first few members of a big room
/// costs the few, not a sort of the whole room on every subscribe.
type Members = BTreeMap<u64, Arc<ConnShared>>;

pub struct Rooms {
    shards: Vec<RwLock<HashMap<RoomKey, Members>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// The outcome of a publish.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Members the message was queued to.
    pub queued: u32,
    /// Members whose queue refused it (full or closing).
    pub refused: u32,
}

impl Rooms {
    pub fn new() -> Self {
        Rooms { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(), hasher: Default::default() }
    }

    fn shard(&self, key: &RoomKey) -> &RwLock<HashMap<RoomKey, Members>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub(super) fn insert(&self, key: &RoomKey, conn: &Arc<ConnShared>) {
        self.shard(key).write().entry(key.clone()).or_default().insert(conn.id, conn.clone());
    }

    /// Removes a member; an emptied room is freed.
    pub(super) fn remove(&self, key: &RoomKey, conn: u64) {
        let mut shard = self.shard(key).write();
        if let Some(members) = shard.get_mut(key) {
            members.remove(&conn);
            if members.is_empty() {
                shard.remove(key);
            }
        }
    }

    /// Queues `item` to every member but `except`. The payload is shared, not copied, and no
    /// plugin runs per receiver.
    pub fn publish(&self, key: &RoomKey, item: &Outgoing, except: Option<u64>) -> Delivery {
        let shard = self.shard(key).read();
        let mut d = Delivery::default();
        if let Some(members) = shard.get(key) {
            for (id, conn) in members {
                if Some(*id) == except {
                    continue;
                }
                match conn.send(item.clone()) {
                    Ok(()) => d.queued += 1,
                    Err(_) => d.refused += 1,
                }
            }
        }
        d
    }

    pub fn members(&self, key: &RoomKey, limit: usize) -> Vec<u64> {
        let shard = self.shard(key).read();
        shard.get(key).map(|m| m.keys().take(limit).copied().collect()).unwrap_or_default()
    }

    pub fn count(&self, key: &RoomKey) -> usize {
        self.shard(key).read().get(key).map_or(0, |m| m.len())
    }

    /// (rooms, memberships) across all plugins.
    pub fn totals(&self) -> (usize, usize) {
        let mut rooms = 0;
        let mut members = 0;
        for shard in &self.shards {
            let shard = shard.read();
            rooms += shard.len();
            members += shard.values().map(|m| m.len()).sum::<usize>();
        }
        (rooms, members)
    }
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new()
    }
}
