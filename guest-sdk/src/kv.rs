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

/// The value of `key`, or `None` when it is unset.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// assert_eq!(kv::get("motd"), None);
/// kv::set("motd", b"be nice").unwrap();
/// assert_eq!(kv::get("motd").as_deref(), Some(&b"be nice"[..]));
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    sys::kv_get(key)
}

/// Sets `key` to `value` (key and value sizes and the key count are limited by the host).
///
/// Fails with [`Error::InvalidArgument`] for an empty or over-long key, [`Error::TooLarge`]
/// for an over-long value and [`Error::LimitReached`] when the store holds too many keys.
/// There is no compare-and-set: with several instances or nodes, the last write wins.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::{Error, kv};
/// kv::set("banner", b"maintenance at 18:00").unwrap();
/// assert!(matches!(kv::set("", b"x"), Err(Error::InvalidArgument)));
/// ```
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    sys::kv_set(key, value)
}

/// Deletes `key`; false if it was absent.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// kv::set("lock", b"1").unwrap();
/// assert!(kv::delete("lock"));
/// assert!(!kv::delete("lock"));
/// ```
pub fn delete(key: &str) -> bool {
    sys::kv_delete(key)
}

/// The value of `key` parsed from JSON; `Ok(None)` when it is unset, [`Error::Json`] when the
/// stored bytes are not a `T`.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// let banned: Vec<String> = kv::get_json("banned").unwrap().unwrap_or_default();
/// assert!(banned.is_empty());
/// kv::set("banned", b"not json").unwrap();
/// assert!(kv::get_json::<Vec<String>>("banned").is_err());
/// ```
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key) {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Stores `value` as JSON under `key`, replacing what was there.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// kv::set_json("banned", &["mallory"]).unwrap();
/// assert_eq!(kv::get("banned").as_deref(), Some(&br#"["mallory"]"#[..]));
/// ```
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}
