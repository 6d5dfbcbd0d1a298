//! What the host knows about one connection, shared by its task, plugin calls, rooms and the
//! heartbeat sweeper. The connection's task owns the socket; everyone else reaches the peer
//! through the outbox here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::RoomKey;
use super::outbox::{Outbox, Outgoing, PushError};
use super::signal::Signal;
use crate::clock::now_ms;
use crate::config::{RouteSettings, SlowConsumer};
use crate::ws::CloseCode;

/// Who a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    /// JSON object text.
    pub claims: String,
}

/// Why the host ends a connection without waiting for a close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kill {
    None = 0,
    /// No traffic (not even a pong) within the heartbeat bound.
    DeadPeer = 1,
    /// The peer stopped reading: a write stayed blocked past the write timeout.
    WriteTimeout = 2,
    /// The shutdown grace period ran out.
    Shutdown = 3,
    /// The close handshake did not finish in time.
    CloseTimeout = 4,
}

impl Kill {
    fn from_u8(v: u8) -> Kill {
        match v {
            1 => Kill::DeadPeer,
            2 => Kill::WriteTimeout,
            3 => Kill::Shutdown,
            4 => Kill::CloseTimeout,
            _ => Kill::None,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Kill::None => "",
            Kill::DeadPeer => "heartbeat timeout",
            Kill::WriteTimeout => "write timeout",
            Kill::Shutdown => "shutdown grace period elapsed",
            Kill::CloseTimeout => "close handshake timeout",
        }
    }
}

/// Per-plugin data the host keeps on a connection: attachments and room memberships.
#[derive(Debug, Default)]
pub struct PluginData {
    pub attachments: Vec<(Arc<str>, Vec<u8>)>,
    pub rooms: Vec<RoomKey>,
    /// Set when the connection is unregistered: no room may be joined after that.
    pub gone: bool,
    /// A timer was ever tied to the connection: its end looks for its timers.
    pub timers: bool,
}

#[derive(Debug, Default)]
pub struct ConnStats {
    pub msgs_in: AtomicU64,
    pub msgs_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Messages dropped by the slow-consumer policy.
    pub dropped: AtomicU64,
}

/// Activity stamps (milliseconds of [`now_ms`]) read by the heartbeat sweeper.
#[derive(Debug, Default)]
pub struct Activity {
    /// Any bytes from the peer.
    pub last_rx: AtomicU64,
    /// A data message from the peer or to it.
    pub last_message: AtomicU64,
    /// Our last ping.
    pub last_ping: AtomicU64,
    /// When the current blocked write started, 0 when writes flow.
    pub write_blocked_since: AtomicU64,
}

/// Writes a connection's queued frames from whichever task queued them, while the
/// connection's own task is idle: a publish to many members then costs no wake-up, turn and
/// re-arm of each member's task.
pub trait Flush: Send + Sync {
    /// Hands everything queued on `conn` to its socket now; false when that cannot be done
    /// here (its task is at the socket, its own writer holds frames, the socket is full, a
    /// close is queued...) and the connection's task must be woken to do it.
    fn flush(&self, conn: &ConnShared) -> bool;
}

/// Connections whose queues a caller writes itself; beyond that, a fan-out's writes are split
/// into tasks of [`FLUSH_CHUNK`] connections, so a big room's writes spread over the I/O
/// threads and other connections get turns in between.
const INLINE_FLUSHES: usize = 4;
const FLUSH_CHUNK: usize = 64;

thread_local! {
    /// On the slow lane's threads: true, and the I/O runtime whose tasks write what these
    /// threads queue (at the lane's low priority the frames would wait).
    static ON_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LANE_IO: std::cell::RefCell<Option<tokio::runtime::Handle>> = const { std::cell::RefCell::new(None) };
}

/// Marks this thread as a slow lane's: what it queues is written by tasks on `io` (or, without
/// one, by the connections' own tasks).
pub fn flush_from_lane(io: Option<tokio::runtime::Handle>) {
    ON_LANE.set(true);
    LANE_IO.set(io);
}

/// Where frames just queued for some connections are written from.
enum WriteFrom {
    /// The caller writes them (a few connections).
    Here,
    /// Tasks on this I/O runtime, [`FLUSH_CHUNK`] connections each.
    Tasks(tokio::runtime::Handle),
    /// Each connection's own task, woken.
    Owners,
}

