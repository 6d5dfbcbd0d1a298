//! Everything the host holds across connections: the connection table and what it knows of
//! each connection, rooms, the plugin key/value store and connection admission.

mod admission;
mod budget;
mod conn;
mod history;
mod history_cluster;
mod host_memory;
mod kv;
mod outbox;
mod peers;
mod rooms;
mod signal;
mod timers;
mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::Notify;

pub use admission::{Admission, AdmitError, AdmitGuard};
pub use budget::Budget;
pub use conn::{ConnShared, Flush, Identity, Kill, flush_from_lane};
pub(crate) use history::Joining;
pub use history::{HISTORY_ENTRY_OVERHEAD, History, HistoryError, HistoryRule, Page, Position, Recovery, new_epoch};
pub use host_memory::{ENTRY_OVERHEAD, HostMemory};
pub use kv::{AtomicError, KvPage, parse_counter};
pub use kv::{Kv, KvError, KvLimits};
pub use outbox::{Outgoing, PushError};
pub(crate) use peers::{AtomicFuture, CensusFuture, CountFuture, PageFuture, Peers, SharedKv, UserAction};
pub(crate) use peers::{Bounds, Remote, SharedFuture, SharedHistory, Unreachable};
pub use rooms::{Allowance, Census, Delivery, OverBudget, RoomKey, Rooms, UserConns};
pub use timers::{Due, TimerError, Timers};
pub use users::Users;

const SHARDS: usize = 16;

pub struct Hub {
    shards: Vec<RwLock<HashMap<u64, Arc<ConnShared>>>>,
    next_id: AtomicU64,
    pub rooms: Rooms,
    /// Established connections by identity.
    pub users: Users,
    pub kv: Kv,
    /// Timers plugins set, until they come due.
    pub timers: Timers,
    /// The last publishes of the rooms `[[history]]` names.
    pub history: History,
    /// What plugins keep here (key/value, attachments, memberships), bounded.
    pub memory: Arc<HostMemory>,
    pub admission: Arc<Admission>,
    /// Bytes held for peers (partial messages, outgoing queues) against `max_buffered_bytes`.
    pub budget: Budget,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Notified whenever a connection is unregistered (shutdown waits on it).
    pub departed: Notify,
    /// The other nodes, when a broker connects this node to them (installed once, at start).
    peers: OnceLock<Arc<dyn Peers>>,
}

