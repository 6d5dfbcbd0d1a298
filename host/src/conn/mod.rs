//! One connection's life, top-down. [`serve`] is the whole story; each step is a module:
//!
//! 1. [`accept`]: the PROXY header (behind a balancer) and the TLS handshake.
//! 2. [`request`]: the HTTP request.
//! 3. The router picks a WebSocket route, a static file, or nothing (404).
//! 4. [`upgrade`]: the request's checks, admission, the plugins' `on-connect` chain, the 101.
//!    From before `on-connect` the connection is held by a [`registration`], whose drop runs
//!    the teardown (`on-close` chain, unregistering, metrics, the close log line) exactly once.
//! 5. [`session`]: bytes in → [`inbound`] events → [`dispatch`] to plugins → the outbox →
//!    [`writer`] → bytes out, until the [`close`] handshake is over. The transport is shared
//!    through a [`link`]: while the session is idle, whoever queues frames for it (a publish to
//!    its room) writes them itself rather than waking it.
//!
//! Until the upgrade, shutdown ends the connection at once; after it, shutdown asks for a
//! close handshake (1001) like any other close.

mod accept;
mod close;
mod dispatch;
mod http_route;
mod inbound;
mod link;
mod registration;
mod request;
mod respond;
mod session;
mod upgrade;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{Instrument, field};

use self::respond::Refusal;
use self::session::Start;
use self::upgrade::NotUpgraded;
use crate::ctx::ServerCtx;
use crate::http::HttpError;
use crate::router::Target;

/// Serves one accepted TCP connection to its end. `pending` is its handshake slot, released
/// once the connection is upgraded or refused.
pub(crate) async fn serve(ctx: Arc<ServerCtx>, tcp: TcpStream, peer: SocketAddr, pending: crate::hub::AdmitGuard) {
    let _task = ctx.tasks.enter();
    let span =
        tracing::debug_span!("conn", remote = %peer, id = field::Empty, route = field::Empty, user = field::Empty);
    // Boxed: only the session's state stays with the connection while it is open (the
    // handshake's and the teardown's, with their plugin calls, would double its size).
    let Some(opened) = Box::pin(open(&ctx, tcp, peer, pending, &span)).await else { return };
    live(&ctx, opened).instrument(span).await
}

/// An upgraded connection's parts, as the session starts. Only these cross into the session:
/// whatever else the handshake made (its result, the request, the transport outside the link)
/// would keep its space in every open connection's task if it were still in scope there.
struct Opened {
    link: Arc<link::Link<TcpStream>>,
    registration: registration::Registration,
    deflate: Option<crate::ws::deflate::Agreed>,
    leftover: Vec<u8>,
}

/// The handshake (unless shutdown comes first), then either the open WebSocket connection's
/// parts or, for a plain HTTP route, its whole service.
async fn open(
    ctx: &Arc<ServerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    pending: crate::hub::AdmitGuard,
    span: &tracing::Span,
) -> Option<Opened> {
    let next = until_shutdown(ctx, handshake(ctx, tcp, peer).instrument(span.clone())).await;
    drop(pending);
    match next? {
        Next::Upgraded((t, peer, upgraded, leftover)) => {
            let upgrade::Upgraded { registration, protocol, deflate } = upgraded;
            let conn = registration.conn();
            tracing::info!(
                parent: span, id = conn.id, remote = %peer, route = %registration.route().path(),
                user = conn.identity().as_ref().map(|i| i.id.as_str()), tls = t.tls_version(),
                protocol = protocol.as_deref(), deflate = deflate.is_some(), "connection opened"
            );
            Some(Opened { link: link::Link::new(t, &ctx.hub.metrics), registration, deflate, leftover })
        }
        Next::Http { mut t, peer, route, req, leftover } => {
            span.record("route", route.path());
            http_route::serve(ctx, &mut t, peer, &route, req, leftover).instrument(span.clone()).await;
            None
        }
    }
}

/// An upgraded connection, from its session to its teardown.
async fn live(ctx: &ServerCtx, Opened { link, registration, deflate, leftover }: Opened) {
    let hub = &ctx.hub;
    let conn = registration.conn();
    let ended = session::run(
        &link,
        conn,
        registration.route(),
        &hub.metrics,
        &hub.budget,
        Start { leftover: &leftover, deflate },
        ctx.settings.server.close_timeout,
    )
    .await;
    // From here on nobody else writes to the connection.
    teardown(link.take(), conn.clone(), registration, ended).await;
}

