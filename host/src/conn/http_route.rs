//! Plain HTTP requests on an HTTP route (`[[http_routes]]`), answered by the route's plugin
//! (`on-request`), over one kept-alive connection: request after request until the client
//! says `Connection: close`, stays idle past the route's `idle_timeout`, sends something we
//! cannot read, or the server shuts down.
//!
//! Everything a client can grow is bounded: the request head (`[server] max_header_bytes`,
//! 431), the body (`max_body_size`, 413, and a `Content-Length` is required for one: chunked
//! bodies get 411), the time a request may take to arrive (`request_timeout`, 408), the requests
//! of the route in flight at once (`max_concurrent`, 503), the connection itself (it counts
//! against `[server] max_connections` and `max_connections_per_ip` like a WebSocket), and the
//! plugin call (its deadline and failure policy, as for any call).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::ctx::ServerCtx;
use crate::http::{self, HttpError, HttpRequest};
use crate::hub::ConnShared;
use crate::plugin::{HttpRequest as PluginRequest, HttpResponse};
use crate::router::{HttpRoute, Target};
use crate::transport::{ReadError, ReadStatus, Socket, Transport};

use super::respond::{finish, write_all};

/// Longest time a response may take to be written.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `first` and the requests after it on the same connection. `buf` holds what the
/// client sent after the first request's head.
pub(crate) async fn serve<S: Socket>(
    ctx: &Arc<ServerCtx>,
    t: &mut Transport<S>,
    peer: SocketAddr,
    first_route: &Arc<HttpRoute>,
    first: HttpRequest,
    mut buf: Vec<u8>,
) {
    let mut route = first_route.clone();
    let limits = &ctx.settings.server;
    let admitted = ctx.hub.admission.admit(peer.ip(), limits.max_connections, limits.max_connections_per_ip);
    let Ok(_admitted) = admitted else {
        let answer = Answer::text(503, "too many connections").close();
        ctx.hub.metrics.http_answered(route.path(), answer.status, None);
        respond(t, peer, &route, &first, answer).await;
        finish(t).await;
        return;
    };
    // Plugin calls are made for a connection: this one is listed nowhere, so nothing can
    // address it; it names the request in logs (and counts once in the plugin's breaker).
    let new_conn = |route: &HttpRoute| {
        Arc::new(ConnShared::new(
            ctx.hub.next_id(),
            route.conn_route.clone(),
            peer,
            ctx.hub.metrics.outbox_drops.clone(),
        ))
    };
    let mut conn = new_conn(&route);
    let cert = t.client_cert_subject();
    let mut req = first;
    loop {
        let settings = &route.settings;
        let keep_alive = !req.has_token("connection", "close") && !ctx.is_shutting_down();
        let body = tokio::time::timeout(settings.request_timeout, read_body(t, &req, &mut buf, settings.max_body_size));
        let started = std::time::Instant::now();
        let answer = match body.await {
            Ok(Ok(body)) => call(ctx, &route, &conn, &req, body, cert.clone()).await,
            Ok(Err(BodyError::Gone)) => return,
            Ok(Err(e)) => e.answer().close(),
            Err(_) => Answer::text(408, "the request body did not arrive in time").close(),
        };
        let answer = if keep_alive { answer } else { answer.close() };
        let close = answer.close;
        let status = answer.status;
        let written = respond(t, peer, &route, &req, answer).await;
        ctx.hub.metrics.http_answered(route.path(), status, Some(started.elapsed()));
        if !written || close {
            finish(t).await;
            return;
        }
        req = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            next = tokio::time::timeout(settings.idle_timeout, next_request(t, &mut buf, limits.max_header_bytes)) => {
                match next {
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(e)) => {
                        let answer = match e {
                            HttpError::TooLarge => Answer::text(431, "request headers too large"),
                            e => Answer::text(400, &e.to_string()),
                        };
                        ctx.hub.metrics.http_answered(route.path(), answer.status, None);
                        respond(t, peer, &route, &HttpRequest::empty(), answer.close()).await;
                        break;
                    }
                }
            }
        };
        if let Some((status, reason)) = req.unacceptable() {
            ctx.hub.metrics.http_answered(route.path(), status, None);
            respond(t, peer, &route, &req, Answer::text(status, reason).close()).await;
            break;
        }
        // Each request is routed on its own: a kept-alive connection may go from one HTTP
        // route to another; anything else (an upgrade, a file) starts on a connection of its own.
        match ctx.router.target(&req.path) {
            Target::Http(next) if Arc::ptr_eq(next, &route) => {}
            Target::Http(next) => {
                route = next.clone();
                conn = new_conn(&route);
            }
            _ => {
                let answer = Answer::text(404, &format!("no HTTP route for {}", req.path));
                ctx.hub.metrics.http_answered(route.path(), 404, None);
                respond(t, peer, &route, &req, answer.close()).await;
                break;
            }
        }
    }
    finish(t).await;
}

/// A response to send, and whether the connection ends after it.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

impl Answer {
    fn text(status: u16, text: &str) -> Answer {
        let headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
        Answer { status, headers, body: text.as_bytes().to_vec(), close: false }
    }

    fn close(mut self) -> Answer {
        self.close = true;
        self
    }

    fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The plugin's response, minus what the host owns (framing headers) and what would break
    /// the response (a status outside 100-599, names or values with line breaks).
    fn from_plugin(r: HttpResponse) -> Answer {
        let status = if (200..=599).contains(&r.status) { r.status } else { 500 };
        let mut headers: Vec<(String, String)> = r
            .headers
            .into_iter()
            .filter(|(k, v)| {
                let k = k.to_ascii_lowercase();
                !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding" | "keep-alive")
                    && !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            })
            .collect();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("content-type".into(), "application/octet-stream".into()));
        }
        Answer { status, headers, body: r.body, close: false }
    }
}

/// Runs the route's plugin on the request, within the route's bound on requests in flight.
async fn call(
    ctx: &ServerCtx,
    route: &HttpRoute,
    conn: &Arc<ConnShared>,
    req: &HttpRequest,
    body: Vec<u8>,
    client_cert_subject: Option<String>,
) -> Answer {
    let Ok(_permit) = route.in_flight.clone().try_acquire_owned() else {
        ctx.hub.metrics.reject("http_busy");
        return Answer::text(503, "too many requests in flight").header("retry-after", "1");
    };
    let request = PluginRequest {
        method: req.method.clone(),
        route: route.path().to_owned(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body,
        remote_addr: conn.remote.to_string(),
        client_cert_subject,
    };
    let detailed = ctx.settings.server.detailed_errors;
    match route.slot.on_request(conn, request).await {
        Ok(Some(r)) => Answer::from_plugin(r),
        Ok(None) => {
            tracing::warn!(
                route = route.path(),
                plugin = route.slot.name(),
                "the route's plugin does not export on-request"
            );
            let reason = match detailed {
                true => format!("plugin {} does not serve HTTP requests (no on-request export)", route.slot.name()),
                false => "unavailable".to_owned(),
            };
            Answer::text(503, &reason)
        }
        Err(f) if f.is_unavailable() => Answer::text(503, &f.reason()).header("retry-after", "1"),
        Err(f) => Answer::text(500, &f.reason()),
    }
}

/// Writes the answer (logged); false if it could not be written.
async fn respond<S: Socket>(
    t: &mut Transport<S>,
    peer: SocketAddr,
    route: &HttpRoute,
    req: &HttpRequest,
    a: Answer,
) -> bool {
    if a.status >= 400 {
        tracing::info!(remote = %peer, route = route.path(), method = %req.method, path = %req.path, status = a.status, "http request refused or failed");
    } else {
        tracing::debug!(remote = %peer, route = route.path(), method = %req.method, path = %req.path, status = a.status, "http request");
    }
    let head = http::keep_alive_head(a.status, &a.headers, a.body.len(), !a.close);
    let write = async {
        write_all(t, &head).await?;
        write_all(t, &a.body).await
    };
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

#[derive(Debug)]
enum BodyError {
    TooLarge(usize),
    Chunked,
    BadLength,
    Gone,
}

impl BodyError {
    fn answer(&self) -> Answer {
        match self {
            BodyError::TooLarge(max) => Answer::text(413, &format!("the body is larger than {max} bytes")),
            BodyError::Chunked => Answer::text(411, "send the body with a Content-Length"),
            BodyError::BadLength => Answer::text(400, "malformed Content-Length"),
            BodyError::Gone => Answer::text(400, "gone"),
        }
    }
}

/// Reads the request's body (`Content-Length` bytes) from `buf` and the stream; what follows
/// it stays in `buf` (the next request, pipelined).
async fn read_body<S: Socket>(
    t: &mut Transport<S>,
    req: &HttpRequest,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if req.headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(BodyError::Chunked);
    }
    let mut lengths = req.headers.iter().filter(|(k, _)| k == "content-length").map(|(_, v)| v.trim());
    let len = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) => v.parse::<usize>().map_err(|_| BodyError::BadLength)?,
        (Some(_), Some(_)) => return Err(BodyError::BadLength),
    };
    if len > max {
        return Err(BodyError::TooLarge(max));
    }
    while buf.len() < len {
        let want = len - buf.len();
        match fill(t, buf, want).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(BodyError::Gone),
        }
    }
    let rest = buf.split_off(len);
    Ok(std::mem::replace(buf, rest))
}

/// The next request head, from `buf` and the stream; `Ok(None)` when the client closed first.
async fn next_request<S: Socket>(
    t: &mut Transport<S>,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<HttpRequest>, HttpError> {
    loop {
        if let Some((req, n)) = http::parse(buf, max)? {
            buf.drain(..n);
            return Ok(Some(req));
        }
        match fill(t, buf, max).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Appends what the stream has (waiting for something), reading about `want` bytes at most
/// beyond what `buf` holds. False once the client closed its side.
async fn fill<S: Socket>(t: &mut Transport<S>, buf: &mut Vec<u8>, want: usize) -> Result<bool, HttpError> {
    let limit = buf.len() + want.max(1) + 64 * 1024;
    loop {
        let before = buf.len();
        let status = t.read_with(want.max(1), |chunk| {
            if buf.len() + chunk.len() > limit {
                return Err(HttpError::TooLarge);
            }
            buf.extend_from_slice(chunk);
            Ok(())
        });
        let status = match status {
            Ok(s) => s,
            Err(ReadError::Sink(e)) => return Err(e),
            Err(ReadError::Io(_)) => return Ok(false),
        };
        if buf.len() > before {
            return Ok(true);
        }
        match status {
            ReadStatus::Eof => return Ok(false),
            ReadStatus::Budget => {}
            ReadStatus::WouldBlock => {
                if t.readable().await.is_err() {
                    return Ok(false);
                }
            }
        }
    }
}
