//! The WebSocket side of the protocol: one client connection of an app.
//!
//! Connect: `/app/{key}?protocol=7` (the key is the path's last segment). An unknown key gets
//! `pusher:error` 4001 and a close with 4001; a missing `protocol` 4008, a non-numeric one
//! 4006, one below 7 4007 (the connection is accepted first: the protocol's way, so clients
//! see the code). Otherwise `pusher:connection_established` is queued from `on-connect` (the
//! host delivers what a plugin queues there right after the 101).
//!
//! Messages: `pusher:ping`, `pusher:subscribe`, `pusher:unsubscribe`, `pusher:signin` and
//! `client-*` events. Other `pusher:`/`pusher_internal:` events are ignored; any other event is
//! passed on to the next plugin of the route's chain (custom logic next to the protocol).
//! Malformed input gets `pusher:error` (code `null`) and the connection stays open.

use serde_json::{Value, json};
use wasmsock_sdk::{Conn, Connect, Error, Flow, Message, Request, rooms};

use crate::apps::{self, App};
use crate::channel::{self, Kind};
use crate::protocol::{self, Incoming, code, send, str_field};
use crate::state::State;
use crate::{hooks, presence, sign};

/// The largest `channel_data` of a presence subscription (the member's JSON), in bytes: the
/// member lives in the connection's attachment, which the host bounds.
pub const MAX_CHANNEL_DATA: usize = 2048;
/// The largest `user_data` of a `pusher:signin`, in bytes.
pub const MAX_USER_DATA: usize = 2048;
/// The longest user id (it is part of a host room name).
pub const MAX_USER_ID: usize = 64;

pub fn connect(conn: Conn, req: &Request) -> Connect {
    let key = req.path.rsplit('/').next().unwrap_or_default();
    let Some(app) = apps::by_key(key) else {
        refuse(conn, code::APP_NOT_FOUND, &format!("App key {} does not exist", short(key)));
        return Connect::accept();
    };
    let version = match req.query_param("protocol") {
        None => Err((code::NO_VERSION, "No protocol version supplied")),
        Some(v) => match v.parse::<u32>() {
            Err(_) => Err((code::BAD_VERSION, "Invalid version string format")),
            Ok(n) if n < protocol::PROTOCOL => Err((code::UNSUPPORTED_VERSION, "Unsupported protocol version")),
            Ok(_) => Ok(()),
        },
    };
    if let Err((c, why)) = version {
        refuse(conn, c, why);
        return Connect::accept();
    }
    if let Err(e) = State::new(&app.id).save(conn) {
        wasmsock_sdk::error!("pusher: could not keep the state of connection {}: {e}", conn.id());
        return Connect::reject(503, "cannot keep the connection's state");
    }
    send(conn, protocol::connection_established(&channel::socket_id(conn), apps::activity_timeout()));
    Connect::accept()
}

/// The protocol's refusal: `pusher:error` with `code`, then a close with the same code.
fn refuse(conn: Conn, code: u16, message: &str) {
    send(conn, protocol::error(Some(code), message));
    // A close frame's reason holds 123 bytes.
    if let Err(e) = conn.close(code, prefix(message, 123)) {
        wasmsock_sdk::debug!("pusher: could not close {}: {e}", conn.id());
    }
}

