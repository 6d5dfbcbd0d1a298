//! Outbound HTTP(S): call the application's backend from any handler, as straight-line code.
//!
//! ```
//! # let host = wasmsock_sdk::testing::TestHost::new()
//! #     .http_answer("POST", "https://api.example.com/messages", 201, "stored");
//! let reply = wasmsock_sdk::http::post("https://api.example.com/messages", b"{\"text\":\"hi\"}".to_vec())?;
//! assert_eq!(reply.status, 201);
//! assert_eq!(reply.text()?, "stored");
//! # assert_eq!(host.http_requests()[0].body, b"{\"text\":\"hi\"}");
//! # Ok::<(), wasmsock_sdk::http::Error>(())
//! ```
//!
//! The call waits for the answer without holding a server thread: the plugin's call is
//! suspended, and the server serves every other connection meanwhile. The connection the call
//! is about waits (its next message is handled after this call), so its messages stay in order.
//! Time spent waiting does not count against the plugin's CPU deadline, only against the
//! server's `http_timeout`.
//!
//! The server allows only the backends its configuration lists for the plugin
//! (`http_allowed_hosts`); anything else fails with [`Error::Denied`] and no connection is made.
//! Answers are bounded (`http_max_response`), and so are requests in flight
//! (`http_max_concurrent`). Under the SDK this is the standard `wasi:http/outgoing-handler`.

use serde::Serialize;

pub use crate::http_types::{Error, Request, Response};

impl Request {
    /// Sends the request and waits for the whole answer.
    pub fn send(self) -> Result<Response, Error> {
        crate::sys::http_send(self)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::new("GET", url).send()
}

/// `POST url` with `body`.
pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Result<Response, Error> {
    Request::new("POST", url).body(body).send()
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, Error> {
    Request::new("POST", url).json(value)?.send()
}
