//! Channel queries (`GET /apps/{id}/channels[/{name}[/users]]`) and terminating a user's
//! connections. Counts are this node's (the host's room counts and presence members are).

use serde_json::{Map, Value, json};
use wasmsock_sdk::{Message, kv, rooms};

use super::auth::param;
use super::{Answer, Refusal};
use crate::apps::App;
use crate::channel::{self, Kind};
use crate::presence;

/// Channels one `GET /channels` lists at most (the kv index is read in pages of 1000).
pub const MAX_LISTED: usize = 10_000;
/// kv keys read per page of the channel index.
const PAGE: u32 = 1000;
/// Connections of one user terminated per request (on this node).
pub const MAX_TERMINATED: u32 = 10_000;
/// The protocol's "unauthorized" code: pusher-js does not reconnect on its own after it.
pub const TERMINATED_CODE: u16 = 4009;

const USER_COUNT: &str = "user_count";
const SUBSCRIPTION_COUNT: &str = "subscription_count";

/// The attributes an `info` parameter asks for (comma-separated).
pub fn info_attributes(info: &str) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::new();
    for a in info.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if a != USER_COUNT && a != SUBSCRIPTION_COUNT {
            return Err(Refusal::bad(format!("Unknown info attribute {a:?}: use user_count or subscription_count")));
        }
        if !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    }
    Ok(out)
}

/// A channel's attributes among `info`: `user_count` for presence channels (left out for
/// others, as Pusher does for a trigger's info), `subscription_count` for all.
pub fn attributes(app: &App, name: &str, info: &[String]) -> Result<Value, Refusal> {
    let mut out = Map::new();
    for a in info {
        match a.as_str() {
            USER_COUNT if channel::kind(name) == Kind::Presence => {
                out.insert(a.clone(), json!(presence::members(app, name).len()));
            }
            SUBSCRIPTION_COUNT => {
                let room = room_of(app, name).unwrap_or_else(|| channel::room(app, name));
                out.insert(a.clone(), json!(rooms::count(&room)));
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// The host room a trigger to `ch` goes to: the channel's, or for `#server-to-user-<id>` (what
/// the SDKs' `sendToUser` triggers to) the room of the user's signed-in connections. `None`
/// for a name outside the protocol's rules.
pub fn room_of(app: &App, ch: &str) -> Option<String> {
    match ch.strip_prefix(channel::USER_CHANNEL_PREFIX) {
        Some(user) if !user.is_empty() && user.len() <= crate::socket::MAX_USER_ID => {
            Some(channel::user_room(app, user))
        }
        Some(_) => None,
        None => channel::valid_name(ch).then(|| channel::room(app, ch)),
    }
}

fn valid(name: &str) -> Result<(), Refusal> {
    if channel::valid_name(name) { Ok(()) } else { Err(Refusal::bad(format!("Invalid channel name {name:?}"))) }
}

/// `GET /channels`: the occupied channels, optionally those starting with `filter_by_prefix`;
/// `info=user_count` only with `filter_by_prefix=presence-`, as Pusher has it.
pub fn list(app: &App, params: &[(String, String)]) -> Answer {
    let prefix = param(params, "filter_by_prefix").unwrap_or_default();
    let info = info_attributes(param(params, "info").unwrap_or_default())?;
    if info.iter().any(|a| a == USER_COUNT) && !prefix.starts_with("presence-") {
        return Err(Refusal::bad(
            "user_count may only be requested for presence channels: add filter_by_prefix=presence-",
        ));
    }
    let index = channel::index_prefix(app);
    let mut channels = Map::new();
    let mut after: Option<String> = None;
    'pages: loop {
        let page = kv::list(&format!("{index}{prefix}"), after.as_deref(), PAGE);
        for key in &page.keys {
            let Some(name) = key.strip_prefix(index.as_str()) else { continue };
            if rooms::count(&channel::room(app, name)) == 0 {
                // Vacated since it was noted: forget it (a later subscribe notes it again).
                kv::delete(key);
                continue;
            }
            channels.insert(name.to_owned(), attributes(app, name, &info)?);
            if channels.len() >= MAX_LISTED {
                break 'pages;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(json!({ "channels": channels }))
}

/// `GET /channels/{name}`: occupied, and the attributes asked for; `user_count` on a channel
/// other than presence is a 400.
pub fn info(app: &App, name: &str, params: &[(String, String)]) -> Answer {
    valid(name)?;
    let info = info_attributes(param(params, "info").unwrap_or_default())?;
    if info.iter().any(|a| a == USER_COUNT) && channel::kind(name) != Kind::Presence {
        return Err(Refusal::bad(format!("user_count is only available for presence channels, not {name:?}")));
    }
    let mut out = match attributes(app, name, &info)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert("occupied".into(), json!(rooms::count(&channel::room(app, name)) > 0));
    Ok(Value::Object(out))
}

/// `GET /channels/{name}/users`: the user ids of a presence channel.
pub fn users(app: &App, name: &str) -> Answer {
    valid(name)?;
    if channel::kind(name) != Kind::Presence {
        return Err(Refusal::bad(format!("Users can only be listed for presence channels, not {name:?}")));
    }
    let users: Vec<Value> = presence::members(app, name).into_iter().map(|m| json!({ "id": m.user_id })).collect();
    Ok(json!({ "users": users }))
}

/// `POST /users/{user}/terminate_connections`: every connection signed in as the user (on this
/// node) gets the protocol's error 4009 and is closed with it.
pub fn terminate(app: &App, user: &str) -> Answer {
    let error = json!({
        "event": "pusher:error",
        "data": { "code": TERMINATED_CODE, "message": "Connection terminated by the app" },
    });
    for conn in rooms::members(&channel::user_room(app, user), MAX_TERMINATED) {
        // A connection already closing takes neither: nothing more to do for it.
        let _ = conn.send(Message::Text(error.to_string()));
        let _ = conn.close(TERMINATED_CODE, "terminated by the app");
    }
    Ok(json!({}))
}
