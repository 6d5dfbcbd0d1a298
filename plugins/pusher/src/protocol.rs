//! The protocol's messages: what a client sends, and the events this plugin sends.
//!
//! Every message is a JSON object `{"event", "channel"?, "data"?}`. The server's own events
//! carry `data` as a JSON *string* (as Pusher sends them; pusher-js parses either), except
//! `pusher:error` and `pusher:subscription_error`, whose `data` the protocol gives as an object.

use serde::Deserialize;
use serde_json::{Value, json};
use wasmsock_sdk::{Conn, Message};

/// The protocol version this plugin speaks (and the oldest it accepts).
pub const PROTOCOL: u32 = 7;

/// Close and error codes of the protocol.
pub mod code {
    /// Unknown app key.
    pub const APP_NOT_FOUND: u16 = 4001;
    /// `protocol` is not a number.
    pub const BAD_VERSION: u16 = 4006;
    /// `protocol` below 7.
    pub const UNSUPPORTED_VERSION: u16 = 4007;
    /// No `protocol` at all.
    pub const NO_VERSION: u16 = 4008;
    /// Not authorized (bad `pusher:signin`; a client event on a channel the client is not in).
    pub const UNAUTHORIZED: u16 = 4009;
    /// Over capacity (here: a presence channel at its member bound, the connection at its channel bound).
    pub const OVER_CAPACITY: u16 = 4100;
    /// A client event refused (client events off, wrong channel kind, too large).
    pub const CLIENT_EVENT_REJECTED: u16 = 4301;
}

/// A message from a client. `data` may be an object or a JSON string holding one.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Value,
}

impl Incoming {
    /// `data` as an object, parsing it when a client sent it as a JSON string.
    pub fn data_object(&self) -> Value {
        match &self.data {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        }
    }
}

/// A string field of an object, if it is a string.
pub fn str_field<'a>(data: &'a Value, name: &str) -> Option<&'a str> {
    data.get(name).and_then(Value::as_str)
}

/// A server event whose data travels as a JSON string.
pub fn event(event: &str, channel: Option<&str>, data: &Value) -> Message {
    let mut msg = json!({"event": event, "data": data.to_string()});
    if let Some(c) = channel {
        msg["channel"] = Value::from(c);
    }
    Message::Text(msg.to_string())
}

pub fn connection_established(socket_id: &str, activity_timeout: u32) -> Message {
    event("pusher:connection_established", None, &json!({"socket_id": socket_id, "activity_timeout": activity_timeout}))
}

/// `pusher:error`; `code` is `None` for errors without one (as Pusher sends malformed input).
pub fn error(code: Option<u16>, message: &str) -> Message {
    Message::Text(json!({"event": "pusher:error", "data": {"code": code, "message": message}}).to_string())
}

pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Message {
    Message::Text(
        json!({
            "event": "pusher:subscription_error",
            "channel": channel,
            "data": {"type": kind, "error": error, "status": status},
        })
        .to_string(),
    )
}

/// Sends `msg` to `conn`; a full queue or a vanished peer drops it (the host deals with slow
/// consumers), which is logged at debug level only.
pub fn send(conn: Conn, msg: Message) {
    if let Err(e) = conn.send(msg) {
        wasmsock_sdk::debug!("pusher: could not send to {}: {e}", conn.id());
    }
}
