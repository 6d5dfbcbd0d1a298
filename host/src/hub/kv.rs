//! The plugin-scoped key/value store.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

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
}

pub struct Kv {
    limits: KvLimits,
    spaces: Mutex<HashMap<Arc<str>, HashMap<String, Bytes>>>,
}

impl Kv {
    pub fn new(limits: KvLimits) -> Self {
        Kv { limits, spaces: Mutex::new(HashMap::new()) }
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
        if !space.contains_key(key) && space.len() >= self.limits.max_keys {
            return Err(KvError::TooManyKeys);
        }
        space.insert(key.to_owned(), value);
        Ok(())
    }

    pub fn delete(&self, plugin: &str, key: &str) -> bool {
        let mut spaces = self.spaces.lock();
        let Some(space) = spaces.get_mut(plugin) else {
            return false;
        };
        let was = space.remove(key).is_some();
        if space.is_empty() {
            spaces.remove(plugin);
        }
        was
    }
}
