//! Plain HTTP requests a plugin serves on an HTTP route (`[[http_routes]]` in the server's
//! configuration), through [`Plugin::on_request`](crate::Plugin::on_request).

/// A complete HTTP request: the body is whole (the server bounds it by the route's
/// `max_body_size` and answers 413 beyond).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ... as sent.
    pub method: String,
    /// The route prefix that matched (for example `/api`).
    pub route: String,
    /// The request path without the query string (for example `/api/publish`).
    pub path: String,
    /// The raw query string without the leading `?`.
    pub query: String,
    /// Headers, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The client's address, `ip:port`.
    pub remote_addr: String,
    /// Subject of the verified TLS client certificate, with mutual TLS.
    pub client_cert_subject: Option<String>,
}

impl HttpRequest {
    /// The first value of header `name` (give it lower-case).
    ///
    /// ```
    /// let req = wasmsock_sdk::HttpRequest { headers: vec![("x-api-key".into(), "k".into())], ..Default::default() };
    /// assert_eq!(req.header("x-api-key"), Some("k"));
    /// assert_eq!(req.header("other"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path below the route's prefix (`/publish` for `/api/publish` on `/api`; empty for
    /// the prefix itself).
    ///
    /// ```
    /// let req = wasmsock_sdk::HttpRequest { route: "/api".into(), path: "/api/publish".into(), ..Default::default() };
    /// assert_eq!(req.subpath(), "/publish");
    /// ```
    pub fn subpath(&self) -> &str {
        self.path.strip_prefix(self.route.trim_end_matches('/')).unwrap_or(&self.path)
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// The answer to an [`HttpRequest`]. The server sets `content-length` and `connection` itself
/// (and drops them if given); `content-type` defaults to `application/octet-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 200-599 (the server answers 500 for anything else).
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response.
    ///
    /// ```
    /// let r = wasmsock_sdk::HttpResponse::text(404, "no such thing");
    /// assert_eq!((r.status, r.body.as_slice()), (404, &b"no such thing"[..]));
    /// ```
    pub fn text(status: u16, text: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// An `application/json` response.
    ///
    /// ```
    /// let r = wasmsock_sdk::HttpResponse::json(200, &serde_json::json!({"ok": true}));
    /// assert_eq!(r.body, br#"{"ok":true}"#);
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}
