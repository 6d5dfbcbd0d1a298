//! The pusher plugin: the Pusher Channels protocol (version 7, as `pusher-js` speaks it) and
//! its HTTP API, so an app written for Pusher, Soketi or Laravel Reverb moves over by changing
//! a host name.
//!
//! Serve it on a WebSocket route matching `/app/{key}` and on the HTTP route `/apps`; both are
//! the same plugin, so its rooms (one per app and channel) are shared. The host keeps the
//! connections, rooms and per-connection state; this plugin keeps nothing between calls.
//!
//! # The WebSocket protocol (`socket`)
//! - Connecting: the app is the one whose key is the path's last segment. An unknown key gets
//!   `pusher:error` 4001 and a close with 4001; `protocol` missing 4008, not a number 4006,
//!   below 7 4007 (accepted first, then refused in the protocol, so that clients see the code
//!   and do not retry). Otherwise `pusher:connection_established` with the socket id
//!   (`<digits>.<digits>`) and `activity_timeout` (the `activity_timeout` setting, 120 s).
//! - `pusher:ping` gets `pusher:pong`.
//! - `pusher:subscribe` to public, `private-`, `private-encrypted-` (same signature as
//!   private; payloads are relayed as sent, never decrypted) and `presence-` channels (signature
//!   over `socket_id:channel:channel_data`; `channel_data` is JSON with a `user_id`, a string of
//!   1-64 bytes or a number, and an optional `user_info`, at most 2 KiB in all). Answered with
//!   `pusher_internal:subscription_succeeded` (presence: `{"presence": {"ids", "hash",
//!   "count"}}`) or `pusher:subscription_error` `{"type", "error", "status"}`: `AuthError` 401
//!   (missing or bad signature or channel data), `InvalidChannel` 400 (a name outside 1-164 of
//!   `A-Z a-z 0-9 _ - = @ , . ;`, or too long for the host's `[host] max_room_name`),
//!   `LimitReached` 4100 (the app's `max_presence_members` users, the connection's
//!   `[host] max_rooms_per_connection` channels, or its `[host] max_attachment` of state) or 413
//!   (`channel_data` too large).
//! - Presence: one member per user id. `pusher_internal:member_added` goes to the others when a
//!   user's first connection joins, `member_removed` when its last one leaves (unsubscribe or
//!   close); a second connection of the same user announces nothing. Connections of one user
//!   joining or leaving at the same moment (calls run in parallel) announce the user at least
//!   once, rarely twice, and never leave a member behind.
//! - `pusher:unsubscribe`; a connection's end leaves everything, with the same announcements.
//! - `client-*` events, when the app's `client_events` is on, on `private-` and `presence-`
//!   channels the sender is subscribed to, relayed to the channel's other subscribers (with
//!   `user_id` on presence channels). Refused with `pusher:error`: 4301 (client events off,
//!   another channel kind, data over the app's `max_event_size`, 10 KiB by default), 4009 (not
//!   subscribed to the channel). The connection stays open.
//! - `pusher:signin` (user authentication: signature over `socket_id::user::user_data`,
//!   `user_data` JSON with an `id`) gets `pusher:signin_success` and puts the connection in the
//!   user's room (`channel::user_room`), which the HTTP API reaches; the `#server-to-user-<id>`
//!   subscription pusher-js then makes is answered for the signed-in user only. A bad signin
//!   gets `pusher:error` 4009.
//! - Malformed input (not JSON, no `event`, binary) gets `pusher:error` with code `null`, and
//!   the connection stays open. Other `pusher:` events are ignored; events of any other name
//!   pass on to the next plugin of the route's chain, for custom logic beside the protocol.
//!
//! Webhooks (`hooks`): `channel_occupied`, `channel_vacated`, `member_added`,
//! `member_removed`, `client_event`, signed with the app's key and secret, when the app has a
//! `webhook_url` (which the plugin's `http_allowed_hosts` must allow).
//!
//! Not supported: `pusher_internal:subscription_count` events and the `subscription_count`
//! webhook; cache channels (`cache-` names are plain public channels: no `pusher:cache_miss`);
//! watchlists (`pusher_internal:watchlist_events`); the per-connection client-event rate limit
//! (the route's own limits apply); server-sent `pusher:ping` (the host's WebSocket pings detect
//! dead peers). Presence, occupied/vacated and member counts are this node's (across nodes
//! comes with the host's cluster presence).

mod api;
mod apps;
mod channel;
mod hooks;
mod presence;
mod protocol;
mod sign;
mod socket;
mod state;
#[cfg(test)]
mod tests;

use wasmsock_sdk::{Conn, Connect, Flow, HttpRequest, HttpResponse, Message, Plugin, Request, export_plugin};

#[derive(Default)]
pub struct Pusher;

impl Plugin for Pusher {
    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        socket::connect(conn, req)
    }

    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        socket::message(conn, msg)
    }

    fn on_close(&self, conn: Conn, code: u16, reason: &str) {
        socket::close(conn, code, reason)
    }

    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        api::handle(req)
    }
}

export_plugin!(Pusher);
