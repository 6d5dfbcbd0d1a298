//! From an accepted TCP socket to an upgraded WebSocket: TLS, the HTTP request, routing, origin
//! and admission checks, the plugins' `on-connect` chain, then the session and `on-close`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{Instrument, field};

use super::session::{self, Ended};
use super::shared::{ConnShared, Identity};
use crate::http::{self, HttpError, HttpRequest};
use crate::origin::OriginVerdict;
use crate::plugin::{self, CallError, Connect};
use crate::router::Route;
use crate::server::ServerCtx;
use crate::transport::{ReadStatus, Transport};
use crate::ws::{CloseCode, accept_key};

/// Serves one TCP connection to the end. `pending` is the handshake slot, released once the
/// connection is upgraded (or refused).
pub async fn serve(
    ctx: Arc<ServerCtx>,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    pending: tokio::sync::OwnedSemaphorePermit,
) {
    let _task = ctx.tasks.enter();
    let _ = tcp.set_nodelay(true);
    // One deadline for the PROXY header and the TLS handshake together.
    let tls_deadline = tokio::time::Instant::now() + ctx.settings.server.tls_handshake_timeout;
    if ctx.settings.server.proxy_protocol {
        // Behind a balancer: the client's address, for limits and logs, is in the header.
        let error = match tokio::time::timeout_at(tls_deadline, crate::proxy_protocol::read_header(&mut tcp)).await {
            Ok(Ok(client)) => {
                peer = client.unwrap_or(peer);
                None
            }
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(error) = error {
            tracing::info!(balancer = %peer, %error, "PROXY protocol header refused");
            ctx.hub.metrics.reject("proxy_protocol");
            return;
        }
    }
    let span =
        tracing::debug_span!("conn", remote = %peer, id = field::Empty, route = field::Empty, user = field::Empty);
    accept(&ctx, tcp, peer, pending, tls_deadline).instrument(span).await
}

/// A refusal before the upgrade.
struct Refusal {
    status: u16,
    reason: String,
    headers: Vec<(&'static str, String)>,
    /// Metric label.
    kind: &'static str,
}

impl Refusal {
    fn new(status: u16, kind: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal { status, reason: reason.into(), headers: Vec::new(), kind }
    }

    fn header(mut self, name: &'static str, value: &str) -> Refusal {
        self.headers.push((name, value.to_owned()));
        self
    }
}

async fn accept(
    ctx: &Arc<ServerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    pending: tokio::sync::OwnedSemaphorePermit,
    tls_deadline: tokio::time::Instant,
) {
    let limits = &ctx.settings.server;
    let mut t = match &ctx.tls {
        Some(cfg) => {
            let conn = match rustls::server::UnbufferedServerConnection::new(cfg.clone()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a TLS session");
                    return;
                }
            };
            let mut t = Transport::tls(tcp, conn);
            match tokio::time::timeout_at(tls_deadline, t.handshake()).await {
                Ok(Ok(())) => t,
                Ok(Err(e)) => {
                    // In the connection log: with mTLS this is how a refused client shows up.
                    tracing::info!(remote = %peer, error = %e, "TLS handshake failed");
                    ctx.hub.metrics.reject("tls_handshake");
                    return;
                }
                Err(_) => {
                    tracing::info!(remote = %peer, "TLS handshake timed out");
                    ctx.hub.metrics.reject("tls_timeout");
                    return;
                }
            }
        }
        None => Transport::plain(tcp),
    };

    let (req, leftover) =
        match tokio::time::timeout(limits.ws_handshake_timeout, read_request(&mut t, limits.max_header_bytes)).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return, // closed before sending a request
            Ok(Err(HttpError::TooLarge)) => {
                return refuse(
                    ctx,
                    &mut t,
                    peer,
                    None,
                    Refusal::new(431, "headers_too_large", "request headers too large"),
                )
                .await;
            }
            Ok(Err(e)) => {
                return refuse(ctx, &mut t, peer, None, Refusal::new(400, "bad_request", e.to_string())).await;
            }
            Err(_) => {
                return refuse(
                    ctx,
                    &mut t,
                    peer,
                    None,
                    Refusal::new(408, "handshake_timeout", "WebSocket handshake timed out"),
                )
                .await;
            }
        };

    let Some(route) = ctx.router.get(&req.path).cloned() else {
        let file = match &ctx.static_files {
            Some(files) => files.respond(&req).await,
            None => None,
        };
        if let Some(resp) = file {
            // A peer that stops reading must not hold its task and handshake slot forever.
            let _ = tokio::time::timeout(limits.ws_handshake_timeout, write_all(&mut t, &resp)).await;
            finish(&mut t).await;
            return;
        }
        return refuse(ctx, &mut t, peer, None, Refusal::new(404, "not_found", format!("no route for {}", req.path)))
            .await;
    };
    tracing::Span::current().record("route", route.path.as_str());

    let key = match check_upgrade(&req, &route, ctx) {
        Ok(k) => k,
        Err(r) => return refuse(ctx, &mut t, peer, Some(&route), r).await,
    };
    let admit = match ctx.hub.admission.admit(peer.ip(), limits.max_connections, limits.max_connections_per_ip) {
        Ok(g) => g,
        Err(e) => {
            return refuse(ctx, &mut t, peer, Some(&route), Refusal::new(503, "connection_limit", e.reason())).await;
        }
    };
    if let Some(missing) = route.missing_plugin() {
        let r = Refusal::new(503, "plugin_unavailable", format!("plugin {missing} is not loaded"));
        return refuse(ctx, &mut t, peer, Some(&route), r).await;
    }

    let conn = Arc::new(ConnShared::new(ctx.hub.next_id(), route.clone(), peer, ctx.hub.metrics.outbox_drops.clone()));
    tracing::Span::current().record("id", conn.id);
    // Registered before on-connect so plugins can address it (queue a welcome, join a room).
    ctx.hub.register(conn.clone());

    let (passed, outcome) = run_on_connect(&conn, &route, &req, &t);
    let protocol = match outcome {
        Ok(p) => p,
        Err(r) => {
            close_chain(&conn, &route.chain[..passed], CloseCode::ABNORMAL, "handshake rejected");
            ctx.hub.unregister(&conn);
            return refuse(ctx, &mut t, peer, Some(&route), r).await;
        }
    };

    let response = http::switching_protocols(&accept_key(key.as_bytes()), protocol.as_deref());
    if let Err(e) = tokio::time::timeout(limits.ws_handshake_timeout, write_all(&mut t, &response))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
    {
        tracing::debug!(error = %e, "could not send the 101 response");
        close_chain(&conn, &route.chain, CloseCode::ABNORMAL, "upgrade response failed");
        ctx.hub.unregister(&conn);
        return;
    }
    drop(pending);
    conn.mark_established();
    let m = &ctx.hub.metrics;
    m.connections.inc();
    m.connections_total.inc();
    let identity = conn.identity();
    let user = identity.as_ref().map(|i| i.id.as_str());
    if let Some(u) = user {
        tracing::Span::current().record("user", u);
    }
    tracing::info!(
        id = conn.id, remote = %peer, route = %route.path, user, tls = t.tls_version(),
        protocol = protocol.as_deref(), "connection opened"
    );

    let started = Instant::now();
    let ended = session::run(&mut t, &conn, &ctx.hub.metrics, &leftover, limits.close_timeout).await;
    finish(&mut t).await;
    let undelivered = conn.seal();
    close_chain(&conn, &route.chain, ended.code, &ended.reason);
    ctx.hub.unregister(&conn);
    drop(admit);
    m.connections.dec();
    m.closes.get_or_create(&crate::metrics::CodeLabel { code: ended.code }).inc();
    log_close(&conn, &ended, started.elapsed().as_millis() as u64, undelivered, user);
}