impl WriteFrom {
    fn for_members(n: usize) -> WriteFrom {
        let few = n <= INLINE_FLUSHES;
        if ON_LANE.get() {
            // At the lane's low priority the frames would wait: the I/O threads write them,
            // and a few are cheaper woken than handed to a task.
            if few {
                return WriteFrom::Owners;
            }
            LANE_IO.with_borrow(|io| io.clone()).map_or(WriteFrom::Owners, WriteFrom::Tasks)
        } else if few {
            WriteFrom::Here
        } else {
            tokio::runtime::Handle::try_current().map_or(WriteFrom::Owners, WriteFrom::Tasks)
        }
    }
}

/// Has what was just queued to `conns` written (see [`ConnShared::queue`]): by the caller, by
/// tasks spawned for it, or by each connection's task.
pub fn flush_all(conns: Vec<Arc<ConnShared>>) {
    match WriteFrom::for_members(conns.len()) {
        WriteFrom::Here => conns.iter().for_each(|c| c.flush_or_wake()),
        WriteFrom::Owners => conns.iter().for_each(|c| c.wake.raise()),
        WriteFrom::Tasks(io) => {
            let mut rest = conns.into_iter();
            loop {
                let chunk: Vec<Arc<ConnShared>> = rest.by_ref().take(FLUSH_CHUNK).collect();
                if chunk.is_empty() {
                    break;
                }
                drop(io.spawn(async move { chunk.iter().for_each(|c| c.flush_or_wake()) }));
            }
        }
    }
}

pub struct ConnShared {
    pub id: u64,
    /// The route's settings (its limits, and which plugins may address the connection).
    pub route: Arc<RouteSettings>,
    pub remote: SocketAddr,
    identity: Mutex<Option<Arc<Identity>>>,
    out: Mutex<Outbox>,
    wake: Signal,
    /// Set by the connection's task when others may write its queue (see [`Flush`]); weak, so
    /// that the socket closes when the task is done with it.
    direct: OnceLock<Weak<dyn Flush>>,
    kill: AtomicU8,
    established: AtomicBool,
    /// Set while the connection's own task is processing input; it pumps the queue right
    /// after, so sends in the meantime (its plugins' replies) need not wake it.
    busy: AtomicBool,
    /// Bytes of the message being assembled (kept by the connection's task, for the budget).
    pub partial_bytes: AtomicUsize,
    /// The server's buffer budget shed this connection, or its message timed out: its task
    /// drops what it assembles and ends once the close frame is out.
    shed: AtomicBool,
    pub activity: Activity,
    pub data: Mutex<PluginData>,
    pub stats: ConnStats,
    /// The server's outbox-drop counter.
    drops: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnShared").field("id", &self.id).field("remote", &self.remote).finish()
    }
}

impl ConnShared {
    pub fn new(
        id: u64,
        route: Arc<RouteSettings>,
        remote: SocketAddr,
        drops: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let limits = &route.limits;
        let now = now_ms();
        let conn = ConnShared {
            id,
            out: Mutex::new(Outbox::new(limits.outbox_messages, limits.outbox_bytes)),
            route,
            remote,
            identity: Mutex::new(None),
            wake: Signal::default(),
            direct: OnceLock::new(),
            kill: AtomicU8::new(0),
            established: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            partial_bytes: AtomicUsize::new(0),
            shed: AtomicBool::new(false),
            activity: Activity::default(),
            data: Mutex::new(PluginData::default()),
            stats: ConnStats::default(),
            drops,
        };
        conn.activity.last_rx.store(now, Relaxed);
        conn.activity.last_message.store(now, Relaxed);
        conn
    }

