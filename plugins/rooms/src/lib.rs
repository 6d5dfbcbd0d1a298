//! The rooms plugin: channels over a small JSON protocol (see README.md). Rooms, memberships
//! and fan-out are the host's; this plugin only decides who may do what and words the events.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmsock_sdk::{Conn, Flow, Message, Plugin, export_plugin, presence, rooms};

mod hooks;
mod permissions;
mod recovery;
mod summary;

use permissions::Permissions;

/// Members listed in a `subscribed` or `presence` reply.
const MAX_LISTED: u32 = 100;

#[derive(Default)]
pub struct Rooms;

/// A client request. Every request may carry an `id`, echoed in the direct reply.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Request {
    /// `since`: the last `{offset, epoch}` the client saw (see `recovery`).
    Subscribe {
        channel: String,
        since: Option<Value>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Value,
        echo: Option<bool>,
    },
    Presence {
        channel: String,
    },
    Ping,
}

impl Request {
    fn name(&self) -> &'static str {
        match self {
            Request::Subscribe { .. } => "subscribe",
            Request::Unsubscribe { .. } => "unsubscribe",
            Request::Publish { .. } => "publish",
            Request::Presence { .. } => "presence",
            Request::Ping => "ping",
        }
    }
}

/// A refusal, answered as `{"event":"error",...}` without closing the connection.
struct Refusal(String);

impl<E: std::fmt::Display> From<E> for Refusal {
    fn from(e: E) -> Self {
        Refusal(e.to_string())
    }
}

impl Plugin for Rooms {
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let (request, id) = match parse(&msg) {
            Ok(r) => r,
            Err(reason) => {
                let id = msg.parse_json::<Value>().ok().and_then(|v| v.get("id").cloned());
                reply(conn, json!({"event": "error", "reason": reason, "request": null}), id);
                return Flow::Done;
            }
        };
        let name = request.name();
        match handle(conn, request) {
            // A publish is confirmed by the message event itself; a receipt only if asked (id).
            Ok(Some(answer)) if answer["event"] == "published" && id.is_none() => {}
            Ok(Some(answer)) => reply(conn, answer, id),
            Ok(None) => {}
            Err(Refusal(reason)) => reply(conn, json!({"event": "error", "reason": reason, "request": name}), id),
        }
        Flow::Done
    }

    fn on_timer(&self, key: &str, _conn: Option<Conn>) {
        summary::on_timer(key);
    }

    fn on_close(&self, conn: Conn, _code: u16, _reason: &str) {
        // The host would drop the memberships right after; leaving here tells whether this was
        // the user's last connection in the channel on every node (one `leave` per user).
        let user = display_id(conn);
        for channel in conn.rooms() {
            let Some(change) = presence::leave(conn, &channel) else { continue };
            if presence_events() && change.announce() {
                announce(&channel, json!({"event": "leave", "channel": channel, "user": user}), None);
            }
            hooks::left(&channel, &user, rooms::count(&channel) == 0);
        }
    }
}

export_plugin!(Rooms);

fn parse(msg: &Message) -> Result<(Request, Option<Value>), String> {
    let Message::Text(text) = msg else { return Err("binary messages are not supported".into()) };
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err("a request must be a JSON object".into());
    }
    let id = value.get("id").cloned();
    let request = serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))?;
    Ok((request, id))
}

