//! The server-wide budget for bytes held on behalf of peers: messages being assembled (a
//! fragmented or trickled message pins its buffer until it completes) and outgoing queues.
//!
//! Per-connection limits bound each connection, but not their sum: 200 connections each holding
//! a nearly complete 1 MiB message hold 200 MiB. The budget bounds the sum. Policy: when the
//! bytes held exceed `[server] max_buffered_bytes`, the connections holding the most are shed,
//! largest first, until the rest fit: each is closed at once with 1013 (try again later), its
//! partial message and queue dropped, and `wasmsock_buffered_sheds_total` counts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::sync::Notify;

use super::ConnShared;
use crate::ws::CloseCode;

pub struct Budget {
    max: AtomicUsize,
    /// Bytes in partial messages, over every connection (kept as they change).
    partial: AtomicUsize,
    /// Notified when a connection's growth took the partial bytes alone over the budget.
    over: Notify,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max: AtomicUsize::new(usize::MAX), partial: AtomicUsize::new(0), over: Notify::new() }
    }
}

impl Budget {
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
    }

    /// Records that `conn` now holds `held` bytes of partial message.
    pub fn set_partial(&self, conn: &ConnShared, held: usize) {
        let before = conn.partial_bytes.swap(held, Relaxed);
        if held > before {
            let total = self.partial.fetch_add(held - before, Relaxed) + (held - before);
            if total > self.max() {
                self.over.notify_one();
            }
        } else if before > held {
            self.partial.fetch_sub(before - held, Relaxed);
        }
    }

    /// Resolves when growth took the partial bytes over the budget.
    pub async fn exceeded(&self) {
        self.over.notified().await;
    }

    /// Counts what every connection holds and sheds the biggest holders until the rest fit.
    /// Returns the bytes held (before shedding) and how many connections were shed.
    pub fn enforce<'a>(&self, conns: impl IntoIterator<Item = &'a Arc<ConnShared>>) -> (usize, usize) {
        let max = self.max();
        let mut total = 0usize;
        let mut holders: Vec<(usize, &Arc<ConnShared>)> = Vec::new();
        for c in conns {
            let held = c.partial_bytes.load(Relaxed) + c.outbox_bytes();
            total += held;
            // A connection already shed frees its bytes as soon as its task runs.
            if held > 0 && !c.is_shed() {
                holders.push((held, c));
            }
        }
        let mut left: usize = holders.iter().map(|(h, _)| *h).sum();
        if left <= max {
            return (total, 0);
        }
        holders.sort_by_key(|h| std::cmp::Reverse(h.0));
        let mut shed = 0;
        for (held, c) in holders {
            if left <= max {
                break;
            }
            tracing::warn!(
                conn = c.id, remote = %c.remote, held, total, max,
                "server buffer budget exceeded: shedding the connection holding the most (1013)"
            );
            c.shed(CloseCode::TRY_AGAIN_LATER, "server buffer budget exceeded");
            left -= held;
            shed += 1;
        }
        (total, shed)
    }
}
