//! The node's two Redis connections, publishing and subscribed, as one link: the gauge that
//! reads 1 only while both are up, the wake-up that brings the publisher back as soon as the
//! subscription finds Redis back, and the backoff and retry rules both connections follow.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// Reconnecting waits from `BACKOFF_MIN`, doubling up to `BACKOFF_MAX` (with jitter).
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which connection [`Link::set`] is about.
pub(super) const PUBLISHING: usize = 0;
pub(super) const SUBSCRIBED: usize = 1;

/// Which of a node's two Redis connections are up. The gauge reads 1 only while both are: a
/// node that receives but cannot publish is as cut off as one that cannot receive.
pub(super) struct Link {
    up: Mutex<[bool; 2]>,
    gauge: Gauge,
    /// Wakes a publisher in its backoff when the subscription finds Redis back, so that the
    /// publishes queued during an outage go out at once rather than up to `BACKOFF_MAX` later.
    /// (A wake-up given while the publisher was not waiting is kept, and cuts one later backoff
    /// short: one early reconnect attempt, harmless.)
    pub redis_back: Notify,
}

impl Link {
    pub fn new(gauge: Gauge) -> Link {
        gauge.set(0);
        Link { up: Mutex::new([false; 2]), gauge, redis_back: Notify::new() }
    }

    /// Whether both connections are up.
    pub fn up(&self) -> bool {
        let flags = self.up.lock();
        flags[PUBLISHING] && flags[SUBSCRIBED]
    }

    pub fn set(&self, which: usize, up: bool) {
        let mut flags = self.up.lock();
        flags[which] = up;
        self.gauge.set(i64::from(flags[PUBLISHING] && flags[SUBSCRIBED]));
        if which == SUBSCRIBED && up && !flags[PUBLISHING] {
            self.redis_back.notify_one();
        }
    }
}

/// The next backoff after `d`.
pub(super) fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_MAX)
}

/// `d` give or take half, so that nodes cut off together do not all come back at once.
pub(super) fn jitter(d: Duration) -> Duration {
    let r = super::random_u64() % 1000;
    d.mul_f64(0.5 + r as f64 / 2000.0)
}

/// Whether a failed Redis command may succeed if sent again: a lost connection, or a Redis that
/// is loading its data, read-only or without a master during a failover.
pub(super) fn retryable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Server(S::BusyLoading | S::ReadOnly | S::MasterDown | S::TryAgain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connected_means_both_connections_and_redis_back_wakes_the_publisher() {
        let link = Link::new(Gauge::default());
        link.set(SUBSCRIBED, true);
        assert_eq!(link.gauge.get(), 0, "the publisher is not up yet");
        let woken = tokio::time::timeout(Duration::from_secs(1), link.redis_back.notified()).await;
        assert!(woken.is_ok(), "a publisher in backoff hears that Redis is back");
        link.set(PUBLISHING, true);
        assert_eq!(link.gauge.get(), 1);
        link.set(PUBLISHING, false);
        assert_eq!(link.gauge.get(), 0);
    }
}
