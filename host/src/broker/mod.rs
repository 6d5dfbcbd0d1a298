//! Rooms across nodes through Redis pub/sub (and, optionally, plugin key/value stores shared
//! through Redis hashes).
//!
//! A publish is delivered to local members at once, as without a broker, and queued (bounded)
//! for Redis on one channel, `<prefix>:rooms`. Every node subscribes to it and delivers what
//! other nodes published to its own members; a node skips its own messages, so nothing is
//! delivered twice. One publishing connection and one subscribing connection per node keep the
//! order of one publisher's messages. When Redis is down, local delivery goes on, publishes
//! wait in the queue (bounded in count and bytes; the overflow is dropped and counted), and
//! both connections come back with exponential backoff.
//!
//! The publisher sends what has queued up as one pipeline (one round trip for many publishes).
//! Every frame carries the node's sequence number, so when a pipeline is sent again after a
//! connection failure, the frames Redis had already relayed are recognised and dropped by the
//! receivers: delivery across nodes is exactly once while Redis is up, at most once across an
//! outage (Redis pub/sub keeps nothing for an absent subscriber).
//!
//! The shared key/value store is eventually consistent: reads are local, writes go to Redis
//! (`HSET <prefix>:kv:<plugin>`) and to the other nodes (`<prefix>:kv`), and a node (re)loads
//! the whole store from Redis whenever its subscription (re)connects (see [`kv_sync`]).
//! Atomic operations (increment, compare-and-set) are decided by Redis, in a script that also
//! announces the change to every node in Redis's order (see [`atomic`]).
//!
//! The server starts and stops the broker; the hub reaches it only as its [`Peers`] hook,
//! installed at start. The parts, in the order a publish meets them: [`queue`] (bounded, in
//! count and bytes), [`publisher`] (pipelines, resends), [`wire`] (the frame format and the
//! names in Redis), [`subscriber`] (delivery to this node, dedup), [`kv_sync`] (the shared
//! store's reloads), [`link`] (the two connections' gauge and backoff), [`presence`] (users'
//! connections counted across nodes), [`room_presence`] (who is in each room on every node),
//! [`history`] (room history in Redis streams, offsets Redis gives), [`scripts`] (running Lua
//! scripts) and [`client`] (the Redis URL and `rediss://` files).

mod atomic;
mod client;
mod history;
mod kv_sync;
mod link;
mod presence;
mod publisher;
mod queue;
mod room_presence;
mod scripts;
mod subscriber;
mod wire;

use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;

use crate::config::BrokerSettings;
use crate::hub::Outgoing;
use crate::hub::{CensusFuture, CountFuture, Hub, PageFuture, Peers, RoomKey, SharedHistory, SharedKv, UserAction};
use atomic::{Applied, RedisKv};
use history::RedisHistory;
use kv_sync::PendingKv;
use link::Link;
use presence::Presence;
use publisher::Publisher;
use queue::Outbound;
use room_presence::RoomPresence;
use subscriber::{Seen, Subscriber};
use wire::Channels;

/// The node's broker: its publishing and subscribing tasks, stopped when it is stopped or
/// dropped.
pub(crate) struct Broker {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Broker {
    /// Connects `hub` to the other nodes and starts the publishing and subscribing tasks. Does
    /// not wait for Redis: a node serves its own clients whether or not Redis is up.
    pub(crate) fn start(settings: &BrokerSettings, hub: Arc<Hub>) -> Result<Broker> {
        let client = client::redis(settings)?;
        // Never `atomic::ATOMIC_NODE` (0), the id of what Redis itself announces.
        let node = random_u64().max(1);
        let ch = Channels::new(&settings.prefix);
        let (to_redis, queue) = queue::bounded(settings.max_pending, settings.max_pending_bytes, hub.metrics.clone());
        let pending_kv = Arc::new(PendingKv::default());
        let link = Arc::new(Link::new(hub.metrics.broker_connected.clone()));
        let shared_kv = settings.shared_kv;
        let applied = Arc::new(Applied::default());
        let atomic = shared_kv.then(|| {
            Arc::new(RedisKv {
                client: client.clone(),
                ch: ch.clone(),
                seq_key: format!("{}:kvseq", settings.prefix),
                hub: Arc::downgrade(&hub),
                applied: applied.clone(),
                conn: tokio::sync::Mutex::new(None),
            })
        });
        let presence =
            Arc::new(Presence::new(Arc::downgrade(&hub), client.clone(), node, &settings.prefix, settings.node_ttl));
        let history = Arc::new(RedisHistory::new(
            client.clone(),
            ch.clone(),
            &settings.prefix,
            node,
            link.clone(),
            Arc::downgrade(&hub),
        ));
        let (rooms, rooms_writer) =
            RoomPresence::start(Arc::downgrade(&hub), client.clone(), node, &settings.prefix, settings.node_ttl);
        hub.set_peers(Arc::new(Fanout {
            shared_kv,
            queue: to_redis,
            pending_kv: pending_kv.clone(),
            atomic,
            presence: presence.clone(),
            rooms,
            history: Arc::new(history.clone()),
        }))?;
        let publisher = Publisher {
            client: client.clone(),
            ch: ch.clone(),
            node,
            queue,
            metrics: hub.metrics.clone(),
            link: link.clone(),
            pending_kv: pending_kv.clone(),
            presence,
        };
        let subscriber =
            Subscriber { client, ch, node, shared_kv, hub, link, pending_kv, applied, seen: Seen::default(), history };
        let tasks = vec![
            tokio::spawn(publisher.run()).abort_handle(),
            tokio::spawn(subscriber.run()).abort_handle(),
            tokio::spawn(rooms_writer.run()).abort_handle(),
        ];
        tracing::info!(node = format!("{node:016x}"), url = %client::redact(&settings.url), shared_kv, "broker: Redis pub/sub for rooms across nodes");
        Ok(Broker { tasks })
    }

