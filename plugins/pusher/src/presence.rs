//! Presence channels: who is in one, one member per user id however many connections the user
//! has in it (this node's members; across nodes comes with the host's cluster presence).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmsock_sdk::{Conn, rooms};

use crate::apps::App;
use crate::channel;
use crate::state::State;

/// The most connections of one channel's room read when listing its members (the host's cap on
/// one listing).
pub const MAX_SCAN: u32 = 10_000;

/// A member as the protocol lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub user_info: serde_json::Value,
}

/// The channel's members, one per user id, in a stable order (by user id).
pub fn members(app: &App, channel: &str) -> Vec<Member> {
    members_except(app, channel, None).into_values().collect()
}

/// The channel's members by user id, leaving out connection `except` (the first connection
/// of a user found gives the user's info).
pub fn members_except(app: &App, channel: &str, except: Option<Conn>) -> BTreeMap<String, Member> {
    let mut out = BTreeMap::new();
    for conn in rooms::members(&channel::room(app, channel), MAX_SCAN) {
        if Some(conn) == except {
            continue;
        }
        if let Some(m) = State::load(conn).as_ref().and_then(|s| s.member(channel)) {
            out.entry(m.user_id.clone()).or_insert_with(|| m.clone());
        }
    }
    out
}

/// Whether a connection other than `except` is in the channel as user `user_id`.
pub fn has_other_connection(app: &App, channel: &str, user_id: &str, except: Conn) -> bool {
    rooms::members(&channel::room(app, channel), MAX_SCAN)
        .into_iter()
        .filter(|c| *c != except)
        .any(|c| State::load(c).as_ref().and_then(|s| s.member(channel)).is_some_and(|m| m.user_id == user_id))
}

/// The `presence` object of `pusher_internal:subscription_succeeded`.
pub fn subscription_data(members: &BTreeMap<String, Member>) -> serde_json::Value {
    let ids: Vec<&str> = members.keys().map(String::as_str).collect();
    let hash: serde_json::Map<String, serde_json::Value> =
        members.values().map(|m| (m.user_id.clone(), m.user_info.clone())).collect();
    serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": members.len()}})
}
