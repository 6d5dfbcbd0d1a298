//! Channel permissions from the identity's claims (set by the auth plugin from a JWT):
//! `channels` limits subscribe and presence, `publish` limits publishing (else `channels` does).
//! Patterns are exact names, or prefixes ending in `*` (`"public-*"`, `"*"`).

use serde_json::Value;
use wasmsock_sdk::Conn;

use super::Refusal;

pub struct Permissions {
    channels: Option<Vec<String>>,
    publish: Option<Vec<String>>,
    /// Plugin config `require_permissions = "true"`: no claims, no access.
    strict: bool,
}

impl Permissions {
    pub fn of(conn: Conn) -> Permissions {
        let claims: Value = conn.identity().and_then(|i| serde_json::from_str(&i.claims).ok()).unwrap_or(Value::Null);
        let list = |key: &str| {
            claims
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        };
        Permissions {
            channels: list("channels"),
            publish: list("publish"),
            strict: wasmsock_sdk::config("require_permissions").as_deref() == Some("true"),
        }
    }

    pub fn check_subscribe(&self, channel: &str) -> Result<(), Refusal> {
        self.allowed(self.channels.as_deref(), channel, "subscribe to")
    }

    pub fn check_publish(&self, channel: &str) -> Result<(), Refusal> {
        self.allowed(self.publish.as_deref().or(self.channels.as_deref()), channel, "publish to")
    }

    fn allowed(&self, patterns: Option<&[String]>, channel: &str, what: &str) -> Result<(), Refusal> {
        let ok = match patterns {
            None => !self.strict,
            Some(list) => list.iter().any(|p| matches(p, channel)),
        };
        if ok { Ok(()) } else { Err(Refusal(format!("permission denied: may not {what} {channel}"))) }
    }
}

fn matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}
