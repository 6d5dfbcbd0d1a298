//! History: the last publishes of a room, kept by the host, so a client that comes back gets
//! what it missed (or learns that it cannot).
//!
//! Only rooms a `[[history]]` rule of the server's configuration names have a history; the
//! calls return [`Error::NotPermitted`] for the others. Every publish through [`publish`] gets
//! a [`Position`]: an offset (+1 per publish in the room) and an epoch, which changes whenever
//! the room's history is lost (the server restarted, say). A client remembers the position of
//! the last message it saw and, when it comes back, asks to [`join`] after it: the host joins
//! it and queues it the publishes it missed, in order, atomically with respect to new
//! publishes (no gap, no duplicate), or says `recovered: false`.
//!
//! The offset belongs *inside* the message members receive, so the message is a template: the
//! host replaces [`OFFSET`] with the decimal offset and [`EPOCH`] with the epoch.
//! [`publish_json`] does it for a JSON object.
//!
//! ```
//! use wasmsock_sdk::{history, testing::TestHost, Message};
//! let host = TestHost::new().history("orders*", 100);
//! let (a, b) = (host.open("/chat"), host.open("/chat"));
//! history::join(a, "orders", None).unwrap();
//! let p = history::publish_json("orders", &serde_json::json!({"n": 1}), None).unwrap();
//! assert_eq!(p.position.offset, 1);
//! assert_eq!(host.sent(a), vec![Message::from(format!(r#"{{"n":1,"offset":1,"epoch":"{}"}}"#, p.position.epoch))]);
//! history::publish_json("orders", &serde_json::json!({"n": 2}), None).unwrap();
//! // b comes back having seen offset 1: it gets offset 2, then everything live.
//! let r = history::join(b, "orders", Some(&p.position)).unwrap();
//! assert!(r.recovered);
//! assert_eq!(r.replayed, 1);
//! assert_eq!(r.top.offset, 2);
//! assert!(host.sent(b)[0].as_text().unwrap().contains(r#""n":2"#));
//! ```

use serde::{Deserialize, Serialize};

use crate::{Conn, Error, Message, sys};

/// In a text message given to [`publish`], replaced by the publish's offset (decimal).
pub const OFFSET: &str = "\u{1}o";
/// In a text message given to [`publish`], replaced by the room's epoch (letters and digits).
pub const EPOCH: &str = "\u{1}e";

/// A place in a room's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The offset of a publish (1 for the first of the epoch; 0: before any).
    pub offset: u64,
    /// The epoch the offset belongs to.
    pub epoch: String,
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Members on this node it was queued to.
    pub queued: u32,
    /// Its position.
    pub position: Position,
}

/// A publish kept in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its offset.
    pub offset: u64,
    /// The message as members received it.
    pub msg: Message,
}

/// A page of [`read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The entries start right after the position asked for, in the current epoch.
    pub complete: bool,
    /// More entries follow (read again after the last one).
    pub more: bool,
    /// The room's current position.
    pub top: Position,
}

/// What [`join`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Every publish after the position asked for was queued to the connection.
    pub recovered: bool,
    /// How many were.
    pub replayed: u32,
    /// The room's position when the connection joined.
    pub top: Position,
}

/// Publishes `msg` to `room` like [`rooms::publish`](crate::rooms::publish) (same send budget,
/// same errors) and keeps it in the room's history. In a text message, [`OFFSET`] and
/// [`EPOCH`] are replaced by the publish's position; a binary message is sent as it is.
/// Members receive a room's publishes in offset order.
///
/// [`Error::NotPermitted`]: no `[[history]]` rule names the room (publish with
/// [`rooms::publish`](crate::rooms::publish) instead); [`Error::TooLarge`]: larger than the
/// rule's `max_bytes`; [`Error::HostMemoryFull`]: the server's history memory is full and the
/// room has none yet.
///
/// ```
/// use wasmsock_sdk::{Error, Message, history, testing::TestHost};
/// let host = TestHost::new().history("news", 10);
/// let conn = host.open("/chat");
/// conn.join("news").unwrap();
/// let text = format!("#{} of {}", history::OFFSET, history::EPOCH);
/// let p = history::publish("news", Message::from(text), None).unwrap();
/// assert_eq!(host.sent(conn), vec![Message::from(format!("#1 of {}", p.position.epoch))]);
/// assert!(matches!(history::publish("lobby", Message::from("x"), None), Err(Error::NotPermitted)));
/// ```
pub fn publish(room: &str, msg: Message, except: Option<Conn>) -> Result<Published, Error> {
    sys::history_publish(room, msg, except.map(Conn::id))
}

