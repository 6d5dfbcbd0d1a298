//! The memory the host keeps for plugins (key/value entries, attachments, room memberships),
//! bounded server-wide (`[host] max_memory`) and per plugin (its share: `max_host_memory`, or
//! else the total divided by the number of plugins the host keeps memory for).
//!
//! Each entry is charged its bytes plus [`ENTRY_OVERHEAD`] for the host's bookkeeping (map
//! slots, reference counts, lengths): an estimate, so that many tiny entries cost what they
//! really take, not nothing. A charge that would pass either bound is refused whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::RwLock;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Metrics, PluginLabel};

/// Bytes charged per entry on top of its contents.
pub const ENTRY_OVERHEAD: usize = 64;

/// `Share::configured` when the plugin has the default share.
const DEFAULT_SHARE: usize = usize::MAX;

/// A plugin's share is full, or the server-wide bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemoryFull;

pub struct HostMemory {
    limit: usize,
    used: AtomicUsize,
    shares: RwLock<HashMap<Arc<str>, Arc<Share>>>,
    metrics: Arc<Metrics>,
}

struct Share {
    used: AtomicUsize,
    /// `max_host_memory`, or [`DEFAULT_SHARE`] if the plugin's settings give none.
    configured: AtomicUsize,
    used_gauge: Gauge,
    limit_gauge: Gauge,
}

impl HostMemory {
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        metrics.host_memory_limit.set(gauge_value(limit));
        HostMemory { limit, used: AtomicUsize::new(0), shares: RwLock::new(HashMap::new()), metrics }
    }

    /// Counts `plugin` among the plugins sharing the total, with its configured share if any
    /// (a plugin that stores something before it is registered gets the default share).
    pub fn register(&self, plugin: &Arc<str>, configured: Option<usize>) {
        let mut shares = self.shares.write();
        match shares.get(plugin) {
            Some(s) => s.configured.store(configured.unwrap_or(DEFAULT_SHARE), Relaxed),
            None => {
                shares.insert(plugin.clone(), Arc::new(self.new_share(plugin, configured)));
            }
        }
        self.publish_limits(&shares);
    }

    /// Charges `bytes` to `plugin`, or refuses them if its share or the total would pass its bound.
    pub fn charge(&self, plugin: &Arc<str>, bytes: usize) -> Result<(), HostMemoryFull> {
        if bytes == 0 {
            return Ok(());
        }
        let (share, cap) = self.share(plugin);
        let fits = |bound: usize| move |used: usize| used.checked_add(bytes).filter(|&n| n <= bound);
        share.used.fetch_update(Relaxed, Relaxed, fits(cap)).map_err(|_| HostMemoryFull)?;
        if self.used.fetch_update(Relaxed, Relaxed, fits(self.limit)).is_err() {
            share.used.fetch_sub(bytes, Relaxed);
            return Err(HostMemoryFull);
        }
        share.used_gauge.inc_by(gauge_value(bytes));
        self.metrics.host_memory.inc_by(gauge_value(bytes));
        Ok(())
    }

    /// Gives back `bytes` charged to `plugin`.
    pub fn release(&self, plugin: &Arc<str>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let (share, _) = self.share(plugin);
        let sub = |used: usize| Some(used.saturating_sub(bytes));
        let _ = share.used.fetch_update(Relaxed, Relaxed, sub);
        let _ = self.used.fetch_update(Relaxed, Relaxed, sub);
        share.used_gauge.dec_by(gauge_value(bytes));
        self.metrics.host_memory.dec_by(gauge_value(bytes));
    }

    /// Bytes charged to `plugin` now.
    pub fn used(&self, plugin: &str) -> usize {
        self.shares.read().get(plugin).map_or(0, |s| s.used.load(Relaxed))
    }

    /// Bytes charged to all plugins now.
    pub fn total(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// The plugin's share and its bound, registering it with the default share if new.
    fn share(&self, plugin: &Arc<str>) -> (Arc<Share>, usize) {
        {
            let shares = self.shares.read();
            if let Some(s) = shares.get(plugin) {
                return (s.clone(), self.bound(s, shares.len()));
            }
        }
        self.register(plugin, None);
        let shares = self.shares.read();
        let s = shares.get(plugin).cloned().unwrap_or_else(|| Arc::new(self.new_share(plugin, None)));
        let bound = self.bound(&s, shares.len());
        (s, bound)
    }

    fn bound(&self, share: &Share, plugins: usize) -> usize {
        match share.configured.load(Relaxed) {
            DEFAULT_SHARE => self.limit / plugins.max(1),
            configured => configured,
        }
    }

    fn new_share(&self, plugin: &str, configured: Option<usize>) -> Share {
        let label = PluginLabel { plugin: plugin.to_owned() };
        Share {
            used: AtomicUsize::new(0),
            configured: AtomicUsize::new(configured.unwrap_or(DEFAULT_SHARE)),
            used_gauge: self.metrics.plugin_host_bytes.get_or_create(&label).clone(),
            limit_gauge: self.metrics.plugin_host_limit.get_or_create(&label).clone(),
        }
    }

    /// Every plugin's bound changes with the number of plugins sharing the total.
    fn publish_limits(&self, shares: &HashMap<Arc<str>, Arc<Share>>) {
        for s in shares.values() {
            s.limit_gauge.set(gauge_value(self.bound(s, shares.len())));
        }
    }
}

fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_total_and_the_total_bounds_them_all() {
        let memory = HostMemory::new(1000, Arc::default());
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        memory.register(&a, None);
        memory.register(&b, None);
        assert_eq!(memory.charge(&a, 500), Ok(()));
        assert_eq!(memory.charge(&a, 1), Err(HostMemoryFull), "a's share is half the total");
        assert_eq!(memory.charge(&b, 400), Ok(()));
        // A configured share may be larger than the default, but not pass the total.
        memory.register(&c, Some(800));
        assert_eq!(memory.charge(&c, 101), Err(HostMemoryFull), "only 100 bytes of the total are left");
        assert_eq!(memory.charge(&c, 100), Ok(()));
        memory.release(&a, 500);
        assert_eq!((memory.used("a"), memory.total()), (0, 500));
        assert_eq!(memory.charge(&c, 500), Ok(()));
        assert_eq!(memory.metrics.host_memory.get(), 1000);
        let label = PluginLabel { plugin: "c".into() };
        assert_eq!(memory.metrics.plugin_host_bytes.get_or_create(&label).get(), 600);
        assert_eq!(memory.metrics.plugin_host_limit.get_or_create(&label).get(), 800);
    }
}
