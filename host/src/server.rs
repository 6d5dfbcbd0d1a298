//! The server: listeners, the accept loop, the heartbeat sweeper and graceful shutdown.
//!
//! Like mini-redis, the library exposes `Server::bind` + `run(shutdown)`; the binary is a thin
//! CLI and tests drive the real server in-process on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::Settings;
use crate::conn;
use crate::ctx::{ServerCtx, TaskCount};
use crate::hub::{AdmitError, Hub, KvLimits};
use crate::hub::{Kill, Outgoing};
use crate::plugin::{LoadOutcome, Registry, Runtime};
use crate::router::Router;
use crate::ws::CloseCode;

/// How long shutdown waits, after the grace period, for the connections it then drops: their
/// plugin calls, and the on-close calls still owed them, each run about a millisecond of their
/// own CPU time more, so this is plenty.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// A bound server, ready to run.
pub struct Server {
    ctx: Arc<ServerCtx>,
    listeners: Vec<TcpListener>,
    admin: Option<crate::admin::Admin>,
    /// Rooms (and shared key/value stores) across nodes, when configured.
    broker: Option<Broker>,
    _watch: crate::plugin::WatchGuard,
    pub dev_cert: Option<PathBuf>,
}

impl Server {
    /// Loads plugins, sets up TLS and binds the listeners (and the admin listener). Fails, with
    /// the reason, before anything is served.
    pub async fn bind(settings: Settings) -> Result<Server> {
        Self::bind_with(settings, None).await
    }

