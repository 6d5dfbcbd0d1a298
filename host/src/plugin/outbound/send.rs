//! Sending one admitted request: resolve, connect, TLS, HTTP/1.1, all before the plugin's
//! `http_timeout`; then the answer's body, cut at `http_max_response` and bounded by the same
//! deadline. Each failure says what failed, for the plugin, the log and the metrics.

use std::io::ErrorKind;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Sleep, timeout_at};
use tokio_util::sync::WaitForCancellationFutureOwned;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::{Failure, Outbound, Target};
use crate::config::hosts::Scheme;

/// What failed: the metric's kind, the error the plugin gets, and a detail for the log.
type Failed = (Failure, Error, String);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Sends `request` to the admitted `target`; `permit` (a slot of the caller's concurrency
/// bound) is held until the answer's body is read or dropped. Also used for webhooks.
pub(crate) async fn send(
    out: &Arc<Outbound>,
    target: Target,
    mut request: http::Request<WasiBody>,
    started: Instant,
    permit: OwnedSemaphorePermit,
) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Failed> {
    let s = &out.settings;
    let deadline = tokio::time::Instant::from_std(started + s.timeout);
    let timed_out = |what: &str, error: Error| (Failure::Timeout, error, format!("{what} (http_timeout)"));

    // Resolve first, so that a name that does not resolve reads as such.
    let name = target.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addrs: Vec<_> = match timeout_at(deadline, tokio::net::lookup_host((name.as_str(), target.port))).await {
        Err(_) => return Err(timed_out("resolving the host timed out", Error::DnsTimeout)),
        Ok(Err(e)) => {
            let error = Error::DnsError { rcode: Some(e.to_string()), info_code: None };
            return Err((Failure::Dns, error, format!("cannot resolve {name}: {e}")));
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    // Checked on the very addresses connected to below: no second lookup to rebind.
    if target.guarded
        && let Some(internal) = addrs.iter().find(|a| super::ssrf::is_internal(a.ip()))
    {
        let detail = format!("{name} resolves to the internal address {}", internal.ip());
        return Err((Failure::Private, Error::HttpRequestDenied, detail));
    }
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(timed_out("connecting timed out", Error::ConnectionTimeout)),
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last = Some(e),
        }
    }
    let Some(tcp) = tcp else {
        let (error, detail) = match last {
            Some(e) if e.kind() == ErrorKind::ConnectionRefused => (Error::ConnectionRefused, format!("{e}")),
            Some(e) => (Error::DestinationUnavailable, format!("cannot connect: {e}")),
            None => (Error::DestinationNotFound, format!("{name} has no address")),
        };
        return Err((Failure::Refused, error, detail));
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match target.scheme {
        Scheme::Http => Box::new(tcp),
        Scheme::Https => {
            let config = out.tls().map_err(|e| (Failure::Tls, Error::TlsCertificateError, e))?;
            let server_name = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::from(ip),
                Err(_) => ServerName::try_from(name.clone()).map_err(|e| {
                    (Failure::Tls, Error::TlsProtocolError, format!("{name} is not a valid TLS name: {e}"))
                })?,
            };
            let connecting = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
            match timeout_at(deadline, connecting).await {
                Err(_) => return Err(timed_out("the TLS handshake timed out", Error::ConnectionTimeout)),
                Ok(Err(e)) => {
                    let certificate = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    let error = if certificate { Error::TlsCertificateError } else { Error::TlsProtocolError };
                    return Err((Failure::Tls, error, format!("TLS handshake failed: {e}")));
                }
                Ok(Ok(tls)) => Box::new(tls),
            }
        }
    };
    let protocol = |e: hyper::Error| {
        if e.is_timeout() {
            return (Failure::Timeout, Error::HttpResponseTimeout, e.to_string());
        }
        let detail = e.to_string();
        (Failure::Protocol, Error::from(e), detail)
    };
    let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
    let (mut sender, conn) = match timeout_at(deadline, handshake).await {
        Err(_) => return Err(timed_out("the HTTP handshake timed out", Error::ConnectionTimeout)),
        Ok(result) => result.map_err(protocol)?,
    };

    // The URI carries scheme and authority up to here; on the wire only the path goes (the
    // `host` header says the rest).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() =
        http::Uri::try_from(path).map_err(|e| (Failure::Protocol, Error::HttpRequestUriInvalid, e.to_string()))?;

    // Wait for the answer's head while driving the connection.
    let mut answer = std::pin::pin!(sender.send_request(request));
    let mut conn = Some(conn);
    let head = std::future::poll_fn(|cx| match answer.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(protocol)),
        Poll::Pending => {
            let Some(c) = conn.as_mut() else { return Poll::Pending };
            let r = ready!(Pin::new(c).poll(cx));
            conn = None;
            match r {
                Ok(()) => answer.as_mut().poll(cx).map(|r| r.map_err(protocol)),
                Err(e) => Poll::Ready(Err(protocol(e))),
            }
        }
    });
    let response = match timeout_at(deadline, head).await {
        Err(_) => return Err(timed_out("no answer in time", Error::HttpResponseTimeout)),
        Ok(r) => r?,
    };
    let cap = s.max_response;
    let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|n: u64| n > cap as u64) {
        let detail = format!("the answer declares {} bytes, over http_max_response ({cap})", declared.unwrap_or(0));
        return Err((Failure::TooLarge, Error::HttpResponseBodySize(declared), detail));
    }
    let out = out.clone();
    let uri = http::Uri::from(target);
    let response = response.map(|incoming| {
        Capped {
            incoming,
            left: cap,
            cap,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            stop: Box::pin(out.stop.clone().cancelled_owned()),
            out,
            uri,
            _permit: permit,
            done: false,
        }
        .boxed_unsync()
    });
    // The connection is driven on (by wasmtime-wasi-http's task) while the body is read,
    // never past the deadline.
    let io = async move {
        let Some(conn) = conn else { return Ok(()) };
        match timeout_at(deadline, conn).await {
            Err(_) => Err(Error::HttpResponseTimeout),
            Ok(r) => r.map_err(Error::from),
        }
    };
    Ok((response, Box::new(io)))
}

