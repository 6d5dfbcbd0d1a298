//! The auth plugin: checks a JWT at the handshake (before the upgrade) and names the
//! connection after its `sub` claim. See README.md for configuration.
//!
//! Token sources, in order: `?token=`, `Authorization: Bearer <jwt>`, or a
//! `Sec-WebSocket-Protocol` entry (`bearer.<jwt>`, or the pair `access_token, <jwt>`).

mod jwt;

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmsock_sdk::{Conn, Connect, Identity, Plugin, Request, export_plugin};

pub use jwt::{Reject, Verified, Verifier};

/// The plugin: keys and rules parsed once per instance from the host configuration.
#[derive(Default)]
pub struct Auth {
    settings: OnceLock<Settings>,
}

struct Settings {
    verifier: Verifier,
    allow_anonymous: bool,
    /// A key that was configured but could not be parsed.
    config_error: Option<String>,
}

/// Where the token came from, and what to answer as subprotocol when it was one.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    token: String,
    protocol: Option<String>,
}

impl Plugin for Auth {
    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        let s = self.settings.get_or_init(load_settings);
        let Some(found) = find_token(req) else {
            return if s.allow_anonymous { Connect::accept_as(guest(conn, req)) } else { reject(Reject::Missing) };
        };
        if let Some(err) = &s.config_error {
            wasmsock_sdk::error!("auth plugin misconfigured: {err}");
            return reject(Reject::NoKey);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match s.verifier.verify(&found.token, now) {
            Ok(v) => {
                let claims = serde_json::Value::Object(v.claims);
                let identity = Identity { id: v.sub, claims: claims.to_string() };
                let accept = Connect::accept_as(identity);
                match found.protocol {
                    Some(p) => accept.with_protocol(p),
                    None => accept,
                }
            }
            Err(Reject::NoKey) => {
                wasmsock_sdk::error!(
                    "auth plugin has no key configured (hs256_secret, rs256_public_key or es256_public_key)"
                );
                reject(Reject::NoKey)
            }
            Err(why) => {
                wasmsock_sdk::debug!("token refused: {why}");
                reject(why)
            }
        }
    }
}

export_plugin!(Auth);

fn reject(why: Reject) -> Connect {
    Connect::reject(401, why.to_string())
}

fn guest(conn: Conn, req: &Request) -> Identity {
    let name: String = req
        .query_param("name")
        .unwrap_or_default()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect();
    let id = if name.is_empty() { format!("guest-{}", conn.id()) } else { format!("guest-{name}") };
    Identity { id, claims: r#"{"anonymous":true}"#.into() }
}

fn load_settings() -> Settings {
    let cfg = wasmsock_sdk::config;
    let mut errors = Vec::new();
    let verifier = Verifier {
        hs256: cfg("hs256_secret").filter(|s| !s.is_empty()).map(String::into_bytes),
        rs256: cfg("rs256_public_key").and_then(|pem| jwt::rsa_key(&pem).map_err(|e| errors.push(e)).ok()),
        es256: cfg("es256_public_key").and_then(|pem| jwt::es256_key(&pem).map_err(|e| errors.push(e)).ok()),
        issuer: cfg("issuer").filter(|s| !s.is_empty()),
        audience: cfg("audience").filter(|s| !s.is_empty()),
        leeway: cfg("leeway_seconds").and_then(|s| s.parse().ok()).unwrap_or(30),
        require_exp: cfg("require_exp").is_none_or(|s| s != "false"),
    };
    Settings {
        verifier,
        allow_anonymous: cfg("allow_anonymous").is_some_and(|s| s == "true"),
        config_error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The token and, for the subprotocol carrier, the subprotocol to answer with.
fn find_token(req: &Request) -> Option<Found> {
    if let Some(t) = req.query_param("token").filter(|t| !t.is_empty()) {
        return Some(Found { token: t, protocol: None });
    }
    if let Some(t) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(Found { token: t.to_owned(), protocol: None });
    }
    let offered = req.protocols();
    let (token, carrier) = offered.iter().enumerate().find_map(|(i, p)| {
        if let Some(t) = p.strip_prefix("bearer.") {
            return Some((t.to_owned(), "bearer"));
        }
        (*p == "access_token").then(|| offered.get(i + 1).map(|t| (t.to_string(), "pair"))).flatten()
    })?;
    // Browsers fail the connection unless we answer one of the protocols they offered.
    let is_carrier = |p: &&str| p.starts_with("bearer.") || *p == "access_token" || **p == token;
    let protocol = offered.iter().find(|p| !is_carrier(p)).map(|p| p.to_string()).or_else(|| match carrier {
        "pair" => Some("access_token".to_owned()),
        _ => offered.iter().find(|p| p.starts_with("bearer.")).map(|p| p.to_string()),
    });
    Some(Found { token, protocol })
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
