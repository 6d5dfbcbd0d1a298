//! The queue between this node's publishes and the publishing connection. It is bounded in
//! count and in bytes: when Redis is slow or down, what does not fit is dropped and counted
//! rather than held, so a Redis outage cannot grow a node's memory. Everything queued counts in
//! the pending gauge until Redis has answered it (the publisher settles it then).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::hub::RoomKey;
use crate::metrics::Metrics;

/// Most items in one batch, and most bytes.
const BATCH_ITEMS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// What goes out to Redis.
pub(super) enum Outbound {
    Publish {
        key: RoomKey,
        text: bool,
        payload: Bytes,
    },
    Kv {
        plugin: Arc<str>,
        key: String,
        value: Option<Bytes>,
    },
    /// To the connections of a user (`kind`: text, binary or close; see `wire`).
    User {
        plugin: Arc<str>,
        user: String,
        kind: u8,
        payload: Bytes,
    },
    /// This node's number of connections of a user changed (the number is read when sent).
    Presence {
        plugin: Arc<str>,
        user: String,
    },
}

impl Outbound {
    /// The bytes it holds, as the queue counts them.
    fn size(&self) -> usize {
        match self {
            Outbound::Publish { key, payload, .. } => key.plugin.len() + key.name.len() + payload.len(),
            Outbound::Kv { plugin, key, value } => plugin.len() + key.len() + value.as_ref().map_or(0, |v| v.len()),
            Outbound::User { plugin, user, payload, .. } => plugin.len() + user.len() + payload.len(),
            Outbound::Presence { plugin, user } => plugin.len() + user.len(),
        }
    }
}

/// A queue of at most `max_items` items and `max_bytes` bytes.
pub(super) fn bounded(max_items: usize, max_bytes: usize, metrics: Arc<Metrics>) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(max_items.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (Sender { tx, queued: queued.clone(), max_bytes: max_bytes.max(1), metrics }, Receiver { rx, queued })
}

/// The publishes' end.
pub(super) struct Sender {
    tx: mpsc::Sender<Outbound>,
    /// Bytes waiting for the publisher, bounded by `max_bytes`.
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Sender {
    /// Queues `out` for Redis; false if it was dropped.
    pub fn send(&self, out: Outbound) -> bool {
        let size = out.size();
        let m = &self.metrics;
        // Counted until Redis has answered; before the send, so that it never goes below zero.
        m.broker_pending.inc();
        let fits = self.queued.fetch_add(size, Relaxed) + size <= self.max_bytes;
        if !fits || self.tx.try_send(out).is_err() {
            // Redis is slow or down and the queue is full: drop rather than grow.
            self.queued.fetch_sub(size, Relaxed);
            m.broker_pending.dec();
            m.broker_dropped.inc();
            return false;
        }
        true
    }
}

/// The publisher's end, with the byte count it gives back.
pub(super) struct Receiver {
    rx: mpsc::Receiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl Receiver {
    /// Waits for one item, then takes what else is already queued, up to a batch. False once
    /// the sending end is gone (the node is shutting down).
    pub async fn next_batch(&mut self, batch: &mut Vec<Outbound>) -> bool {
        let Some(first) = self.rx.recv().await else { return false };
        let mut bytes = first.size();
        batch.push(first);
        while batch.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(o) => {
                    bytes += o.size();
                    batch.push(o);
                }
                Err(_) => break,
            }
        }
        self.queued.fetch_sub(bytes, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_in_count() {
        let publish = || Outbound::Publish {
            key: RoomKey::new(&Arc::from("rooms"), "lobby"),
            text: true,
            payload: Bytes::from(vec![b'x'; 400]),
        };
        let (q, _rx) = bounded(100, 1000, Arc::new(Metrics::new()));
        for _ in 0..3 {
            q.send(publish());
        }
        // Two fit in 1000 bytes; the third is dropped and counted, and gives its bytes back.
        assert_eq!(q.metrics.broker_dropped.get(), 1);
        assert_eq!(q.queued.load(Relaxed), 2 * (400 + "rooms".len() + "lobby".len()));
        assert_eq!(q.metrics.broker_pending.get(), 2, "the dropped one is not pending");
        let (q, _rx) = bounded(1, 1 << 20, Arc::new(Metrics::new()));
        q.send(publish());
        q.send(publish());
        assert_eq!(q.metrics.broker_dropped.get(), 1, "count bound");
    }
}
