use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Who a connection belongs to, as set by a plugin's [`Connect::accept_as`](crate::Connect::accept_as).
///
/// The claims travel as JSON text rather than a typed value because they cross plugin
/// boundaries: an auth plugin written by one team sets them, other plugins read the fields
/// they care about with [`Identity::claims_as`].
///
/// ```
/// use wasmsock_sdk::Identity;
///
/// #[derive(serde::Deserialize)]
/// struct Claims { role: String }
///
/// let who = Identity::with_claims("ada", &serde_json::json!({"role": "admin", "team": 7})).unwrap();
/// assert_eq!(who.id, "ada");
/// assert_eq!(who.claims_as::<Claims>().unwrap().role, "admin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable user id (a JWT `sub`, an account id, ...). It appears in the server's logs.
    pub id: String,
    /// Further claims as a JSON object text; `{}` when there are none.
    pub claims: String,
}

impl Identity {
    /// An identity without claims (`claims` is `{}`).
    ///
    /// ```
    /// let guest = wasmsock_sdk::Identity::new("guest-17");
    /// assert_eq!((guest.id.as_str(), guest.claims.as_str()), ("guest-17", "{}"));
    /// ```
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

    /// The claims parsed as `T`. Fails with [`Error::Json`] when they do not fit `T`, so make
    /// fields you can do without `Option` or `#[serde(default)]`.
    ///
    /// ```
    /// use wasmsock_sdk::Identity;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Claims { #[serde(default)] admin: bool }
    ///
    /// assert!(!Identity::new("guest").claims_as::<Claims>().unwrap().admin);
    /// let boss = Identity::with_claims("ada", &serde_json::json!({"admin": true})).unwrap();
    /// assert!(boss.claims_as::<Claims>().unwrap().admin);
    /// ```
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_str(if self.claims.is_empty() { "{}" } else { &self.claims })?)
    }
}

/// The HTTP upgrade request a client sent, as seen by `on_connect` before the handshake is
/// answered.
///
/// Browsers cannot set headers on a WebSocket request, which is why tokens often come in the
/// query string or as a subprotocol: [`Request::query_param`] and [`Request::protocols`] cover
/// those. `Request` implements [`Default`], so tests can fill in only what they need.
///
/// ```
/// use wasmsock_sdk::Request;
///
/// let req = Request {
///     route: "/chat".into(),
///     path: "/chat/lobby".into(),
///     query: "token=abc".into(),
///     headers: vec![("origin".into(), "https://example.com".into())],
///     ..Request::default()
/// };
/// let room = req.path.strip_prefix(&req.route).unwrap_or_default().trim_start_matches('/');
/// assert_eq!(room, "lobby");
/// assert_eq!(req.query_param("token").as_deref(), Some("abc"));
/// assert_eq!(req.header("Origin"), Some("https://example.com"));
/// ```
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
    /// The first value of header `name` (case-insensitive). Repeated headers are not joined:
    /// look through [`Request::headers`] to see them all.
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

    /// The first value of query parameter `name`, percent-decoded (`+` reads as a space). A
    /// parameter without `=` has the empty value.
    ///
    /// ```
    /// let req = wasmsock_sdk::Request { query: "room=a%20b&token=x".into(), ..Default::default() };
    /// assert_eq!(req.query_param("room").as_deref(), Some("a b"));
    /// assert_eq!(req.query_param("missing"), None);
    /// let flag = wasmsock_sdk::Request { query: "debug&x=1".into(), ..Default::default() };
    /// assert_eq!(flag.query_param("debug").as_deref(), Some(""));
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in order, whether sent
    /// as one comma-separated header or several. Answer with one via
    /// [`Connect::with_protocol`](crate::Connect::with_protocol).
    ///
    /// ```
    /// let req = wasmsock_sdk::Request {
    ///     headers: vec![
    ///         ("sec-websocket-protocol".into(), "chat.v2, chat.v1".into()),
    ///         ("sec-websocket-protocol".into(), "token.abc".into()),
    ///     ],
    ///     ..Default::default()
    /// };
    /// assert_eq!(req.protocols(), ["chat.v2", "chat.v1", "token.abc"]);
    /// ```
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
