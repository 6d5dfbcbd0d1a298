use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Who a connection belongs to, as set by a plugin's [`Connect::accept_as`](crate::Connect::accept_as).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable user id (a JWT `sub`, an account id, ...). It appears in the server's logs.
    pub id: String,
    /// Further claims as a JSON object text; `{}` when there are none.
    pub claims: String,
}

impl Identity {
    /// An identity without claims.
    pub fn new(id: impl Into<String>) -> Self {
        Identity { id: id.into(), claims: "{}".into() }
    }

    /// An identity carrying `claims` (serialised as JSON) for later plugins of the chain.
    ///
    /// ```
    /// let who = wasmsock_sdk::Identity::with_claims("ada", &serde_json::json!({"role": "admin"})).unwrap();
    /// assert_eq!(who.claims_as::<serde_json::Value>().unwrap()["role"], "admin");
    /// ```
    pub fn with_claims<T: Serialize + ?Sized>(id: impl Into<String>, claims: &T) -> Result<Self, Error> {
        Ok(Identity { id: id.into(), claims: serde_json::to_string(claims)? })
    }

    /// The claims parsed as `T`.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_str(if self.claims.is_empty() { "{}" } else { &self.claims })?)
    }
}

/// The HTTP upgrade request a client sent, as seen by `on_connect` before the handshake is
/// answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The configured route that matched (for example `/chat`).
    pub route: String,
    /// The request path without the query string.
    pub path: String,
    /// The raw query string without the leading `?`.
    pub query: String,
    /// Request headers in the order received; names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The peer's socket address (`ip:port`).
    pub remote_addr: String,
    /// Subject of the verified TLS client certificate, when mutual TLS presented one.
    pub client_cert_subject: Option<String>,
    /// Identity set by an earlier plugin of the route's chain.
    pub identity: Option<Identity>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    ///
    /// ```
    /// let req = wasmsock_sdk::Request {
    ///     headers: vec![("authorization".into(), "Bearer abc".into())],
    ///     ..Default::default()
    /// };
    /// assert_eq!(req.header("Authorization"), Some("Bearer abc"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, percent-decoded (`+` reads as a space).
    ///
    /// ```
    /// let req = wasmsock_sdk::Request { query: "room=a%20b&token=x".into(), ..Default::default() };
    /// assert_eq!(req.query_param("room").as_deref(), Some("a b"));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in order.
    pub fn protocols(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
