//! The admin listener: Prometheus metrics, health, readiness and the plugin listing. Plain
//! HTTP on a separate address (loopback by default), never on the public listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::ctx::ServerCtx;
use crate::http;

/// Admin connections served at once. Beyond, a new connection takes the place of the oldest
/// one still waiting for its request, so idle sockets cannot keep probes out.
const MAX_ADMIN_CONNECTIONS: usize = 32;
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long answering it may take (a scraper reading a large /metrics slowly).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// One admin connection being served: whether it is still waiting for its request, and how to
/// end it.
struct AdminConn {
    since: tokio::time::Instant,
    awaiting_request: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    evict: CancellationToken,
}

impl Admin {
    pub async fn bind(addr: &str, ctx: Arc<ServerCtx>) -> Result<Admin> {
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("cannot bind the admin listener on {addr}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut served: Vec<AdminConn> = Vec::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                served.retain(|s| !s.done.load(Relaxed));
                if served.len() >= MAX_ADMIN_CONNECTIONS {
                    let idle = served
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.awaiting_request.load(Relaxed))
                        .min_by_key(|(_, s)| s.since)
                        .map(|(i, _)| i);
                    match idle {
                        Some(i) => served.swap_remove(i).evict.cancel(),
                        // Every slot is answering a request: this one waits for none.
                        None => continue,
                    }
                }
                let s = AdminConn {
                    since: tokio::time::Instant::now(),
                    awaiting_request: Arc::new(AtomicBool::new(true)),
                    done: Arc::new(AtomicBool::new(false)),
                    evict: CancellationToken::new(),
                };
                let (ctx, awaiting, done, evict) =
                    (ctx.clone(), s.awaiting_request.clone(), s.done.clone(), s.evict.clone());
                served.push(s);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = evict.cancelled() => {}
                        _ = handle(stream, &ctx, &awaiting) => {}
                    }
                    done.store(true, Relaxed);
                });
            }
        });
        Ok(Admin { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(stream: TcpStream, ctx: &ServerCtx, awaiting_request: &AtomicBool) {
    let _ = answer(stream, ctx, awaiting_request).await;
}

async fn answer(mut stream: TcpStream, ctx: &ServerCtx, awaiting_request: &AtomicBool) -> std::io::Result<()> {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream));
    let Ok(Some(req)) = read.await? else { return Ok(()) };
    awaiting_request.store(false, Relaxed);
    let resp = response(&req, ctx);
    tokio::time::timeout(RESPONSE_TIMEOUT, async {
        stream.write_all(&resp).await?;
        stream.shutdown().await
    })
    .await?
}

/// The request, `None` if the peer closed first or sent no valid request (then answered 400).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<http::HttpRequest>> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse(&buf, 8192) {
            Ok(Some((req, _))) => return Ok(Some(req)),
            Ok(None) => continue,
            Err(_) => {
                stream.write_all(&http::response(400, &[], "bad request")).await?;
                return Ok(None);
            }
        }
    }
}

fn response(req: &http::HttpRequest, ctx: &ServerCtx) -> Vec<u8> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => {
            let m = &ctx.hub.metrics;
            let (rooms, members) = ctx.hub.rooms.totals();
            m.rooms.set(rooms as i64);
            m.room_members.set(members as i64);
            http::response_bytes(
                200,
                &[],
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.encode().as_bytes(),
            )
        }
        ("GET", "/healthz") => http::response(200, &[], "ok\n"),
        ("GET", "/readyz") => {
            let missing: Vec<String> = ctx
                .router
                .routes()
                .filter_map(|r| r.missing_plugin().map(|p| format!("{} needs {p}", r.path())))
                .collect();
            if ctx.is_shutting_down() {
                http::response(503, &[], "shutting down\n")
            } else if missing.is_empty() {
                http::response(200, &[], "ready\n")
            } else {
                http::response(503, &[], &format!("not ready: {}\n", missing.join("; ")))
            }
        }
        ("GET", "/plugins") => {
            let routes: Vec<(String, Vec<String>)> = ctx
                .router
                .routes()
                .map(|r| (r.path().to_owned(), r.chain_names().into_iter().map(str::to_owned).collect()))
                .collect();
            let list = ctx.registry.list(&routes);
            let body = serde_json::to_vec_pretty(&list).unwrap_or_default();
            http::response_bytes(200, &[], "application/json", &body)
        }
        _ => http::response(404, &[], "not found: try /metrics, /healthz, /readyz or /plugins\n"),
    }
}
