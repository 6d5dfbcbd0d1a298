//! Answers that end a connection before (or instead of) the upgrade, and ending a byte
//! stream politely.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ctx::ServerCtx;
use tokio::io::AsyncReadExt;

use crate::http;
use crate::static_files::{CHUNK, FileResponse};
use crate::transport::{ReadStatus, Socket, Transport};

/// A refusal before the upgrade: an HTTP status, a short reason (the body) and a metric label.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(&'static str, String)>,
    pub kind: &'static str,
}

impl Refusal {
    pub fn new(status: u16, kind: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal { status, reason: reason.into(), headers: Vec::new(), kind }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Refusal {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Sends the refusal (logged and counted) and ends the stream.
pub(crate) async fn refuse<S: Socket>(
    ctx: &ServerCtx,
    t: &mut Transport<S>,
    peer: SocketAddr,
    route: Option<&str>,
    r: Refusal,
) {
    ctx.hub.metrics.reject(r.kind);
    tracing::info!(remote = %peer, route, status = r.status, reason = %r.reason, "handshake rejected");
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = http::response(r.status, &headers, &r.reason);
    let _ = tokio::time::timeout(Duration::from_secs(5), write_all(t, &resp)).await;
    finish(t).await;
}

/// Sends a file's response within `limit`, its body read a chunk at a time as the peer takes
/// it, then ends the stream.
pub(crate) async fn send_file<S: Socket>(t: &mut Transport<S>, resp: FileResponse, limit: Duration) {
    let send = async {
        write_all(t, &resp.head).await?;
        let Some((mut file, len)) = resp.body else { return Ok(()) };
        let mut chunk = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut chunk[..want]).await?;
            if n == 0 {
                // The file shrank: the peer sees a short body and the connection end.
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            write_all(t, &chunk[..n]).await?;
            left -= n as u64;
        }
        Ok::<(), std::io::Error>(())
    };
    // A peer that stops reading must not hold its task and handshake slot forever.
    if let Ok(Err(e)) = tokio::time::timeout(limit, send).await {
        tracing::debug!(error = %e, "static file not sent whole");
    }
    finish(t).await;
}

pub(crate) async fn write_all<S: Socket>(t: &mut Transport<S>, bytes: &[u8]) -> std::io::Result<()> {
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
pub(crate) async fn finish<S: Socket>(t: &mut Transport<S>) {
    t.send_close_notify();
    let _ = tokio::time::timeout(Duration::from_secs(1), t.flush_all()).await;
    t.shutdown_write();
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
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}
