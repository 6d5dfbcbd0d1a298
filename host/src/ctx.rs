//! What every connection task shares with the server: settings, TLS, the router, the plugin
//! registry, the hub, the count of running connection tasks and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::hub::Hub;
use crate::plugin::Registry;
use crate::router::Router;

pub(crate) struct ServerCtx {
    pub settings: Arc<Settings>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What this server is, for same-origin checks: its scheme and certificate names.
    pub served: crate::origin::Served,
    /// Connections still in their handshake, in total and per client address.
    pub pending: Arc<crate::hub::Admission>,
    /// Behind a balancer (PROXY protocol): handshakes pending per client address, counted once
    /// the PROXY header names it.
    pub pending_clients: Arc<crate::hub::Admission>,
    pub router: Router,
    pub registry: Arc<Registry>,
    pub hub: Arc<Hub>,
    pub tasks: TaskCount,
    /// Cancelled when shutdown starts: connections still in their handshake end at once.
    pub shutdown: CancellationToken,
}

impl ServerCtx {
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// Counts running connection tasks so shutdown can wait for every `on-close`.
#[derive(Default)]
pub(crate) struct TaskCount {
    n: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

pub(crate) struct TaskGuard {
    n: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl TaskCount {
    pub fn enter(&self) -> TaskGuard {
        self.n.fetch_add(1, Relaxed);
        TaskGuard { n: self.n.clone(), idle: self.idle.clone() }
    }

    pub fn count(&self) -> usize {
        self.n.load(Relaxed)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.n.fetch_sub(1, Relaxed) == 1 {
            self.idle.notify_waiters();
        }
    }
}
