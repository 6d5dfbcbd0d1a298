//! The api plugin: the part of Centrifugo's HTTP server API that its Python client `cent` (5.x)
//! sends, so a backend written for Centrifugo publishes to wasmsock by changing its URL.
//!
//! Serve it on an HTTP route (`[[http_routes]] path = "/api"`, `plugin = "api"`) with
//! `act_as = "rooms"`: its channels are then the rooms of the `rooms` plugin, and a publish
//! reaches their subscribers as the rooms protocol's `message` event. Every request is a
//! `POST <route>/<method>` with a JSON body, authorised by the `X-API-Key` header against the
//! `api_key` setting (compared in constant time). Replies are Centrifugo's: `{"result": ...}`
//! or `{"error": {"code": ..., "message": ...}}` with status 200; 401 without the right key,
//! 400 for a body that is not the method's JSON, 404 for an unknown method.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmsock_sdk::{HttpRequest, HttpResponse, Message, Plugin, export_plugin, presence, rooms, users};

#[cfg(test)]
mod tests;

/// Members listed by `presence` (a room's first ones).
const MAX_PRESENCE: u32 = 1000;
/// Channels of one `broadcast`.
const MAX_BROADCAST: usize = 1000;
/// The close code of a `disconnect` that names none (Centrifugo's "force no reconnect").
const DISCONNECT_CODE: u16 = 3001;

/// Centrifugo's API error codes (those this plugin answers).
mod code {
    pub const INTERNAL: u32 = 100;
    pub const BAD_REQUEST: u32 = 107;
    pub const LIMIT_EXCEEDED: u32 = 106;
    pub const NOT_AVAILABLE: u32 = 108;
}

#[derive(Default)]
pub struct Api;

impl Plugin for Api {
    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        let Some(expected) = wasmsock_sdk::config("api_key").filter(|k| !k.is_empty()) else {
            wasmsock_sdk::error!("api: no api_key configured: every request is refused");
            return HttpResponse::text(503, "the API has no key configured");
        };
        let given =
            req.header("x-api-key").or_else(|| req.header("authorization").and_then(|a| a.strip_prefix("apikey ")));
        if !given.is_some_and(|g| same(g.as_bytes(), expected.as_bytes())) {
            wasmsock_sdk::warn!("api: refused a request without the right X-API-Key from {}", req.remote_addr);
            return HttpResponse::text(401, "unauthorized");
        }
        if req.method != "POST" {
            return HttpResponse::text(405, "use POST").with_header("allow", "POST");
        }
        let method = req.subpath().trim_start_matches('/');
        let body: Value = match req.json() {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return HttpResponse::text(400, "the body must be a JSON object"),
            Err(e) => return HttpResponse::text(400, &format!("malformed JSON: {e}")),
        };
        let reply = match method {
            "publish" => parse(body).map(publish),
            "broadcast" => parse(body).map(broadcast),
            "disconnect" => parse(body).map(disconnect),
            "presence" => parse(body).map(presence),
            "presence_stats" => parse(body).map(presence_stats),
            _ => return HttpResponse::text(404, &format!("unknown API method {method:?}")),
        };
        match reply {
            Ok(reply) => HttpResponse::json(200, &reply),
            Err(reason) => HttpResponse::text(400, &reason),
        }
    }
}

/// Equal bytes, compared in time that depends on their lengths only (not on where they differ).
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(!e) ^ e);
    }
    diff == 0
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
    serde_json::from_value(body).map_err(|e| format!("bad request: {e}"))
}

fn result(v: Value) -> Value {
    json!({ "result": v })
}