impl Hub {
    /// `max_host_memory`: the bound of what all plugins keep in the host together.
    pub fn new(kv_limits: KvLimits, max_host_memory: usize, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let memory = Arc::new(HostMemory::new(max_host_memory, metrics.clone()));
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(1),
            rooms: Rooms::new(),
            users: Users::default(),
            kv: Kv::new(kv_limits, memory.clone()),
            timers: Timers::new(metrics.clone()),
            history: History::new(Vec::new(), 0, metrics.clone()),
            memory,
            admission: Arc::default(),
            budget: Budget::default(),
            metrics,
            departed: Notify::new(),
            peers: OnceLock::new(),
        }
    }

    /// Keeps the history of the rooms `rules` name, `max_bytes` for all of them together.
    pub fn with_history(mut self, rules: Vec<HistoryRule>, max_bytes: usize) -> Self {
        self.history = History::new(rules, max_bytes, self.metrics.clone());
        self
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

    /// Removes a connection, its room memberships and its attachments.
    pub fn unregister(&self, conn: &ConnShared) {
        self.shard(conn.id).write().remove(&conn.id);
        if self.users.remove(conn) {
            self.user_count_changed(conn);
        }
        let (rooms, attachments, timers) = {
            let mut data = conn.data.lock();
            data.gone = true;
            (std::mem::take(&mut data.rooms), std::mem::take(&mut data.attachments), data.timers)
        };
        for (plugin, value) in attachments {
            self.memory.release(&plugin, attachment_cost(&value));
        }
        let identity = conn.identity();
        for key in rooms {
            self.rooms.remove(&key, conn);
            self.memory.release(&key.plugin, membership_cost(&key));
            self.room_changed(&key, identity.as_deref());
        }
        // After `gone` is set: a timer set for the connection from now on is refused. Only a
        // connection that had a timer touches the timers' lock.
        if timers {
            self.timers.remove_conn(conn.id);
        }
        self.departed.notify_waiters();
    }

    /// Arms `plugin`'s timer `key` (see [`Timers::set`]), tied to `conn` if given: refused once
    /// the connection is unregistered, and removed when it is.
    pub fn set_timer(
        &self,
        plugin: &Arc<str>,
        key: &str,
        due: tokio::time::Instant,
        conn: Option<&ConnShared>,
        max: usize,
    ) -> Result<(), TimerError> {
        let Some(conn) = conn else {
            return self.timers.set(plugin, key, due, None, max);
        };
        // Set under the connection's data lock: `unregister` sets `gone` under it and removes
        // the connection's timers after, so the timer is either refused here or removed there.
        let mut data = conn.data.lock();
        if data.gone {
            return Err(TimerError::Gone);
        }
        data.timers = true;
        self.timers.set(plugin, key, due, Some(conn.id), max)
    }

    /// Replaces `plugin`'s attachment on `conn` (empty removes it), charged to its share of
    /// host memory.
    pub fn set_attachment(&self, conn: &ConnShared, plugin: &Arc<str>, value: Vec<u8>) -> Result<(), AttachError> {
        let mut data = conn.data.lock();
        if data.gone {
            return Err(AttachError::Gone);
        }
        let pos = data.attachments.iter().position(|(p, _)| p == plugin);
        let old = pos.map_or(0, |i| attachment_cost(&data.attachments[i].1));
        let new = if value.is_empty() { 0 } else { attachment_cost(&value) };
        if new > old {
            self.memory.charge(plugin, new - old).map_err(|_| AttachError::HostMemoryFull)?;
        } else {
            self.memory.release(plugin, old - new);
        }
        match (pos, value.is_empty()) {
            (Some(i), true) => {
                data.attachments.swap_remove(i);
            }
            (Some(i), false) => data.attachments[i].1 = value,
            (None, false) => data.attachments.push((plugin.clone(), value)),
            (None, true) => {}
        }
        Ok(())
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
        if self.join_counted(conn, key.clone(), max_rooms)?.is_some() {
            self.room_changed(&key, conn.identity().as_deref());
        }
        Ok(())
    }

    /// [`Hub::join`], telling whether `conn` was added (`None`: it was a member already) and
    /// then how many connections of its identity are in the room on this node. The other
    /// nodes are not told: the caller tells them, with [`Hub::room_changed`] or in the same
    /// step as it asks them ([`Hub::room_user_elsewhere`]).
    pub fn join_counted(
        &self,
        conn: &Arc<ConnShared>,
        key: RoomKey,
        max_rooms: usize,
    ) -> Result<Option<UserConns>, JoinError> {
        let mut data = conn.data.lock();
        if data.gone {
            return Err(JoinError::Gone);
        }
        if data.rooms.contains(&key) {
            return Ok(None);
        }
        if data.rooms.len() >= max_rooms {
            return Err(JoinError::Limit);
        }
        self.memory.charge(&key.plugin, membership_cost(&key)).map_err(|_| JoinError::HostMemoryFull)?;
        // Inserted while holding the connection's data lock, so `unregister` (which marks the
        // connection gone under the same lock) always sees this membership and removes it.
        let after = self.rooms.insert(&key, conn);
        data.rooms.push(key);
        Ok(Some(after))
    }

    pub fn leave(&self, conn: &ConnShared, key: &RoomKey) -> bool {
        let left = self.leave_counted(conn, key).is_some();
        if left {
            self.room_changed(key, conn.identity().as_deref());
        }
        left
    }

    /// [`Hub::leave`]: `None` if `conn` was not a member, else how many connections of its
    /// identity are left in the room on this node. The other nodes are not told (as for
    /// [`Hub::join_counted`]).
    pub fn leave_counted(&self, conn: &ConnShared, key: &RoomKey) -> Option<UserConns> {
        let after = {
            let mut data = conn.data.lock();
            let i = data.rooms.iter().position(|k| k == key)?;
            data.rooms.swap_remove(i);
            self.rooms.remove(key, conn)
        };
        self.memory.release(&key.plugin, membership_cost(key));
        Some(after)
    }

    /// This node's presence in a room changed: the other nodes' view of it follows.
    pub(crate) fn room_changed(&self, key: &RoomKey, identity: Option<&Identity>) {
        if let Some(peers) = self.peers.get() {
            peers.room_changed(key, identity.map(|i| i.id.as_str()));
        }
    }

    /// How many connections of `user` are in a room on the other live nodes, after this
    /// node's own number for the user there is written (one atomic step, so that of two nodes
    /// where the user arrives at once, exactly one sees none elsewhere: the number must not
    /// have been written before, see [`Hub::join_counted`]). A node alone: 0; `None` when the
    /// other nodes cannot be asked (the number is then written when they can).
    pub(crate) async fn room_user_elsewhere(&self, key: &RoomKey, user: &str) -> Option<usize> {
        match self.peers.get() {
            Some(peers) => peers.room_user_elsewhere(key.clone(), Arc::from(user)).await,
            None => Some(0),
        }
    }

    /// Who is in a room on every live node (this one's included). A node alone: its own;
    /// `None` when the other nodes cannot be asked.
    pub(crate) async fn room_census_everywhere(&self, key: &RoomKey) -> Option<Census> {
        match self.peers.get() {
            Some(peers) => peers.room_census(key.clone()).await,
            None => Some(self.rooms.census(key)),
        }
    }

    /// Up to `limit` identities in a room on every live node, after `after`, in byte order.
    pub(crate) async fn room_users_everywhere(
        &self,
        key: &RoomKey,
        after: Option<String>,
        limit: usize,
    ) -> Option<Vec<String>> {
        match self.peers.get() {
            Some(peers) => peers.room_users(key.clone(), after, limit).await,
            None => Some(self.rooms.users(key, after.as_deref(), limit)),
        }
    }

    /// Publishes `item` to a room: queued to its members on this node but `except`, then taken
    /// to the other nodes. The delivery counts this node's members. A publish `allowance`
    /// does not cover goes nowhere.
    pub(crate) fn publish(
        &self,
        key: &RoomKey,
        item: &Outgoing,
        except: Option<u64>,
        allowance: Allowance,
    ) -> Result<Delivery, OverBudget> {
        // Shared by every member, so it is compressed once per parameter set, not per member.
        let delivery = self.rooms.publish(key, &item.to_shared(), except, allowance)?;
        self.metrics.publishes.inc();
        if let Some(peers) = self.peers.get() {
            peers.publish(key, item);
        }
        Ok(delivery)
    }

    /// Indexes an established connection under its identity (if it has one); the other nodes
    /// learn the user's new count.
    pub fn user_arrived(&self, conn: &Arc<ConnShared>) {
        if self.users.insert(conn) {
            self.user_count_changed(conn);
        }
    }

    fn user_count_changed(&self, conn: &ConnShared) {
        let (Some(peers), Some(identity)) = (self.peers.get(), conn.identity()) else { return };
        for plugin in &conn.route.plugins {
            peers.user_count(plugin, &identity.id);
        }
    }

    /// How many connections of `user` that `plugin` may address are open on every node: this
    /// node's now, the others' as they last said. `None` when the other nodes cannot be asked.
    pub(crate) async fn user_count_everywhere(&self, plugin: &Arc<str>, user: &str) -> Option<usize> {
        let elsewhere = match self.peers.get() {
            Some(peers) => peers.user_count_elsewhere(plugin.clone(), user.to_owned()).await?,
            None => 0,
        };
        Some(self.users.count(user, plugin) + elsewhere)
    }

    /// Sends `item` to every connection of `user` that `plugin` may address: queued here, then
    /// taken to the other nodes (in order with this node's room publishes). The delivery counts
    /// this node's connections.
    pub(crate) fn user_send(
        &self,
        plugin: &Arc<str>,
        user: &str,
        item: &Outgoing,
        allowance: Allowance,
    ) -> Result<Delivery, OverBudget> {
        let delivery = self.users.send(user, plugin, &item.to_shared(), allowance)?;
        if let Some(peers) = self.peers.get() {
            peers.user(plugin, user, UserAction::Send(item.clone()));
        }
        Ok(delivery)
    }

    /// Closes every connection of `user` that `plugin` may address, here and on the other
    /// nodes; how many were closed here.
    pub(crate) fn user_close(&self, plugin: &Arc<str>, user: &str, code: crate::ws::CloseCode, reason: &str) -> u32 {
        let closed = self.users.close(user, plugin, code, reason);
        if let Some(peers) = self.peers.get() {
            peers.user(plugin, user, UserAction::Close(code, reason.to_owned()));
        }
        closed
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

/// The atomic key/value operations: decided by this node's store, or, when the store is shared
/// between nodes, by Redis (the call then waits for it).
impl Hub {
    fn shared_kv(&self) -> Option<&dyn SharedKv> {
        self.peers.get().and_then(|p| p.shared_kv())
    }

    pub(crate) async fn kv_increment(&self, plugin: &Arc<str>, key: &str, delta: i64) -> Result<i64, AtomicError> {
        self.kv.check_key(key)?;
        match self.shared_kv() {
            Some(shared) => shared.increment(plugin.clone(), key.to_owned(), delta).await,
            None => self.kv.increment(plugin, key, delta),
        }
    }

    pub(crate) async fn kv_compare_and_set(
        &self,
        plugin: &Arc<str>,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<bool, AtomicError> {
        self.kv.check_key(key)?;
        match self.shared_kv() {
            Some(shared) => shared.compare_and_set(plugin.clone(), key.to_owned(), expected, new).await,
            None => self.kv.compare_and_set(plugin, key, expected.as_deref(), new),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    Gone,
    Limit,
    HostMemoryFull,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    Gone,
    HostMemoryFull,
}

/// What an attachment is charged to its plugin's share of host memory.
fn attachment_cost(value: &[u8]) -> usize {
    value.len() + ENTRY_OVERHEAD
}

/// What a room membership is charged (the room's name is kept with each membership).
fn membership_cost(key: &RoomKey) -> usize {
    key.name.len() + ENTRY_OVERHEAD
}
