//! Presence channels: who is in one, one member per user id however many connections the user
//! has in it (this node's members; across nodes comes with the host's cluster presence).

use crate::apps::App;

/// A member as the protocol lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: String,
    pub user_info: serde_json::Value,
}

/// The channel's members, one per user id, in a stable order.
pub fn members(app: &App, channel: &str) -> Vec<Member> {
    let _ = (app, channel);
    Vec::new() // TODO(pusher-ws): from the room's connections' attachments
}
