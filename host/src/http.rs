//! The HTTP/1.1 upgrade request and the responses sent before (or instead of) the upgrade.

use thiserror::Error;

/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
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

impl HttpRequest {
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
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let request = HttpRequest {
                method: req.method.unwrap_or("").to_owned(),
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
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
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
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    for (k, v) in extra {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
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
    fn partial_oversized_and_garbage() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost:", 8192).unwrap().is_none());
        assert!(matches!(parse(b"\x01\x02 / HTTP/1.1\r\n\r\n", 50), Err(HttpError::Malformed(_))));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "y".repeat(100));
        assert_eq!(parse(big.as_bytes(), 50).unwrap_err(), HttpError::TooLarge);
    }
}
