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

use crate::{Error, sys};

/// How the host signs a batch: the lower-case hex HMAC-SHA256 of the request body under a
/// secret, in a header of your choice, plus fixed headers sent with every request.
///
/// ```
/// use wasmsock_sdk::webhooks::Signing;
///
/// let s = Signing::hmac_sha256("s3cret").header("x-signature").with_header("x-app", "demo");
/// assert_eq!(s.signature_header(), "x-signature");
/// assert_eq!(s.headers(), [("x-app".to_owned(), "demo".to_owned())]);
/// assert_eq!(Signing::hmac_sha256("k").signature_header(), Signing::DEFAULT_HEADER);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    secret: String,
    header: String,
    headers: Vec<(String, String)>,
}

impl Signing {
    /// The signature's header unless [`Signing::header`] names another.
    pub const DEFAULT_HEADER: &'static str = "x-wasmsock-signature";

    /// Signs with `secret`, in [`Signing::DEFAULT_HEADER`].
    pub fn hmac_sha256(secret: impl Into<String>) -> Signing {
        Signing { secret: secret.into(), header: Self::DEFAULT_HEADER.to_owned(), headers: Vec::new() }
    }

    /// Pusher's webhook signing: `X-Pusher-Signature` under the app's secret, and `X-Pusher-Key`.
    pub fn pusher(key: &str, secret: impl Into<String>) -> Signing {
        Signing::hmac_sha256(secret).header("x-pusher-signature").with_header("x-pusher-key", key)
    }

    /// The header that carries the signature.
    pub fn header(mut self, name: &str) -> Signing {
        self.header = name.to_owned();
        self
    }

    /// A fixed header sent with every request (at most 16; `host`, `content-type` and the
    /// like are the host's own and refused).
    pub fn with_header(mut self, name: &str, value: &str) -> Signing {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &str {
        &self.header
    }

    /// The fixed headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

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