    /// Stops talking to Redis (server shutdown).
    pub(crate) fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the hub calls: this node's publishes and key/value writes, queued for Redis and the
/// other nodes.
struct Fanout {
    shared_kv: bool,
    queue: queue::Sender,
    /// Key/value writes of this node not yet through to Redis.
    pending_kv: Arc<PendingKv>,
    /// With a shared store: where atomic operations are decided.
    atomic: Option<Arc<RedisKv>>,
    /// Users' connections on every node.
    presence: Arc<Presence>,
    /// Who is in each room on every node.
    rooms: Arc<RoomPresence>,
    /// Room history in Redis.
    history: Arc<dyn SharedHistory>,
}

impl Peers for Fanout {
    fn publish(&self, key: &RoomKey, item: &Outgoing) {
        let (text, payload) = match item {
            Outgoing::Text(b) => (true, b.clone()),
            Outgoing::Binary(b) => (false, b.clone()),
            Outgoing::Shared { text, msg } => (*text, msg.payload.clone()),
            _ => return,
        };
        self.queue.send(Outbound::Publish { key: key.clone(), text, payload });
    }

    fn user(&self, plugin: &Arc<str>, user: &str, action: UserAction) {
        let (kind, payload) = match action {
            UserAction::Send(Outgoing::Text(b)) => (wire::KIND_USER_TEXT, b),
            UserAction::Send(Outgoing::Binary(b)) => (wire::KIND_USER_BINARY, b),
            UserAction::Send(Outgoing::Shared { text, msg }) => {
                (if text { wire::KIND_USER_TEXT } else { wire::KIND_USER_BINARY }, msg.payload.clone())
            }
            UserAction::Send(_) => return,
            UserAction::Close(code, reason) => {
                let mut p = code.get().to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (wire::KIND_USER_CLOSE, Bytes::from(p))
            }
        };
        self.queue.send(Outbound::User { plugin: plugin.clone(), user: user.to_owned(), kind, payload });
    }

    fn user_count(&self, plugin: &str, user: &str) {
        if !self.queue.send(Outbound::Presence { plugin: Arc::from(plugin), user: user.to_owned() }) {
            self.presence.lost_a_write();
        }
    }

    fn user_count_elsewhere(&self, plugin: Arc<str>, user: String) -> CountFuture {
        let presence = self.presence.clone();
        Box::pin(async move { presence.elsewhere(&plugin, &user).await })
    }

    fn room_changed(&self, key: &RoomKey, user: Option<&str>) {
        self.rooms.changed(key, user);
    }

    fn room_user_elsewhere(&self, key: RoomKey, user: Arc<str>) -> CountFuture {
        let rooms = self.rooms.clone();
        Box::pin(async move { rooms.user_elsewhere(key, user).await })
    }

    fn room_census(&self, key: RoomKey) -> CensusFuture {
        let rooms = self.rooms.clone();
        Box::pin(async move { rooms.census(key).await })
    }

    fn room_users(&self, key: RoomKey, after: Option<String>, limit: usize) -> PageFuture {
        let rooms = self.rooms.clone();
        Box::pin(async move { rooms.users(key, after, limit).await })
    }

    /// With a shared store, a change is queued for Redis and the other nodes. The key counts
    /// as pending from before the local write, so that a reload from Redis running meanwhile
    /// cannot undo it.
    fn kv_write(&self, plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool) {
        if !self.shared_kv {
            local();
            return;
        }
        self.pending_kv.add(plugin, key);
        let changed = local();
        if !changed || !self.queue.send(Outbound::Kv { plugin: plugin.clone(), key: key.to_owned(), value }) {
            self.pending_kv.done(plugin, key);
        }
    }

    fn shared_kv(&self) -> Option<&dyn SharedKv> {
        self.atomic.as_ref().map(|a| a as &dyn SharedKv)
    }

    fn shared_history(&self) -> Option<Arc<dyn SharedHistory>> {
        Some(self.history.clone())
    }
}

/// A random number: the node's id, and the backoff's jitter.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
