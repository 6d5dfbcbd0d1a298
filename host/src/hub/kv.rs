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
