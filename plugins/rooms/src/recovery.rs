//! History and recovery for the channels a `[[history]]` rule of the server names: their
//! `message` events carry the publish's `offset` and `epoch`, and a `subscribe` with `since`
//! (the last offset and epoch the client saw) is answered with what the client missed, in
//! order, before live messages. Other channels publish and subscribe as before.

use serde_json::{Map, Value, json};
use wasmsock_sdk::history::{self, Position};
use wasmsock_sdk::{Conn, Error, Message, rooms};

/// Joins `conn` to `channel`, replaying what it missed after `since` when the channel has a
/// history. The fields it adds to the `subscribed` reply: `recovered` (when `since` was given
/// or the channel has a history) and, with a history, the channel's `offset` and `epoch` at the
/// join (a client that was not recovered continues from there). A `since` that is not
/// `{"offset": <integer>, "epoch": "<string>"}` is not an error: `recovered` is false.
pub(crate) fn join(conn: Conn, channel: &str, since: Option<&Value>) -> Result<Map<String, Value>, Error> {
    let position: Option<Position> = since.and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut fields = Map::new();
    match history::join(conn, channel, position.as_ref()) {
        Ok(r) => {
            fields.insert("recovered".into(), Value::Bool(r.recovered));
            fields.insert("offset".into(), json!(r.top.offset));
            fields.insert("epoch".into(), Value::String(r.top.epoch));
        }
        // No history for this channel (or none can be kept now): a plain join.
        Err(Error::NotPermitted | Error::HostMemoryFull) => {
            conn.join(channel)?;
            if since.is_some() {
                fields.insert("recovered".into(), Value::Bool(false));
            }
        }
        Err(e) => return Err(e),
    }
    Ok(fields)
}

/// Publishes `event` (a JSON object) to `channel`: with the channel's history, it is kept and
/// carries its `offset` and `epoch`, which go into the `published` receipt as well. Returns
/// the members it was queued to and those fields.
pub(crate) fn publish(channel: &str, event: &Value, except: Option<Conn>) -> Result<(u32, Map<String, Value>), Error> {
    match history::publish_json(channel, event, except) {
        Ok(p) => {
            let mut fields = Map::new();
            fields.insert("offset".into(), json!(p.position.offset));
            fields.insert("epoch".into(), Value::String(p.position.epoch));
            Ok((p.queued, fields))
        }
        Err(Error::NotPermitted | Error::HostMemoryFull) => {
            // One host call; the host fans the same bytes out to every member.
            Ok((rooms::publish(channel, Message::json(event)?, except)?, Map::new()))
        }
        Err(e) => Err(e),
    }
}
