//! The WebSocket upgrade of a request for a route: the request's checks, admission, the
//! plugins' `on-connect` chain, then the 101. Returns the registered connection, or the
//! refusal to answer with.

use std::net::SocketAddr;
use std::sync::Arc;

use super::close::{Ended, Initiator};
use super::registration::Registration;
use super::respond::{Refusal, write_all};
use crate::ctx::ServerCtx;
use crate::http::{self, HttpRequest};
use crate::hub::ConnShared;
use crate::origin::OriginVerdict;
use crate::plugin::{self, Connect};
use crate::router::Route;
use crate::transport::{Socket, Transport};
use crate::ws::accept_key;
use crate::ws::deflate::{self, Agreed};

/// An upgraded connection: registered, accepted by its chain, 101 sent.
pub(crate) struct Upgraded {
    pub registration: Registration,
    pub protocol: Option<String>,
    /// permessage-deflate, when the client offered it and the route accepts it.
    pub deflate: Option<Agreed>,
}

/// Why there is no upgrade: a refusal still to be answered, or a stream that already failed.
pub(crate) enum NotUpgraded {
    Refused(Refusal),
    /// The 101 could not be written: nothing more to say to this peer.
    Gone,
}

impl From<Refusal> for NotUpgraded {
    fn from(r: Refusal) -> Self {
        NotUpgraded::Refused(r)
    }
}

pub(crate) async fn upgrade<S: Socket>(
    ctx: &ServerCtx,
    t: &mut Transport<S>,
    peer: SocketAddr,
    route: &Arc<Route>,
    req: &HttpRequest,
) -> Result<Upgraded, NotUpgraded> {
    let limits = &ctx.settings.server;
    let key = check_request(req, route, ctx)?;
    let admitted = ctx
        .hub
        .admission
        .admit(peer.ip(), limits.max_connections, limits.max_connections_per_ip)
        .map_err(|e| Refusal::new(503, "connection_limit", e.reason()))?;
    if let Some(missing) = route.missing_plugin() {
        tracing::debug!(plugin = missing, route = route.path(), "refused: a plugin of the route is not loaded");
        let reason = match ctx.settings.server.detailed_errors {
            true => format!("plugin {missing} is not loaded"),
            false => "unavailable".to_owned(),
        };
        return Err(Refusal::new(503, "plugin_unavailable", reason).into());
    }

    let conn = ConnShared::new(ctx.hub.next_id(), route.settings.clone(), peer, ctx.hub.metrics.outbox_drops.clone());
    let mut registration = Registration::new(&ctx.hub, ctx.tasks.enter(), route, conn);
    tracing::Span::current().record("id", registration.conn().id);
    let detailed = ctx.settings.server.detailed_errors;
    let protocol = match on_connect(&mut registration, route, req, t.client_cert_subject(), detailed).await {
        Ok(p) => p,
        Err(r) => {
            registration.finish(Ended::abnormal("handshake rejected", Initiator::Server)).await;
            return Err(r.into());
        }
    };
    let offers = req.headers.iter().filter(|(k, _)| k == "sec-websocket-extensions").map(|(_, v)| v.as_str());
    let (deflate, extensions) = deflate::negotiate(offers, &route.settings.compression).unzip();
    let response = http::switching_protocols(&accept_key(key.as_bytes()), protocol.as_deref(), extensions.as_deref());
    let written = tokio::time::timeout(limits.ws_handshake_timeout, write_all(t, &response)).await;
    if let Err(e) = written.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
        tracing::debug!(error = %e, "could not send the 101 response");
        registration.finish(Ended::abnormal("upgrade response failed", Initiator::Nobody)).await;
        return Err(NotUpgraded::Gone);
    }
    registration.establish(admitted);
    Ok(Upgraded { registration, protocol, deflate })
}

