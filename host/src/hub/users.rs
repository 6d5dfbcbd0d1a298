//! Users: the open connections of each identity, so a plugin can reach a user wherever they
//! are connected (every tab, every device). Indexed when a connection is established with an
//! identity, removed when it is unregistered.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{Allowance, ConnShared, Delivery, Outgoing, OverBudget};
use crate::ws::CloseCode;

const SHARDS: usize = 16;

type Conns = Vec<Arc<ConnShared>>;

pub struct Users {
    shards: Vec<RwLock<HashMap<Arc<str>, Conns>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Users {
    fn default() -> Self {
        Users { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(), hasher: Default::default() }
    }
}

impl Users {
    fn shard(&self, user: &str) -> &RwLock<HashMap<Arc<str>, Conns>> {
        &self.shards[(self.hasher.hash_one(user) as usize) % SHARDS]
    }

    /// Indexes an established connection under its identity; false if it has none.
    pub(super) fn insert(&self, conn: &Arc<ConnShared>) -> bool {
        let Some(identity) = conn.identity() else { return false };
        let mut shard = self.shard(&identity.id).write();
        shard.entry(Arc::from(identity.id.as_str())).or_default().push(conn.clone());
        true
    }

    /// Removes a connection from its identity's; false if it was not indexed.
    pub(super) fn remove(&self, conn: &ConnShared) -> bool {
        let Some(identity) = conn.identity() else { return false };
        let mut shard = self.shard(&identity.id).write();
        let Some(conns) = shard.get_mut(identity.id.as_str()) else { return false };
        let before = conns.len();
        conns.retain(|c| c.id != conn.id);
        let removed = conns.len() < before;
        if conns.is_empty() {
            shard.remove(identity.id.as_str());
        }
        removed
    }

    /// Every user's number of connections per plugin that may address them (for a node
    /// telling the other nodes everything again).
    pub fn counts(&self) -> Vec<(Arc<str>, Arc<str>, usize)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read();
            for (user, conns) in shard.iter() {
                let mut per_plugin: HashMap<&str, usize> = HashMap::new();
                for c in conns {
                    for p in &c.route.plugins {
                        *per_plugin.entry(p.as_str()).or_default() += 1;
                    }
                }
                out.extend(per_plugin.into_iter().map(|(p, n)| (Arc::from(p), user.clone(), n)));
            }
        }
        out
    }

    /// The connections of `user` on this node that `plugin` may address.
    fn of(&self, user: &str, plugin: &str) -> Conns {
        let shard = self.shard(user).read();
        shard.get(user).map(|c| c.iter().filter(|c| c.serves(plugin)).cloned().collect()).unwrap_or_default()
    }

    pub fn count(&self, user: &str, plugin: &str) -> usize {
        let shard = self.shard(user).read();
        shard.get(user).map_or(0, |c| c.iter().filter(|c| c.serves(plugin)).count())
    }

    /// Queues `item` to every connection of `user` that `plugin` may address; refused whole
    /// when the allowance does not cover them all.
    pub fn send(
        &self,
        user: &str,
        plugin: &str,
        item: &Outgoing,
        allowance: Allowance,
    ) -> Result<Delivery, OverBudget> {
        let conns = self.of(user, plugin);
        let len = item.payload_len();
        if !allowance.covers(conns.len(), len) {
            return Err(OverBudget { members: conns.len() });
        }
        Ok(Delivery::to(conns, item))
    }

    /// Closes every connection of `user` that `plugin` may address; how many.
    pub fn close(&self, user: &str, plugin: &str, code: CloseCode, reason: &str) -> u32 {
        let conns = self.of(user, plugin);
        for conn in &conns {
            conn.close(code, reason);
        }
        conns.len() as u32
    }
}
