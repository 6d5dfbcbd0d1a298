//! Webhooks to the app's backend, signed as Pusher signs them (`X-Pusher-Key`,
//! `X-Pusher-Signature`: hex HMAC-SHA256 of the body under the app's secret). The host batches
//! them into Pusher's `{"time_ms", "events": [...]}` body, retries and bounds them.
//!
//! Events (only when the app has a `webhook_url`): `channel_occupied` / `channel_vacated` (the
//! channel's first subscriber came / its last one left, on this node), `member_added` /
//! `member_removed` (a user's first connection joined / its last one left a presence channel),
//! and `client_event` (with `socket_id`, and `user_id` on presence channels).

use serde_json::{Value, json};
use wasmsock_sdk::webhooks::{self, Signing};

use crate::apps::App;

fn emit(app: &App, event: &Value) {
    let Some(url) = app.webhook_url.as_deref() else { return };
    if let Err(e) = webhooks::emit(url, event, Some(&Signing::pusher(&app.key, app.secret.as_str()))) {
        // The server counts refusals; the connection is not at fault.
        wasmsock_sdk::warn!("pusher: app {}: webhook {} not queued: {e}", app.id, event["name"]);
    }
}

pub fn channel_occupied(app: &App, channel: &str) {
    emit(app, &json!({"name": "channel_occupied", "channel": channel}));
}

pub fn channel_vacated(app: &App, channel: &str) {
    emit(app, &json!({"name": "channel_vacated", "channel": channel}));
}

pub fn member_added(app: &App, channel: &str, user_id: &str) {
    emit(app, &json!({"name": "member_added", "channel": channel, "user_id": user_id}));
}

pub fn member_removed(app: &App, channel: &str, user_id: &str) {
    emit(app, &json!({"name": "member_removed", "channel": channel, "user_id": user_id}));
}

/// `data` as the client sent it, as a string (Pusher's webhook carries the event's data as one).
pub fn client_event(app: &App, channel: &str, event: &str, data: &Value, socket_id: &str, user_id: Option<&str>) {
    let data = match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut hook = json!({
        "name": "client_event", "channel": channel, "event": event, "data": data, "socket_id": socket_id,
    });
    if let Some(u) = user_id {
        hook["user_id"] = Value::from(u);
    }
    emit(app, &hook);
}
