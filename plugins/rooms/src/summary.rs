//! Room summaries (optional): with `summary_secs = "N"` in the plugin's config, a channel that
//! gets its first member arms timer `summary:<channel>`; when it fires, the channel's members
//! get `{"event":"summary","channel":...,"members":N}` and the timer is armed again, for as long
//! as the channel has members (an empty channel's timer lapses; the next first member re-arms
//! it). The timers are the host's: they survive a reload of the plugin.

use std::time::Duration;

use serde_json::json;
use wasmsock_sdk::{Message, rooms, timers};

const PREFIX: &str = "summary:";

/// The summary interval, if summaries are on (`summary_secs`, 1 to 86400).
fn interval() -> Option<Duration> {
    let secs: u64 = wasmsock_sdk::config("summary_secs")?.trim().parse().ok()?;
    (1..=86_400).contains(&secs).then(|| Duration::from_secs(secs))
}

/// After a subscribe: a channel's first member arms its summary.
pub(crate) fn subscribed(channel: &str) {
    if let Some(every) = interval()
        && rooms::count(channel) == 1
        && let Err(e) = timers::set(&format!("{PREFIX}{channel}"), every)
    {
        wasmsock_sdk::warn!("summary timer for {channel} refused: {e}");
    }
}

/// A timer came due: a summary to the channel's members, and the timer again while it has any.
pub(crate) fn on_timer(key: &str) {
    let Some(channel) = key.strip_prefix(PREFIX) else { return };
    let members = rooms::count(channel);
    let Some(every) = interval().filter(|_| members > 0) else { return };
    let event = json!({"event": "summary", "channel": channel, "members": members});
    if let Ok(msg) = Message::json(&event) {
        let _ = rooms::publish(channel, msg, None);
    }
    if let Err(e) = timers::set(key, every) {
        wasmsock_sdk::warn!("summary timer for {channel} refused: {e}");
    }
}
