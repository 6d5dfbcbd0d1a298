//! The admin listener: Prometheus metrics, health, readiness and the plugin listing. Plain
//! HTTP on a separate address (loopback by default), never on the public listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ctx::ServerCtx;
use crate::http;

const MAX_ADMIN_CONNECTIONS: usize = 32;

pub struct Admin {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    pub async fn bind(addr: &str, ctx: Arc<ServerCtx>) -> Result<Admin> {
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("cannot bind the admin listener on {addr}"))?;
        let addr = listener.local_addr()?;
        // Scrapers and probes are few: a bounded number at a time, the rest wait in the backlog.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &ctx)).await;
                    drop(slot);
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

async fn handle(mut stream: TcpStream, ctx: &ServerCtx) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let req = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse(&buf, 8192) {
            Ok(Some((req, _))) => break req,
            Ok(None) => continue,
            Err(_) => {
                stream.write_all(&http::response(400, &[], "bad request")).await?;
                return Ok(());
            }
        }
    };
    let resp = match (req.method.as_str(), req.path.as_str()) {
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
    };
    stream.write_all(&resp).await?;
    stream.shutdown().await
}
