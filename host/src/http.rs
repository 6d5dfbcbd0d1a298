//! The HTTP/1.1 upgrade request and the responses sent before (or instead of) the upgrade.

use thiserror::Error;

/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The authority of an absolute-form target (`GET https://host/path`), which stands for
    /// the `Host` header (RFC 9112 3.2.2).
    pub authority: Option<String>,
    pub path: String,
    pub query: String,
    /// Names lower-cased, values as sent (lossily decoded).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("request headers too large")]
    TooLarge,
}

/// A request target in origin form (`/path?query`) or absolute form (`https://host/path`):
/// the authority of the latter, then the path and query. `None` for anything else.
fn split_target(target: &str) -> Option<(Option<String>, &str, &str)> {
    let (authority, rest) = if target.starts_with('/') {
        (None, target)
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !["http", "https", "ws", "wss"].iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return None;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        (Some(authority.to_owned()), rest)
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some((authority, if path.is_empty() { "/" } else { path }, query))
}

impl HttpRequest {
    /// A request with nothing in it, for answers to what could not be read as a request.
    pub fn empty() -> HttpRequest {
        HttpRequest {
            method: String::new(),
            version: 1,
            authority: None,
            path: String::new(),
            query: String::new(),
            headers: Vec::new(),
        }
    }

    /// The host the request is for: an absolute-form target's authority, else the `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.authority.as_deref().or_else(|| self.header("host"))
    }

    /// Why the request cannot be served over HTTP/1.1 (RFC 9112): `Some((status, reason))`.
    pub fn unacceptable(&self) -> Option<(u16, &'static str)> {
        if self.version != 1 {
            return Some((505, "HTTP/1.1 is required"));
        }
        match self.headers.iter().filter(|(k, _)| k == "host").count() {
            0 => Some((400, "missing Host header")),
            1 => None,
            _ => Some((400, "more than one Host header")),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// True if a comma-separated header contains `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Subprotocols offered in `Sec-WebSocket-Protocol`.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "sec-websocket-protocol")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// Parses a request from the start of `buf`: `Ok(Some((request, consumed)))` when complete,
/// `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8], max_bytes: usize) -> Result<Option<(HttpRequest, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        // The limit holds for the request however it arrived, in one read or many.
        Ok(httparse::Status::Complete(n)) if n > max_bytes => Err(HttpError::TooLarge),
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let (authority, path, query) =
                split_target(target).ok_or_else(|| HttpError::Malformed(format!("bad request target {target:?}")))?;
            let request = HttpRequest {
                method: req.method.unwrap_or("").to_owned(),
                version: req.version.unwrap_or(0),
                authority,
                path: path.to_owned(),
                query: query.to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect(),
            };
            Ok(Some((request, n)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => Err(HttpError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooLarge),
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        505 => "HTTP Version Not Supported",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response that closes the connection; `body` is sent as text/plain.
pub fn response(status: u16, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
    response_bytes(status, extra, "text/plain; charset=utf-8", body.as_bytes())
}

pub fn response_bytes(status: u16, extra: &[(&str, &str)], content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = response_head(status, extra, content_type, body.len() as u64);
    bytes.extend_from_slice(body);
    bytes
}

/// The status line and headers of a response whose body (`len` bytes) follows.
pub fn response_head(status: u16, extra: &[(&str, &str)], content_type: &str, len: u64) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
    );
    for (k, v) in extra {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The status line and headers of a response on a connection that may stay open for the next
/// request (`keep_alive`) or ends after it; the body (`len` bytes) follows. Header names and
/// values are the caller's, checked already.
pub fn keep_alive_head(status: u16, headers: &[(String, String)], len: usize, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out =
        format!("HTTP/1.1 {status} {}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n", reason_phrase(status));
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub fn switching_protocols(accept: &str, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    for (name, value) in [("Sec-WebSocket-Protocol", protocol), ("Sec-WebSocket-Extensions", extensions)] {
        if let Some(v) = value {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upgrade_request() {
        let raw = b"GET /chat?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Protocol: a, b\r\n\r\nrest";
        let (req, n) = parse(raw, 8192).unwrap().unwrap();
        assert_eq!(&raw[n..], b"rest");
        assert_eq!(req.path, "/chat");
        assert_eq!(req.query, "token=abc");
        assert!(req.has_token("connection", "upgrade"));
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn absolute_form_targets_route_on_their_path() {
        let raw = b"GET https://example.com:8443/echo?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let (req, _) = parse(raw, 8192).unwrap().unwrap();
        assert_eq!((req.path.as_str(), req.query.as_str()), ("/echo", "x=1"));
        assert_eq!(req.host(), Some("example.com:8443"));
        let (req, _) = parse(b"GET wss://h HTTP/1.1\r\nHost: h\r\n\r\n", 8192).unwrap().unwrap();
        assert_eq!(req.path, "/");
        for bad in ["*", "echo", "ftp://h/echo", "https:///echo", "https://u@h/echo"] {
            let raw = format!("GET {bad} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(matches!(parse(raw.as_bytes(), 8192), Err(HttpError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn http_1_0_and_a_missing_or_doubled_host_are_unacceptable() {
        let req = |raw: &str| parse(raw.as_bytes(), 8192).unwrap().unwrap().0;
        assert_eq!(req("GET / HTTP/1.1\r\nHost: h\r\n\r\n").unacceptable(), None);
        assert_eq!(req("GET / HTTP/1.0\r\nHost: h\r\n\r\n").unacceptable().map(|u| u.0), Some(505));
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n").unacceptable().map(|u| u.0), Some(400));
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unacceptable().map(|u| u.0), Some(400));
    }

    #[test]
    fn a_complete_request_over_the_limit_is_too_large_even_in_one_read() {
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "y".repeat(2000));
        assert_eq!(parse(big.as_bytes(), 1024).unwrap_err(), HttpError::TooLarge);
        assert!(parse(big.as_bytes(), 4096).unwrap().is_some());
    }

    #[test]
    fn partial_oversized_and_garbage() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost:", 8192).unwrap().is_none());
        assert!(matches!(parse(b"\x01\x02 / HTTP/1.1\r\n\r\n", 50), Err(HttpError::Malformed(_))));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "y".repeat(100));
        assert_eq!(parse(big.as_bytes(), 50).unwrap_err(), HttpError::TooLarge);
    }
}

/// Property tests of the request parser (bounded case counts; failures kept in
/// `host/proptest-regressions/`).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn header() -> impl Strategy<Value = (String, String)> {
        ("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}").prop_map(|(k, v)| (k, v.trim().to_owned()))
    }

    fn request() -> impl Strategy<Value = (String, String, Vec<(String, String)>)> {
        ("/[a-z0-9/._~-]{0,30}", "[a-z0-9=&]{0,20}", proptest::collection::vec(header(), 0..10))
    }

    fn text(path: &str, query: &str, headers: &[(String, String)]) -> String {
        let target = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
        let mut t = format!("GET {target} HTTP/1.1\r\n");
        for (k, v) in headers {
            t.push_str(&format!("{k}: {v}\r\n"));
        }
        t + "\r\n"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_nor_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..400), max in 16usize..300) {
            if let Ok(Some((_, n))) = parse(&bytes, max) {
                prop_assert!(n <= bytes.len() && n <= max);
            }
        }

        #[test]
        fn a_request_reads_back_as_sent_and_its_prefixes_as_partial((path, query, headers) in request()) {
            let raw = text(&path, &query, &headers);
            let (req, n) = parse(raw.as_bytes(), 1 << 16).unwrap().unwrap();
            prop_assert_eq!(n, raw.len());
            prop_assert_eq!(&req.path, &path);
            prop_assert_eq!(&req.query, &query);
            let want: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            prop_assert_eq!(&req.headers, &want);
            for cut in [1, raw.len() / 2, raw.len() - 1] {
                prop_assert!(parse(&raw.as_bytes()[..cut], 1 << 16).unwrap().is_none());
            }
        }

        #[test]
        fn the_size_limit_holds_however_the_request_arrives((path, query, headers) in request(), max in 16usize..400) {
            let raw = text(&path, &query, &headers);
            let got = parse(raw.as_bytes(), max);
            if raw.len() > max {
                prop_assert_eq!(got.unwrap_err(), HttpError::TooLarge);
            } else {
                prop_assert!(got.unwrap().is_some());
            }
        }
    }
}
