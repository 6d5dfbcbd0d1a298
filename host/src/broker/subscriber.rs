//! The subscribed connection: receives what the other nodes publish and delivers it to this
//! node's members and key/value stores, and only there (what comes from Redis is never sent
//! out again). A node skips its own frames, and frames it has had already (a pipeline sent
//! again after a failure), by the sender's sequence number. Publishes to rooms whose history
//! Redis keeps are the exception: Redis's script sends them with their offset, and every node,
//! the publisher's included, delivers them (see `history`); so are this node's history probes.
//! On every (re)connection it marks the history mirrors unsynced, ends the epoch of rooms this
//! node published to alone meanwhile, and, with a shared store, reloads the store from Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;

use super::atomic::{ATOMIC_NODE, Applied};
use super::history::{Published, RedisHistory, parse_probe};
use super::kv_sync::{self, PendingKv};
use super::link::{BACKOFF_MIN, Link, SUBSCRIBED, jitter, next_backoff};
use super::wire::{
    Channels, Frame, KIND_BINARY, KIND_HISTORY_BINARY, KIND_HISTORY_PROBE, KIND_HISTORY_TEXT, KIND_KV_DELETE,
    KIND_KV_SET, KIND_TEXT, KIND_USER_BINARY, KIND_USER_CLOSE, KIND_USER_TEXT,
};
use crate::hub::Outgoing;
use crate::hub::{Allowance, Hub, RoomKey};

pub(super) struct Subscriber {
    pub client: super::client::Redis,
    pub ch: Channels,
    pub node: u64,
    pub shared_kv: bool,
    pub hub: Arc<Hub>,
    pub link: Arc<Link>,
    pub pending_kv: Arc<PendingKv>,
    /// The atomic changes applied so far, shared with the calls that make them.
    pub applied: Arc<Applied>,
    pub seen: Seen,
    /// Where recovering joins wait for their probes.
    pub history: Arc<RedisHistory>,
}

impl Subscriber {
    /// Subscribes, and subscribes again whenever the subscription ends, for ever.
    pub async fn run(mut self) {
        let m = self.hub.metrics.clone();
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            match self.subscribe_once(&mut first, &mut backoff).await {
                Ok(()) => tracing::warn!("broker: Redis subscription ended; reconnecting"),
                Err(e) => {
                    m.broker_errors.inc();
                    // The step that failed and the underlying cause (the Redis error repeats its
                    // own source in its message, so the full chain would say it twice).
                    let (step, cause) = (e.to_string(), e.root_cause().to_string());
                    let error = if step == cause { cause } else { format!("{step}: {cause}") };
                    tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "broker: Redis subscription failed; reconnecting");
                }
            }
            self.link.set(SUBSCRIBED, false);
            tokio::time::sleep(jitter(backoff)).await;
            backoff = next_backoff(backoff);
        }
    }

    async fn subscribe_once(&mut self, first: &mut bool, backoff: &mut Duration) -> Result<()> {
        let m = self.hub.metrics.clone();
        let mut pubsub = self.client.get_async_pubsub().await.context("connecting")?;
        pubsub.subscribe(&self.ch.rooms).await.context("subscribing")?;
        // Publishes may have gone by unseen since the last subscription.
        self.hub.history.unsync();
        if !self.history.forget_diverged(&self.hub).await {
            bail!("ending the epoch of rooms published to while Redis was away");
        }
        if self.shared_kv {
            pubsub.subscribe(&self.ch.kv).await.context("subscribing")?;
            // Redis may have restarted and numbers its atomic changes from 1 again; the
            // reload below brings every value up to date meanwhile.
            self.seen.forget(ATOMIC_NODE);
            self.applied.clear();
            kv_sync::load(&self.client, &self.ch, &self.hub, &self.pending_kv)
                .await
                .context("loading the shared key/value store")?;
        }
        self.link.set(SUBSCRIBED, true);
        if !std::mem::take(first) {
            m.broker_reconnects.inc();
            tracing::info!("broker: reconnected to Redis");
        } else {
            tracing::info!("broker: connected to Redis");
        }
        *backoff = BACKOFF_MIN;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let payload: &[u8] = msg.get_payload_bytes();
            if let Err(e) = self.deliver(payload) {
                m.broker_errors.inc();
                tracing::warn!(error = %e, "broker: ignoring a malformed message");
            }
        }
        Ok(())
    }

    /// Applies a message from another node, on this node only.
    fn deliver(&mut self, frame: &[u8]) -> Result<()> {
        let f = Frame::decode(frame)?;
        if matches!(f.kind, KIND_HISTORY_TEXT | KIND_HISTORY_BINARY | KIND_HISTORY_PROBE) {
            return self.history(&f);
        }
        if f.node == self.node {
            return Ok(()); // our own publish: local members already have it
        }
        if !self.seen.first_time(f.node, f.seq) {
            return Ok(()); // sent again after a connection failure, but Redis had relayed it
        }
        let hub = &self.hub;
        let plugin: Arc<str> = Arc::from(f.plugin);
        if f.node == ATOMIC_NODE && matches!(f.kind, KIND_KV_SET | KIND_KV_DELETE) {
            let value = (f.kind == KIND_KV_SET).then(|| Bytes::copy_from_slice(f.payload));
            self.applied.apply(hub, &plugin, f.name, f.seq, value);
            return Ok(());
        }
        match f.kind {
            KIND_TEXT | KIND_BINARY => {
                hub.metrics.broker_received.inc();
                let payload = Bytes::copy_from_slice(f.payload);
                let item = if f.kind == KIND_TEXT { Outgoing::Text(payload) } else { Outgoing::Binary(payload) };
                // No call on this node pays for these copies: the publishing node charged its
                // plugin's budget for its own members only (see README, "Publish budget").
                let _ =
                    hub.rooms.publish(&RoomKey::new(&plugin, f.name), &item.to_shared(), None, Allowance::UNLIMITED);
            }
            KIND_USER_TEXT | KIND_USER_BINARY => {
                hub.metrics.broker_received.inc();
                let payload = Bytes::copy_from_slice(f.payload);
                let item = if f.kind == KIND_USER_TEXT { Outgoing::Text(payload) } else { Outgoing::Binary(payload) };
                let _ = hub.users.send(f.name, &plugin, &item.to_shared(), Allowance::UNLIMITED);
            }
            KIND_USER_CLOSE => {
                let (code, reason) = f.payload.split_at_checked(2).context("truncated user close")?;
                let code = crate::ws::CloseCode::from_wire(u16::from_be_bytes([code[0], code[1]]))
                    .context("bad close code in a user close")?;
                hub.users.close(f.name, &plugin, code, &String::from_utf8_lossy(reason));
            }
            KIND_KV_SET => {
                let _ = hub.kv.set(&plugin, f.name, Bytes::copy_from_slice(f.payload));
            }
            KIND_KV_DELETE => {
                hub.kv.delete(&plugin, f.name);
            }
            k => bail!("unknown message kind {k}"),
        }
        Ok(())
    }
}

