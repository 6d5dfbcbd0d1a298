//! The plugin-scoped key/value store.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::host_memory::{ENTRY_OVERHEAD, HostMemory};

#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    pub max_key: usize,
    pub max_value: usize,
    pub max_keys: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KvError {
    InvalidKey,
    TooLarge,
    TooManyKeys,
    /// The plugin's share of the host's memory for plugins is full (see [`HostMemory`]).
    HostMemoryFull,
}

pub struct Kv {
    limits: KvLimits,
    spaces: Mutex<HashMap<Arc<str>, HashMap<String, Bytes>>>,
    memory: Arc<HostMemory>,
}

/// What an entry is charged to the plugin's share of host memory.
fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl Kv {
    pub fn new(limits: KvLimits, memory: Arc<HostMemory>) -> Self {
        Kv { limits, spaces: Mutex::new(HashMap::new()), memory }
    }

    pub fn get(&self, plugin: &str, key: &str) -> Option<Bytes> {
        self.spaces.lock().get(plugin)?.get(key).cloned()
    }

    pub fn set(&self, plugin: &Arc<str>, key: &str, value: Bytes) -> Result<(), KvError> {
        if key.is_empty() || key.len() > self.limits.max_key {
            return Err(KvError::InvalidKey);
        }
        if value.len() > self.limits.max_value {
            return Err(KvError::TooLarge);
        }
        let mut spaces = self.spaces.lock();
        let space = spaces.entry(plugin.clone()).or_default();
        self.put(space, plugin, key, value)
    }

    pub fn delete(&self, plugin: &Arc<str>, key: &str) -> bool {
        let mut spaces = self.spaces.lock();
        let Some(space) = spaces.get_mut(plugin) else {
            return false;
        };
        let was = space.remove(key);
        if let Some(v) = &was {
            self.memory.release(plugin, cost(key, v));
        }
        if space.is_empty() {
            spaces.remove(plugin);
        }
        was.is_some()
    }
}

/// Why an atomic operation was refused (nothing was changed).
#[derive(Debug, PartialEq, Eq)]
pub enum AtomicError {
    Kv(KvError),
    /// The value is not a decimal 64-bit integer, or the sum overflows.
    NotANumber,
    /// The shared store could not be reached.
    Unavailable,
}

impl From<KvError> for AtomicError {
    fn from(e: KvError) -> Self {
        AtomicError::Kv(e)
    }
}

