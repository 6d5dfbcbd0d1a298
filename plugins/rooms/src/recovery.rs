//! History and recovery for the channels a `[[history]]` rule of the server names: their
//! `message` events carry the publish's `offset` and `epoch`, and a `subscribe` with `since`
//! (the last offset and epoch the client saw) is answered with what the client missed, in
//! order, before live messages. Other channels publish and subscribe as before.

use serde_json::{Map, Value, json};
use wasmsock_sdk::history::{self, Position};
use wasmsock_sdk::{Conn, Error, Message, presence, rooms};

/// Joins `conn` to `channel` and says whether to announce it: with `since`, through the
/// channel's history, replaying what the client missed after it atomically with new publishes
/// (no gap, no duplicate at the seam); without, through presence, which decides the
/// announcement once per user across the cluster. Returns the fields it adds to the
/// `subscribed` reply — `recovered` (when `since` was given or the channel has a history) and,
/// with a history, the channel's `offset` and `epoch` at the join (a client that was not
/// recovered continues from there) — and whether the join is the user's first. A `since` that
/// is not `{"offset": <integer>, "epoch": "<string>"}` is not an error: `recovered` is false.
///
/// A recovering join is announced when it is the user's first connection in the channel on
/// this node: the history's join, which makes the seam exact, does not ask the other nodes.
pub(crate) fn join(conn: Conn, channel: &str, since: Option<&Value>) -> Result<(Map<String, Value>, bool), Error> {
    let mut fields = Map::new();
    if let Some(since) = since {
        let position: Option<Position> = serde_json::from_value(since.clone()).ok();
        match history::join(conn, channel, position.as_ref()) {
            Ok(r) => {
                fields.insert("recovered".into(), Value::Bool(r.recovered && position.is_some()));
                fields.insert("offset".into(), json!(r.top.offset));
                fields.insert("epoch".into(), Value::String(r.top.epoch));
                return Ok((fields, first_here(conn, channel)));
            }
            // No history for this channel (or none can be kept now): joined as any other.
            Err(Error::NotPermitted | Error::HostMemoryFull) => {
                fields.insert("recovered".into(), Value::Bool(false));
            }
            Err(e) => return Err(e),
        }
    }
    let change = presence::join(conn, channel)?;
    if since.is_none()
        && let Ok(top) = history::current(channel)
    {
        fields.insert("recovered".into(), Value::Bool(false));
        fields.insert("offset".into(), json!(top.offset));
        fields.insert("epoch".into(), Value::String(top.epoch));
    }
    Ok((fields, change.announce()))
}

/// Whether no other connection of `conn`'s user is in `channel` on this node (a connection
/// without an identity is a user of its own).
fn first_here(conn: Conn, channel: &str) -> bool {
    let Some(me) = conn.identity() else { return true };
    !rooms::members(channel, FIRST_HERE_SCAN)
        .into_iter()
        .any(|c| c != conn && c.identity().is_some_and(|i| i.id == me.id))
}

/// Members looked at to find another connection of the same user.
const FIRST_HERE_SCAN: u32 = 10_000;

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
