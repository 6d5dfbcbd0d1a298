//! A connection registered in the hub, from before `on-connect` (so plugins can address it)
//! to its teardown. The teardown runs when the registration is dropped, so it runs exactly
//! once on every path: a refused handshake, a failed 101, the end of the session, a panic, or
//! a task dropped at shutdown. It calls `on-close` of every plugin that saw the connection
//! open, unregisters it (rooms, attachments), and for an established connection updates the
//! metrics and writes the close line of the connection log.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::close::{Ended, Initiator};
use crate::hub::{AdmitGuard, ConnShared, Hub};
use crate::router::Route;

pub(crate) struct Registration {
    conn: Arc<ConnShared>,
    route: Arc<Route>,
    hub: Arc<Hub>,
    /// How many plugins of the chain saw the connection open (accepted it, or failed and were
    /// bypassed): each is owed `on-close`.
    owed: usize,
    established: Option<Established>,
    ended: Option<Ended>,
}

struct Established {
    since: Instant,
    _admitted: AdmitGuard,
}

impl Registration {
    pub fn new(hub: &Arc<Hub>, route: &Arc<Route>, conn: ConnShared) -> Registration {
        let conn = Arc::new(conn);
        hub.register(conn.clone());
        Registration { conn, route: route.clone(), hub: hub.clone(), owed: 0, established: None, ended: None }
    }

    pub fn conn(&self) -> &Arc<ConnShared> {
        &self.conn
    }

    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// One more plugin of the chain saw the connection open.
    pub fn owe_close(&mut self) {
        self.owed += 1;
    }

    /// The 101 is out: the connection counts as open (it holds its admission slot until the end).
    pub fn establish(&mut self, admitted: AdmitGuard) {
        self.conn.mark_established();
        let m = &self.hub.metrics;
        m.connections.inc();
        m.connections_total.inc();
        self.established = Some(Established { since: Instant::now(), _admitted: admitted });
    }

    /// How the connection ended; the teardown follows when the registration is dropped.
    pub fn end(mut self, ended: Ended) {
        self.ended = Some(ended);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ended = self.ended.take().unwrap_or_else(|| {
            let why = if self.established.is_some() { "connection task ended" } else { "handshake not completed" };
            Ended::abnormal(why, Initiator::Server)
        });
        let conn = &self.conn;
        let undelivered = conn.seal();
        for slot in &self.route.chain[..self.owed] {
            // Failures are logged and counted by the slot; nothing else to do at close.
            let _ = slot.on_close(conn, ended.code, &ended.reason);
        }
        self.hub.unregister(conn);
        let Some(established) = self.established.take() else { return };
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