fn log_close(conn: &ConnShared, ended: &Ended, duration_ms: u64, undelivered: usize, user: Option<&str>) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &conn.stats;
    tracing::info!(
        id = conn.id, remote = %conn.remote, route = %conn.route.path, user,
        code = ended.code, reason = %ended.reason, initiator = ended.initiator, duration_ms,
        msgs_in = s.msgs_in.load(Relaxed), msgs_out = s.msgs_out.load(Relaxed),
        bytes_in = s.bytes_in.load(Relaxed), bytes_out = s.bytes_out.load(Relaxed),
        dropped = s.dropped.load(Relaxed), undelivered,
        "connection closed"
    );
}

/// Reads the HTTP request; `None` if the peer closed first.
async fn read_request(t: &mut Transport, max: usize) -> Result<Option<(HttpRequest, Vec<u8>)>, HttpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // Plaintext may already be buffered (sent with the TLS handshake): read before waiting.
        let status = t.read_with(max, |chunk| {
            if buf.len() + chunk.len() > max + 64 * 1024 {
                return Err(HttpError::TooLarge); // request plus early frames beyond any sense
            }
            buf.extend_from_slice(chunk);
            Ok(())
        });
        let status = match status {
            Ok(s) => s,
            Err(crate::transport::ReadError::Sink(e)) => return Err(e),
            Err(crate::transport::ReadError::Io(_)) => return Ok(None),
        };
        if let Some((req, n)) = http::parse(&buf, max)? {
            return Ok(Some((req, buf.split_off(n))));
        }
        match status {
            ReadStatus::Eof => return Ok(None),
            ReadStatus::Budget => {}
            ReadStatus::WouldBlock => {
                if t.readable().await.is_err() {
                    return Ok(None);
                }
            }
        }
    }
}

