//! Quarantine for a plugin that keeps failing: after failures on `max_failures` different
//! connections within `failure_window` it is not called for `quarantine`, and its failure
//! policy applies instead.
//!
//! Failures are counted per connection: however often one connection makes the plugin fail
//! (its own messages; the policy closes it, or bypasses the plugin for it), it counts once, so
//! one client cannot quarantine the plugin for everyone else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::clock::now_ms;
use crate::config::PluginSettings;

#[derive(Default)]
pub struct Breaker {
    /// Milliseconds of `now_ms` until which the plugin is quarantined (0: not).
    open_until: AtomicU64,
    /// Recent failures: when (`now_ms`) and on which connection, one entry per connection.
    recent: Mutex<VecDeque<(u64, u64)>>,
}

impl Breaker {
    /// True while quarantined (one atomic load on the hot path).
    pub fn is_open(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        until != 0 && now_ms() < until
    }

    /// Records a failure on connection `conn`; true if it opened the breaker.
    pub fn failure(&self, s: &PluginSettings, conn: u64) -> bool {
        if s.max_failures == 0 {
            return false;
        }
        let now = now_ms();
        let window = s.failure_window.as_millis() as u64;
        let mut recent = self.recent.lock();
        while recent.front().is_some_and(|(t, _)| now.saturating_sub(*t) > window) {
            recent.pop_front();
        }
        if !recent.iter().any(|(_, c)| *c == conn) {
            recent.push_back((now, conn));
        }
        // Bounded while quarantined too (on-close failures still arrive then).
        while recent.len() > s.max_failures as usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_needs_failures_on_several_connections() {
        let s = PluginSettings { max_failures: 3, ..PluginSettings::default() };
        let b = Breaker::default();
        for _ in 0..20 {
            assert!(!b.failure(&s, 7), "one connection failing again and again counts once");
        }
        assert!(!b.failure(&s, 8));
        assert!(!b.is_open());
        assert!(b.failure(&s, 9), "the third connection's failure opens it");
        assert!(b.is_open());
        b.reset();
        assert!(!b.is_open());
    }
}