/// One page of keys, and the key to continue after if there are more.
#[derive(Debug, PartialEq, Eq)]
pub struct KvPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// A counter's value as stored: decimal text, so plain reads see a number.
pub fn parse_counter(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The atomic operations: each reads and writes under one lock, so no update is lost between
/// the read and the write, whatever runs concurrently (calls of one plugin run on several
/// threads at once).
impl Kv {
    pub fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() || key.len() > self.limits.max_key {
            return Err(KvError::InvalidKey);
        }
        Ok(())
    }

    /// Whether the store would take a value of `len` bytes (`None`: a delete) under `key`, by
    /// size and, for a new key, by count (checked before asking a shared store).
    pub fn admits(&self, plugin: &str, key: &str, len: Option<usize>) -> Result<(), KvError> {
        self.check_key(key)?;
        let Some(len) = len else { return Ok(()) };
        if len > self.limits.max_value {
            return Err(KvError::TooLarge);
        }
        let spaces = self.spaces.lock();
        let space = spaces.get(plugin);
        if space.is_some_and(|s| !s.contains_key(key) && s.len() >= self.limits.max_keys) {
            return Err(KvError::TooManyKeys);
        }
        Ok(())
    }

    /// Adds `delta` to the counter under `key` (absent: 0); returns the new value.
    pub fn increment(&self, plugin: &Arc<str>, key: &str, delta: i64) -> Result<i64, AtomicError> {
        self.check_key(key)?;
        let mut spaces = self.spaces.lock();
        let space = spaces.entry(plugin.clone()).or_default();
        let current = match space.get(key) {
            Some(v) => parse_counter(v).ok_or(AtomicError::NotANumber)?,
            None if space.len() >= self.limits.max_keys => return Err(KvError::TooManyKeys.into()),
            None => 0,
        };
        let new = current.checked_add(delta).ok_or(AtomicError::NotANumber)?;
        self.put(space, plugin, key, Bytes::from(new.to_string()))?;
        Ok(new)
    }

    /// Replaces the value of `key` with `new` (`None`: deletes it) if it is `expected` (`None`:
    /// absent); returns whether it did.
    pub fn compare_and_set(
        &self,
        plugin: &Arc<str>,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<Bytes>,
    ) -> Result<bool, AtomicError> {
        self.check_key(key)?;
        if new.as_ref().is_some_and(|v| v.len() > self.limits.max_value) {
            return Err(KvError::TooLarge.into());
        }
        let mut spaces = self.spaces.lock();
        let current = spaces.get(plugin).and_then(|s| s.get(key));
        if current.map(|v| v.as_ref()) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => self.put(spaces.entry(plugin.clone()).or_default(), plugin, key, value)?,
            None => {
                if let Some(space) = spaces.get_mut(plugin) {
                    if let Some(v) = space.remove(key) {
                        self.memory.release(plugin, cost(key, &v));
                    }
                    if space.is_empty() {
                        spaces.remove(plugin);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Writes `value` into `space` (the caller holds the lock), charging the change to the
    /// plugin's share of host memory (`set` and the atomic operations).
    fn put(
        &self,
        space: &mut HashMap<String, Bytes>,
        plugin: &Arc<str>,
        key: &str,
        value: Bytes,
    ) -> Result<(), KvError> {
        let old = space.get(key).map(|v| cost(key, v));
        if old.is_none() && space.len() >= self.limits.max_keys {
            return Err(KvError::TooManyKeys);
        }
        let new = cost(key, &value);
        match old {
            Some(old) if old >= new => self.memory.release(plugin, old - new),
            old => self.memory.charge(plugin, new - old.unwrap_or(0)).map_err(|_| KvError::HostMemoryFull)?,
        }
        space.insert(key.to_owned(), value);
        Ok(())
    }

    /// Up to `limit` keys starting with `prefix`, in byte order, after `after`.
    pub fn list(&self, plugin: &str, prefix: &str, after: Option<&str>, limit: usize) -> KvPage {
        let mut keys: Vec<String> = {
            let spaces = self.spaces.lock();
            let Some(space) = spaces.get(plugin) else {
                return KvPage { keys: Vec::new(), next: None };
            };
            space.keys().filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a)).cloned().collect()
        };
        keys.sort_unstable();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more { keys.last().cloned() } else { None };
        KvPage { keys, next }
    }
}

#[cfg(test)]
mod atomic_tests {
    use super::*;

    fn kv() -> Kv {
        Kv::new(KvLimits { max_key: 16, max_value: 8, max_keys: 3 }, Arc::new(HostMemory::new(1 << 20, Arc::default())))
    }

    #[test]
    fn increments_from_many_threads_lose_nothing() {
        let kv = Arc::new(kv());
        let p: Arc<str> = Arc::from("votes");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (kv, p) = (kv.clone(), p.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        kv.increment(&p, "yes", 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kv.get("votes", "yes").as_deref(), Some(&b"8000"[..]), "stored as decimal text");
        assert_eq!(kv.increment(&p, "yes", -8000), Ok(0));
        kv.set(&p, "name", Bytes::from_static(b"ada")).unwrap();
        assert_eq!(kv.increment(&p, "name", 1), Err(AtomicError::NotANumber));
        kv.set(&p, "x", Bytes::from(i64::MAX.to_string()[..8].to_owned())).unwrap();
        assert_eq!(kv.increment(&p, "x", i64::MAX), Err(AtomicError::NotANumber), "overflow");
        assert_eq!(kv.increment(&p, "", 1), Err(AtomicError::Kv(KvError::InvalidKey)));
        assert_eq!(kv.increment(&p, "fourth", 1), Err(AtomicError::Kv(KvError::TooManyKeys)));
    }

    #[test]
    fn compare_and_set_swaps_only_the_expected_value() {
        let kv = kv();
        let p: Arc<str> = Arc::from("p");
        assert_eq!(kv.compare_and_set(&p, "k", None, Some(Bytes::from_static(b"a"))), Ok(true), "absent as expected");
        assert_eq!(kv.compare_and_set(&p, "k", None, Some(Bytes::from_static(b"b"))), Ok(false));
        assert_eq!(kv.compare_and_set(&p, "k", Some(b"x"), Some(Bytes::from_static(b"b"))), Ok(false));
        assert_eq!(kv.compare_and_set(&p, "k", Some(b"a"), Some(Bytes::from_static(b"b"))), Ok(true));
        assert_eq!(kv.get("p", "k").as_deref(), Some(&b"b"[..]));
        assert_eq!(kv.compare_and_set(&p, "k", Some(b"b"), None), Ok(true), "swap to absent deletes");
        assert_eq!(kv.get("p", "k"), None);
        let big = Bytes::from_static(b"123456789");
        assert_eq!(kv.compare_and_set(&p, "k", None, Some(big)), Err(AtomicError::Kv(KvError::TooLarge)));
    }

    #[test]
    fn listing_pages_through_a_prefix_in_order() {
        let kv = Kv::new(
            KvLimits { max_key: 16, max_value: 8, max_keys: 100 },
            Arc::new(HostMemory::new(1 << 20, Arc::default())),
        );
        let p: Arc<str> = Arc::from("p");
        for k in ["vote:c", "vote:a", "other", "vote:b", "vote:d"] {
            kv.set(&p, k, Bytes::from_static(b"1")).unwrap();
        }
        let first = kv.list("p", "vote:", None, 3);
        assert_eq!(first.keys, ["vote:a", "vote:b", "vote:c"]);
        assert_eq!(first.next.as_deref(), Some("vote:c"));
        let second = kv.list("p", "vote:", first.next.as_deref(), 3);
        assert_eq!((second.keys, second.next), (vec!["vote:d".to_owned()], None));
        assert_eq!(kv.list("q", "", None, 3), KvPage { keys: vec![], next: None });
    }
}