/// Checks the request is a WebSocket upgrade this route accepts; returns the client's key.
fn check_upgrade(req: &HttpRequest, route: &Route, ctx: &ServerCtx) -> Result<String, Refusal> {
    if req.method != "GET" {
        return Err(Refusal::new(405, "bad_method", "a WebSocket upgrade must use GET").header("Allow", "GET"));
    }
    if !req.has_token("upgrade", "websocket") {
        return Err(Refusal::new(426, "not_websocket", format!("{} speaks WebSocket only", route.path))
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
    match route.origins.check(req.header("origin"), req.header("host")) {
        OriginVerdict::Allowed => {}
        OriginVerdict::Missing => {
            return Err(Refusal::new(403, "origin_missing", "an Origin header is required"));
        }
        OriginVerdict::Forbidden => {
            return Err(Refusal::new(403, "origin_forbidden", "origin not allowed"));
        }
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

/// Runs `on-connect` along the chain. Returns how many plugins the connection got past (they
/// accepted it, or failed and were bypassed: either way they see it as open and are owed
/// `on-close`), and the subprotocol to answer with or the refusal.
fn run_on_connect(
    conn: &Arc<ConnShared>,
    route: &Route,
    req: &HttpRequest,
    t: &Transport,
) -> (usize, Result<Option<String>, Refusal>) {
    let mut wit_req = plugin::Request {
        route: route.path.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        remote_addr: conn.remote.to_string(),
        client_cert_subject: t.client_cert_subject(),
        identity: None,
    };
    let mut protocol = None;
    let mut passed = 0;
    for slot in &route.chain {
        match slot.on_connect(conn, &wit_req) {
            Ok(Connect::Accept(a)) => {
                passed += 1;
                if let Some(id) = a.identity {
                    conn.set_identity(Identity { id: id.id.clone(), claims: id.claims.clone() });
                    wit_req.identity = Some(id);
                }
                if a.protocol.is_some() {
                    protocol = a.protocol;
                }
            }
            Ok(Connect::Reject(r)) => {
                let status = if (400..=599).contains(&r.status) { r.status } else { 403 };
                let reason = sanitize_reason(&r.reason);
                tracing::debug!(plugin = slot.name(), status, reason = %reason, "plugin rejected the connection");
                return (passed, Err(Refusal::new(status, "plugin_rejected", reason)));
            }
            Err(f) if f.bypass => passed += 1,
            Err(f) => {
                let r = match f.error {
                    // Not the request's fault, and temporary: say so, like an absent plugin.
                    CallError::Quarantined(_) | CallError::NotLoaded => {
                        Refusal::new(503, "plugin_unavailable", format!("plugin {} is unavailable", f.plugin))
                    }
                    _ => Refusal::new(500, "plugin_failed", format!("plugin {} failed", f.plugin)),
                };
                return (passed, Err(r));
            }
        }
    }
    if let Some(p) = &protocol
        && !req.protocols().any(|offered| offered == p)
    {
        let r = Refusal::new(
            500,
            "plugin_failed",
            format!("a plugin chose subprotocol {p:?}, which the client did not offer"),
        );
        return (passed, Err(r));
    }
    (passed, Ok(protocol))
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

/// Runs `on-close` for each plugin of `chain` (exactly once per connection).
fn close_chain(conn: &Arc<ConnShared>, chain: &[Arc<plugin::PluginSlot>], code: u16, reason: &str) {
    for slot in chain {
        // Failures are logged and counted by the slot; nothing else to do at close.
        let _ = slot.on_close(conn, code, reason);
    }
}

async fn refuse(ctx: &ServerCtx, t: &mut Transport, peer: SocketAddr, route: Option<&Arc<Route>>, r: Refusal) {
    ctx.hub.metrics.reject(r.kind);
    tracing::info!(
        remote = %peer, route = route.map(|r| r.path.as_str()), status = r.status, reason = %r.reason,
        "handshake rejected"
    );
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = http::response(r.status, &headers, &r.reason);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), write_all(t, &resp)).await;
    finish(t).await;
}

async fn write_all(t: &mut Transport, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = t.queue(&[std::io::IoSlice::new(rest)])?;
        rest = &rest[n..];
        t.flush_all().await?;
    }
    Ok(())
}

/// Ends the byte stream politely: TLS close_notify, our FIN, then a short drain of whatever the
/// peer still sends, so the kernel does not answer unread data with a reset that could destroy
/// our last frames before the peer reads them.
async fn finish(t: &mut Transport) {
    t.send_close_notify();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), t.flush_all()).await;
    let _ = socket2::SockRef::from(t.tcp()).shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut seen = 0usize;
        loop {
            if t.readable().await.is_err() {
                return;
            }
            match t.read_with(64 << 10, |c| {
                seen += c.len();
                Ok::<(), ()>(())
            }) {
                Ok(ReadStatus::WouldBlock) if seen < 1 << 20 => {}
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
}
