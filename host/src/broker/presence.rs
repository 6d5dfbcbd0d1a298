//! Users across nodes: how many connections each user has on every node, for the users calls'
//! `user-connections-everywhere`.
//!
//! Each node keeps its own numbers in Redis, one hash per plugin,
//! `<prefix>:presence:<node>:<plugin>` (field: user, value: this node's connections of the
//! user), and says it is alive in the sorted set `<prefix>:presence:nodes` (score: Redis's
//! clock) every fifth of `node_ttl`. A count asks Redis, in one script, for the other nodes
//! that said so within `node_ttl` and adds up their fields; this node's own number is taken
//! here, so it is exact at once. A node that dies stops counting after `node_ttl`, and its
//! hashes expire then.
//!
//! A write carries the node's number as it is when the write is sent, not a difference: a
//! write sent twice, late or after another is harmless, and after a reconnection (Redis
//! restarted empty, or writes dropped from a full queue) the node writes everything again.
//!
//! The scripts name keys they build (the other nodes' hashes), which a Redis Cluster would not
//! route: this works with one Redis, or one with replicas behind Sentinel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::hub::Hub;

/// How long a count waits for Redis.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);
/// Fields per `HSET` when the node writes everything again.
const RESYNC_CHUNK: usize = 1000;

/// `now`: Redis's clock in milliseconds (every node measures liveness on the same clock).
const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) ";

/// KEYS: the nodes' set. ARGV: node, ttl ms. The node is alive now; nodes silent for the ttl
/// are forgotten; the set itself goes when every node has.
const HEARTBEAT: &str = "redis.call('ZADD', KEYS[1], now, ARGV[1]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2])) \
    redis.call('PEXPIRE', KEYS[1], ARGV[2] * 2) \
    return now";

/// KEYS: the nodes' set. ARGV: ttl ms, this node, hash prefix (`<prefix>:presence:`), plugin,
/// user. The user's connections on the other live nodes.
const COUNT: &str = "local total = 0 \
    for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')) do \
      if n ~= ARGV[2] then \
        local v = redis.call('HGET', ARGV[3] .. n .. ':' .. ARGV[4], ARGV[5]) \
        if v then total = total + tonumber(v) end \
      end \
    end \
    return total";

pub(super) struct Presence {
    /// The hub holds this (through its peers): a weak link, no cycle.
    pub hub: Weak<Hub>,
    pub client: super::client::Redis,
    node: String,
    prefix: String,
    nodes: String,
    ttl: Duration,
    /// The plugins this node has written numbers for (their hashes' expiry is renewed).
    plugins: Mutex<HashSet<Arc<str>>>,
    /// Set when a write was lost (queue full) or Redis may have lost ours: write everything.
    resync: AtomicBool,
    counting: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Presence {
    pub fn new(hub: Weak<Hub>, client: super::client::Redis, node: u64, prefix: &str, ttl: Duration) -> Presence {
        Presence {
            hub,
            client,
            node: format!("{node:016x}"),
            prefix: format!("{prefix}:presence:"),
            nodes: format!("{prefix}:presence:nodes"),
            ttl,
            plugins: Mutex::default(),
            resync: AtomicBool::new(true),
            counting: tokio::sync::Mutex::new(None),
        }
    }

    /// How often the node says it is alive.
    pub fn heartbeat_every(&self) -> Duration {
        self.ttl / 5
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    fn hash(&self, plugin: &str) -> String {
        format!("{}{}:{plugin}", self.prefix, self.node)
    }

    /// A write of this node's numbers could not be queued: they are all written again next.
    pub fn lost_a_write(&self) {
        self.resync.store(true, Relaxed);
    }

    /// Redis may have lost what this node wrote (a new connection: Redis may have restarted).
    pub fn reconnected(&self) {
        self.resync.store(true, Relaxed);
    }

    /// Adds this node's current number for `user` under `plugin` to `pipe`.
    pub fn write(&self, pipe: &mut redis::Pipeline, plugin: &Arc<str>, user: &str) {
        let Some(hub) = self.hub.upgrade() else { return };
        let hash = self.hash(plugin);
        match hub.users.count(user, plugin) {
            0 => pipe.cmd("HDEL").arg(&hash).arg(user).ignore(),
            n => pipe.cmd("HSET").arg(&hash).arg(user).arg(n).ignore(),
        };
        pipe.cmd("PEXPIRE").arg(&hash).arg(self.ttl_ms()).ignore();
        self.plugins.lock().insert(plugin.clone());
    }

    /// Adds the heartbeat (and the renewal of this node's hashes) to `pipe`.
    pub fn heartbeat(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("EVAL").arg(format!("{NOW}{HEARTBEAT}")).arg(1).arg(&self.nodes);
        pipe.arg(&self.node).arg(self.ttl_ms()).ignore();
        for plugin in self.plugins.lock().iter() {
            pipe.cmd("PEXPIRE").arg(self.hash(plugin)).arg(self.ttl_ms()).ignore();
        }
    }

    /// When everything must be written again: a pipeline that replaces this node's hashes with
    /// its numbers now, heartbeat included.
    pub fn take_resync(&self) -> Option<redis::Pipeline> {
        if !self.resync.swap(false, Relaxed) {
            return None;
        }
        let hub = self.hub.upgrade()?;
        let mut counts = hub.users.counts();
        counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut plugins = self.plugins.lock();
        plugins.extend(counts.iter().map(|(plugin, _, _)| plugin.clone()));
        for plugin in plugins.iter() {
            pipe.cmd("DEL").arg(self.hash(plugin)).ignore();
        }
        drop(plugins);
        for per_plugin in counts.chunk_by(|a, b| a.0 == b.0) {
            let hash = self.hash(&per_plugin[0].0);
            for chunk in per_plugin.chunks(RESYNC_CHUNK) {
                let cmd = pipe.cmd("HSET").arg(&hash);
                for (_, user, n) in chunk {
                    cmd.arg(user.as_ref()).arg(*n);
                }
                cmd.ignore();
            }
        }
        // The heartbeat renews every written hash's expiry.
        self.heartbeat(&mut pipe);
        Some(pipe)
    }

    /// The resync did not reach Redis: it is needed still.
    pub fn resync_failed(&self) {
        self.resync.store(true, Relaxed);
    }

    /// `user`'s connections that `plugin` may address on the other live nodes; `None` when
    /// Redis cannot be asked now.
    pub async fn elsewhere(&self, plugin: &str, user: &str) -> Option<usize> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{NOW}{COUNT}")).arg(1).arg(&self.nodes);
        cmd.arg(self.ttl_ms()).arg(&self.node).arg(&self.prefix).arg(plugin).arg(user);
        let ask = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<u64>(&mut conn).await
        };
        match tokio::time::timeout(COUNT_TIMEOUT, ask).await {
            Ok(Ok(n)) => Some(n as usize),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "broker: cannot count a user's connections on the other nodes");
                *self.counting.lock().await = None;
                None
            }
            Err(_) => {
                tracing::warn!("broker: Redis did not answer a count of a user's connections in time");
                *self.counting.lock().await = None;
                None
            }
        }
    }

    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut conn = self.counting.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        *conn = Some(c.clone());
        Ok(c)
    }
}
