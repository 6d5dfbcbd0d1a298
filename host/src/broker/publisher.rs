//! The publishing connection: takes what has queued up, sends it to Redis as one pipeline (one
//! round trip for many publishes), and on a connection failure reconnects and sends the same
//! pipeline again. Every frame is numbered from the node's sequence, so the receivers drop the
//! frames Redis had already relayed before the failure: one publisher's messages arrive once
//! and in order while Redis is up.
//!
//! Redis pub/sub keeps nothing for a subscriber that is away, so after a reconnection (a Redis
//! restart, a Sentinel failover) the publisher first waits, a bounded time, until as many
//! subscriptions to the rooms channel are back as it last saw: what queued up during the outage
//! then reaches the nodes that are reconnecting too, instead of going out before they listen.

use std::sync::Arc;
use std::time::Duration;

use super::kv_sync::PendingKv;
use super::link::{BACKOFF_MIN, Link, PUBLISHING, jitter, next_backoff, retryable};
use super::presence::Presence;
use super::queue::{Outbound, Receiver};
use super::wire::{Channels, Frame, KIND_BINARY, KIND_KV_DELETE, KIND_KV_SET, KIND_TEXT};
use crate::metrics::Metrics;

/// A Redis that stops answering counts as down: reconnect rather than wait forever.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, after a reconnection, publishing waits for the other nodes' subscriptions: longer
/// than their longest reconnect backoff, so a node that is coming back is waited for and one
/// that is gone (killed) delays this node's queued publishes by no more than this.
const SETTLE_MAX: Duration = Duration::from_secs(6);

pub(super) struct Publisher {
    pub client: super::client::Redis,
    pub ch: Channels,
    pub node: u64,
    pub queue: Receiver,
    pub metrics: Arc<Metrics>,
    pub link: Arc<Link>,
    pub pending_kv: Arc<PendingKv>,
    pub presence: Arc<Presence>,
}

impl Publisher {
    /// Publishes until the queue's sending end is gone.
    pub async fn run(mut self) {
        let m = self.metrics.clone();
        let mut backoff = BACKOFF_MIN;
        let mut seq = 0u64;
        let mut batch = Vec::new();
        // A pipeline that failed, kept (with its sequence numbers) to be sent again.
        let mut unsent: Option<(redis::Pipeline, u64)> = None;
        let mut heartbeat = tokio::time::interval(self.presence.heartbeat_every());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Subscriptions to the rooms channel last seen, this node's included (0: not known).
        let mut subscribers = 0u64;
        let mut connected_before = false;
        loop {
            let mut conn = match self.client.get_multiplexed_async_connection().await {
                Ok(mut c) => {
                    backoff = BACKOFF_MIN;
                    if connected_before {
                        self.settle(&mut c, subscribers).await;
                    }
                    connected_before = true;
                    self.link.set(PUBLISHING, true);
                    self.presence.reconnected();
                    c
                }
                Err(e) => {
                    m.broker_errors.inc();
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "broker: cannot connect to Redis for publishing");
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        _ = self.link.redis_back.notified() => {}
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            };
            loop {
                let (pipe, publishes) = match unsent.take() {
                    Some(p) => p,
                    None => {
                        // After what was unsent: the numbers written now are the latest.
                        if !self.presence_upkeep(&mut conn, None).await {
                            break;
                        }
                        batch.clear();
                        let next = tokio::select! {
                            more = self.queue.next_batch(&mut batch) => more,
                            _ = heartbeat.tick() => {
                                let mut beat = redis::pipe();
                                self.presence.heartbeat(&mut beat);
                                if !self.presence_upkeep(&mut conn, Some(beat)).await {
                                    break;
                                }
                                if let Some(n) = self.subscriptions(&mut conn).await {
                                    subscribers = n;
                                }
                                continue;
                            }
                        };
                        if !next {
                            return; // the node is shutting down
                        }
                        pipeline(&batch, &self.ch, self.node, &mut seq, &self.presence)
                    }
                };
                let sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
                match sent {
                    Ok(Ok(())) => {
                        m.broker_published.inc_by(publishes);
                        self.answered(&batch);
                    }
                    // Redis answered, with an error (e.g. a key of another type): sending the
                    // same commands again would fail the same way, so this batch is given up.
                    Ok(Err(e)) if !retryable(&e) => {
                        m.broker_errors.inc();
                        tracing::warn!(error = %e, "broker: Redis refused a batch; it is dropped");
                        self.answered(&batch);
                    }
                    failed => {
                        m.broker_errors.inc();
                        let error = failed.map_or_else(
                            |_| "timed out".to_owned(),
                            |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                        );
                        tracing::warn!(%error, "broker: publishing to Redis failed; reconnecting");
                        self.link.set(PUBLISHING, false);
                        unsent = Some((pipe, publishes)); // sent again once reconnected
                        break;
                    }
                }
            }
        }
    }

