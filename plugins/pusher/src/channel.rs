//! Channels: names, kinds, the host room each one is, and socket ids.

use wasmsock_sdk::Conn;

use crate::apps::App;

/// Pusher's longest channel name.
pub const MAX_NAME: usize = 164;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Public,
    Private,
    /// `private-encrypted-`: relayed as the client and the backend encrypted it.
    Encrypted,
    Presence,
}

/// A channel name within the protocol's rules: 1-164 of `A-Z a-z 0-9 _ - = @ , . ;`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

pub fn kind(name: &str) -> Kind {
    if name.starts_with("private-encrypted-") {
        Kind::Encrypted
    } else if name.starts_with("private-") {
        Kind::Private
    } else if name.starts_with("presence-") {
        Kind::Presence
    } else {
        Kind::Public
    }
}

/// The host room of an app's channel (apps never share rooms). Needs `[host] max_room_name`
/// of at least the app id's length + 1 + 164 for the longest channel names.
pub fn room(app: &App, channel: &str) -> String {
    format!("{}:{}", app.id, channel)
}

#[allow(dead_code)] // the HTTP API's (api.rs)
/// The channel a room of `app` is, if it is one of the app's.
pub fn of_room<'a>(app: &App, room: &'a str) -> Option<&'a str> {
    room.strip_prefix(app.id.as_str())?.strip_prefix(':')
}

/// A connection's socket id, `<digits>.<digits>` as the protocol has it.
pub fn socket_id(conn: Conn) -> String {
    let id = conn.id();
    format!("{}.{}", id, id.wrapping_mul(2_654_435_761) % 1_000_000_007)
}

/// The connection a socket id names, if it is well formed (and its check part matches).
pub fn conn_of(socket_id: &str) -> Option<Conn> {
    let (id, _) = socket_id.split_once('.')?;
    let conn = Conn::from_raw(id.parse().ok()?);
    (self::socket_id(conn) == socket_id).then_some(conn)
}

/// The kv key that lists a channel of `app` for the HTTP API's channel list (`GET
/// /apps/{id}/channels`): the host has no list of rooms, so a subscribe notes its channel here
/// ([`note_subscribed`]) and the listing drops the channels it finds empty.
pub fn index_key(app: &App, channel: &str) -> String {
    format!("{}{channel}", index_prefix(app))
}

/// The prefix of every [`index_key`] of `app`.
pub fn index_prefix(app: &App) -> String {
    format!("channels:{}:", app.id)
}

/// Notes that `channel` has a subscriber (idempotent; call on every successful subscribe, so a
/// channel the listing dropped while someone was joining is listed again at the next one).
pub fn note_subscribed(app: &App, channel: &str) {
    if let Err(e) = wasmsock_sdk::kv::set(&index_key(app, channel), b"") {
        wasmsock_sdk::warn!("pusher: channel {channel} of app {} not listed: {e}", app.id);
    }
}

/// Drops `channel` from the list when its last subscriber (on this node) left, so the list
/// (and the kv keys it takes) holds the occupied channels, not every channel ever used.
pub fn note_vacated(app: &App, channel: &str) {
    wasmsock_sdk::kv::delete(&index_key(app, channel));
}

/// The prefix of the channel pusher-js subscribes to after `pusher:signin`, to get the events
/// sent to its user (`#server-to-user-<id>`).
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// The host room of every connection of `app` signed in (`pusher:signin`) as `user_id`.
/// `#` is outside channel names, so it never collides with a channel's room.
pub fn user_room(app: &App, user_id: &str) -> String {
    format!("{}#user:{}", app.id, user_id)
}
