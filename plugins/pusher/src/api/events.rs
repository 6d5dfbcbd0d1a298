//! Triggering events: `POST /apps/{id}/events` (one event to up to 100 channels) and
//! `POST /apps/{id}/batch_events` (up to 10 events, each to one channel).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wasmsock_sdk::{Conn, Error, Message, rooms};

use super::channels::{attributes, room_of};
use super::{Answer, Refusal};
use crate::apps::App;
use crate::channel;

/// Channels one trigger may name (Pusher's limit).
pub const MAX_CHANNELS: usize = 100;
/// Events of one batch (Pusher's limit on its multi-tenant clusters).
pub const MAX_BATCH: usize = 10;
/// Bytes of an event name (Pusher's limit).
pub const MAX_EVENT_NAME: usize = 200;

#[derive(Deserialize)]
struct Trigger {
    name: Option<String>,
    data: Option<Value>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Trigger>,
}

/// One event checked and ready to publish.
struct Event {
    channels: Vec<String>,
    name: String,
    data: String,
    except: Option<Conn>,
    info: Vec<String>,
}

pub fn trigger(app: &App, body: &[u8]) -> Answer {
    let t: Trigger = parse(body)?;
    let channels = match (t.channel.clone(), t.channels.clone()) {
        (Some(_), Some(_)) => return Err(Refusal::bad("Give either channel or channels, not both")),
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        (None, None) => return Err(Refusal::bad("Missing channel or channels")),
    };
    if channels.len() > MAX_CHANNELS {
        return Err(Refusal::bad(format!("Too many channels: {}, the limit is {MAX_CHANNELS}", channels.len())));
    }
    let event = check(app, t, channels)?;
    publish(app, &event)?;
    if event.info.is_empty() {
        return Ok(json!({}));
    }
    let mut out = Map::new();
    for c in &event.channels {
        out.insert(c.clone(), attributes(app, c, &event.info)?);
    }
    Ok(json!({ "channels": out }))
}

pub fn batch(app: &App, body: &[u8]) -> Answer {
    let b: Batch = parse(body)?;
    if b.batch.len() > MAX_BATCH {
        return Err(Refusal::bad(format!("Batch too large: {} events, the limit is {MAX_BATCH}", b.batch.len())));
    }
    // Every event is checked before any is published: a bad one fails the batch whole.
    let mut events = Vec::with_capacity(b.batch.len());
    for (i, t) in b.batch.into_iter().enumerate() {
        let Some(c) = t.channel.clone() else {
            return Err(Refusal::bad(format!("Missing channel in batch event {i}")));
        };
        if t.channels.is_some() {
            return Err(Refusal::bad(format!("Batch event {i}: one channel per event (channel, not channels)")));
        }
        events.push(
            check(app, t, vec![c]).map_err(|r| Refusal { message: format!("Batch event {i}: {}", r.message), ..r })?,
        );
    }
    for e in &events {
        publish(app, e)?;
    }
    if events.iter().all(|e| e.info.is_empty()) {
        return Ok(json!({}));
    }
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        match e.channels.first() {
            Some(c) if !e.info.is_empty() => out.push(attributes(app, c, &e.info)?),
            _ => out.push(json!({})),
        }
    }
    Ok(json!({ "batch": out }))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("Invalid JSON body: {e}")))
}

/// Checks an event's name, data, channels, socket id and info; builds what subscribers get.
fn check(app: &App, t: Trigger, channels: Vec<String>) -> Result<Event, Refusal> {
    let name = t.name.filter(|n| !n.is_empty()).ok_or_else(|| Refusal::bad("Missing event name"))?;
    if name.len() > MAX_EVENT_NAME {
        return Err(Refusal::bad(format!("Event name too long: {} bytes, the limit is {MAX_EVENT_NAME}", name.len())));
    }
    // Pusher's data is a string (the SDKs JSON-encode objects); anything else is sent as its JSON.
    let data = match t.data {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err(Refusal::bad("Missing data")),
    };
    if data.len() > app.max_event_size {
        return Err(Refusal::new(
            413,
            format!("Event data too large: {} bytes, the limit is {}", data.len(), app.max_event_size),
        ));
    }
    if let Some(bad) = channels.iter().find(|c| room_of(app, c).is_none()) {
        return Err(Refusal::bad(format!("Invalid channel name {bad:?}")));
    }
    let except = match t.socket_id {
        None => None,
        Some(s) if valid_socket_id(&s) => channel::conn_of(&s),
        Some(s) => return Err(Refusal::bad(format!("Invalid socket_id {s:?}"))),
    };
    let info = match t.info {
        None => Vec::new(),
        Some(i) => super::channels::info_attributes(&i)?,
    };
    Ok(Event { channels, name, data, except, info })
}

/// `<digits>.<digits>`, as the protocol's socket ids are.
fn valid_socket_id(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
    s.split_once('.').is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Publishes `event` to each of its channels' subscribers (on this node directly, on others
/// through the broker).
fn publish(app: &App, event: &Event) -> Result<(), Refusal> {
    for c in &event.channels {
        // `{"event": name, "channel": c, "data": "..."}`: what pusher-js decodes (it parses
        // `data` itself when it is JSON).
        let msg = json!({ "event": event.name, "channel": c, "data": event.data });
        let msg = Message::Text(msg.to_string());
        let room = room_of(app, c).unwrap_or_default(); // checked in `check`
        match rooms::publish(&room, msg, event.except) {
            Ok(_) => {}
            Err(Error::TooLarge) => return Err(Refusal::new(413, "Event too large for the subscribers' connections")),
            Err(Error::LimitReached) => {
                return Err(Refusal::new(429, format!("Too many subscribers to reach in one request on {c}")));
            }
            Err(e) => return Err(Refusal::new(500, format!("Publishing to {c} failed: {e}"))),
        }
    }
    Ok(())
}
