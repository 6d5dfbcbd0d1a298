//! A key/value store scoped to this plugin, kept by the host (and shared by all nodes when the
//! host is configured with a Redis-backed store). It survives plugin reloads.
//!
//! Calls of a plugin run concurrently, on several threads and on several nodes. [`get`], [`set`]
//! and [`delete`] are each atomic, but a `get` followed by a `set` is not: another call may
//! write in between, and its update is lost. [`increment`] and [`compare_and_set`] read and
//! write as one step: use them for anything several clients update (counters, votes, claims).
//!
//! | operation | on one node | with a shared store (`[broker] shared_kv`) |
//! |---|---|---|
//! | `get`, `list` | this node's store | this node's copy: other nodes' writes arrive within a Redis round trip |
//! | `set`, `delete` | atomic; last write wins | applied here at once, then in Redis and on the other nodes; last write to reach Redis wins |
//! | `increment`, `compare_and_set` | atomic | decided by Redis (a Lua script): atomic across nodes, no update lost; the call waits for Redis and fails with [`Error::Unavailable`] when it cannot be reached |
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
/// The last write wins: calls of a plugin run concurrently (several threads, several nodes), so
/// a read followed by a `set` can lose another call's update. For counters use [`increment`];
/// to change a value based on what it was, use [`compare_and_set`].
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

/// Atomically adds `delta` to the counter under `key` (an absent key counts as 0) and returns
/// the new value. No concurrent increment is lost, on one node or (with a shared store)
/// across nodes. The value is stored as decimal text, so [`get`] reads e.g. `b"42"`.
///
/// Fails with [`Error::NotANumber`] when the key holds something else or the sum overflows,
/// [`Error::InvalidArgument`] for a bad key, [`Error::LimitReached`] when a new key does not
/// fit, and [`Error::Unavailable`] when the shared store cannot be reached.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::{Error, kv};
/// assert_eq!(kv::increment("votes:yes", 1).unwrap(), 1);
/// assert_eq!(kv::increment("votes:yes", 2).unwrap(), 3);
/// assert_eq!(kv::get("votes:yes").as_deref(), Some(&b"3"[..]));
/// kv::set("name", b"ada").unwrap();
/// assert!(matches!(kv::increment("name", 1), Err(Error::NotANumber)));
/// ```
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    sys::kv_increment(key, delta)
}

/// Atomically replaces the value of `key` with `new` (`None` deletes it), only if the value is
/// `expected` (`None`: the key is absent). Returns whether it did; on `false`, read the value
/// again and decide again. With a shared store, Redis decides, so two nodes cannot both win.
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// // Claim a seat once: only the first claim succeeds.
/// assert!(kv::compare_and_set("seat:12", None, Some(b"ada")).unwrap());
/// assert!(!kv::compare_and_set("seat:12", None, Some(b"bob")).unwrap());
/// // Release it only if it is still ours.
/// assert!(kv::compare_and_set("seat:12", Some(b"ada"), None).unwrap());
/// assert_eq!(kv::get("seat:12"), None);
/// ```
pub fn compare_and_set(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, Error> {
    sys::kv_compare_and_set(key, expected, new)
}

/// A page of keys from [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Keys, in byte order.
    pub keys: Vec<String>,
    /// Pass as `after` to get the next page; `None` when this page is the last.
    pub next: Option<String>,
}

/// Up to `limit` keys starting with `prefix`, in byte order, after `after` (`None`: from the
/// first). The host returns at most 1000 per call; page with [`Page::next`].
///
/// ```
/// # let _host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::kv;
/// for option in ["red", "green", "blue"] {
///     kv::increment(&format!("votes:{option}"), 1).unwrap();
/// }
/// kv::set("motd", b"hi").unwrap();
/// let first = kv::list("votes:", None, 2);
/// assert_eq!(first.keys, ["votes:blue", "votes:green"]);
/// let rest = kv::list("votes:", first.next.as_deref(), 2);
/// assert_eq!((rest.keys, rest.next), (vec!["votes:red".to_owned()], None));
/// ```
pub fn list(prefix: &str, after: Option<&str>, limit: u32) -> Page {
    sys::kv_list(prefix, after, limit)
}