    /// How many connections are subscribed to the rooms channel on this Redis (`None` if it
    /// does not answer).
    async fn subscriptions(&self, conn: &mut redis::aio::MultiplexedConnection) -> Option<u64> {
        let mut numsub = redis::cmd("PUBSUB");
        numsub.arg("NUMSUB").arg(&self.ch.rooms);
        match tokio::time::timeout(PUBLISH_TIMEOUT, numsub.query_async::<(String, u64)>(conn)).await {
            Ok(Ok((_, n))) => Some(n),
            _ => None,
        }
    }

    /// After a reconnection: waits until `expected` subscriptions to the rooms channel are
    /// back, at most [`SETTLE_MAX`], so that what queued up meanwhile is not published to a
    /// Redis the other nodes are not listening to yet.
    async fn settle(&self, conn: &mut redis::aio::MultiplexedConnection, expected: u64) {
        if expected <= 1 {
            return; // this node alone, or nothing known
        }
        let started = tokio::time::Instant::now();
        loop {
            let now = self.subscriptions(conn).await;
            if now.is_none_or(|n| n >= expected) || started.elapsed() >= SETTLE_MAX {
                let waited_ms = started.elapsed().as_millis() as u64;
                tracing::info!(waited_ms, subscribed = now, expected, "broker: reconnected; publishing again");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the presence resync when one is due, and `beat` if given; false if Redis failed
    /// (reconnect: the resync is due again).
    async fn presence_upkeep(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        beat: Option<redis::Pipeline>,
    ) -> bool {
        for pipe in [self.presence.take_resync(), beat].into_iter().flatten() {
            let sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(conn)).await;
            if let Ok(Ok(())) = sent {
                continue;
            }
            self.metrics.broker_errors.inc();
            let error =
                sent.map_or_else(|_| "timed out".to_owned(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
            tracing::warn!(%error, "broker: writing this node's user counts to Redis failed; reconnecting");
            self.presence.resync_failed();
            self.link.set(PUBLISHING, false);
            return false;
        }
        true
    }

    /// Redis has answered `batch`: it is no longer pending.
    fn answered(&self, batch: &[Outbound]) {
        self.metrics.broker_pending.dec_by(batch.len() as i64);
        self.pending_kv.settle(batch);
    }
}

/// One round trip's commands for `batch`, numbered from `seq`; and how many are room publishes.
fn pipeline(
    batch: &[Outbound],
    ch: &Channels,
    node: u64,
    seq: &mut u64,
    presence: &Presence,
) -> (redis::Pipeline, u64) {
    let mut pipe = redis::pipe();
    let mut publishes = 0;
    for out in batch {
        *seq += 1;
        match out {
            Outbound::Publish { key, text, payload } => {
                let kind = if *text { KIND_TEXT } else { KIND_BINARY };
                let frame = Frame::encode(node, *seq, kind, &key.plugin, &key.name, payload);
                pipe.cmd("PUBLISH").arg(&ch.rooms).arg(frame).ignore();
                publishes += 1;
            }
            Outbound::Kv { plugin, key, value } => {
                let hash = format!("{}{plugin}", ch.kv_prefix);
                let kind = match value {
                    Some(v) => {
                        pipe.cmd("HSET").arg(&hash).arg(key).arg(v.as_ref()).ignore();
                        KIND_KV_SET
                    }
                    None => {
                        pipe.cmd("HDEL").arg(&hash).arg(key).ignore();
                        KIND_KV_DELETE
                    }
                };
                let frame = Frame::encode(node, *seq, kind, plugin, key, value.as_deref().unwrap_or_default());
                pipe.cmd("PUBLISH").arg(&ch.kv).arg(frame).ignore();
            }
            // On the rooms channel: in order with this node's room publishes.
            Outbound::User { plugin, user, kind, payload } => {
                let frame = Frame::encode(node, *seq, *kind, plugin, user, payload);
                pipe.cmd("PUBLISH").arg(&ch.rooms).arg(frame).ignore();
                publishes += 1;
            }
            Outbound::Presence { plugin, user } => presence.write(&mut pipe, plugin, user),
        }
    }
    (pipe, publishes)
}
