//! The types of outbound HTTP ([`crate::http`]), apart from the calls, so the host layer
//! (`sys`) can use them without depending on the module that calls it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error as ThisError;

/// Why an HTTP request failed. Display gives a short phrase for logs and replies.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// The backend is not in the plugin's `http_allowed_hosts` (nothing was sent).
    #[error("request denied by the server's policy")]
    Denied,
    /// The plugin has `http_max_concurrent` requests in flight already.
    #[error("too many requests in flight")]
    Busy,
    /// No answer (or not all of it) within `http_timeout`.
    #[error("timed out")]
    Timeout,
    /// The backend's name does not resolve.
    #[error("DNS lookup failed")]
    Dns,
    /// Nobody accepts connections there (refused, unreachable).
    #[error("connection failed")]
    Unreachable,
    /// The TLS handshake failed (for example a certificate the server does not trust).
    #[error("TLS failed")]
    Tls,
    /// The answer's body is larger than `http_max_response`.
    #[error("answer too large")]
    TooLarge,
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A header name or value the host refuses.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The answer is not what was expected (not UTF-8 text, not the JSON asked for).
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// Anything else (a protocol error, a connection cut mid-answer).
    #[error("HTTP failed: {0}")]
    Other(String),
}

/// A request to send: method, URL, headers and body. Build it with [`Request::new`] or the
/// shortcuts ([`get`](crate::http::get), [`post`](crate::http::post),
/// [`post_json`](crate::http::post_json)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (upper case).
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty: none).
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_ascii_uppercase(), url: url.to_owned(), headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its `content-type`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Request, Error> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// The first value of a header (name matched case-insensitively).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers (names lower-case) and the whole body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, complete.
    pub body: Vec<u8>,
}

impl Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::Decode(e.to_string()))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// The parts of an `http(s)://authority/path?query` URL.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) struct Url<'a> {
    pub https: bool,
    pub authority: &'a str,
    pub path_and_query: &'a str,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn split_url(url: &str) -> Result<Url<'_>, Error> {
    let bad = |why: &str| Error::InvalidUrl(format!("{url}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host (or user info, which is not supported)"));
    }
    let path_and_query = if path.is_empty() { "/" } else { path };
    Ok(Url { https, authority, path_and_query })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        let u = split_url("https://api.example.com:8443/a/b?x=1#frag").unwrap();
        assert!(u.https);
        assert_eq!((u.authority, u.path_and_query), ("api.example.com:8443", "/a/b?x=1"));
        let u = split_url("http://h?q").unwrap();
        assert_eq!((u.authority, u.path_and_query), ("h", "?q"));
        assert_eq!(split_url("http://h").unwrap().path_and_query, "/");
        for bad in ["ftp://h/", "h/x", "http:///x", "http://u@h/"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