fn error(code: u32, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

fn host_error(e: wasmsock_sdk::Error) -> Value {
    use wasmsock_sdk::Error as E;
    match e {
        E::InvalidArgument => error(code::BAD_REQUEST, "bad request"),
        E::TooLarge | E::LimitReached | E::HostMemoryFull => error(code::LIMIT_EXCEEDED, "limit exceeded"),
        _ => error(code::INTERNAL, "internal server error"),
    }
}

#[derive(Deserialize)]
struct Publish {
    channel: String,
    data: Value,
}

/// Publishes `data` to the channel's subscribers as the rooms protocol's `message` event. A
/// channel nobody is in is a success, as with Centrifugo.
fn publish_one(channel: &str, data: &Value) -> Value {
    if channel.is_empty() {
        return error(code::BAD_REQUEST, "bad request");
    }
    let event = json!({ "event": "message", "channel": channel, "data": data });
    let msg = match Message::json(&event) {
        Ok(m) => m,
        Err(_) => return error(code::INTERNAL, "internal server error"),
    };
    match rooms::publish(channel, msg, None) {
        Ok(_) => result(json!({})),
        Err(e) => host_error(e),
    }
}

fn publish(p: Publish) -> Value {
    publish_one(&p.channel, &p.data)
}

#[derive(Deserialize)]
struct Broadcast {
    channels: Vec<String>,
    data: Value,
}

fn broadcast(b: Broadcast) -> Value {
    if b.channels.len() > MAX_BROADCAST {
        return error(code::LIMIT_EXCEEDED, "limit exceeded");
    }
    let responses: Vec<Value> = b.channels.iter().map(|c| publish_one(c, &b.data)).collect();
    result(json!({ "responses": responses }))
}

#[derive(Deserialize)]
struct Disconnect {
    user: String,
    disconnect: Option<DisconnectWith>,
}

#[derive(Deserialize)]
struct DisconnectWith {
    code: u16,
    #[serde(default)]
    reason: String,
}

/// Closes every connection of the user, on every node.
fn disconnect(d: Disconnect) -> Value {
    let (code, reason) = d.disconnect.map_or((DISCONNECT_CODE, "disconnected".to_owned()), |w| (w.code, w.reason));
    match users::close(&d.user, code, &reason) {
        Ok(_) => result(json!({})),
        Err(e) => host_error(e),
    }
}

#[derive(Deserialize)]
struct Channel {
    channel: String,
}

/// The channel's subscribers on every node: `{client id: {client, user}}`. This node's
/// connections are listed one by one (client: the connection id); the other nodes' are known
/// by identity only, so each user present only there is listed once, as client
/// `remote:<user>`. With a broker that cannot be asked (Redis down): `not available`.
fn presence(c: Channel) -> Value {
    if c.channel.is_empty() {
        return error(code::BAD_REQUEST, "bad request");
    }
    let page = presence::users(&c.channel, None, MAX_PRESENCE);
    if !page.cluster {
        return error(code::NOT_AVAILABLE, "not available");
    }
    let mut presence = serde_json::Map::new();
    let mut here = std::collections::BTreeSet::new();
    for conn in rooms::members(&c.channel, MAX_PRESENCE) {
        let client = conn.id().to_string();
        let user = conn.identity().map(|i| i.id).unwrap_or_default();
        here.insert(user.clone());
        presence.insert(client.clone(), json!({ "client": client, "user": user }));
    }
    for user in page.users.into_iter().filter(|u| !here.contains(u)) {
        let client = format!("remote:{user}");
        presence.insert(client.clone(), json!({ "client": client, "user": user }));
    }
    result(json!({ "presence": presence }))
}

/// The channel's connections and distinct users on every node; `not available` when a broker
/// cannot be asked (Redis down).
fn presence_stats(c: Channel) -> Value {
    if c.channel.is_empty() {
        return error(code::BAD_REQUEST, "bad request");
    }
    let census = presence::count(&c.channel);
    if !census.cluster {
        return error(code::NOT_AVAILABLE, "not available");
    }
    // Connections without an identity count as users of their own, as `presence` lists them.
    result(json!({ "num_clients": census.connections, "num_users": census.users + census.anonymous }))
}

export_plugin!(Api);
