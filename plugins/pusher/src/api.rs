//! The HTTP API (`/apps/{app_id}/...`), with Pusher's request signing: what the `pusher` server
//! SDKs call to trigger events and to ask about channels and users.
//!
//! | Method | Path                                          | Answer                                  |
//! |--------|-----------------------------------------------|-----------------------------------------|
//! | POST   | `/apps/{id}/events`                           | `{}` or `{"channels": {...}}` with info |
//! | POST   | `/apps/{id}/batch_events`                     | `{}` or `{"batch": [...]}` with info    |
//! | GET    | `/apps/{id}/channels`                         | `{"channels": {name: {attributes}}}`    |
//! | GET    | `/apps/{id}/channels/{name}`                  | `{"occupied": bool, ...}`               |
//! | GET    | `/apps/{id}/channels/{name}/users`            | `{"users": [{"id": ...}]}`              |
//! | POST   | `/apps/{id}/users/{user}/terminate_connections` | `{}`                                  |
//!
//! Every request is signed ([`auth`]); errors are plain text with Pusher's statuses (400 bad
//! input, 401 authentication, 404 unknown app or path, 405 method, 413 event data too large).

mod auth;
mod channels;
mod events;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use wasmsock_sdk::{HttpRequest, HttpResponse};

use crate::apps::{self, App};

/// Seconds a request's `auth_timestamp` may be away from the server's clock.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// A refusal: status and Pusher's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }

    pub fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(400, message)
    }
}

pub type Answer = Result<serde_json::Value, Refusal>;

pub fn handle(req: &HttpRequest) -> HttpResponse {
    // WASI's wall clock: the host's real time (a plugin cannot sleep, but it can read the time).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match handle_at(req, now) {
        Ok(v) => HttpResponse::json(200, &v),
        Err(r) => {
            if r.status == 401 {
                wasmsock_sdk::warn!(
                    "pusher: refused {} {} from {}: {}",
                    req.method,
                    req.path,
                    req.remote_addr,
                    r.message
                );
            }
            let resp = HttpResponse::text(r.status, &r.message);
            if r.status == 405 { resp.with_header("allow", allowed(req)) } else { resp }
        }
    }
}

/// The endpoints, once the path named an app and the request is authenticated.
enum Endpoint<'a> {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
    Terminate(String),
    Unknown(&'a str),
}

/// Answers `req` as at unix time `now` (seconds).
pub fn handle_at(req: &HttpRequest, now: u64) -> Answer {
    let (app, endpoint) = route(req)?;
    auth::verify(&app, req, now)?;
    let method = req.method.as_str();
    match (endpoint, method) {
        (Endpoint::Events, "POST") => events::trigger(&app, &req.body),
        (Endpoint::BatchEvents, "POST") => events::batch(&app, &req.body),
        (Endpoint::Channels, "GET") => channels::list(&app, &auth::params(&req.query)),
        (Endpoint::Channel(name), "GET") => channels::info(&app, &name, &auth::params(&req.query)),
        (Endpoint::Users(name), "GET") => channels::users(&app, &name),
        (Endpoint::Terminate(user), "POST") => channels::terminate(&app, &user),
        (Endpoint::Unknown(rest), _) => Err(Refusal::new(404, format!("Unknown API path {rest:?}"))),
        _ => Err(Refusal::new(405, format!("{method} is not allowed on {}", req.path))),
    }
}

/// The method an endpoint takes, for a 405's `allow`.
fn allowed(req: &HttpRequest) -> &'static str {
    match route(req) {
        Ok((_, Endpoint::Channels | Endpoint::Channel(_) | Endpoint::Users(_))) => "GET",
        _ => "POST",
    }
}

/// The app and the endpoint the path names: `/apps/{id}/...` (below whatever prefix the route
/// has, so the API also works on a route such as `/pusher/apps`).
fn route(req: &HttpRequest) -> Result<(App, Endpoint<'_>), Refusal> {
    let path = req.path.as_str();
    let below = match path.find("/apps/") {
        Some(at) => &path[at + "/apps/".len()..],
        None => return Err(Refusal::new(404, "Not found: the API is at /apps/{app_id}/...")),
    };
    let (id, rest) = below.split_once('/').unwrap_or((below, ""));
    let id = decode(id, false);
    let app = apps::by_id(&id).ok_or_else(|| Refusal::new(404, format!("Unknown app {id:?}")))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let endpoint = match segments.as_slice() {
        ["events"] => Endpoint::Events,
        ["batch_events"] => Endpoint::BatchEvents,
        ["channels"] => Endpoint::Channels,
        ["channels", name] if !name.is_empty() => Endpoint::Channel(decode(name, false)),
        ["channels", name, "users"] if !name.is_empty() => Endpoint::Users(decode(name, false)),
        ["users", user, "terminate_connections"] if !user.is_empty() => Endpoint::Terminate(decode(user, false)),
        _ => Endpoint::Unknown(rest),
    };
    Ok((app, endpoint))
}

/// Percent-decodes `s` (and `+` as a space in query strings); bytes that do not form UTF-8
/// become U+FFFD, malformed escapes stay as they are.
pub fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits are at most 255.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
