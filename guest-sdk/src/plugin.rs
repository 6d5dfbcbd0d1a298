use crate::{Conn, Identity, Message, Request};

/// A wasmsock plugin. Every method has a default, so implement only what you need.
///
/// One value of the type is created (with [`Default`]) per plugin instance and serves many
/// connections; the host may replace the instance at any time, so durable state belongs in
/// [`Conn::set_attachment`] or [`kv`](crate::kv).
pub trait Plugin: Default + 'static {
    /// A client asks to open a connection on a route this plugin serves. Runs before the
    /// upgrade is answered; the first plugin of a route's chain that rejects answers the
    /// handshake with its status and reason. Default: accept.
    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        let _ = (conn, req);
        Connect::accept()
    }

    /// A complete message arrived. Return [`Flow::Done`] when handled, [`Flow::Pass`] to hand it
    /// on unchanged, or [`Flow::Forward`] to hand on a rewritten message. Default: pass.
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let _ = (conn, msg);
        Flow::Pass
    }

    /// The connection ended, whatever ended it: called exactly once for every connection this
    /// plugin accepted. `code` is the WebSocket close code (1006 when there was no close frame).
    fn on_close(&self, conn: Conn, code: u16, reason: &str) {
        let _ = (conn, code, reason);
    }
}

/// The answer to [`Plugin::on_connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// Let the connection in.
    Accept {
        /// Identity to attach to the connection; later plugins and the server log see it.
        identity: Option<Identity>,
        /// Subprotocol to answer with (one the client offered in `Sec-WebSocket-Protocol`).
        protocol: Option<String>,
    },
    /// Refuse the upgrade with an HTTP status (for example 401 or 403) and a short reason.
    Reject {
        /// HTTP status code, 400-599.
        status: u16,
        /// Short reason, sent as the response body.
        reason: String,
    },
}

impl Connect {
    /// Accept without an identity.
    pub fn accept() -> Self {
        Connect::Accept { identity: None, protocol: None }
    }

    /// Accept as `identity`.
    pub fn accept_as(identity: Identity) -> Self {
        Connect::Accept { identity: Some(identity), protocol: None }
    }

    /// Refuse with an HTTP status and a reason.
    ///
    /// ```
    /// let no = wasmsock_sdk::Connect::reject(401, "missing token");
    /// assert!(matches!(no, wasmsock_sdk::Connect::Reject { status: 401, .. }));
    /// ```
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Connect::Reject { status, reason: reason.into() }
    }

    /// Answer the handshake with subprotocol `protocol` (ignored on a rejection).
    pub fn with_protocol(self, protocol: impl Into<String>) -> Self {
        match self {
            Connect::Accept { identity, .. } => Connect::Accept { identity, protocol: Some(protocol.into()) },
            reject => reject,
        }
    }
}

/// What happens to a message after [`Plugin::on_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Hand the same message to the next plugin of the chain.
    Pass,
    /// Hand this message to the next plugin of the chain instead.
    Forward(Message),
    /// Handled: later plugins of the chain do not see the message.
    Done,
}

/// Conversions between the WIT bindings and SDK types, called by [`export_plugin!`](crate::export_plugin).
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
pub mod glue {
    use super::{Connect, Flow, Plugin};
    use crate::sys::bindings::wasmsock::plugin::types as wit;
    use crate::{Conn, Request};

    pub fn on_connect<P: Plugin>(plugin: &P, conn: u64, req: wit::Request) -> wit::Connect {
        let req = Request {
            route: req.route,
            path: req.path,
            query: req.query,
            headers: req.headers,
            remote_addr: req.remote_addr,
            client_cert_subject: req.client_cert_subject,
            identity: req.identity.map(Into::into),
        };
        match plugin.on_connect(Conn::from_raw(conn), &req) {
            Connect::Accept { identity, protocol } => {
                wit::Connect::Accept(wit::Accept { identity: identity.map(Into::into), protocol })
            }
            Connect::Reject { status, reason } => wit::Connect::Reject(wit::Reject { status, reason }),
        }
    }

    pub fn on_message<P: Plugin>(plugin: &P, conn: u64, msg: wit::Message) -> wit::Flow {
        match plugin.on_message(Conn::from_raw(conn), msg.into()) {
            Flow::Pass => wit::Flow::Pass,
            Flow::Forward(m) => wit::Flow::Forward(m.into()),
            Flow::Done => wit::Flow::Done,
        }
    }

    pub fn on_close<P: Plugin>(plugin: &P, conn: u64, code: u16, reason: String) {
        plugin.on_close(Conn::from_raw(conn), code, &reason)
    }
}
