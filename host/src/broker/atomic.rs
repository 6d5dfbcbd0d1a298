//! Atomic key/value operations with a shared store: Redis decides each one in a Lua script that
//! makes the change and announces it to every node in one step. Announcements come from
//! [`ATOMIC_NODE`] with a sequence number Redis assigns, so every node (this one too) applies
//! atomic changes in the order Redis made them, whichever arrives first: the answer to the call
//! or the announcement.
//!
//! Plain `set` and `delete` of the same key go their own way (queued, last write wins); a plugin
//! mixing them with atomic operations on one key gets the order Redis saw.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::wire::{Channels, Frame, KIND_KV_DELETE, KIND_KV_SET};
use crate::hub::{AtomicError, AtomicFuture, Hub, SharedKv, parse_counter};

/// The node id of announcements made by Redis (a node's own id is random, never this).
pub(super) const ATOMIC_NODE: u64 = 0;

/// How long an operation waits for Redis before it fails with `unavailable`: far above a
/// round trip, well below a client's patience.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `be64(n)`: Redis's sequence number as the frame's 8 big-endian bytes (exact below 2^53).
const BE64: &str = "local function be64(n) local b = {} for i = 8, 1, -1 do b[i] = string.char(n % 256) n = math.floor(n / 256) end return table.concat(b) end ";

/// KEYS: hash, sequence counter. ARGV: field, delta, channel, frame head, frame tail (a set).
/// Returns the new value as Redis stores it (text: a Lua number would round it) and the
/// sequence number.
const INCREMENT: &str = "local v = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2]) \
    local s = redis.call('HGET', KEYS[1], ARGV[1]) \
    local seq = redis.call('INCR', KEYS[2]) \
    redis.call('PUBLISH', ARGV[3], ARGV[4] .. be64(seq) .. ARGV[5] .. s) \
    return {s, seq}";

/// KEYS: hash, sequence counter. ARGV: field, expected present ('1'/'0'), expected value, new
/// present, new value, channel, frame head, frame tail of a set, frame tail of a delete.
/// Returns 1 and the sequence number if it swapped, 0 if the value was something else.
const COMPARE_AND_SET: &str = "local cur = redis.call('HGET', KEYS[1], ARGV[1]) \
    if ARGV[2] == '1' then if cur ~= ARGV[3] then return {0, 0} end elseif cur then return {0, 0} end \
    local seq = redis.call('INCR', KEYS[2]) \
    local frame \
    if ARGV[4] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[5]) frame = ARGV[7] .. be64(seq) .. ARGV[8] .. ARGV[5] \
    else redis.call('HDEL', KEYS[1], ARGV[1]) frame = ARGV[7] .. be64(seq) .. ARGV[9] end \
    redis.call('PUBLISH', ARGV[6], frame) \
    return {1, seq}";

/// The sequence number of the last atomic change applied to each key on this node, so that a
/// change arriving late (the answer after the announcement of a later change, or the other way
/// round) does not undo a later one.
#[derive(Default)]
pub(super) struct Applied(Mutex<HashMap<(Arc<str>, String), u64>>);

/// Keys remembered; past it the memory is dropped (only late arrivals of that moment could
/// then apply out of order, and the next change of the key repairs them).
const MAX_APPLIED: usize = 100_000;

impl Applied {
    /// Forgets every key's last change (Redis numbers them from 1 again after a restart).
    pub fn clear(&self) {
        self.0.lock().clear();
    }

    /// Applies the change `seq` of `key` (`None`: deleted) to this node's store, unless a later
    /// one was applied already.
    pub fn apply(&self, hub: &Hub, plugin: &Arc<str>, key: &str, seq: u64, value: Option<Bytes>) {
        let mut applied = self.0.lock();
        if applied.len() >= MAX_APPLIED {
            applied.clear();
        }
        let last = applied.entry((plugin.clone(), key.to_owned())).or_insert(0);
        if seq <= *last {
            return;
        }
        *last = seq;
        // Under the lock: two arrivals of one key apply in sequence order.
        match value {
            Some(v) => {
                let _ = hub.kv.set(plugin, key, v);
            }
            None => {
                hub.kv.delete(plugin, key);
            }
        }
    }
}

fn not_a_number(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("not an integer") || text.contains("overflow")
}

