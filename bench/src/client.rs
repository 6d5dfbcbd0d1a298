//! Rust WebSocket clients for the scenarios the Go load client does not cover.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn tls(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA").flatten() {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

pub async fn connect(url: &str, port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<Ws> {
    let req = url.into_client_request()?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(Connector::Rustls(tls.clone())))
        .await
        .with_context(|| format!("connect {url}"))?;
    Ok(ws)
}

pub async fn send_text(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(Message::text(text)).await.context("send")
}

/// The next text message (control frames skipped); `None` when the connection ended.
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Binary(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// The next text message (control frames skipped); an error saying how the connection ended
/// (the server's close frame, if any) when it did.
pub async fn expect_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => anyhow::bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => anyhow::bail!("connection error: {e}"),
            None => anyhow::bail!("connection ended"),
        }
    }
}
