use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// A complete WebSocket data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (always valid UTF-8: the host closes peers that send anything else).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// A text message holding `value` serialised as JSON.
    ///
    /// ```
    /// let msg = wasmsock_sdk::Message::json(&serde_json::json!({"event": "pong"})).unwrap();
    /// assert_eq!(msg.as_text(), Some(r#"{"event":"pong"}"#));
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Message::Text(serde_json::to_string(value)?))
    }

    /// Parses the message (text or binary) as JSON into `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Hello { name: String }
    /// let msg = wasmsock_sdk::Message::from(r#"{"name":"ada"}"#);
    /// assert_eq!(msg.parse_json::<Hello>().unwrap().name, "ada");
    /// ```
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.as_bytes())?)
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes of either kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Message::Binary(bytes.to_vec())
    }
}
