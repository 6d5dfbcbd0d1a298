//! An upgraded connection's loop: read → decode into events ([`inbound`](super::inbound)) →
//! handle them ([`dispatch`](super::dispatch)) → write what was queued
//! ([`writer`](super::writer)), until the close handshake ([`close`](super::close)) is over.
//!
//! One task per connection does everything. It owns no read buffer (plaintext goes straight
//! from rustls into the decoder) and its write batch is empty between bursts, so an idle
//! connection costs only its small state.
//!
//! Messages are handled one at a time, in order. A plugin call that does not finish at once
//! (it moved to the slow lane, or waits) stays in flight while the loop goes on writing what
//! others queue for this connection; reading resumes, and the next event is handled, once it
//! is done.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::close::{CloseState, Ended, Initiator};
use super::dispatch::{self, Handling};
use super::inbound::Inbound;
use super::link::Link;
use super::writer::{Writer, Written};
use crate::clock::coarse_ms;
use crate::hub::{Budget, ConnShared, Kill};
use crate::metrics::Metrics;
use crate::plugin::Message;
use crate::router::Route;
use crate::transport::{ReadError, ReadStatus, Socket, Transport};
use crate::ws::deflate::{Agreed, Deflater};
use crate::ws::{Event, WsError};

/// Plaintext processed per wakeup before yielding to other connections.
const READ_BUDGET: usize = 256 << 10;

/// What wakes the loop.
enum Wake {
    Readable,
    Writable,
    Queue,
    Handled,
    CloseTimeout,
    MessageTimeout,
    Failed(std::io::Error),
}

thread_local! {
    /// An empty event queue with its capacity, lent to the next connection that reads on this
    /// thread: a connection keeps a queue only while it has input to handle, yet a busy one
    /// does not allocate one per read.
    static SPARE_INPUT: std::cell::Cell<VecDeque<Event>> = const { std::cell::Cell::new(VecDeque::new()) };
}

/// Keeps an emptied queue's capacity for the thread's next read (a small one only).
fn give_back_input(input: VecDeque<Event>) {
    if input.capacity() > 0 && input.capacity() <= 16 && input.is_empty() {
        SPARE_INPUT.set(input);
    }
}

/// What the upgrade hands the session.
pub(crate) struct Start<'a> {
    /// What arrived after the upgrade request.
    pub leftover: &'a [u8],
    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub deflate: Option<Agreed>,
}

/// Runs the connection until it ends. What the connection holds of a partial message counts
/// against `budget` meanwhile. Others write its queue through `link` while it is idle, unless
/// it compresses.
pub(crate) async fn run<S: Socket>(
    link: &Arc<Link<S>>,
    conn: &Arc<ConnShared>,
    route: &Arc<Route>,
    metrics: &Metrics,
    budget: &Budget,
    start: Start<'_>,
    close_timeout: Duration,
) -> Ended {
    if start.deflate.is_none() {
        let link: Arc<dyn crate::hub::Flush> = link.clone();
        conn.write_directly(Arc::downgrade(&link));
    }
    let ended = run_session(link, conn, route, metrics, budget, start, close_timeout).await;
    budget.set_partial(conn, 0);
    ended
}