    /// As [`Server::bind`], reporting every plugin (re)load outcome on `reloads`.
    pub async fn bind_with(settings: Settings, reloads: Option<mpsc::UnboundedSender<LoadOutcome>>) -> Result<Server> {
        let settings = Arc::new(settings);
        raise_nofile(settings.server.nofile_limit);
        // Listeners and TLS first: a bad address or certificate fails before any side effect.
        let listeners = bind_listeners(&settings.listen).await?;
        let tls = crate::tls::setup(&settings.tls, &settings.state_dir)?;
        let dev_cert = tls.as_ref().and_then(|t| t.dev_cert.clone());
        let served = crate::origin::Served {
            tls: tls.is_some(),
            names: tls.as_ref().map(|t| t.names.clone()).unwrap_or_default(),
        };

        let hub = Hub::new(
            KvLimits {
                max_key: settings.host.kv_max_key,
                max_value: settings.host.kv_max_value,
                max_keys: settings.host.kv_max_keys,
            },
            settings.host.max_memory,
            Arc::new(match settings.broker {
                Some(_) => crate::metrics::Metrics::with_broker(),
                None => crate::metrics::Metrics::new(),
            }),
        );
        let hub = Arc::new(hub.with_history(settings.history.clone(), settings.host.max_history_memory));
        let runtime = Arc::new(Runtime::new(&settings.engine)?);
        let broker = settings.broker.as_ref().map(|b| Broker::start(b, hub.clone())).transpose()?;
        let registry = Arc::new(Registry::new(runtime, hub.clone(), settings.clone()));
        let router = Router::new(&settings.routes, &settings.http_routes, &registry, settings.static_dir.clone());
        let outcomes = {
            let reg = registry.clone();
            tokio::task::spawn_blocking(move || reg.load_all()).await.context("plugin loading task")??
        };
        for o in outcomes {
            if let Some(tx) = &reloads {
                let _ = tx.send(o);
            }
        }
        let watch = crate::plugin::watch(registry.clone(), reloads)?;

        let ctx = Arc::new(ServerCtx {
            settings: settings.clone(),
            tls: tls.map(|t| t.config),
            served,
            pending: Arc::default(),
            pending_clients: Arc::default(),
            router,
            registry,
            hub,
            tasks: TaskCount::default(),
            shutdown: CancellationToken::new(),
        });
        let admin = match &settings.admin {
            Some(addr) => Some(crate::admin::Admin::bind(addr, ctx.clone()).await?),
            None => None,
        };
        Ok(Server { ctx, listeners, admin, broker, _watch: watch, dev_cert })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Logs what is being served. "listening on" comes last, so that whoever waits for it (a
    /// supervisor, a test) has read the routes, plugins and certificate by then.
    pub fn announce(&self) {
        for w in &self.ctx.settings.warnings {
            tracing::warn!("{w}");
        }
        if self.ctx.tls.is_none() {
            for route in self.ctx.router.routes().filter(|r| r.origins().same_origin_without_public()) {
                tracing::warn!(
                    route = %route.path(),
                    "same-origin checks on a plain listener admit only loopback pages: name the public origin with [origins] public"
                );
            }
        }
        if let Some(a) = self.admin_addr() {
            tracing::info!(addr = %a, "admin (metrics, health, plugins) on http://{a}");
        }
        for route in self.ctx.router.routes() {
            tracing::info!(route = %route.path(), chain = ?route.chain_names(), loaded = route.missing_plugin().is_none(), "route");
        }
        for route in self.ctx.router.http_routes() {
            tracing::info!(
                route = %route.path(), plugin = %route.slot.name(), loaded = route.slot.is_loaded(),
                serves_http = route.slot.serves_http(), "http route: {} and below", route.path()
            );
        }
        for p in self.ctx.registry.list(&[]) {
            tracing::info!(plugin = %p.name, loaded = p.loaded, hash = p.hash.as_deref(), size = p.size, "plugin");
        }
        if let Some(cert) = &self.dev_cert {
            tracing::warn!(
                cert = %cert.display(),
                "serving a self-signed development certificate; trust it with e.g. `wscat -c wss://localhost:<port>/echo --ca {}`",
                cert.display()
            );
        }
        let scheme = if self.ctx.tls.is_some() { "wss" } else { "ws" };
        for addr in self.local_addrs() {
            tracing::info!(%addr, "listening on {scheme}://{addr}");
        }
    }

    /// Serves until `shutdown` resolves, then closes every connection with 1001, runs every
    /// `on-close`, and returns once they are done or the grace period is over.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let ctx = self.ctx.clone();
        let mut accept_loops = tokio::task::JoinSet::new();
        for listener in self.listeners {
            accept_loops.spawn(accept_loop(listener, ctx.clone()));
        }
        let sweeper = tokio::spawn(sweep(ctx.clone()));
        let budget_guard = tokio::spawn(guard_budget(ctx.clone()));
        let mut timers = crate::plugin::start_timers(ctx.registry.clone(), ctx.hub.clone(), ctx.shutdown.clone());
        shutdown.await;

        // Timers stop with the accept loops: pending ones are dropped, fires running finish
        // within the grace period like the connections' calls.
        ctx.shutdown.cancel();
        accept_loops.shutdown().await;
        let grace = ctx.settings.server.shutdown_grace;
        let open = ctx.hub.len();
        tracing::info!(
            connections = open,
            grace_ms = grace.as_millis() as u64,
            "shutting down: closing connections with 1001"
        );
        ctx.hub.for_each(|c| {
            c.close(CloseCode::GOING_AWAY, "server shutting down");
        });
        // Queued webhooks go now; the ones on-close emits follow as those calls run.
        ctx.registry.flush_webhooks();
        let settled = async {
            ctx.tasks.wait_idle().await;
            ctx.registry.webhooks_idle().await;
            let _ = (&mut timers).await;
        };
        if tokio::time::timeout(grace, settled).await.is_err() {
            let left = ctx.hub.len();
            tracing::warn!(connections = left, "shutdown grace period over: dropping the remaining connections");
            ctx.hub.for_each(|c| c.kill(Kill::Shutdown));
            // Calls still running, and each on-close still owed, run at most their stop
            // allowance (see `Registry::stop_calls`). So every teardown ends within the
            // margin, and none is abandoned.
            ctx.registry.stop_calls();
            let ended = async {
                ctx.tasks.wait_idle().await;
                if !timers.is_finished() {
                    let _ = (&mut timers).await;
                }
            };
            if tokio::time::timeout(SHUTDOWN_MARGIN, ended).await.is_err() {
                tracing::error!(tasks = ctx.tasks.count(), "connections still ending after the shutdown margin");
            }
            // Webhooks still queued or in delivery are dropped (and counted) at once.
            let _ = tokio::time::timeout(SHUTDOWN_MARGIN, ctx.registry.webhooks_idle()).await;
        }
        timers.abort();
        sweeper.abort();
        budget_guard.abort();
        if let Some(broker) = &self.broker {
            broker.stop();
        }
        drop(self.admin);
        tracing::info!("shutdown complete");
        Ok(())
    }
}

async fn bind_listeners(listen: &str) -> Result<Vec<TcpListener>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot resolve listen address {listen:?}"))?
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("listen address {listen:?} resolves to nothing");
    }
    let mut listeners = Vec::new();
    for addr in dedup(addrs) {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .with_context(|| format!("cannot create a socket for {addr}"))?;
        socket.set_reuseaddr(true)?;
        if addr.is_ipv6() {
            // Bind v6 only: "localhost" binds ::1 and 127.0.0.1 as separate listeners.
            let _ = socket2::SockRef::from(&socket).set_only_v6(true);
        }
        socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(socket.listen(4096).with_context(|| format!("cannot listen on {addr}"))?);
        if addr.port() == 0 {
            break; // one ephemeral listener; separate ones would get different ports
        }
    }
    Ok(listeners)
}

fn dedup(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = Vec::new();
    addrs.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    addrs
}