impl Subscriber {
    /// A frame Redis's history scripts sent: a publish every node delivers (the publisher's
    /// too: Redis gave its offset), or a probe this node sent.
    fn history(&self, f: &Frame) -> Result<()> {
        let key = RoomKey::new(&Arc::from(f.plugin), f.name);
        if f.kind == KIND_HISTORY_PROBE {
            if f.node == self.node {
                let (top, epoch) = parse_probe(f.payload).context("malformed history probe")?;
                self.hub.history_seed(&key, epoch, top);
                self.history.probe_passed(f.seq);
            }
            return Ok(());
        }
        let p = Published::parse(f.payload).context("malformed history publish")?;
        self.hub.metrics.broker_received.inc();
        let template = Bytes::copy_from_slice(p.template);
        let item = if f.kind == KIND_HISTORY_TEXT { Outgoing::Text(template) } else { Outgoing::Binary(template) };
        // The exception is a connection of the publishing node.
        let except = p.except.filter(|_| f.node == self.node);
        self.hub.history_deliver(&key, p.epoch, p.offset, item, except);
        Ok(())
    }
}

/// Nodes whose sequence numbers a node remembers (a cluster has a handful; node ids change on
/// restart, so old ones pile up slowly and are forgotten all at once past this).
const MAX_KNOWN_NODES: usize = 4096;

/// The highest sequence number seen from every other node. The subscriber alone reads and
/// writes it, so it needs no lock (and no lock can fail and let a frame through twice).
#[derive(Default)]
pub(super) struct Seen(HashMap<u64, u64>);

impl Seen {
    /// Whether `seq` is new from `node` (one node's frames arrive in order).
    fn first_time(&mut self, node: u64, seq: u64) -> bool {
        let seen = &mut self.0;
        if seen.len() >= MAX_KNOWN_NODES && !seen.contains_key(&node) {
            seen.clear();
        }
        let last = seen.entry(node).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }

    fn forget(&mut self, node: u64) {
        self.0.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_sent_again_after_a_failure_is_delivered_once() {
        let mut b = Seen::default();
        assert!(b.first_time(7, 1));
        assert!(b.first_time(7, 2));
        assert!(!b.first_time(7, 2), "resent");
        assert!(!b.first_time(7, 1), "resent");
        assert!(b.first_time(8, 1), "another node counts on its own");
        assert!(b.first_time(7, 3));
    }
}
