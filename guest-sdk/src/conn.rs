use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Identity, Message, sys};

/// A connection, as a cheap copyable handle. Calls on a closed connection fail with
/// [`Error::UnknownConnection`]; a plugin may address only connections of routes it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn(u64);

impl Conn {
    /// The handle for a raw connection id (as received from the host or stored earlier).
    pub const fn from_raw(id: u64) -> Self {
        Conn(id)
    }

    /// The raw connection id.
    pub const fn id(self) -> u64 {
        self.0
    }

    /// Queues a message to this connection.
    pub fn send(self, msg: impl Into<Message>) -> Result<(), Error> {
        sys::send(self.0, msg.into())
    }

    /// Queues a text message.
    pub fn send_text(self, text: &str) -> Result<(), Error> {
        self.send(Message::Text(text.to_owned()))
    }

    /// Queues `value` as a JSON text message.
    pub fn send_json<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.send(Message::json(value)?)
    }

    /// Closes the connection with `code` (1000, or an application code 3000-4999) and a reason
    /// (at most 123 bytes). Messages queued before are delivered first.
    pub fn close(self, code: u16, reason: &str) -> Result<(), Error> {
        sys::close(self.0, code, reason)
    }

    /// The identity a plugin attached at connect time.
    pub fn identity(self) -> Option<Identity> {
        sys::identity(self.0)
    }

    /// This plugin's attachment on the connection: bytes the host keeps for the plugin across
    /// calls and reloads, freed when the connection closes.
    pub fn attachment(self) -> Option<Vec<u8>> {
        sys::attachment(self.0)
    }

    /// Replaces this plugin's attachment (size-limited by the host); empty removes it.
    pub fn set_attachment(self, data: &[u8]) -> Result<(), Error> {
        sys::set_attachment(self.0, data)
    }

    /// The attachment parsed from JSON; `Ok(None)` when there is none.
    pub fn attachment_json<T: DeserializeOwned>(self) -> Result<Option<T>, Error> {
        match self.attachment() {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` as JSON in the attachment.
    pub fn set_attachment_json<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.set_attachment(&serde_json::to_vec(value)?)
    }

    /// Adds the connection to `room` (rooms are per plugin; see [`rooms`](crate::rooms)).
    pub fn join(self, room: &str) -> Result<(), Error> {
        sys::join(self.0, room)
    }

    /// Removes the connection from `room`; false if it was not a member.
    pub fn leave(self, room: &str) -> bool {
        sys::leave(self.0, room)
    }

    /// The rooms of this plugin the connection is in.
    pub fn rooms(self) -> Vec<String> {
        sys::rooms(self.0)
    }
}

impl From<Conn> for u64 {
    fn from(c: Conn) -> u64 {
        c.0
    }
}