/// At most 64 bytes of peer input, for messages.
fn short(s: &str) -> &str {
    prefix(s, 64)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub fn message(conn: Conn, msg: Message) -> Flow {
    // No state: a connection this plugin refused; it is being closed.
    let Some(state) = State::load(conn) else { return Flow::Done };
    let Some(app) = apps::by_id(&state.app) else {
        // The app was removed from the configuration since (a hot reload).
        refuse(conn, code::APP_NOT_FOUND, "App does not exist any more");
        return Flow::Done;
    };
    let Some(text) = msg.as_text() else {
        send(conn, protocol::error(None, "Binary messages are not supported"));
        return Flow::Done;
    };
    let ev: Incoming = match serde_json::from_str(text) {
        Ok(ev) => ev,
        Err(_) => {
            send(conn, protocol::error(None, "Malformed message: expected a JSON object with an \"event\""));
            return Flow::Done;
        }
    };
    match ev.event.as_str() {
        "pusher:ping" => send(conn, protocol::event("pusher:pong", None, &json!({}))),
        "pusher:subscribe" => subscribe(conn, &app, state, &ev.data_object()),
        "pusher:unsubscribe" => {
            let data = ev.data_object();
            match str_field(&data, "channel") {
                Some(ch) => unsubscribe(conn, &app, state, ch),
                None => send(conn, protocol::error(None, "pusher:unsubscribe needs data.channel")),
            }
        }
        "pusher:signin" => signin(conn, &app, state, &ev.data_object()),
        e if e.starts_with("client-") => client_event(conn, &app, &state, &ev),
        e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {}
        _ => return Flow::Pass,
    }
    Flow::Done
}

pub fn close(conn: Conn, code: u16, reason: &str) {
    let _ = (code, reason);
    let Some(state) = State::load(conn) else { return };
    let Some(app) = apps::by_id(&state.app) else { return };
    // Written first, so that other connections of its users leaving at once see it gone
    // (presence::has_other_connection). The host removes the connection from its rooms after
    // this call: it is still counted there.
    let gone = State { channels: Default::default(), joined: Default::default(), ..state.clone() };
    if let Err(e) = gone.save(conn) {
        wasmsock_sdk::debug!("pusher: {} could not clear its channels: {e}", conn.id());
    }
    for (ch, member) in &state.channels {
        left(conn, &app, ch, member.as_ref(), 1);
    }
}

/// After `conn` left `channel` (or, on close, is about to: `remaining` is what the room's
/// count is when it is empty of everyone else): member_removed and vacated as due.
fn left(conn: Conn, app: &App, channel: &str, member: Option<&presence::Member>, remaining: u32) {
    let room = channel::room(app, channel);
    if let Some(m) = member
        && !presence::has_other_connection(app, channel, &m.user_id, conn)
    {
        let gone = protocol::event("pusher_internal:member_removed", Some(channel), &json!({"user_id": m.user_id}));
        if let Err(e) = rooms::publish(&room, gone, Some(conn)) {
            wasmsock_sdk::warn!("pusher: member_removed on {channel} not published: {e}");
        }
        hooks::member_removed(app, channel, &m.user_id);
    }
    if rooms::count(&room) <= remaining {
        channel::note_vacated(app, channel);
        hooks::channel_vacated(app, channel);
    }
}

fn subscribe(conn: Conn, app: &App, mut state: State, data: &Value) {
    let Some(ch) = str_field(data, "channel") else {
        send(conn, protocol::error(None, "pusher:subscribe needs data.channel"));
        return;
    };
    if let Some(user) = ch.strip_prefix(channel::USER_CHANNEL_PREFIX) {
        // pusher-js subscribes to its user's channel after signing in; what reaches it comes
        // through the user room joined at sign-in.
        match state.user.as_deref() == Some(user) {
            true => send(conn, protocol::event("pusher_internal:subscription_succeeded", Some(ch), &json!({}))),
            false => send(conn, protocol::subscription_error(ch, "AuthError", "Not signed in as this user", 401)),
        }
        return;
    }
    if !channel::valid_name(ch) {
        let why = "Invalid channel name: 1-164 characters of A-Z a-z 0-9 _ - = @ , . ;";
        send(conn, protocol::subscription_error(short(ch), "InvalidChannel", why, 400));
        return;
    }
    if state.channels.contains_key(ch) {
        // Already subscribed: say so again (with the current members on a presence channel).
        succeeded(conn, app, ch, channel::kind(ch));
        return;
    }
    let kind = channel::kind(ch);
    let socket_id = channel::socket_id(conn);
    let auth = str_field(data, "auth").unwrap_or_default();
    let member = match kind {
        Kind::Public => None,
        Kind::Private | Kind::Encrypted => {
            if !authorized(app, auth, &format!("{socket_id}:{ch}")) {
                return send(conn, protocol::subscription_error(ch, "AuthError", "Invalid signature", 401));
            }
            None
        }
        Kind::Presence => match presence_member(conn, app, ch, &socket_id, auth, data) {
            Ok(m) => Some(m),
            Err(msg) => return send(conn, msg),
        },
    };
    let room = channel::room(app, ch);
    if let Err(e) = conn.join(&room) {
        let (why, status) = match e {
            Error::LimitReached => ("Too many channels on this connection", code::OVER_CAPACITY),
            Error::InvalidArgument => ("Channel name too long for this server ([host] max_room_name)", 400),
            _ => ("Could not subscribe", 500),
        };
        wasmsock_sdk::debug!("pusher: {} could not join {room}: {e}", conn.id());
        return send(conn, protocol::subscription_error(ch, "LimitReached", why, status));
    }
    state.channels.insert(ch.to_owned(), member.clone());
    let seq = member.as_ref().map(|_| presence::next_join());
    if let Some(n) = seq {
        state.joined.insert(ch.to_owned(), n);
    }
    if let Err(e) = state.save(conn) {
        conn.leave(&room);
        wasmsock_sdk::debug!("pusher: {} could not keep channel {ch}: {e}", conn.id());
        let why = "Too much subscription state on this connection ([host] max_attachment)";
        return send(conn, protocol::subscription_error(ch, "LimitReached", why, code::OVER_CAPACITY));
    }
    // Listed for the HTTP API's `GET /channels` (the host keeps no list of rooms).
    channel::note_subscribed(app, ch);
    if rooms::count(&room) == 1 {
        hooks::channel_occupied(app, ch);
    }
    if let (Some(m), Some(seq)) = (&member, seq)
        && !presence::joined_before(app, ch, &m.user_id, conn, seq)
    {
        let added = json!({"user_id": m.user_id, "user_info": m.user_info});
        let msg = protocol::event("pusher_internal:member_added", Some(ch), &added);
        if let Err(e) = rooms::publish(&room, msg, Some(conn)) {
            wasmsock_sdk::warn!("pusher: member_added on {ch} not published: {e}");
        }
        hooks::member_added(app, ch, &m.user_id);
    }
    succeeded(conn, app, ch, kind);
}

fn succeeded(conn: Conn, app: &App, ch: &str, kind: Kind) {
    let data = match kind {
        Kind::Presence => presence::subscription_data(&presence::members_except(app, ch, None)),
        _ => json!({}),
    };
    send(conn, protocol::event("pusher_internal:subscription_succeeded", Some(ch), &data));
}

/// `auth` is `<app key>:<hex HMAC-SHA256 of message under the app's secret>`.
fn authorized(app: &App, auth: &str, message: &str) -> bool {
    let Some((key, signature)) = auth.split_once(':') else { return false };
    let expected = sign::hmac_sha256_hex(&app.secret, message);
    // Both compared in full, so the time taken does not tell which was wrong.
    sign::same(key.as_bytes(), app.key.as_bytes()) & sign::same(signature.as_bytes(), expected.as_bytes())
}

/// The member a presence subscription makes this connection, or the error to answer with.
fn presence_member(
    conn: Conn,
    app: &App,
    ch: &str,
    socket_id: &str,
    auth: &str,
    data: &Value,
) -> Result<presence::Member, Message> {
    let auth_error = |why: &str| protocol::subscription_error(ch, "AuthError", why, 401);
    let Some(channel_data) = str_field(data, "channel_data") else {
        return Err(auth_error("Presence channels need channel_data"));
    };
    if channel_data.len() > MAX_CHANNEL_DATA {
        let why = format!("channel_data is larger than {MAX_CHANNEL_DATA} bytes");
        return Err(protocol::subscription_error(ch, "LimitReached", &why, 413));
    }
    if !authorized(app, auth, &format!("{socket_id}:{ch}:{channel_data}")) {
        return Err(auth_error("Invalid signature"));
    }
    let parsed: Value = serde_json::from_str(channel_data).unwrap_or(Value::Null);
    let user_id = match parsed.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_USER_ID => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(auth_error("channel_data needs a user_id (a string of 1-64 bytes or a number)")),
    };
    let user_info = parsed.get("user_info").cloned().unwrap_or(Value::Null);
    let others = presence::members_except(app, ch, Some(conn));
    if !others.contains_key(&user_id) && others.len() >= app.max_presence_members {
        let why = format!("The channel has its maximum of {} members", app.max_presence_members);
        return Err(protocol::subscription_error(ch, "LimitReached", &why, code::OVER_CAPACITY));
    }
    Ok(presence::Member { user_id, user_info })
}