impl From<Target> for http::Uri {
    fn from(t: Target) -> http::Uri {
        let scheme = match t.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        http::Uri::try_from(format!("{scheme}://{}:{}/", t.host, t.port)).unwrap_or_default()
    }
}

/// The answer's body: at most `cap` bytes, before the deadline; holds the request's slot of
/// `http_max_concurrent` until it is read or dropped.
struct Capped {
    incoming: hyper::body::Incoming,
    left: usize,
    cap: usize,
    deadline: Pin<Box<Sleep>>,
    /// Shutdown's grace period is over.
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    out: Arc<Outbound>,
    uri: http::Uri,
    _permit: OwnedSemaphorePermit,
    done: bool,
}

impl Capped {
    fn fail(&mut self, failure: Failure, error: Error, detail: &str) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        self.out.failed(failure, &self.uri, &detail);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if len > this.left {
                    let detail = format!("the answer is longer than http_max_response ({} bytes)", this.cap);
                    return this.fail(Failure::TooLarge, Error::HttpResponseBodySize(Some(this.cap as u64)), &detail);
                }
                this.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let detail = e.to_string();
                this.fail(Failure::Protocol, Error::from(e), &detail)
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return this.fail(
                        Failure::Timeout,
                        Error::HttpResponseTimeout,
                        "the answer's body did not end in time",
                    );
                }
                if this.stop.as_mut().poll(cx).is_ready() {
                    return this.fail(Failure::Stopped, Error::ConnectionTerminated, "the server is shutting down");
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// TLS client settings trusting `ca` (a PEM bundle) or, without one, the system's roots.
pub(super) fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read http_ca {}", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad PEM in http_ca {}", path.display()))?;
            for cert in certs {
                roots.add(cert).with_context(|| format!("unusable CA certificate in {}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        bail!("no trusted CA certificates (set http_ca, or install the system's CA certificates)");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
