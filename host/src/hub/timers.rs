//! Timers plugins set: one-shot, keyed by plugin name and key, bounded per plugin, ordered by
//! when they come due. Held here, not in an instance, so they outlive reloads; a timer tied to
//! a connection is removed with it. One driver task (`plugin::timer_driver`) sleeps until the
//! earliest is due, takes what is due and has the plugins called.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{Metrics, PluginKindLabel, PluginLabel};

/// Why a timer was not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerError {
    /// The plugin holds as many timers as it may.
    Limit,
    /// The connection it is tied to has ended.
    Gone,
    /// The server is shutting down: timers are no longer taken.
    Stopped,
}

/// A timer that came due, taken out of the set: it fires once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub plugin: Arc<str>,
    pub key: String,
    pub conn: Option<u64>,
    /// Unique per timer set (tells fires apart, e.g. for the failure breaker).
    pub seq: u64,
}

struct Entry {
    due: Instant,
    seq: u64,
    conn: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Armed timers by plugin, then key.
    plugins: HashMap<Arc<str>, HashMap<String, Entry>>,
    /// The same timers by when they come due (the sequence number breaks ties in set order).
    queue: BTreeMap<(Instant, u64), (Arc<str>, String)>,
    /// Timers tied to each connection, so its end removes them.
    by_conn: HashMap<u64, HashSet<(Arc<str>, String)>>,
    next_seq: u64,
    /// Set at shutdown: nothing more is armed.
    stopped: bool,
}

