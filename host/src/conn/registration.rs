//! A connection registered in the hub, from before `on-connect` (so plugins can address it)
//! to its teardown. The teardown runs exactly once on every path: [`Registration::finish`] on
//! the normal ones, and when the registration is dropped without it (a panic, or a task
//! dropped at shutdown) a task of its own does it. It calls `on-close` of every plugin that
//! saw the connection open, unregisters it (rooms, attachments), and for an established
//! connection updates the metrics and writes the close line of the connection log.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::close::{Ended, Initiator};
use crate::ctx::TaskGuard;
use crate::hub::{AdmitGuard, ConnShared, Hub};
use crate::router::Route;

pub(crate) struct Registration {
    /// `None` once the teardown has started.
    parts: Option<Parts>,
}

/// What the teardown needs.
struct Parts {
    conn: Arc<ConnShared>,
    route: Arc<Route>,
    hub: Arc<Hub>,
    /// How many plugins of the chain saw the connection open (accepted it, or failed and were
    /// bypassed): each is owed `on-close`.
    owed: usize,
    established: Option<Established>,
    /// Keeps shutdown waiting until the teardown is done.
    _task: TaskGuard,
}

struct Established {
    since: Instant,
    _admitted: AdmitGuard,
}

impl Registration {
    pub fn new(hub: &Arc<Hub>, task: TaskGuard, route: &Arc<Route>, conn: ConnShared) -> Registration {
        let conn = Arc::new(conn);
        hub.register(conn.clone());
        let parts = Parts { conn, route: route.clone(), hub: hub.clone(), owed: 0, established: None, _task: task };
        Registration { parts: Some(parts) }
    }

    fn parts(&self) -> &Parts {
        self.parts.as_ref().expect("a registration has its parts until its teardown")
    }

    fn parts_mut(&mut self) -> &mut Parts {
        self.parts.as_mut().expect("a registration has its parts until its teardown")
    }

    pub fn conn(&self) -> &Arc<ConnShared> {
        &self.parts().conn
    }

    pub fn route(&self) -> &Arc<Route> {
        &self.parts().route
    }

    /// One more plugin of the chain saw the connection open.
    pub fn owe_close(&mut self) {
        self.parts_mut().owed += 1;
    }

    /// The 101 is out: the connection counts as open (it holds its admission slot until the end).
    pub fn establish(&mut self, admitted: AdmitGuard) {
        let p = self.parts_mut();
        p.conn.mark_established();
        p.hub.user_arrived(&p.conn);
        let m = &p.hub.metrics;
        m.connections.inc();
        m.connections_total.inc();
        p.established = Some(Established { since: Instant::now(), _admitted: admitted });
    }

    /// The teardown, now, for a connection that ended as `ended`.
    pub async fn finish(mut self, ended: Ended) {
        if let Some(parts) = self.parts.take() {
            parts.teardown(ended).await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(parts) = self.parts.take() else { return };
        let why = if parts.established.is_some() { "connection task ended" } else { "handshake not completed" };
        let ended = Ended::abnormal(why, Initiator::Server);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(parts.teardown(ended))),
            Err(_) => tracing::error!(conn = parts.conn.id, "no runtime left for the connection's teardown"),
        }
    }
}

impl Parts {
    async fn teardown(self, ended: Ended) {
        let conn = &self.conn;
        let undelivered = conn.seal();
        for slot in &self.route.chain[..self.owed] {
            // Failures are logged and counted by the slot; nothing else to do at close.
            let _ = slot.on_close(conn, ended.code, &ended.reason).await;
        }
        self.hub.unregister(conn);
        let Some(established) = self.established else { return };
        let m = &self.hub.metrics;
        m.connections.dec();
        m.closes.get_or_create(&crate::metrics::CodeLabel { code: ended.code.metric_label() }).inc();
        let s = &conn.stats;
        let identity = conn.identity();
        tracing::info!(
            id = conn.id, remote = %conn.remote, route = %conn.route.path, user = identity.as_ref().map(|i| i.id.as_str()),
            code = ended.code.get(), reason = %ended.reason, initiator = ended.initiator.as_str(),
            duration_ms = established.since.elapsed().as_millis() as u64,
            msgs_in = s.msgs_in.load(Relaxed), msgs_out = s.msgs_out.load(Relaxed),
            bytes_in = s.bytes_in.load(Relaxed), bytes_out = s.bytes_out.load(Relaxed),
            dropped = s.dropped.load(Relaxed), undelivered,
            "connection closed"
        );
    }
}
