//! A key/value store scoped to this plugin, kept by the host (and shared by all nodes when the
//! host is configured with a Redis-backed store). It survives plugin reloads.
//!
//! ```
//! # let _host = wasmsock_sdk::testing::TestHost::new();
//! use wasmsock_sdk::kv;
//! kv::set_json("visits", &3u32).unwrap();
//! assert_eq!(kv::get_json::<u32>("visits").unwrap(), Some(3));
//! assert!(kv::delete("visits"));
//! ```

use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, sys};

/// The value of `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    sys::kv_get(key)
}

/// Sets `key` to `value` (key and value sizes and the key count are limited by the host).
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    sys::kv_set(key, value)
}

/// Deletes `key`; false if it was absent.
pub fn delete(key: &str) -> bool {
    sys::kv_delete(key)
}

/// The value of `key` parsed from JSON.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key) {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}