impl State {
    /// Removes a timer from every index; its entry if it was armed.
    fn remove(&mut self, plugin: &Arc<str>, key: &str) -> Option<Entry> {
        let timers = self.plugins.get_mut(plugin)?;
        let entry = timers.remove(key)?;
        if timers.is_empty() {
            self.plugins.remove(plugin);
        }
        self.queue.remove(&(entry.due, entry.seq));
        if let Some(conn) = entry.conn
            && let Some(set) = self.by_conn.get_mut(&conn)
        {
            set.remove(&(plugin.clone(), key.to_owned()));
            if set.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        Some(entry)
    }

    fn count(&self, plugin: &str) -> usize {
        self.plugins.get(plugin).map_or(0, HashMap::len)
    }
}

pub struct Timers {
    state: Mutex<State>,
    /// Wakes the driver when a timer due before the earliest one so far is set.
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Timers {
    pub fn new(metrics: Arc<Metrics>) -> Timers {
        Timers { state: Mutex::default(), wake: Notify::new(), metrics }
    }

    /// Arms `plugin`'s timer `key` to come due at `due` (replacing one of the same key), tied
    /// to connection `conn` if given, unless the plugin holds `max` timers already.
    ///
    /// For a timer tied to a connection, call this with the connection's data locked and its
    /// `gone` flag checked: the connection's end then removes the timer after it is set, or
    /// finds it never set.
    pub fn set(
        &self,
        plugin: &Arc<str>,
        key: &str,
        due: Instant,
        conn: Option<u64>,
        max: usize,
    ) -> Result<(), TimerError> {
        let mut s = self.state.lock();
        if s.stopped {
            return Err(TimerError::Stopped);
        }
        let replaced = s.remove(plugin, key);
        if replaced.is_none() && s.count(plugin) >= max {
            drop(s);
            self.refused(plugin, "limit");
            return Err(TimerError::Limit);
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        let earliest = s.queue.first_key_value().map(|((at, _), _)| *at);
        s.queue.insert((due, seq), (plugin.clone(), key.to_owned()));
        s.plugins.entry(plugin.clone()).or_default().insert(key.to_owned(), Entry { due, seq, conn });
        if let Some(conn) = conn {
            s.by_conn.entry(conn).or_default().insert((plugin.clone(), key.to_owned()));
        }
        let active = s.count(plugin);
        drop(s);
        if earliest.is_none_or(|e| due < e) {
            self.wake.notify_one();
        }
        let label = PluginLabel { plugin: plugin.to_string() };
        self.metrics.timers.set.get_or_create(&label).inc();
        self.metrics.timers.active.get_or_create(&label).set(active as i64);
        Ok(())
    }

    /// Counts a refused timer (by reason: `limit`, `invalid`, `no_export`, ...).
    pub fn refused(&self, plugin: &str, reason: &'static str) {
        let label = PluginKindLabel { plugin: plugin.to_owned(), kind: reason };
        self.metrics.timers.refused.get_or_create(&label).inc();
    }

    /// Disarms `plugin`'s timer `key`; false if it was not armed.
    pub fn cancel(&self, plugin: &Arc<str>, key: &str) -> bool {
        let mut s = self.state.lock();
        let was = s.remove(plugin, key).is_some();
        let active = s.count(plugin);
        drop(s);
        if was {
            self.set_active(plugin, active);
        }
        was
    }

    /// Removes every timer tied to connection `conn` (it ended); how many there were.
    pub fn remove_conn(&self, conn: u64) -> usize {
        let mut s = self.state.lock();
        let Some(keys) = s.by_conn.remove(&conn) else { return 0 };
        let n = keys.len();
        let mut touched = Vec::new();
        for (plugin, key) in keys {
            s.remove(&plugin, &key);
            touched.push(plugin);
        }
        touched.sort();
        touched.dedup();
        let counts: Vec<_> = touched.into_iter().map(|p| (s.count(&p), p)).collect();
        drop(s);
        for (active, plugin) in counts {
            self.set_active(&plugin, active);
        }
        n
    }

    /// When the earliest timer comes due, if any is armed.
    pub fn next_due(&self) -> Option<Instant> {
        self.state.lock().queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Resolves when a timer earlier than the earliest one so far was set (or one permit from
    /// such a set before the call: no wake-up is lost between `next_due` and this).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Takes up to `limit` timers due at `now`, earliest first: each fires exactly once.
    pub fn take_due(&self, now: Instant, limit: usize) -> Vec<Due> {
        let mut s = self.state.lock();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some((&(at, seq), (plugin, key))) = s.queue.first_key_value() else { break };
            if at > now {
                break;
            }
            let (plugin, key) = (plugin.clone(), key.clone());
            let conn = s.remove(&plugin, &key).and_then(|e| e.conn);
            due.push(Due { plugin, key, conn, seq });
        }
        let mut counts: Vec<(Arc<str>, usize)> = Vec::new();
        for d in &due {
            if !counts.iter().any(|(p, _)| *p == d.plugin) {
                counts.push((d.plugin.clone(), s.count(&d.plugin)));
            }
        }
        drop(s);
        for (plugin, active) in counts {
            self.set_active(&plugin, active);
        }
        due
    }

    /// Timers `plugin` holds armed.
    pub fn count(&self, plugin: &str) -> usize {
        self.state.lock().count(plugin)
    }

    /// Shutdown: every pending timer is dropped, and none is armed any more. Returns how many
    /// were dropped.
    pub fn stop(&self) -> usize {
        let mut s = self.state.lock();
        s.stopped = true;
        let n = s.queue.len();
        let plugins: Vec<Arc<str>> = s.plugins.keys().cloned().collect();
        *s = State { stopped: true, ..State::default() };
        drop(s);
        for plugin in plugins {
            self.set_active(&plugin, 0);
        }
        n
    }

    fn set_active(&self, plugin: &str, active: usize) {
        self.metrics.timers.active.get_or_create(&PluginLabel { plugin: plugin.to_owned() }).set(active as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timers() -> Timers {
        Timers::new(Arc::new(Metrics::new()))
    }

    fn keys(due: &[Due]) -> Vec<&str> {
        due.iter().map(|d| d.key.as_str()).collect()
    }

    #[test]
    fn due_timers_are_taken_once_in_order_and_a_key_set_again_replaces_its_timer() {
        let t = timers();
        let p: Arc<str> = Arc::from("p");
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        t.set(&p, "b", at(20), None, 10).unwrap();
        t.set(&p, "a", at(10), Some(7), 10).unwrap();
        t.set(&p, "c", at(30), None, 10).unwrap();
        t.set(&p, "c", at(5), None, 10).unwrap(); // replaces: one "c", earlier
        assert_eq!(t.count("p"), 3);
        assert_eq!(t.next_due(), Some(at(5)));
        assert_eq!(keys(&t.take_due(at(10), 100)), ["c", "a"]);
        assert!(t.take_due(at(10), 100).is_empty(), "taken once");
        let rest = t.take_due(at(100), 100);
        assert_eq!(keys(&rest), ["b"]);
        assert_eq!((t.count("p"), t.next_due()), (0, None));
    }

    #[test]
    fn the_bound_counts_armed_timers_per_plugin_and_replacing_needs_no_room() {
        let t = timers();
        let (p, q): (Arc<str>, Arc<str>) = (Arc::from("p"), Arc::from("q"));
        let at = Instant::now() + Duration::from_secs(1);
        t.set(&p, "a", at, None, 2).unwrap();
        t.set(&p, "b", at, None, 2).unwrap();
        assert_eq!(t.set(&p, "c", at, None, 2), Err(TimerError::Limit));
        t.set(&p, "a", at, None, 2).unwrap();
        t.set(&q, "a", at, None, 2).unwrap();
        assert!(t.cancel(&p, "a"));
        assert!(!t.cancel(&p, "a"));
        t.set(&p, "c", at, None, 2).unwrap();
        assert_eq!((t.count("p"), t.count("q")), (2, 1));
    }

    #[test]
    fn a_connection_takes_its_timers_with_it() {
        let t = timers();
        let p: Arc<str> = Arc::from("p");
        let at = Instant::now();
        t.set(&p, "mine", at, Some(1), 10).unwrap();
        t.set(&p, "other", at, Some(2), 10).unwrap();
        t.set(&p, "moved", at, Some(1), 10).unwrap();
        t.set(&p, "moved", at, None, 10).unwrap(); // no longer tied to 1
        assert_eq!(t.remove_conn(1), 1);
        assert_eq!(t.remove_conn(1), 0);
        let mut left = keys(&t.take_due(at, 10)).into_iter().map(str::to_owned).collect::<Vec<_>>();
        left.sort();
        assert_eq!(left, ["moved", "other"]);
    }

    #[test]
    fn take_due_takes_at_most_its_limit_and_stop_drops_everything() {
        let t = timers();
        let p: Arc<str> = Arc::from("p");
        let at = Instant::now();
        for i in 0..5 {
            t.set(&p, &format!("k{i}"), at, None, 10).unwrap();
        }
        assert_eq!(t.take_due(at, 2).len(), 2);
        assert_eq!(t.stop(), 3);
        assert!(t.take_due(at, 10).is_empty());
        assert_eq!(t.set(&p, "late", at, None, 10), Err(TimerError::Stopped));
    }
}

#[cfg(test)]
mod hub_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::hub::{ConnShared, Hub, KvLimits, TimerError};

    fn hub_and_conn() -> (Hub, Arc<ConnShared>) {
        let settings =
            crate::Settings::from_toml("[[routes]]\npath = \"/r\"\nbuiltin = \"echo\"\n", &Default::default())
                .expect("settings");
        let hub = Hub::new(KvLimits { max_key: 64, max_value: 64, max_keys: 8 }, 1 << 20, Arc::default());
        let conn = Arc::new(ConnShared::new(
            hub.next_id(),
            Arc::new(settings.routes[0].clone()),
            "127.0.0.1:9".parse().expect("addr"),
            Default::default(),
        ));
        hub.register(conn.clone());
        (hub, conn)
    }

    #[test]
    fn a_connections_end_removes_its_timers_and_refuses_new_ones() {
        let (hub, conn) = hub_and_conn();
        let p: Arc<str> = Arc::from("p");
        let at = Instant::now() + Duration::from_secs(60);
        hub.set_timer(&p, "tied", at, Some(&conn), 10).unwrap();
        hub.set_timer(&p, "free", at, None, 10).unwrap();
        assert_eq!(hub.timers.count("p"), 2);
        hub.unregister(&conn);
        assert_eq!(hub.timers.count("p"), 1, "the connection's timer went with it");
        assert_eq!(hub.set_timer(&p, "late", at, Some(&conn), 10), Err(TimerError::Gone));
        assert_eq!(hub.timers.count("p"), 1);
    }
}
