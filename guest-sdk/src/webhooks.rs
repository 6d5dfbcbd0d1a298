//! Webhooks: tell the application's backend what happened (a user joined, a channel emptied)
//! without making the connection wait. [`emit`] hands the event to the host and returns at
//! once; the host batches a plugin's events per (URL, signing) into one POST with the body
//! `{"time_ms": <ms>, "events": [<event>, ...]}` (Pusher's webhook shape), retries 5xx answers,
//! failed connections and timeouts with exponential backoff, and bounds what it keeps.
//!
//! The URL must be allowed by the plugin's `http_allowed_hosts`, as for [`http`](crate::http);
//! events are kept by the host, not the plugin, so they survive a reload of the plugin.
//!
//! ```
//! use serde_json::json;
//! use wasmsock_sdk::{testing::TestHost, webhooks::{self, Signing}};
//!
//! let host = TestHost::new();
//! let url = "https://api.example.com/hooks";
//! webhooks::emit(url, &json!({"name": "member_added", "channel": "lobby", "user_id": "ada"}), None).unwrap();
//! // Signed as Pusher signs: X-Pusher-Signature = hex HMAC-SHA256(secret, body), X-Pusher-Key.
//! let pusher = Signing::pusher("app-key", "app-secret");
//! webhooks::emit(url, &json!({"name": "channel_vacated", "channel": "lobby"}), Some(&pusher)).unwrap();
//!
//! let sent = host.webhooks();
//! assert_eq!(sent.len(), 2);
//! assert_eq!(sent[0].event["user_id"], "ada");
//! assert_eq!(sent[1].signing.as_ref().unwrap().signature_header(), "x-pusher-signature");
//! ```
//!
//! Errors ([`Error`]): `NotPermitted` (the host is not in `http_allowed_hosts`), `InvalidArgument`
//! (bad URL, the event is not JSON, bad signing), `TooLarge` (larger than a batch may be),
//! `QueueFull` (the plugin's webhook queue is at its bound). Each refusal is counted by the
//! server; delivery failures happen later and are counted and logged there, not returned.

use serde::Serialize;

pub use crate::webhook_types::Signing;
use crate::{Error, sys};

/// Queues `event`, serialized as JSON, for `url`; returns at once (see the module docs).
pub fn emit(url: &str, event: &impl Serialize, signing: Option<&Signing>) -> Result<(), Error> {
    emit_json(url, &serde_json::to_string(event)?, signing)
}

/// Queues an event that is already JSON text.
///
/// ```
/// use wasmsock_sdk::{Error, testing::TestHost, webhooks};
/// let _host = TestHost::new();
/// webhooks::emit_json("https://api.example.com/hooks", r#"{"name":"ping"}"#, None).unwrap();
/// assert!(matches!(webhooks::emit_json("https://api.example.com/hooks", "{oops", None), Err(Error::InvalidArgument)));
/// ```
pub fn emit_json(url: &str, event: &str, signing: Option<&Signing>) -> Result<(), Error> {
    sys::webhook_emit(url, event, signing)
}