    /// True if `plugin` is in the chain of this connection's route: it may address it.
    pub fn serves(&self, plugin: &str) -> bool {
        self.route.plugins.iter().any(|p| p == plugin)
    }

    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.lock().clone()
    }

    pub fn set_identity(&self, identity: Identity) {
        *self.identity.lock() = Some(Arc::new(identity));
    }

    pub fn mark_established(&self) {
        self.established.store(true, Relaxed);
    }

    pub fn is_established(&self) -> bool {
        self.established.load(Relaxed)
    }

    /// Lets others write this connection's queue while its task is idle.
    pub fn write_directly(&self, flush: Weak<dyn Flush>) {
        let _ = self.direct.set(flush);
    }

    /// Queues a data message and has it written, applying the route's slow-consumer policy
    /// when the queue is full.
    pub fn send(&self, item: Outgoing) -> Result<(), PushError> {
        if self.queue(item)? {
            match WriteFrom::for_members(1) {
                WriteFrom::Here => self.flush_or_wake(),
                WriteFrom::Tasks(_) | WriteFrom::Owners => self.wake.raise(),
            }
        }
        Ok(())
    }

    /// Queues a data message like [`send`](Self::send) but leaves it there: true when the
    /// caller must then [`flush_or_wake`](Self::flush_or_wake) (the connection's task is not
    /// busy with input, after which it writes its queue itself).
    pub fn queue(&self, item: Outgoing) -> Result<bool, PushError> {
        let result = self.out.lock().push(item);
        match result {
            // SeqCst pairs with `end_busy`: either the task sees the queued item when it
            // checks, or this load sees it idle.
            Ok(()) => return Ok(!self.busy.load(std::sync::atomic::Ordering::SeqCst)),
            Err(PushError::Full) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                self.drops.inc();
                if self.route.limits.slow_consumer == SlowConsumer::Close {
                    self.out.lock().close_now(CloseCode::POLICY, "slow consumer".into());
                    self.wake.raise();
                }
            }
            Err(PushError::Closed) => {}
        }
        result.map(|()| false)
    }

    /// Writes the queue from here when the connection allows it, else wakes its task to.
    pub fn flush_or_wake(&self) {
        if !self.direct.get().and_then(Weak::upgrade).is_some_and(|d| d.flush(self)) {
            self.wake.raise();
        }
    }

    /// Queues a ping or pong.
    pub fn send_control(&self, item: Outgoing) -> Result<(), PushError> {
        let result = self.out.lock().push_control(item);
        if result.is_ok() {
            self.wake_unless_busy();
        }
        result
    }

    fn wake_unless_busy(&self) {
        // SeqCst pairs with `end_busy`: either the task sees the queued item when it checks, or
        // this load sees it idle and wakes it.
        if !self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            self.wake.raise();
        }
    }

    /// The task starts processing input.
    pub fn begin_busy(&self) {
        self.busy.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The task is done processing; true if frames were queued meanwhile (pump again).
    pub fn end_busy(&self) -> bool {
        self.busy.store(false, std::sync::atomic::Ordering::SeqCst);
        self.has_outgoing()
    }

    /// Asks for a close handshake after the frames already queued; false if one is under way.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        let queued = self.out.lock().push_close(code, reason.to_owned());
        if queued {
            self.wake.raise();
        }
        queued
    }

    /// Closes at once, discarding the backlog (for protocol errors and policy closes).
    pub fn close_now(&self, code: CloseCode, reason: &str) {
        self.out.lock().close_now(code, reason.to_owned());
        self.wake.raise();
    }

    /// Closes at once with `code`, dropping the backlog, and tells the connection's task to drop
    /// its partial message and not wait for the peer's reply.
    pub fn shed(&self, code: CloseCode, reason: &str) {
        self.shed.store(true, Relaxed);
        self.close_now(code, reason);
    }

    pub fn is_shed(&self) -> bool {
        self.shed.load(Relaxed)
    }

    /// Payload bytes in the outgoing queue and in the writer's hands (see `Outbox::bytes`).
    pub fn outbox_bytes(&self) -> usize {
        self.out.lock().bytes()
    }

    /// Ends the connection without a close handshake.
    pub fn kill(&self, why: Kill) {
        let _ = self.kill.compare_exchange(0, why as u8, Relaxed, Relaxed);
        self.wake.raise();
    }

    pub fn killed(&self) -> Kill {
        Kill::from_u8(self.kill.load(Relaxed))
    }

    pub fn is_closing(&self) -> bool {
        self.out.lock().is_closing()
    }

    /// Moves up to `max` queued frames into `into`.
    pub fn take_outgoing(&self, into: &mut Vec<Outgoing>, max: usize) {
        self.out.lock().drain_into(into, max);
    }

    /// Moves all queued frames into `into` to be written at once, within bounds (see
    /// `Outbox::take_all`); false if they must wait for the connection's task.
    pub fn take_all(&self, into: &mut Vec<Outgoing>, max_frames: usize, max_bytes: usize) -> bool {
        self.out.lock().take_all(into, max_frames, max_bytes)
    }

    /// The writer handed `frames` frames it took, `bytes` of them (their payload lengths), to
    /// the transport: the outbox's byte limit stops counting them.
    pub fn release_outgoing(&self, frames: usize, bytes: usize) {
        if frames > 0 {
            self.out.lock().release(frames, bytes);
        }
    }

    pub fn has_outgoing(&self) -> bool {
        !self.out.lock().is_empty()
    }

    /// Marks the queue closed for good; returns how many frames were never sent.
    pub fn seal(&self) -> usize {
        self.out.lock().seal()
    }

    /// Resolves when something was queued, a close was requested or the connection was killed.
    pub async fn woken(&self) {
        self.wake.raised().await
    }

    /// This plugin's attachment.
    pub fn attachment(&self, plugin: &str) -> Option<Vec<u8>> {
        let data = self.data.lock();
        data.attachments.iter().find(|(p, _)| &**p == plugin).map(|(_, v)| v.clone())
    }
}
