//! The pusher plugin: the Pusher Channels protocol (version 7, as `pusher-js` speaks it) and
//! its HTTP API, so an app written for Pusher, Soketi or Laravel Reverb moves over by changing
//! a host name.
//!
//! Serve it on a WebSocket route matching `/app/{key}` and on the HTTP route `/apps`; both are
//! the same plugin, so its rooms (one per app and channel) are shared. The host keeps the
//! connections, rooms and per-connection state; this plugin keeps nothing between calls.

mod api;
mod apps;
mod channel;
mod hooks;
mod presence;
mod protocol;
mod sign;
mod socket;
mod state;
#[cfg(test)]
mod tests;

use wasmsock_sdk::{Conn, Connect, Flow, HttpRequest, HttpResponse, Message, Plugin, Request, export_plugin};

#[derive(Default)]
pub struct Pusher;

impl Plugin for Pusher {
    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        socket::connect(conn, req)
    }

    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        socket::message(conn, msg)
    }

    fn on_close(&self, conn: Conn, code: u16, reason: &str) {
        socket::close(conn, code, reason)
    }

    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        api::handle(req)
    }
}

export_plugin!(Pusher);
