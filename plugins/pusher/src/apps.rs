//! The apps this plugin serves, from its configuration:
//!
//! ```toml
//! [plugins.pusher.config]
//! apps = "demo"                                    # app ids, comma-separated
//! "demo.key" = "demo-key"
//! "demo.secret" = { env = "WASMSOCK_PUSHER_SECRET" }
//! "demo.client_events" = true                      # default false
//! "demo.max_event_size" = 10240                    # bytes of an event's data; Pusher's 10 KB
//! "demo.max_presence_members" = 100                # members of one presence channel
//! "demo.webhook_url" = "https://backend.example/pusher/webhooks"   # default: no webhooks
//! activity_timeout = 120                           # seconds, told to clients
//! ```

/// Pusher's default largest event data, in bytes.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 10 * 1024;
/// Pusher's default bound on a presence channel's members.
pub const DEFAULT_MAX_PRESENCE_MEMBERS: usize = 100;
/// Seconds of silence after which a client should ping (told in `connection_established`).
pub const DEFAULT_ACTIVITY_TIMEOUT: u32 = 120;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub client_events: bool,
    pub max_event_size: usize,
    pub max_presence_members: usize,
    pub webhook_url: Option<String>,
}

/// Every configured app; an app without a key or a secret is left out (logged).
pub fn all() -> Vec<App> {
    let ids = wasmsock_sdk::config("apps").unwrap_or_default();
    ids.split(',').map(str::trim).filter(|id| !id.is_empty()).filter_map(load).collect()
}

fn load(id: &str) -> Option<App> {
    let get = |k: &str| wasmsock_sdk::config(&format!("{id}.{k}")).filter(|v| !v.is_empty());
    let (Some(key), Some(secret)) = (get("key"), get("secret")) else {
        wasmsock_sdk::error!("pusher: app {id} needs {id}.key and {id}.secret: it is not served");
        return None;
    };
    Some(App {
        id: id.to_owned(),
        key,
        secret,
        client_events: get("client_events").is_some_and(|v| v == "true"),
        max_event_size: get("max_event_size").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_EVENT_SIZE),
        max_presence_members: get("max_presence_members")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_PRESENCE_MEMBERS),
        webhook_url: get("webhook_url"),
    })
}

/// The app whose key a client connects with (`/app/{key}`).
pub fn by_key(key: &str) -> Option<App> {
    all().into_iter().find(|a| a.key == key)
}

/// The app an HTTP API request names (`/apps/{id}/...`).
pub fn by_id(id: &str) -> Option<App> {
    all().into_iter().find(|a| a.id == id)
}

/// Seconds of silence after which clients ping.
pub fn activity_timeout() -> u32 {
    wasmsock_sdk::config("activity_timeout").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ACTIVITY_TIMEOUT)
}