/// Publishes a JSON object with its position added as two fields, `"offset": <number>` and
/// `"epoch": "<string>"` (see [`publish`]). [`Error::InvalidArgument`] when `event` is not a
/// JSON object.
pub fn publish_json<T: Serialize + ?Sized>(room: &str, event: &T, except: Option<Conn>) -> Result<Published, Error> {
    publish(room, Message::Text(template(event)?), except)
}

/// The text of a JSON object with the position's fields added as markers.
fn template<T: Serialize + ?Sized>(event: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string(event)?;
    if !text.starts_with('{') || !text.ends_with('}') {
        return Err(Error::InvalidArgument);
    }
    text.pop();
    if text.len() > 1 {
        text.push(',');
    }
    text.push_str(&format!("\"offset\":{OFFSET},\"epoch\":\"{EPOCH}\"}}"));
    Ok(text)
}

/// Up to `limit` entries of `room` after `after` (`None`: from the oldest kept), oldest first;
/// the host caps a page at 1000 entries and 4 MiB.
///
/// ```
/// use wasmsock_sdk::{Message, history, testing::TestHost};
/// let _host = TestHost::new().history("log", 2);
/// for n in 0..3 {
///     history::publish("log", Message::from(n.to_string()), None).unwrap();
/// }
/// let page = history::read("log", None, 10).unwrap();
/// assert_eq!(page.entries.iter().map(|e| e.offset).collect::<Vec<_>>(), [2, 3]);
/// assert!(!page.complete, "offset 1 is no longer kept");
/// ```
pub fn read(room: &str, after: Option<&Position>, limit: u32) -> Result<Page, Error> {
    sys::history_read(room, after, limit)
}

/// The room's current position (offset 0 before its first publish).
pub fn current(room: &str) -> Result<Position, Error> {
    sys::history_current(room)
}

/// Joins `conn` to `room` and queues to it the publishes after `after`, atomically with
/// respect to new publishes; `recovered` says whether it got all of them. A position of
/// another epoch, from the future, or older than what the room keeps is no error: the
/// connection joins and `recovered` is false (the client should reload its state). The
/// replayed entries are charged to the call's send budget.
///
/// ```
/// use wasmsock_sdk::{history, testing::TestHost, Message};
/// let host = TestHost::new().history("chat", 10);
/// let conn = host.open("/chat");
/// history::publish("chat", Message::from("hi"), None).unwrap();
/// let stale = history::Position { offset: 1, epoch: "another".into() };
/// let r = history::join(conn, "chat", Some(&stale)).unwrap();
/// assert!(!r.recovered);
/// assert_eq!(conn.rooms(), ["chat"]);
/// ```
pub fn join(conn: Conn, room: &str, after: Option<&Position>) -> Result<Recovery, Error> {
    sys::history_join(conn.id(), room, after)
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_add_the_markers_to_objects_only() {
        let t = super::template(&serde_json::json!({"a": "\u{1}o"})).expect("object");
        assert_eq!(t, "{\"a\":\"\\u0001o\",\"offset\":\u{1}o,\"epoch\":\"\u{1}e\"}");
        assert_eq!(super::template(&serde_json::json!({})).expect("empty"), "{\"offset\":\u{1}o,\"epoch\":\"\u{1}e\"}");
        assert!(super::template(&serde_json::json!([1])).is_err());
    }
}