fn unsubscribe(conn: Conn, app: &App, mut state: State, ch: &str) {
    let Some(member) = state.channels.remove(ch) else { return };
    state.joined.remove(ch);
    let room = channel::room(app, ch);
    conn.leave(&room);
    if let Err(e) = state.save(conn) {
        // Smaller than what was kept before: only a vanished connection fails here.
        wasmsock_sdk::debug!("pusher: {} could not drop channel {ch}: {e}", conn.id());
    }
    left(conn, app, ch, member.as_ref(), 0);
}

/// `pusher:signin`: `auth` over `<socket_id>::user::<user_data>`, `user_data` JSON with an `id`.
fn signin(conn: Conn, app: &App, mut state: State, data: &Value) {
    let refuse = |why: &str| send(conn, protocol::error(Some(code::UNAUTHORIZED), why));
    let (Some(auth), Some(user_data)) = (str_field(data, "auth"), str_field(data, "user_data")) else {
        return refuse("pusher:signin needs auth and user_data");
    };
    if user_data.len() > MAX_USER_DATA {
        return refuse(&format!("user_data is larger than {MAX_USER_DATA} bytes"));
    }
    if !authorized(app, auth, &format!("{}::user::{user_data}", channel::socket_id(conn))) {
        return refuse("Invalid signature");
    }
    let parsed: Value = serde_json::from_str(user_data).unwrap_or(Value::Null);
    let id = match parsed.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_USER_ID => s.clone(),
        _ => return refuse("user_data needs an id (a string of 1-64 bytes)"),
    };
    if let Some(old) = state.user.take() {
        conn.leave(&channel::user_room(app, &old));
    }
    let room = channel::user_room(app, &id);
    if let Err(e) = conn.join(&room) {
        wasmsock_sdk::debug!("pusher: {} could not join {room}: {e}", conn.id());
        return refuse("Could not sign in: too many rooms on this connection");
    }
    state.user = Some(id);
    if let Err(e) = state.save(conn) {
        conn.leave(&room);
        wasmsock_sdk::debug!("pusher: {} could not keep its user: {e}", conn.id());
        return refuse("Could not sign in: too much state on this connection");
    }
    send(conn, protocol::event("pusher:signin_success", None, &json!({"user_data": user_data})));
}

