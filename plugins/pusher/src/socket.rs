//! The WebSocket side of the protocol: one client connection of an app.

use wasmsock_sdk::{Conn, Connect, Flow, Message, Request};

pub fn connect(conn: Conn, req: &Request) -> Connect {
    let _ = (conn, req);
    Connect::reject(501, "not yet") // TODO(pusher-ws)
}

pub fn message(conn: Conn, msg: Message) -> Flow {
    let _ = (conn, msg);
    Flow::Done
}

pub fn close(conn: Conn, code: u16, reason: &str) {
    let _ = (conn, code, reason);
}