fn handle(conn: Conn, request: Request) -> Result<Option<Value>, Refusal> {
    let perms = Permissions::of(conn);
    Ok(Some(match request {
        Request::Ping => json!({"event": "pong"}),
        Request::Subscribe { channel, since } => {
            check_channel(&channel)?;
            perms.check_subscribe(&channel)?;
            let already = conn.rooms().contains(&channel);
            // Joins (recovering what the client missed, with `since` and a history) and says
            // whether the user's join is news: not for a second tab, wherever the first is.
            let (recovery, first) = recovery::join(conn, &channel, since.as_ref())?;
            if !already {
                if presence_events() && first {
                    announce(
                        &channel,
                        json!({"event": "join", "channel": channel, "user": display_id(conn)}),
                        Some(conn),
                    );
                }
                hooks::joined(&channel, &display_id(conn), rooms::count(&channel) == 1);
            }
            if !already {
                summary::subscribed(&channel);
            }
            let (members, count, cluster) = presence(&channel);
            let mut answer = json!({"event": "subscribed", "channel": channel, "members": members, "count": count});
            flag_node_only(&mut answer, cluster);
            if let Some(r) = answer.as_object_mut() {
                r.extend(recovery);
            }
            answer
        }
        Request::Unsubscribe { channel } => {
            check_channel(&channel)?;
            let Some(change) = presence::leave(conn, &channel) else {
                return Err(Refusal(format!("not subscribed to {channel}")));
            };
            if presence_events() && change.announce() {
                announce(&channel, json!({"event": "leave", "channel": channel, "user": display_id(conn)}), Some(conn));
            }
            hooks::left(&channel, &display_id(conn), rooms::count(&channel) == 0);
            json!({"event": "unsubscribed", "channel": channel})
        }
        Request::Publish { channel, data, echo } => {
            check_channel(&channel)?;
            perms.check_publish(&channel)?;
            let subscribed = conn.rooms().contains(&channel);
            if !subscribed && wasmsock_sdk::config("publish_without_subscribe").as_deref() != Some("true") {
                return Err(Refusal(format!("not subscribed to {channel}")));
            }
            let event = json!({"event": "message", "channel": channel, "data": data, "from": display_id(conn)});
            let except = if echo == Some(false) { Some(conn) } else { None };
            let (delivered, position) = recovery::publish(&channel, &event, except)?;
            let mut receipt = json!({"event": "published", "channel": channel, "delivered": delivered});
            if let Some(r) = receipt.as_object_mut() {
                r.extend(position);
            }
            receipt
        }
        Request::Presence { channel } => {
            check_channel(&channel)?;
            perms.check_subscribe(&channel)?;
            let (users, count, cluster) = presence(&channel);
            let mut answer = json!({"event": "presence", "channel": channel, "users": users, "count": count});
            flag_node_only(&mut answer, cluster);
            answer
        }
    }))
}

fn reply(conn: Conn, mut answer: Value, id: Option<Value>) {
    if let Some(id) = id {
        answer["id"] = id;
    }
    let _ = conn.send_json(&answer);
}

/// Sends `event` to everyone in `channel` but `except`.
fn announce(channel: &str, event: Value, except: Option<Conn>) {
    if let Ok(msg) = Message::json(&event) {
        let _ = rooms::publish(channel, msg, except);
    }
}

/// Member ids (up to [`MAX_LISTED`]) and the member count (connections), on every node:
/// each identity once, then this node's members without one (`conn-<id>`, known here only).
/// `false` when Redis could not be asked and these are this node's only.
fn presence(channel: &str) -> (Vec<String>, u32, bool) {
    let page = presence::users(channel, None, MAX_LISTED);
    let mut members = page.users;
    let room = rooms::members(channel, MAX_LISTED);
    let anonymous = room.into_iter().filter(|c| c.identity().is_none()).map(display_id);
    members.extend(anonymous.take((MAX_LISTED as usize).saturating_sub(members.len())));
    let census = presence::count(channel);
    (members, census.connections, page.cluster && census.cluster)
}

/// Says so in a reply when its member list and count are this node's only (Redis down).
fn flag_node_only(answer: &mut Value, cluster: bool) {
    if !cluster {
        answer["cluster"] = Value::Bool(false);
    }
}

/// Join/leave events, on by default; `presence = "false"` turns them off for large broadcast
/// channels, where every join would otherwise be a message to every member.
fn presence_events() -> bool {
    wasmsock_sdk::config("presence").as_deref() != Some("false")
}

fn display_id(conn: Conn) -> String {
    conn.identity().map_or_else(|| format!("conn-{}", conn.id()), |i| i.id)
}

fn check_channel(channel: &str) -> Result<(), Refusal> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok { Ok(()) } else { Err(Refusal("invalid channel: use 1-64 of A-Z a-z 0-9 _ . : -".into())) }
}

#[cfg(test)]
mod tests;
