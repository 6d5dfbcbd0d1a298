//! The shared key/value store's reconciliation with Redis. Reads are local and writes go out
//! through the queue; a node (re)loads the whole store from Redis whenever its subscription
//! (re)connects. A reload takes Redis's values except for keys this node wrote that are not yet
//! through to Redis (or were written during the reload): those local values are newer than
//! what the reload read. It keeps keys Redis lacks: a Redis without persistence comes back
//! empty after a restart, and deleting what it lacks would empty every node's store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;

use super::link::retryable;
use super::queue::Outbound;
use super::wire::Channels;
use crate::hub::Hub;

/// Key/value writes this node has queued for Redis and Redis has not yet answered, by plugin
/// and key, and the keys written while a reload from Redis runs. A reload leaves all of these
/// alone: the local value (or its absence) is newer than what the reload read from Redis.
#[derive(Default)]
pub(super) struct PendingKv(Mutex<PendingState>);

type KvKey = (Arc<str>, String);

#[derive(Default)]
struct PendingState {
    /// Writes not yet answered by Redis, per key (bounded by the publish queue).
    counts: HashMap<KvKey, u32>,
    /// While a reload runs: the keys written or settled since it began (bounded by the keys
    /// the stores may hold).
    during_reload: Option<HashSet<KvKey>>,
}

impl PendingKv {
    /// A write of `key` begins (before the local write, so that a reload running meanwhile
    /// cannot undo it).
    pub fn add(&self, plugin: &Arc<str>, key: &str) {
        let mut s = self.0.lock();
        let k = (plugin.clone(), key.to_owned());
        if let Some(r) = &mut s.during_reload {
            r.insert(k.clone());
        }
        *s.counts.entry(k).or_insert(0) += 1;
    }

    /// A write of `key` is through to Redis, refused by it, or was never queued.
    pub fn done(&self, plugin: &Arc<str>, key: &str) {
        let mut s = self.0.lock();
        let k = (plugin.clone(), key.to_owned());
        if let Some(n) = s.counts.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                s.counts.remove(&k);
            }
        }
        // Settled after the reload read Redis: what it read may predate this write.
        if let Some(r) = &mut s.during_reload {
            r.insert(k);
        }
    }

    /// Marks the key/value writes of a batch Redis has answered (or refused).
    pub fn settle(&self, batch: &[Outbound]) {
        for out in batch {
            if let Outbound::Kv { plugin, key, .. } = out {
                self.done(plugin, key);
            }
        }
    }

    /// Whether a reload must keep the local value of `key`.
    fn keeps_local(&self, plugin: &Arc<str>, key: &str) -> bool {
        let s = self.0.lock();
        let k = (plugin.clone(), key.to_owned());
        s.counts.contains_key(&k) || s.during_reload.as_ref().is_some_and(|r| r.contains(&k))
    }

    /// Starts recording the keys written from now until the returned guard is dropped.
    fn reload(&self) -> ReloadGuard<'_> {
        self.0.lock().during_reload = Some(HashSet::new());
        ReloadGuard(self)
    }
}

struct ReloadGuard<'a>(&'a PendingKv);

impl Drop for ReloadGuard<'_> {
    fn drop(&mut self) {
        self.0.0.lock().during_reload = None;
    }
}

/// Reads every plugin's shared store from Redis into the local stores.
pub(super) async fn load(client: &super::client::Redis, ch: &Channels, hub: &Hub, pending: &PendingKv) -> Result<()> {
    let _recording = pending.reload();
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}*", ch.kv_prefix);
    let hashes: Vec<String> = {
        let mut iter = conn.scan_match::<_, String>(&pattern).await?;
        let mut all = Vec::new();
        while let Some(h) = iter.next().await {
            all.push(h?);
        }
        all
    };
    let mut remote: HashMap<Arc<str>, HashMap<String, Vec<u8>>> = HashMap::new();
    for hash in hashes {
        let Some(plugin) = hash.strip_prefix(&ch.kv_prefix) else { continue };
        let plugin: Arc<str> = Arc::from(plugin);
        // A key under our prefix that is not a hash (someone else's) is skipped, not fatal:
        // failing here would keep the subscription, and every room, down.
        let entries: HashMap<String, Vec<u8>> = match conn.hgetall(&hash).await {
            Ok(e) => e,
            Err(e) if retryable(&e) => return Err(e.into()),
            Err(e) => {
                hub.metrics.broker_errors.inc();
                tracing::warn!(key = %hash, error = %e, "broker: skipping a shared key/value entry Redis refused");
                continue;
            }
        };
        remote.insert(plugin, entries);
    }
    // Into this node's stores only: what comes from Redis is never sent out again.
    for (plugin, entries) in remote {
        for (key, value) in entries.into_iter().filter(|(k, _)| !pending.keeps_local(&plugin, k)) {
            let _ = hub.kv.set(&plugin, &key, Bytes::from(value));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_stays_pending_until_every_queued_write_to_it_is_settled() {
        let p = PendingKv::default();
        let plugin: Arc<str> = Arc::from("rooms");
        let write = || Outbound::Kv { plugin: plugin.clone(), key: "k".into(), value: None };
        p.add(&plugin, "k");
        p.add(&plugin, "k");
        p.settle(&[write()]);
        assert!(p.keeps_local(&plugin, "k"), "one write still on its way");
        p.settle(&[write()]);
        assert!(!p.keeps_local(&plugin, "k"));
        p.done(&plugin, "k"); // settling more than was added changes nothing
        assert!(!p.keeps_local(&plugin, "k"));
    }

    #[test]
    fn a_key_written_during_a_reload_keeps_its_local_value_until_the_reload_ends() {
        let p = PendingKv::default();
        let plugin: Arc<str> = Arc::from("rooms");
        let reload = p.reload();
        // Written and already through to Redis, but perhaps after the reload read Redis.
        p.add(&plugin, "k");
        p.done(&plugin, "k");
        assert!(p.keeps_local(&plugin, "k"));
        assert!(!p.keeps_local(&plugin, "other"));
        drop(reload);
        assert!(!p.keeps_local(&plugin, "k"));
    }

    #[test]
    fn a_panic_while_holding_the_lock_loses_no_pending_key() {
        // With a poisoning lock, every later `add` was skipped and `keeps_local` answered
        // false: a reload would then overwrite this node's newer writes with Redis's values.
        let p = Arc::new(PendingKv::default());
        let plugin: Arc<str> = Arc::from("rooms");
        let holder = p.clone();
        let panicked = std::thread::spawn(move || {
            let _held = holder.0.lock();
            panic!("a holder panics");
        })
        .join();
        assert!(panicked.is_err());
        p.add(&plugin, "k");
        assert!(p.keeps_local(&plugin, "k"));
    }
}
