//! The engine's instance slots (`[engine] max_instances`), shared by every plugin so that one
//! plugin's burst cannot leave another without an instance.
//!
//! Half of the slots are reserved, split evenly between the loaded plugins: a plugin below its
//! reservation always gets a slot. The other half is shared, first come first served, but a
//! plugin takes a shared slot only while enough remain for every other plugin's unmet
//! reservation. A call that finds no slot waits briefly for one (its plugin's instance coming
//! back to the pool, or any slot freed) before it fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
struct Usage {
    /// Instances alive (idle or busy, any version).
    live: usize,
    /// A version of the plugin is loaded: it has a reservation.
    loaded: bool,
}

pub struct Capacity {
    total: usize,
    plugins: Mutex<HashMap<Arc<str>, Usage>>,
    /// Woken when a slot is freed or an instance goes back to a pool.
    freed: Notify,
    /// Callers waiting on `freed` (so that the common case, nobody waiting, costs one load).
    waiting: AtomicUsize,
}

/// One instance's slot, given back when the instance is dropped.
pub struct Slot {
    capacity: Arc<Capacity>,
    plugin: Arc<str>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(u) = self.capacity.plugins.lock().get_mut(&self.plugin) {
            u.live = u.live.saturating_sub(1);
        }
        self.capacity.returned();
    }
}

impl Capacity {
    pub fn new(total: u32) -> Arc<Capacity> {
        Arc::new(Capacity {
            total: total.max(1) as usize,
            plugins: Mutex::default(),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// A version of `plugin` is loaded (or none is): it has a reservation while loaded.
    pub fn set_loaded(&self, plugin: &Arc<str>, loaded: bool) {
        self.plugins.lock().entry(plugin.clone()).or_default().loaded = loaded;
        self.freed.notify_waiters();
    }

    /// Slots each loaded plugin is guaranteed.
    fn reservation(&self, loaded: usize) -> usize {
        (self.total / (2 * loaded.max(1))).max(1)
    }

    /// A slot for a new instance of `plugin`, if its policy allows one now.
    pub fn try_take(self: &Arc<Self>, plugin: &Arc<str>) -> Option<Slot> {
        let mut plugins = self.plugins.lock();
        let loaded = plugins.values().filter(|u| u.loaded).count();
        let reserve = self.reservation(loaded);
        let used: usize = plugins.values().map(|u| u.live).sum();
        let others_unmet: usize = plugins
            .iter()
            .filter(|(name, u)| u.loaded && *name != plugin)
            .map(|(_, u)| reserve.saturating_sub(u.live))
            .sum();
        let mine = plugins.entry(plugin.clone()).or_default();
        let allowed = used < self.total && (mine.live < reserve || used + others_unmet < self.total);
        if !allowed {
            return None;
        }
        mine.live += 1;
        Some(Slot { capacity: self.clone(), plugin: plugin.clone() })
    }

    /// Waits up to `wait` for a slot, or for `ready` to say the caller can go on without one
    /// (an instance of its plugin came back to the pool). `None`: neither came.
    pub async fn wait_for<T>(
        self: &Arc<Self>,
        plugin: &Arc<str>,
        wait: Duration,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<Result<T, Slot>> {
        let deadline = tokio::time::Instant::now() + wait;
        self.waiting.fetch_add(1, SeqCst);
        let _waiting = scopeguard(|| {
            self.waiting.fetch_sub(1, SeqCst);
        });
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a slot freed meanwhile still wakes us.
            freed.as_mut().enable();
            if let Some(t) = ready() {
                return Some(Ok(t));
            }
            if let Some(slot) = self.try_take(plugin) {
                return Some(Err(slot));
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// An instance went back to a pool: a caller waiting for one of that plugin can take it.
    pub fn returned(&self) {
        if self.waiting.load(SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Instances alive for `plugin`.
    #[cfg(test)]
    fn live(&self, plugin: &str) -> usize {
        self.plugins.lock().get(plugin).map_or(0, |u| u.live)
    }
}

/// Runs `f` when dropped (also when the waiting future is dropped mid-wait).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_plugin_leaves_every_other_its_reservation() {
        let c = Capacity::new(8);
        let (a, b, d): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "d".into());
        c.set_loaded(&a, true);
        c.set_loaded(&b, true);
        // Two plugins: 2 reserved each, 4 shared. `a` takes its 2 and the 4 shared ones.
        let burst: Vec<Slot> = std::iter::from_fn(|| c.try_take(&a)).take(100).collect();
        assert_eq!(burst.len(), 6);
        // `b` still gets its 2, and no more while `a` holds the rest.
        let mine: Vec<Slot> = std::iter::from_fn(|| c.try_take(&b)).take(100).collect();
        assert_eq!(mine.len(), 2);
        drop(burst);
        assert_eq!(c.live("a"), 0);
        // A third plugin loaded: reservations shrink to 1 each; `b` may use shared slots now.
        c.set_loaded(&d, true);
        let more: Vec<Slot> = std::iter::from_fn(|| c.try_take(&b)).take(100).collect();
        assert_eq!(more.len(), 4, "8 slots, 2 held, 2 kept for the unmet reservations of a and d");
        assert!(c.try_take(&a).is_some() && c.try_take(&d).is_some());
        drop((mine, more));
        assert_eq!(c.live("b"), 0);
    }

    #[tokio::test]
    async fn a_caller_waits_briefly_for_a_freed_slot() {
        let c = Capacity::new(1);
        let a: Arc<str> = "a".into();
        c.set_loaded(&a, true);
        let held = c.try_take(&a).unwrap();
        let none = c.wait_for(&a, Duration::from_millis(20), || None::<()>).await;
        assert!(none.is_none());
        let c2 = c.clone();
        let freer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
            c2.returned();
        });
        let got = c.wait_for(&a, Duration::from_secs(5), || None::<()>).await;
        assert!(matches!(got, Some(Err(_))));
        freer.await.unwrap();
    }
}