pub(super) struct RedisKv {
    pub client: super::client::Redis,
    pub ch: Channels,
    /// The sequence counter in Redis (not under the key/value prefix, which holds hashes only).
    pub seq_key: String,
    /// The hub holds this (through its peers): a weak link, no cycle.
    pub hub: Weak<Hub>,
    pub applied: Arc<Applied>,
    pub conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisKv {
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, AtomicError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await.map_err(|e| {
            tracing::warn!(error = %e, "broker: cannot reach Redis for an atomic key/value operation");
            AtomicError::Unavailable
        })?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Runs a script; a connection that failed is dropped, so the next call connects again.
    async fn eval<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, AtomicError> {
        let run = async {
            let mut conn = self.connection().await?;
            Ok::<_, AtomicError>(cmd.query_async::<T>(&mut conn).await)
        };
        match tokio::time::timeout(TIMEOUT, run).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(r)) => self.answer(r).await,
            Err(_) => {
                tracing::warn!("broker: Redis did not answer an atomic key/value operation in time");
                *self.conn.lock().await = None;
                Err(AtomicError::Unavailable)
            }
        }
    }

    /// Redis's answer: the value, HINCRBY's refusal (a value that is not an integer, or an
    /// overflow), another refusal, or a broken connection (dropped, to connect again).
    async fn answer<T>(&self, r: redis::RedisResult<T>) -> Result<T, AtomicError> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) if not_a_number(&e) => return Err(AtomicError::NotANumber),
            Err(e) => e,
        };
        tracing::warn!(error = %e, "broker: atomic key/value operation failed");
        if e.is_io_error() || e.is_unrecoverable_error() {
            *self.conn.lock().await = None;
        }
        Err(AtomicError::Unavailable)
    }

    fn frame_parts(&self, kind: u8, plugin: &str, key: &str) -> (Vec<u8>, Vec<u8>) {
        // The frame with sequence number 0 and no payload, split around the sequence number.
        let whole = Frame::encode(ATOMIC_NODE, 0, kind, plugin, key, b"");
        let (head, rest) = whole.split_at(9);
        (head.to_vec(), rest[8..].to_vec())
    }

    fn hash(&self, plugin: &str) -> String {
        format!("{}{plugin}", self.ch.kv_prefix)
    }

    fn hub(&self) -> Result<Arc<Hub>, AtomicError> {
        self.hub.upgrade().ok_or(AtomicError::Unavailable)
    }
}

impl SharedKv for Arc<RedisKv> {
    fn increment(&self, plugin: Arc<str>, key: String, delta: i64) -> AtomicFuture<i64> {
        let this = self.clone();
        Box::pin(async move {
            let hub = this.hub()?;
            // A counter is at most 20 bytes of text: only the key count can refuse it.
            hub.kv.admits(&plugin, &key, Some(0))?;
            let (head, tail) = this.frame_parts(KIND_KV_SET, &plugin, &key);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(format!("{BE64}{INCREMENT}")).arg(2).arg(this.hash(&plugin)).arg(&this.seq_key);
            cmd.arg(&key).arg(delta).arg(&this.ch.kv).arg(head).arg(tail);
            let (value, seq): (String, u64) = this.eval(cmd).await?;
            let n = parse_counter(value.as_bytes()).ok_or(AtomicError::NotANumber)?;
            this.applied.apply(&hub, &plugin, &key, seq, Some(Bytes::from(value)));
            Ok(n)
        })
    }

    fn compare_and_set(
        &self,
        plugin: Arc<str>,
        key: String,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> AtomicFuture<bool> {
        let this = self.clone();
        Box::pin(async move {
            let hub = this.hub()?;
            hub.kv.admits(&plugin, &key, new.as_ref().map(|v| v.len()))?;
            let (head, set_tail) = this.frame_parts(KIND_KV_SET, &plugin, &key);
            let (_, delete_tail) = this.frame_parts(KIND_KV_DELETE, &plugin, &key);
            let flag = |v: &Option<Bytes>| if v.is_some() { "1" } else { "0" };
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(format!("{BE64}{COMPARE_AND_SET}")).arg(2).arg(this.hash(&plugin)).arg(&this.seq_key);
            cmd.arg(&key).arg(flag(&expected)).arg(expected.as_deref().unwrap_or_default());
            cmd.arg(flag(&new)).arg(new.as_deref().unwrap_or_default());
            cmd.arg(&this.ch.kv).arg(head).arg(set_tail).arg(delete_tail);
            let (swapped, seq): (u8, u64) = this.eval(cmd).await?;
            if swapped == 1 {
                this.applied.apply(&hub, &plugin, &key, seq, new);
            }
            Ok(swapped == 1)
        })
    }
}