/// The goodbye and the teardown after a session. Boxed: their state is not carried by every
/// open connection's future.
fn teardown(
    t: Option<crate::transport::Transport>,
    conn: Arc<crate::hub::ConnShared>,
    registration: registration::Registration,
    ended: close::Ended,
) -> std::pin::Pin<Box<impl Future<Output = ()>>> {
    Box::pin(async move {
        // A killed connection (dead peer, shutdown) gets no polite goodbye that could wait.
        if let Some(mut t) = t.filter(|_| conn.killed() == crate::hub::Kill::None) {
            respond::finish(&mut t).await;
        }
        registration.finish(ended).await;
    })
}

/// The handshake, unless shutdown comes first.
async fn until_shutdown(ctx: &ServerCtx, handshake: impl Future<Output = Option<Next>>) -> Option<Next> {
    tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => None,
        u = handshake => u,
    }
}

type Handshaken = (crate::transport::Transport, SocketAddr, upgrade::Upgraded, Vec<u8>);

/// Where the connection goes once its first request is read.
enum Next {
    Upgraded(Handshaken),
    /// A plain HTTP route: served request after request (the handshake slot is given back).
    Http {
        t: crate::transport::Transport,
        peer: SocketAddr,
        route: Arc<crate::router::HttpRoute>,
        req: crate::http::HttpRequest,
        leftover: Vec<u8>,
    },
}

/// Everything before the session: secure the stream, read the request, route it, upgrade.
/// `None` when the connection ended here (refused, served a file, or gone).
async fn handshake(ctx: &Arc<ServerCtx>, tcp: TcpStream, peer: SocketAddr) -> Option<Next> {
    // `_client_slot`: behind a balancer, the client's own pending-handshake slot.
    let (mut t, peer, _client_slot) = accept::secure(ctx, tcp, peer).await?;
    let limits = &ctx.settings.server;
    let read = tokio::time::timeout(limits.ws_handshake_timeout, request::read(&mut t, limits.max_header_bytes)).await;
    let (req, leftover) = match read {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return None, // closed before sending a request
        Ok(Err(e)) => {
            let r = match e {
                HttpError::TooLarge => Refusal::new(431, "headers_too_large", "request headers too large"),
                e => Refusal::new(400, "bad_request", e.to_string()),
            };
            respond::refuse(ctx, &mut t, peer, None, r).await;
            return None;
        }
        Err(_) => {
            let r = Refusal::new(408, "handshake_timeout", "WebSocket handshake timed out");
            respond::refuse(ctx, &mut t, peer, None, r).await;
            return None;
        }
    };
    if let Some((status, reason)) = req.unacceptable() {
        let label = if status == 505 { "http_version" } else { "bad_host" };
        respond::refuse(ctx, &mut t, peer, None, Refusal::new(status, label, reason)).await;
        return None;
    }
    let route = match ctx.router.target(&req.path) {
        Target::WebSocket(route) => route.clone(),
        Target::Http(route) => return Some(Next::Http { t, peer, route: route.clone(), req, leftover }),
        Target::File(files) => {
            match files.respond(&req).await {
                Some(resp) => respond::send_file(&mut t, resp, limits.ws_handshake_timeout).await,
                None => respond::refuse(ctx, &mut t, peer, None, not_found(&req.path)).await,
            }
            return None;
        }
        Target::NotFound => {
            respond::refuse(ctx, &mut t, peer, None, not_found(&req.path)).await;
            return None;
        }
    };
    tracing::Span::current().record("route", route.path());
    match upgrade::upgrade(ctx, &mut t, peer, &route, &req).await {
        Ok(upgraded) => Some(Next::Upgraded((t, peer, upgraded, leftover))),
        Err(NotUpgraded::Refused(r)) => {
            respond::refuse(ctx, &mut t, peer, Some(route.path()), r).await;
            None
        }
        Err(NotUpgraded::Gone) => None,
    }
}

fn not_found(path: &str) -> Refusal {
    Refusal::new(404, "not_found", format!("no route for {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, F: Future>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every open connection's task holds this future for its whole life: a value left in scope
    /// across the session's await (as the handshake's result once was, 2,560 B in all) shows
    /// here before it shows in the memory per connection.
    #[test]
    fn an_open_connections_future_holds_the_session_and_little_else() {
        let whole = future_size(serve);
        let session = future_size(|link: &Arc<link::Link<TcpStream>>, conn, route, (metrics, budget)| {
            session::run(link, conn, route, metrics, budget, Start { leftover: &[], deflate: None }, Default::default())
        });
        assert!(whole <= session + 600, "the connection's future is {whole} B, its session's {session} B");
    }
}
