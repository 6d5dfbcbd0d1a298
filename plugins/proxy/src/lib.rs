//! The connect proxy: at the handshake, before the upgrade, ask the application's backend
//! whether this client may connect and who it is (the pattern of Centrifugo's connect proxy).
//! See README.md for configuration and the backend's protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmsock_sdk::{Conn, Connect, Identity, Plugin, Request, export_plugin, http};

/// Headers forwarded when `forward_headers` is not set.
const DEFAULT_HEADERS: &str = "cookie,authorization";
/// Query parameters forwarded when `forward_query` is not set.
const DEFAULT_QUERY: &str = "token";
/// Longest reason passed on from the backend (it is the refusal's response body).
const MAX_REASON: usize = 120;

#[derive(Default)]
pub struct Proxy;

/// What the backend is sent: the credentials the configuration names, and where the client
/// connects from.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Ask {
    pub route: String,
    pub path: String,
    pub remote_addr: String,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
}

/// The backend's JSON answer (every field optional).
#[derive(Debug, Default, Deserialize)]
struct Answer {
    /// The user id the connection gets.
    user: Option<String>,
    /// Claims attached to the identity (an object).
    claims: Option<serde_json::Value>,
    /// Why the client is refused (with a 4xx status).
    reason: Option<String>,
}

impl Plugin for Proxy {
    fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
        let Some(url) = wasmsock_sdk::config("connect_url") else {
            wasmsock_sdk::error!("proxy plugin: connect_url is not configured");
            return Connect::reject(500, "connect proxy not configured");
        };
        let ask = ask(req);
        let answer = match http::post_json(&url, &ask) {
            Ok(answer) => answer,
            Err(e) => {
                wasmsock_sdk::warn!("connect proxy backend failed: {e}");
                return Connect::reject(503, "authentication backend unavailable");
            }
        };
        decide(&answer)
    }
}

export_plugin!(Proxy);

/// The request to the backend, from the handshake and the configuration.
pub fn ask(req: &Request) -> Ask {
    let list = |key: &str, default: &str| -> Vec<String> {
        wasmsock_sdk::config(key)
            .unwrap_or_else(|| default.to_owned())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let headers = list("forward_headers", DEFAULT_HEADERS)
        .into_iter()
        .filter_map(|name| req.header(&name).map(|v| (name, v.to_owned())))
        .collect();
    let query = list("forward_query", DEFAULT_QUERY)
        .into_iter()
        .filter_map(|name| req.query_param(&name).map(|v| (name, v)))
        .collect();
    Ask { route: req.route.clone(), path: req.path.clone(), remote_addr: req.remote_addr.clone(), headers, query }
}

/// The backend's answer as a handshake decision: 2xx accepts (as `user`, when given), 4xx
/// refuses with that status and the backend's reason, anything else is the backend failing.
pub fn decide(answer: &http::Response) -> Connect {
    let parsed: Answer = answer.json().unwrap_or_default();
    if answer.is_success() {
        let Some(user) = parsed.user.filter(|u| !u.is_empty()) else { return Connect::accept() };
        let claims = parsed.claims.filter(|c| c.is_object()).unwrap_or_else(|| serde_json::json!({}));
        return Connect::accept_as(Identity { id: user, claims: claims.to_string() });
    }
    if (400..500).contains(&answer.status) {
        let text = answer.text().unwrap_or_default();
        let reason = parsed.reason.unwrap_or_else(|| text.trim().to_owned());
        let reason = if reason.is_empty() { "refused".to_owned() } else { truncate(reason, MAX_REASON) };
        return Connect::reject(answer.status, reason);
    }
    wasmsock_sdk::warn!("connect proxy backend answered {}", answer.status);
    Connect::reject(503, "authentication backend unavailable")
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests;
