//! The wake-up of a connection's task: a flag and the one waker waiting on it.
//!
//! A connection has exactly one waiter (its own task), which re-arms the wait on every turn of
//! its loop, once or twice per message. `tokio::sync::Notify` serves many waiters: each wait
//! locks its waiter list to enter it, and again to leave it when another branch of the loop's
//! `select!` won, which was most of the cost of waiting. Here a wait is an atomic swap and
//! storing the waker (a compare when it is the same task's), and a raise is a store and a wake.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Raised by anyone; awaited by one task. A raise with nobody waiting is kept for the next
/// wait (like `Notify::notify_one`'s permit); several raises before a wait count once.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    pub fn raise(&self) {
        // Release/AcqRel pair: what the raiser wrote before (a queued frame, a kill) is seen by
        // the task that takes the flag.
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once raised (at once, if it was raised since the last wait), and lowers it.
    pub async fn raised(&self) {
        poll_fn(|cx| {
            if self.raised.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A raise between the check and the registration woke no one: look again.
            if self.raised.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_raise_before_the_wait_is_kept_once_and_a_raise_wakes_a_waiter() {
        let s = Arc::new(Signal::default());
        s.raise();
        s.raise();
        tokio::time::timeout(Duration::from_secs(1), s.raised()).await.expect("kept");
        // Both raises counted once: the next wait waits.
        assert!(tokio::time::timeout(Duration::from_millis(20), s.raised()).await.is_err());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.raised().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        s.raise();
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("woken").expect("task");
    }
}
