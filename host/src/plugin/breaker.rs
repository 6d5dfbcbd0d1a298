//! Quarantine for a plugin that keeps failing: after `max_failures` failures within
//! `failure_window` it is not called for `quarantine`, and its failure policy applies instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::clock::now_ms;
use crate::config::PluginSettings;

#[derive(Default)]
pub struct Breaker {
    /// Milliseconds of `now_ms` until which the plugin is quarantined (0: not).
    open_until: AtomicU64,
    recent: Mutex<VecDeque<u64>>,
}

impl Breaker {
    /// True while quarantined (one atomic load on the hot path).
    pub fn is_open(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        until != 0 && now_ms() < until
    }

    /// Records a failure; true if it opened the breaker.
    pub fn failure(&self, s: &PluginSettings) -> bool {
        if s.max_failures == 0 {
            return false;
        }
        let now = now_ms();
        let window = s.failure_window.as_millis() as u64;
        let mut recent = self.recent.lock();
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.saturating_sub(*t) > window) {
            recent.pop_front();
        }
        if recent.len() >= s.max_failures as usize && !self.is_open() {
            recent.clear();
            self.open_until.store(now + s.quarantine.as_millis() as u64, Relaxed);
            return true;
        }
        false
    }

    /// Lifts a quarantine (a new version of the plugin was loaded).
    pub fn reset(&self) {
        self.open_until.store(0, Relaxed);
        self.recent.lock().clear();
    }

    pub fn quarantined_for_ms(&self) -> u64 {
        self.open_until.load(Relaxed).saturating_sub(now_ms())
    }
}
