use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// A complete WebSocket data message.
///
/// The host reassembles fragmented frames and answers pings itself, so a plugin only ever sees
/// whole text or binary messages. `From` conversions make building one terse: `&str` and
/// `String` become text, `Vec<u8>` and `&[u8]` binary.
///
/// ```
/// use wasmsock_sdk::Message;
///
/// let text = Message::from("hi");
/// let binary = Message::from(vec![0xde, 0xad]);
/// assert_eq!(text, Message::Text("hi".into()));
/// assert_eq!(binary, Message::Binary(vec![0xde, 0xad]));
///
/// match binary {
///     Message::Text(t) => println!("text: {t}"),
///     Message::Binary(b) => println!("{} bytes", b.len()),
/// }
/// ```
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

    /// The text, if this is a text message. Binary messages are not decoded, even when they
    /// happen to be UTF-8.
    ///
    /// ```
    /// use wasmsock_sdk::Message;
    /// assert_eq!(Message::from("hi").as_text(), Some("hi"));
    /// assert_eq!(Message::from(&b"hi"[..]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes of either kind (UTF-8 for text), for code that does not care which.
    ///
    /// ```
    /// use wasmsock_sdk::Message;
    /// assert_eq!(Message::from("hi").as_bytes(), b"hi");
    /// assert_eq!(Message::from(vec![1u8, 2]).as_bytes(), [1, 2]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Payload length in bytes (not characters), the measure the host's size limits use.
    ///
    /// ```
    /// assert_eq!(wasmsock_sdk::Message::from("héllo").len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty payload. Empty messages are legal WebSocket messages.
    ///
    /// ```
    /// use wasmsock_sdk::Message;
    /// assert!(Message::from("").is_empty());
    /// assert!(!Message::from(vec![0u8]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a text message, for example to answer in the same kind as the client wrote.
    ///
    /// ```
    /// use wasmsock_sdk::Message;
    /// assert!(Message::from("{}").is_text());
    /// assert!(!Message::from(&b"{}"[..]).is_text());
    /// ```
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

/// A text message.
impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

/// A text message (copies the text).
impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

/// A binary message.
impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

/// A binary message (copies the bytes).
impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Message::Binary(bytes.to_vec())
    }
}
