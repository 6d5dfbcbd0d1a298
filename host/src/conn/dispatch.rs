//! Events to their handlers: data messages along the route's plugin chain (or to the built-in
//! echo), pings answered by the host without waking a plugin, and the peer's close frame into
//! the close handshake.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::close::{CloseFrame, CloseState};
use crate::clock::coarse_ms;
use crate::config::Builtin;
use crate::hub::{ConnShared, Outgoing};
use crate::plugin::{Flow, Message, outgoing};
use crate::router::Route;
use crate::ws::{CloseCode, Event};

/// Data messages handled, for the counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    pub msgs: u64,
    pub bytes: u64,
}

/// Handles one read's events in order.
pub(crate) fn events(conn: &Arc<ConnShared>, route: &Route, events: Vec<Event>, close: &mut CloseState) -> Received {
    let mut received = Received::default();
    for ev in events {
        match ev {
            Event::Text(text) => {
                received.msgs += 1;
                received.bytes += text.len() as u64;
                message(conn, route, close, Message::Text(text));
            }
            Event::Binary(data) => {
                received.msgs += 1;
                received.bytes += data.len() as u64;
                message(conn, route, close, Message::Binary(data));
            }
            Event::Ping(payload) => {
                let _ = conn.send_control(Outgoing::Pong(Bytes::from(payload)));
            }
            Event::Pong(_) => {}
            Event::Close(frame) => {
                let (code, reason) = frame.unwrap_or((CloseCode::NO_STATUS, String::new()));
                // An empty close frame is answered with 1000; otherwise the peer's code is echoed
                // (RFC 6455 5.5.1), after what is already queued.
                let reply = if code == CloseCode::NO_STATUS { CloseCode::NORMAL } else { code };
                if close.peer_closed(CloseFrame { code, reason }, conn.is_closing()) {
                    conn.close(reply, "");
                }
            }
        }
    }
    received
}

/// Passes a message along the route's chain until a plugin handles it.
fn message(conn: &Arc<ConnShared>, route: &Route, close: &CloseState, msg: Message) {
    if !close.is_open() || conn.is_closing() {
        return; // closing: data is no longer delivered
    }
    conn.activity.last_message.store(coarse_ms(), Relaxed);
    if route.builtin == Some(Builtin::Echo) {
        let _ = conn.send(outgoing(msg));
        return;
    }
    let mut msg = msg;
    for slot in &route.chain {
        match slot.on_message(conn, &msg) {
            Ok(Flow::Pass) => {}
            Ok(Flow::Forward(m)) => msg = m,
            Ok(Flow::Done) => return,
            Err(f) if f.bypass => {}
            Err(f) => {
                conn.close_now(CloseCode::INTERNAL, &format!("plugin {} {}", f.plugin, f.error));
                return;
            }
        }
    }
    tracing::debug!(conn = conn.id, "message fell off the end of the chain unhandled");
}
