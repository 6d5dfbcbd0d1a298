//! A socket becomes a byte stream we can speak HTTP over: the PROXY header (behind a balancer)
//! and the TLS handshake, under one deadline. Failures are logged and counted here.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::ctx::ServerCtx;
use crate::hub::AdmitGuard;
use crate::transport::Transport;

/// The secured stream and the client's address (the PROXY header's, when there is one). Behind
/// a balancer, also the client's slot among the handshakes pending per address (the accept
/// loop could only count the balancer's address).
pub(crate) async fn secure(
    ctx: &ServerCtx,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
) -> Option<(Transport, SocketAddr, Option<AdmitGuard>)> {
    let mut slot = None;
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + ctx.settings.server.tls_handshake_timeout;
    if ctx.settings.server.proxy_protocol {
        let error = match tokio::time::timeout_at(deadline, crate::proxy_protocol::read_header(&mut tcp)).await {
            Ok(Ok(client)) => {
                peer = client.unwrap_or(peer);
                let limits = &ctx.settings.server;
                match ctx.pending_clients.admit(peer.ip(), usize::MAX, limits.max_pending_handshakes_per_ip) {
                    Ok(s) => {
                        slot = Some(s);
                        None
                    }
                    Err(_) => Some("too many pending handshakes from the client's address".to_owned()),
                }
            }
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(error) = error {
            tracing::info!(balancer = %peer, %error, "PROXY protocol header refused");
            ctx.hub.metrics.reject("proxy_protocol");
            return None;
        }
    }
    let Some(cfg) = &ctx.tls else {
        return Some((Transport::plain(tcp), peer, slot));
    };
    let conn = match rustls::server::UnbufferedServerConnection::new(cfg.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a TLS session");
            return None;
        }
    };
    let mut t = Transport::tls(tcp, conn);
    match tokio::time::timeout_at(deadline, t.handshake()).await {
        Ok(Ok(())) => Some((t, peer, slot)),
        Ok(Err(e)) => {
            // In the connection log: with mTLS this is how a refused client shows up.
            tracing::info!(remote = %peer, error = %e, "TLS handshake failed");
            ctx.hub.metrics.reject("tls_handshake");
            None
        }
        Err(_) => {
            tracing::info!(remote = %peer, "TLS handshake timed out");
            ctx.hub.metrics.reject("tls_timeout");
            None
        }
    }
}
