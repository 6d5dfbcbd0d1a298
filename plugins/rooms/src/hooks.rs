//! Optional webhooks for the application's backend, Pusher-like: `channel_occupied` when a
//! channel gets its first member, `member_added` and `member_removed` for every subscription
//! that starts or ends (per connection), `channel_vacated` when the last member leaves. On when
//! `webhook_url` is set; `webhook_secret` signs each batch (`X-Wasmsock-Signature`, hex
//! HMAC-SHA256 of the body). The host batches, sends and retries them: a subscribe never waits.
//!
//! Occupied and vacated are read from the room's member count on this node, right after the
//! join or leave: two connections joining an empty channel at the same instant may both see
//! a count of 2 and both skip `channel_occupied` (or both see 1 and both send it).

use serde_json::{Value, json};
use wasmsock_sdk::webhooks::{self, Signing};

/// Where the events go, and how they are signed, if webhooks are on.
fn target() -> Option<(String, Option<Signing>)> {
    let url = wasmsock_sdk::config("webhook_url").filter(|u| !u.is_empty())?;
    let signing = wasmsock_sdk::config("webhook_secret").filter(|s| !s.is_empty()).map(Signing::hmac_sha256);
    Some((url, signing))
}

fn emit(events: &[Value]) {
    let Some((url, signing)) = target() else { return };
    for event in events {
        // The host counts and logs refusals (queue full, host not allowed); the member's
        // subscription goes on regardless.
        if let Err(e) = webhooks::emit(&url, event, signing.as_ref()) {
            wasmsock_sdk::warn!("webhook {} not queued: {e}", event["name"]);
        }
    }
}

/// `user` joined `channel`; `first`: it was empty before.
pub(crate) fn joined(channel: &str, user: &str, first: bool) {
    let added = json!({"name": "member_added", "channel": channel, "user_id": user});
    if first {
        emit(&[json!({"name": "channel_occupied", "channel": channel}), added]);
    } else {
        emit(&[added]);
    }
}

/// `user` left `channel`; `last`: nobody is left.
pub(crate) fn left(channel: &str, user: &str, last: bool) {
    let removed = json!({"name": "member_removed", "channel": channel, "user_id": user});
    if last {
        emit(&[removed, json!({"name": "channel_vacated", "channel": channel})]);
    } else {
        emit(&[removed]);
    }
}
