//! Outbound HTTP(S) from plugins: the standard `wasi:http/outgoing-handler`, served by
//! wasmtime's own `wasmtime-wasi-http`, whose send hook lands here. The hook enforces the
//! plugin's policy before anything touches the network: the backend must match
//! `http_allowed_hosts` (deny by default), at most `http_max_concurrent` requests are in flight,
//! the whole exchange is bounded by `http_timeout`, and the answer's body by
//! `http_max_response`. TLS is verified against the system's roots or `http_ca`.
//!
//! A plugin call waiting for an answer is a suspended fiber: it holds its pooled instance, no
//! thread, and its CPU deadline does not run (epoch ticks count only its own execution); the
//! wait counts against `http_timeout` instead. The connection's next message waits for the
//! call, so one connection's messages stay in order.

mod send;
mod ssrf;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Semaphore;

pub(crate) use send::send;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use crate::config::HttpSettings;
use crate::config::hosts::Scheme;
use crate::metrics::{Metrics, PluginKindLabel, PluginLabel};

/// One plugin's outbound HTTP: its policy, what is in flight, its TLS roots and metrics.
/// Shared by every version of the plugin (a reload keeps the count of requests in flight).
pub struct Outbound {
    plugin: Arc<str>,
    settings: HttpSettings,
    in_flight: Arc<Semaphore>,
    /// Built on the first `https://` request (reading the trust store costs milliseconds).
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    requests: Counter,
    seconds: Histogram,
    errors: Family<PluginKindLabel, Counter>,
    /// Shutdown's grace period is over: requests still waiting fail at once, so the calls
    /// waiting on them end (and `on-close` runs) within the shutdown's bound, not `http_timeout`.
    stop: CancellationToken,
}

/// Why a request failed, for the `kind` label of `wasmsock_plugin_http_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Denied,
    /// A name resolved to an internal address (see `ssrf`).
    Private,
    Busy,
    Dns,
    Refused,
    Tls,
    Stopped,
    Timeout,
    TooLarge,
    Protocol,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Denied => "denied",
            Failure::Private => "private",
            Failure::Busy => "concurrency",
            Failure::Dns => "dns",
            Failure::Refused => "connect",
            Failure::Tls => "tls",
            Failure::Stopped => "stopped",
            Failure::Timeout => "timeout",
            Failure::TooLarge => "too_large",
            Failure::Protocol => "protocol",
        }
    }
}

impl Outbound {
    pub fn new(plugin: Arc<str>, settings: HttpSettings, metrics: &Metrics, stop: CancellationToken) -> Outbound {
        let label = PluginLabel { plugin: plugin.to_string() };
        Outbound {
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent)),
            requests: metrics.plugin_http_requests.get_or_create(&label).clone(),
            seconds: metrics.plugin_http_seconds.get_or_create(&label).clone(),
            errors: metrics.plugin_http_errors.clone(),
            plugin,
            settings,
            tls: OnceLock::new(),
            stop,
        }
    }

    /// Counts and logs a failed request; the error is what the plugin gets.
    fn failed(&self, failure: Failure, url: &http::Uri, detail: &dyn std::fmt::Display) {
        self.errors.get_or_create(&PluginKindLabel { plugin: self.plugin.to_string(), kind: failure.as_str() }).inc();
        match failure {
            Failure::Denied => {
                tracing::warn!(plugin = %self.plugin, %url, "outbound HTTP request denied: {detail} (see http_allowed_hosts)")
            }
            Failure::Private => {
                tracing::warn!(plugin = %self.plugin, %url, "outbound HTTP request denied: {detail} (see http_allow_private)")
            }
            _ => {
                tracing::info!(plugin = %self.plugin, %url, kind = failure.as_str(), "outbound HTTP request failed: {detail}")
            }
        }
    }

    /// The policy's verdict on a request's target: the scheme and `host:port` to connect to.
    pub(crate) fn admit(&self, uri: &http::Uri) -> Result<Target, String> {
        let scheme = uri.scheme_str().and_then(Scheme::parse).ok_or("the scheme must be http or https")?;
        let host = uri.host().ok_or("the URL has no host")?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let Some(entry) = self.settings.allowed_hosts.iter().find(|p| p.matches(scheme, &host, port)) else {
            return Err(format!("{host}:{port} over {} is not in http_allowed_hosts", uri.scheme_str().unwrap_or("?")));
        };
        let guarded = !self.settings.allow_private && !entry.is_ip_literal();
        Ok(Target { scheme, host, port, guarded })
    }

    /// The plugin's name, for logs.
    pub(crate) fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// The TLS client settings: the configured CA, or the system's roots.
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls.get_or_init(|| send::client_config(self.settings.ca.as_deref()).map_err(|e| format!("{e:#}"))).clone()
    }
}

/// Where an admitted request goes.
pub(crate) struct Target {
    scheme: Scheme,
    /// Lower-cased; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
    /// The addresses the host resolves to must be public (see `ssrf`).
    guarded: bool,
}

/// The `wasi:http` hooks of one store: every request a plugin sends goes through
/// [`Outbound::send`].
pub struct Hooks(pub Arc<Outbound>);

type Sent = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let out = self.0.clone();
        let started = Instant::now();
        out.requests.inc();
        // Decided here, before anything is spawned: a denied request never connects.
        let admitted = out.admit(request.uri()).map_err(|why| {
            out.failed(Failure::Denied, request.uri(), &why);
            Error::HttpRequestDenied
        });
        Box::new(async move {
            let target = admitted?;
            let uri = request.uri().clone();
            // Taken before connecting, given back when the answer's body is read or dropped.
            let permit = out.in_flight.clone().try_acquire_owned().map_err(|_| {
                let detail =
                    format!("{} requests already in flight (http_max_concurrent)", out.settings.max_concurrent);
                out.failed(Failure::Busy, &uri, &detail);
                Error::ConnectionLimitReached
            })?;
            let result = tokio::select! {
                r = send::send(&out, target, request, started, permit) => r,
                () = out.stop.cancelled() => {
                    Err((Failure::Stopped, Error::ConnectionTerminated, "the server is shutting down".to_owned()))
                }
            };
            out.seconds.observe(started.elapsed().as_secs_f64());
            result.map_err(|(failure, error, detail)| {
                out.failed(failure, &uri, &detail);
                error
            })
        })
    }
}