async fn run_session<S: Socket>(
    link: &Link<S>,
    conn: &Arc<ConnShared>,
    route: &Arc<Route>,
    metrics: &Metrics,
    budget: &Budget,
    Start { leftover, deflate }: Start<'_>,
    close_timeout: Duration,
) -> Ended {
    let limits = &route.settings.limits;
    let mut s = Session {
        conn,
        route,
        metrics,
        budget,
        inbound: Inbound::new(limits.max_frame_size, limits.max_message_size, deflate.map(|a| a.client_takeover)),
        close: CloseState::Open,
        writer: Writer::new(deflate.map(|a| Deflater::new(a, metrics.compressions.clone()))),
        input: VecDeque::new(),
        violation: None,
        handling: None,
        violated: false,
        shed: false,
        eof: false,
        assembling: None,
    };
    if !leftover.is_empty() {
        s.conn.begin_busy();
        s.inbound.decode(leftover, &mut s.input);
        s.take_input();
        s.handle_events().await;
    }
    let mut close_timer: Option<Pin<Box<Sleep>>> = None;
    // The assembly deadline of the message in progress (see `Session::assembling`); made only
    // while one is, so that an idle connection holds no timer.
    let mut message_timer: Option<Pin<Box<Sleep>>> = None;
    let mut timer_for = None;
    loop {
        let kill = conn.killed();
        if kill != Kill::None {
            return Ended::abnormal(kill.reason(), Initiator::Server);
        }
        if conn.is_shed() && !s.shed {
            s.shed_now();
        }
        let flushed = match s.write(&mut link.lock()) {
            Ok(flushed) => flushed,
            Err(e) => return Ended::abnormal(format!("write failed: {e}"), Initiator::Nobody),
        };
        if conn.end_busy() && !s.close.ours_out() && flushed {
            continue; // queued while we were busy: send it before waiting
        }
        if let Some(end) = s.close.finished(flushed, s.eof) {
            return end;
        }
        if s.close.ours_out() && close_timer.is_none() {
            close_timer = Some(Box::pin(tokio::time::sleep_until(Instant::now() + close_timeout)));
        }
        // Nothing more is read while a message is being handled: the peer waits (TCP pushes
        // back) and its messages stay in order.
        let reading = !s.eof && s.close.reading() && s.handling.is_none();
        let deadline = s.assembling.map(|(since, _)| since + limits.message_timeout);
        if deadline != timer_for {
            match (deadline, &mut message_timer) {
                (Some(d), Some(timer)) => timer.as_mut().reset(d),
                (Some(d), None) => message_timer = Some(Box::pin(tokio::time::sleep_until(d))),
                (None, _) => message_timer = None,
            }
        }
        timer_for = deadline;
        let handling = &mut s.handling;
        let wake = tokio::select! {
            r = std::future::poll_fn(|cx| link.poll_ready(cx, false)), if reading => r.map_or_else(Wake::Failed, |_| Wake::Readable),
            _ = async { handling.as_mut().expect("guarded").await }, if handling.is_some() => Wake::Handled,
            r = std::future::poll_fn(|cx| link.poll_ready(cx, true)), if !flushed => r.map_or_else(Wake::Failed, |_| Wake::Writable),
            _ = conn.woken() => Wake::Queue,
            _ = async { close_timer.as_mut().expect("guarded").await }, if close_timer.is_some() => Wake::CloseTimeout,
            // Only while reading: a message held up by our own plugin call is not the peer's fault.
            _ = async { message_timer.as_mut().expect("guarded").await }, if reading && message_timer.is_some() => Wake::MessageTimeout,
        };
        match wake {
            Wake::Readable => {
                conn.begin_busy();
                s.lend_input();
                let status = link.lock().read_with(READ_BUDGET, |chunk| {
                    s.inbound.decode(chunk, &mut s.input);
                    Ok::<(), std::convert::Infallible>(())
                });
                s.take_input();
                s.handle_events().await;
                match status {
                    Ok(ReadStatus::WouldBlock) => {}
                    // Let other connections run; the loop then writes replies, notices kills
                    // and reads on.
                    Ok(ReadStatus::Budget) => tokio::task::yield_now().await,
                    Ok(ReadStatus::Eof) => s.eof = true,
                    Err(ReadError::Io(e)) => return Ended::abnormal(format!("read failed: {e}"), Initiator::Nobody),
                    Err(ReadError::Sink(never)) => match never {},
                }
            }
            Wake::Writable | Wake::Queue => {}
            Wake::Handled => {
                s.handling = None;
                conn.begin_busy();
                s.handle_events().await;
            }
            Wake::MessageTimeout => {
                tracing::debug!(conn = conn.id, "a message was not complete within message_timeout");
                metrics.message_timeouts.inc();
                conn.shed(crate::ws::CloseCode::POLICY, "message not complete in time");
            }
            Wake::CloseTimeout => {
                conn.kill(Kill::CloseTimeout);
                return match s.close.ours() {
                    Some(f) => Ended { code: f.code, reason: f.reason.clone(), initiator: Initiator::Server },
                    None => Ended::abnormal("close handshake timeout", Initiator::Server),
                };
            }
            Wake::Failed(e) => return Ended::abnormal(format!("socket failed: {e}"), Initiator::Nobody),
        }
    }
}

