//! Events to their handlers: data messages along the route's plugin chain (or to the built-in
//! echo), pings answered by the host without waking a plugin, and the peer's close frame into
//! the close handshake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::close::{CloseFrame, CloseState};
use crate::clock::coarse_ms;
use crate::config::Builtin;
use crate::hub::{ConnShared, Outgoing};
use crate::plugin::{Flow, Message, outgoing};
use crate::router::Route;
use crate::ws::CloseCode;

/// A message on its way through the chain: the plugin calls it still has to make.
pub(crate) type Handling = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts handling a data message. `None` when there is nothing to wait for: the connection is
/// closing (data is no longer delivered) or the host answered itself (the built-in echo).
pub(crate) fn message(
    conn: &Arc<ConnShared>,
    route: &Arc<Route>,
    close: &CloseState,
    msg: Message,
) -> Option<Handling> {
    if !close.is_open() || conn.is_closing() {
        return None;
    }
    conn.activity.last_message.store(coarse_ms(), Relaxed);
    if route.builtin == Some(Builtin::Echo) {
        let _ = conn.send(outgoing(msg));
        return None;
    }
    Some(Box::pin(chain(conn.clone(), route.clone(), msg)))
}

/// Passes a message along the route's chain until a plugin handles it.
async fn chain(conn: Arc<ConnShared>, route: Arc<Route>, msg: Message) {
    let mut msg = msg;
    for slot in &route.chain {
        let (given_back, r) = slot.on_message(&conn, msg).await;
        msg = given_back;
        match r {
            Ok(Flow::Pass) => {}
            Ok(Flow::Forward(m)) => msg = m,
            Ok(Flow::Done) => return,
            Err(f) if f.bypass => {}
            Err(f) => {
                conn.close_now(CloseCode::INTERNAL, &f.reason());
                return;
            }
        }
    }
    tracing::debug!(conn = conn.id, "message fell off the end of the chain unhandled");
}

/// Answers a ping; the host does it, plugins never see heartbeats.
pub(crate) fn ping(conn: &ConnShared, payload: Vec<u8>) {
    let _ = conn.send_control(Outgoing::Pong(Bytes::from(payload)));
}

/// The peer's close frame: into the close handshake, and our reply queued if one is owed.
pub(crate) fn peer_close(conn: &ConnShared, close: &mut CloseState, frame: Option<(CloseCode, String)>) {
    let (code, reason) = frame.unwrap_or((CloseCode::NO_STATUS, String::new()));
    // An empty close frame is answered with 1000; otherwise the peer's code is echoed
    // (RFC 6455 5.5.1), after what is already queued.
    let reply = if code == CloseCode::NO_STATUS { CloseCode::NORMAL } else { code };
    if close.peer_closed(CloseFrame { code, reason }, conn.is_closing()) {
        conn.close(reply, "");
    }
}