/// Checks the request is a WebSocket upgrade this route accepts; returns the client's key.
fn check_request(req: &HttpRequest, route: &Route, ctx: &ServerCtx) -> Result<String, Refusal> {
    if req.method != "GET" {
        return Err(Refusal::new(405, "bad_method", "a WebSocket upgrade must use GET").header("Allow", "GET"));
    }
    if !req.has_token("upgrade", "websocket") {
        return Err(Refusal::new(426, "not_websocket", format!("{} speaks WebSocket only", route.path()))
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade"));
    }
    if !req.has_token("connection", "upgrade") {
        return Err(Refusal::new(400, "bad_upgrade", "missing Connection: Upgrade"));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal::new(426, "bad_version", "unsupported WebSocket version (13 is required)")
            .header("Sec-WebSocket-Version", "13"));
    }
    let key = req.header("sec-websocket-key").map(str::trim).unwrap_or("");
    if !valid_key(key) {
        return Err(Refusal::new(400, "bad_key", "missing or malformed Sec-WebSocket-Key"));
    }
    let origins: Vec<&str> = req.headers.iter().filter(|(k, _)| k == "origin").map(|(_, v)| v.as_str()).collect();
    match route.origins().check(&origins, req.host(), &ctx.served) {
        OriginVerdict::Allowed => {}
        OriginVerdict::Missing => return Err(Refusal::new(403, "origin_missing", "an Origin header is required")),
        OriginVerdict::Forbidden => return Err(Refusal::new(403, "origin_forbidden", "origin not allowed")),
        OriginVerdict::Ambiguous => return Err(Refusal::new(403, "origin_ambiguous", "more than one Origin header")),
    }
    if ctx.is_shutting_down() {
        return Err(Refusal::new(503, "shutting_down", "server is shutting down"));
    }
    Ok(key.to_owned())
}

fn valid_key(key: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// Runs `on-connect` along the chain, recording each plugin that sees the connection open (it
/// accepted, or failed and was bypassed: either way it is owed `on-close`). Returns the
/// subprotocol to answer with, or the refusal.
async fn on_connect(
    registration: &mut Registration,
    route: &Route,
    req: &HttpRequest,
    client_cert_subject: Option<String>,
    detailed: bool,
) -> Result<Option<String>, Refusal> {
    let conn = registration.conn().clone();
    let mut wit_req = plugin::Request {
        route: route.path().to_owned(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        remote_addr: conn.remote.to_string(),
        client_cert_subject,
        identity: None,
    };
    let mut protocol = None;
    for slot in &route.chain {
        match slot.on_connect(&conn, wit_req.clone()).await {
            Ok(Connect::Accept { identity, protocol: chosen }) => {
                registration.owe_close();
                if let Some(id) = identity {
                    conn.set_identity(id.clone());
                    tracing::Span::current().record("user", id.id.as_str());
                    wit_req.identity = Some(id);
                }
                if chosen.is_some() {
                    protocol = chosen;
                }
            }
            Ok(Connect::Reject { status, reason }) => {
                let status = if (400..=599).contains(&status) { status } else { 403 };
                let reason = sanitize_reason(&reason);
                tracing::debug!(plugin = slot.name(), status, reason = %reason, "plugin rejected the connection");
                return Err(Refusal::new(status, "plugin_rejected", reason));
            }
            Err(f) if f.bypass => registration.owe_close(),
            Err(f) => {
                // Not the request's fault, and temporary: say so, like an absent plugin.
                return Err(match f.is_unavailable() {
                    true => Refusal::new(503, "plugin_unavailable", f.reason()),
                    false => Refusal::new(500, "plugin_failed", f.reason()),
                });
            }
        }
    }
    if let Some(p) = &protocol
        && !req.protocols().any(|offered| offered == p)
    {
        let reason = format!("a plugin chose subprotocol {p:?}, which the client did not offer");
        tracing::warn!(route = route.path(), chain = ?route.chain_names(), "{reason}");
        let reason = if detailed { reason } else { "internal error".to_owned() };
        return Err(Refusal::new(500, "plugin_failed", reason));
    }
    Ok(protocol)
}

/// One printable line of at most 200 bytes (it becomes an HTTP body and a log field).
fn sanitize_reason(reason: &str) -> String {
    let mut out: String = reason.chars().filter(|c| !c.is_control()).collect();
    if out.len() > 200 {
        let mut end = 200;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}