struct Session<'a> {
    conn: &'a Arc<ConnShared>,
    route: &'a Arc<Route>,
    metrics: &'a Metrics,
    inbound: Inbound,
    close: CloseState,
    writer: Writer,
    /// What reads brought and is not yet handled, in order.
    input: VecDeque<Event>,
    /// The protocol violation that ended the peer's stream, handled after `input`.
    violation: Option<WsError>,
    /// The message being handled, when its plugin calls did not finish at once.
    handling: Option<Handling>,
    budget: &'a Budget,
    /// The peer broke the protocol: our close answers it, and its reply is not awaited.
    violated: bool,
    /// The connection was shed (budget, message timeout): nothing more is assembled.
    shed: bool,
    eof: bool,
    /// Since when a message (or a frame) has been in progress, and the decoder's generation
    /// then: frames of the same message, and control frames between them, do not restart it.
    assembling: Option<(Instant, u64)>,
}

impl Session<'_> {
    /// Gives the queue the thread's spare capacity before a read, if it has none.
    fn lend_input(&mut self) {
        if self.input.capacity() == 0 {
            self.input = SPARE_INPUT.take();
        }
    }

    /// Notes what the last read decoded (outside any transport borrow): the violation that
    /// ended it, the partial message's bytes and how long it has been in progress.
    fn take_input(&mut self) {
        self.conn.activity.last_rx.store(coarse_ms(), Relaxed);
        if let Some(v) = self.inbound.violation() {
            self.violation = Some(v);
        }
        self.budget.set_partial(self.conn, self.inbound.held());
        let generation = self.inbound.generation();
        self.assembling = match self.assembling {
            _ if !self.inbound.in_progress() => None,
            Some((since, g)) if g == generation => Some((since, g)),
            _ => Some((Instant::now(), generation)),
        };
    }

    /// Sheds the connection (its close frame is already queued): drops the partial message and
    /// unhandled input, and ends once the close frame is out, without awaiting a reply.
    fn shed_now(&mut self) {
        self.shed = true;
        self.violated = true;
        self.close.peer_violated();
        self.inbound.stop();
        self.input.clear();
        self.violation = None;
        self.assembling = None;
        self.budget.set_partial(self.conn, 0);
    }

    /// Handles input in order until it is all handled or a message is still being handled.
    /// A message's plugin calls get one poll here, so the usual call, which does not wait,
    /// finishes without leaving this loop.
    async fn handle_events(&mut self) {
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while self.handling.is_none() {
            let input = match self.input.pop_front() {
                Some(event) => Ok(event),
                None => match self.violation.take() {
                    Some(e) => Err(e),
                    None => {
                        // All handled: an idle connection keeps no queue capacity (the
                        // thread keeps it for the next read).
                        give_back_input(std::mem::take(&mut self.input));
                        break;
                    }
                },
            };
            let msg = match input {
                Ok(Event::Text(text)) => Message::Text(text),
                Ok(Event::Binary(data)) => Message::Binary(data),
                Ok(Event::Ping(payload)) => {
                    dispatch::ping(self.conn, payload);
                    continue;
                }
                Ok(Event::Pong(_)) => continue,
                Ok(Event::Close(frame)) => {
                    dispatch::peer_close(self.conn, &mut self.close, frame);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(conn = self.conn.id, error = %e, "peer violated the protocol");
                    self.violated = true;
                    self.close.peer_violated();
                    // Replies to the messages before the violation went out first.
                    self.conn.close(e.close_code(), &e.to_string());
                    continue;
                }
            };
            msgs += 1;
            bytes += crate::plugin::message_len(&msg) as u64;
            if let Some(mut handling) = dispatch::message(self.conn, self.route, &self.close, msg) {
                let done = std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx).is_ready())).await;
                if !done {
                    self.handling = Some(handling);
                }
            }
        }
        self.count_in(msgs, bytes);
    }

    /// Writes what is queued; true when everything is out.
    fn write<S: Socket>(&mut self, t: &mut Transport<S>) -> std::io::Result<bool> {
        let w = self.writer.pump(t, self.conn)?;
        if let Some(frame) = w.close_taken.clone() {
            self.close.ours_dequeued(frame, self.violated);
        }
        if w.close_sent {
            self.close.ours_sent();
        }
        self.count_out(&w);
        Ok(w.flushed)
    }

    fn count_in(&self, msgs: u64, bytes: u64) {
        if msgs == 0 {
            return;
        }
        let stats = &self.conn.stats;
        stats.msgs_in.fetch_add(msgs, Relaxed);
        stats.bytes_in.fetch_add(bytes, Relaxed);
        self.metrics.messages_in.inc_by(msgs);
        self.metrics.bytes_in.inc_by(bytes);
    }

    fn count_out(&self, w: &Written) {
        let a = &self.conn.activity;
        if w.flushed {
            a.write_blocked_since.store(0, Relaxed);
        } else if a.write_blocked_since.load(Relaxed) == 0 {
            a.write_blocked_since.store(coarse_ms(), Relaxed);
        }
        if w.msgs == 0 {
            return;
        }
        let stats = &self.conn.stats;
        stats.msgs_out.fetch_add(w.msgs, Relaxed);
        stats.bytes_out.fetch_add(w.bytes, Relaxed);
        a.last_message.store(coarse_ms(), Relaxed);
        self.metrics.messages_out.inc_by(w.msgs);
        self.metrics.bytes_out.inc_by(w.bytes);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;
    use crate::ws::CloseCode;

    /// A connection on the built-in echo route over one end of a socket pair, the session
    /// running in a task; the test speaks WebSocket frames on the other end.
    fn session() -> (UnixStream, tokio::task::JoinHandle<Ended>) {
        let settings = crate::Settings::from_toml(
            "[[routes]]\npath = \"/echo\"\nbuiltin = \"echo\"\n",
            &crate::Overrides::default(),
        )
        .expect("settings");
        let route_settings = Arc::new(settings.routes[0].clone());
        let route =
            Arc::new(Route { settings: route_settings.clone(), chain: Vec::new(), builtin: route_settings.builtin });
        let metrics = Arc::new(Metrics::new());
        let addr = "127.0.0.1:9".parse().expect("addr");
        let conn = Arc::new(ConnShared::new(1, route_settings, addr, metrics.outbox_drops.clone()));
        let (server_end, client_end) = UnixStream::pair().expect("pair");
        let task = tokio::spawn(async move {
            let link = Link::new(Transport::plain(server_end), &metrics);
            let start = Start { leftover: &[], deflate: None };
            run(&link, &conn, &route, &metrics, &Budget::default(), start, Duration::from_secs(2)).await
        });
        (client_end, task)
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// The next server frame: opcode and payload (server frames are unmasked and short here).
    async fn frame(c: &mut UnixStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        c.read_exact(&mut head).await.expect("frame header");
        let mut payload = vec![0u8; (head[1] & 0x7f) as usize];
        c.read_exact(&mut payload).await.expect("frame payload");
        (head[0] & 0x0f, payload)
    }

    #[tokio::test]
    async fn messages_are_answered_pings_ponged_and_a_peer_close_echoed() {
        let (mut c, task) = session();
        let mut bytes = masked(1, b"hi");
        bytes.extend(masked(9, b"beat"));
        bytes.extend(masked(2, &[1, 2]));
        c.write_all(&bytes).await.expect("write");
        assert_eq!(frame(&mut c).await, (1, b"hi".to_vec()));
        assert_eq!(frame(&mut c).await, (0xA, b"beat".to_vec()));
        assert_eq!(frame(&mut c).await, (2, vec![1, 2]));
        c.write_all(&masked(8, &[0x0f, 0xa0, b'o', b'k'])).await.expect("close"); // 4000 "ok"
        assert_eq!(frame(&mut c).await, (8, vec![0x0f, 0xa0]), "our reply echoes the code");
        let ended = task.await.expect("session");
        assert_eq!((ended.code.get(), ended.reason.as_str(), ended.initiator), (4000, "ok", Initiator::Peer));
    }

    #[tokio::test]
    async fn replies_before_a_violation_go_out_then_the_close_without_waiting() {
        let (mut c, task) = session();
        let mut bytes = masked(1, b"first");
        bytes.extend([0x81, 0x01, b'x']); // unmasked: a protocol error
        c.write_all(&bytes).await.expect("write");
        assert_eq!(frame(&mut c).await, (1, b"first".to_vec()));
        let (op, payload) = frame(&mut c).await;
        assert_eq!((op, &payload[..2]), (8, &CloseCode::PROTOCOL.get().to_be_bytes()[..]));
        // The session ends on its own: a peer that broke the protocol is not waited for.
        let ended = tokio::time::timeout(Duration::from_secs(1), task).await.expect("ended").expect("session");
        assert_eq!((ended.code, ended.initiator), (CloseCode::PROTOCOL, Initiator::Server));
    }

    #[tokio::test]
    async fn a_dropped_peer_ends_the_session_abnormally() {
        let (c, task) = session();
        drop(c);
        let ended = task.await.expect("session");
        assert_eq!((ended.code, ended.initiator), (CloseCode::ABNORMAL, Initiator::Nobody));
    }
}
