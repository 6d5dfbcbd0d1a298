//! Presence channels: who is in one, one member per user id however many connections the user
//! has in it (this node's members; across nodes comes with the host's cluster presence).

use std::collections::BTreeMap;

use wasmsock_sdk::{Conn, rooms};

use crate::apps::App;
use crate::channel;
use crate::state::State;

/// The most connections of one channel's room read when listing its members (the host's cap on
/// one listing).
pub const MAX_SCAN: u32 = 10_000;

pub use crate::state::Member;

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

/// Whether a connection other than `except` is in the channel as user `user_id`. Used when
/// `except` leaves, after it wrote its state without the channel: of two connections of a
/// user leaving at once, at least one then sees the other gone (the host's attachment writes
/// and reads are atomic), so the member is not left behind.
pub fn has_other_connection(app: &App, channel: &str, user_id: &str, except: Conn) -> bool {
    rooms::members(&channel::room(app, channel), MAX_SCAN)
        .into_iter()
        .filter(|c| *c != except)
        .any(|c| State::load(c).as_ref().and_then(|s| s.member(channel)).is_some_and(|m| m.user_id == user_id))
}

/// Whether another connection of user `user_id` joined the channel before the one that
/// joined as number `seq` (a state without a number joined before any with one). Of two
/// connections of a user joining at once, the first (lower number) always announces the user.
pub fn joined_before(app: &App, channel: &str, user_id: &str, conn: Conn, seq: u64) -> bool {
    rooms::members(&channel::room(app, channel), MAX_SCAN).into_iter().filter(|c| *c != conn).any(|c| {
        State::load(c).is_some_and(|s| {
            s.member(channel).is_some_and(|m| m.user_id == user_id) && s.joined.get(channel).copied().unwrap_or(0) < seq
        })
    })
}

/// The next join number (see [`joined_before`]); the largest one when the store refuses
/// (the connection then counts as the latest: announced only if it is alone).
pub fn next_join() -> u64 {
    match wasmsock_sdk::kv::increment(JOIN_COUNTER, 1) {
        Ok(n) => u64::try_from(n).unwrap_or(u64::MAX),
        Err(e) => {
            wasmsock_sdk::warn!("pusher: presence join counter: {e}");
            u64::MAX
        }
    }
}

/// The key/value key of the join counter.
const JOIN_COUNTER: &str = "presence:joins";

/// The `presence` object of `pusher_internal:subscription_succeeded`.
pub fn subscription_data(members: &BTreeMap<String, Member>) -> serde_json::Value {
    let ids: Vec<&str> = members.keys().map(String::as_str).collect();
    let hash: serde_json::Map<String, serde_json::Value> =
        members.values().map(|m| (m.user_id.clone(), m.user_info.clone())).collect();
    serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": members.len()}})
}