async fn accept_loop(listener: TcpListener, ctx: Arc<ServerCtx>) {
    let limits = &ctx.settings.server;
    // Behind a balancer the socket's address is the balancer's: the client's own is known
    // after the PROXY header, and its per-address bound applies then (see `conn::accept`).
    let per_ip = if limits.proxy_protocol { usize::MAX } else { limits.max_pending_handshakes_per_ip };
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Handshakes in flight are bounded, in total and per client address: beyond the limit
        // a new socket is dropped at once, so a flood of slow handshakes cannot exhaust memory,
        // and one address cannot take every slot.
        let permit = match ctx.pending.admit(peer.ip(), limits.max_pending_handshakes, per_ip) {
            Ok(permit) => permit,
            Err(e) => {
                ctx.hub.metrics.reject(match e {
                    AdmitError::TooManyConnections => "too_many_pending_handshakes",
                    AdmitError::TooManyFromAddress => "too_many_pending_handshakes_from_address",
                });
                drop(tcp);
                continue;
            }
        };
        tokio::spawn(conn::serve(ctx.clone(), tcp, peer, permit));
    }
}

/// Keeps the bytes held for peers within `max_buffered_bytes`: counts them every quarter
/// second, and at once when partial messages alone exceed it, and sheds the biggest holders
/// (see [`crate::hub::Budget`]).
async fn guard_budget(ctx: Arc<ServerCtx>) {
    let hub = &ctx.hub;
    hub.budget.set_max(ctx.settings.server.max_buffered_bytes);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.budget.exceeded() => {}
        }
        let mut conns = Vec::with_capacity(hub.len());
        hub.for_each(|c| conns.push(c.clone()));
        let (held, shed) = hub.budget.enforce(&conns);
        hub.metrics.buffered_bytes.set(held as i64);
        hub.metrics.buffered_sheds.inc_by(shed as u64);
    }
}

/// Heartbeats, idle and write timeouts for every connection, from one task: connections carry
/// no timers of their own.
async fn sweep(ctx: Arc<ServerCtx>) {
    let period = sweep_period(&ctx);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        ctx.hub.for_each(|c| {
            if !c.is_established() {
                return;
            }
            let l = &c.route.limits;
            let a = &c.activity;
            let last_rx = a.last_rx.load(Relaxed);
            if let Some(interval) = l.ping_interval {
                let interval = interval.as_millis() as u64;
                if now.saturating_sub(last_rx) > interval + l.pong_timeout.as_millis() as u64 {
                    c.kill(Kill::DeadPeer);
                    return;
                }
                if now.saturating_sub(last_rx) >= interval && now.saturating_sub(a.last_ping.load(Relaxed)) >= interval
                {
                    a.last_ping.store(now, Relaxed);
                    let _ = c.send_control(Outgoing::Ping(bytes::Bytes::new()));
                }
            }
            let blocked = a.write_blocked_since.load(Relaxed);
            if blocked != 0 && now.saturating_sub(blocked) > l.write_timeout.as_millis() as u64 {
                c.kill(Kill::WriteTimeout);
                return;
            }
            if let Some(idle) = l.idle_timeout
                && now.saturating_sub(a.last_message.load(Relaxed)) > idle.as_millis() as u64
            {
                c.close(CloseCode::GOING_AWAY, "idle timeout");
            }
        });
        // Entries past their ttl go even in rooms nobody publishes to any more.
        ctx.hub.history.sweep();
        let (rooms, members) = ctx.hub.rooms.totals();
        let m = &ctx.hub.metrics;
        m.rooms.set(rooms as i64);
        m.room_members.set(members as i64);
    }
}

/// A quarter of the shortest heartbeat-related interval, between 10 ms and 1 s.
fn sweep_period(ctx: &ServerCtx) -> Duration {
    let mut shortest = Duration::from_secs(4);
    for r in ctx.router.routes() {
        let l = &r.settings.limits;
        for d in [l.ping_interval, Some(l.pong_timeout), Some(l.write_timeout), l.idle_timeout].into_iter().flatten() {
            shortest = shortest.min(d);
        }
    }
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Raises the soft open-files limit towards `want` (capped at the hard limit).
pub fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if !get_nofile(&mut lim) {
        return;
    }
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur < target {
        let before = lim.rlim_cur;
        lim.rlim_cur = target as libc::rlim_t;
        if set_nofile(&lim) {
            tracing::debug!(from = { before }, to = target, "raised the open-files limit");
        }
    }
}

#[allow(unsafe_code)]
fn get_nofile(lim: &mut libc::rlimit) -> bool {
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim) == 0 }
}

#[allow(unsafe_code)]
fn set_nofile(lim: &libc::rlimit) -> bool {
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) == 0 }
}