/// A `client-*` event: relayed to the channel's other subscribers when the app allows client
/// events, on a private or presence channel the sender is subscribed to, within the size bound.
fn client_event(conn: Conn, app: &App, state: &State, ev: &Incoming) {
    let reject = |c: u16, why: &str| send(conn, protocol::error(Some(c), why));
    if !app.client_events {
        return reject(code::CLIENT_EVENT_REJECTED, "Client events are not enabled for this app");
    }
    let Some(ch) = ev.channel.as_deref() else {
        return reject(code::CLIENT_EVENT_REJECTED, "A client event needs a channel");
    };
    if !matches!(channel::kind(ch), Kind::Private | Kind::Presence) {
        return reject(
            code::CLIENT_EVENT_REJECTED,
            "Client events are only supported on private and presence channels",
        );
    }
    let Some(member) = state.channels.get(ch) else {
        return reject(code::UNAUTHORIZED, "The client is not a member of the specified channel");
    };
    let size = match &ev.data {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    };
    if size > app.max_event_size {
        return reject(
            code::CLIENT_EVENT_REJECTED,
            &format!("The event data should be at most {} bytes", app.max_event_size),
        );
    }
    let user_id = member.as_ref().map(|m| m.user_id.as_str());
    let mut out = json!({"event": ev.event, "channel": ch, "data": ev.data});
    if let Some(u) = user_id {
        out["user_id"] = Value::from(u);
    }
    if let Err(e) = rooms::publish(&channel::room(app, ch), Message::Text(out.to_string()), Some(conn)) {
        wasmsock_sdk::debug!("pusher: client event on {ch} not relayed: {e}");
        return reject(code::CLIENT_EVENT_REJECTED, "The event could not be relayed");
    }
    hooks::client_event(app, ch, &ev.event, &ev.data, &channel::socket_id(conn), user_id);
}
