//! An upgraded connection: frames in, plugin calls, frames out, and the close handshake.
//!
//! One task per connection does everything; it owns no read buffer (plaintext goes straight
//! from rustls into the decoder) and its write batch is empty between bursts, so an idle
//! connection costs only its small state.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::outbox::Outgoing;
use super::shared::{ConnShared, Kill};
use crate::clock::coarse_ms;
use crate::plugin::{Flow, Message};
use crate::transport::{ReadError, ReadStatus, Transport};
use crate::ws::{CloseCode, Decoder, Event, Opcode, WsError, close_payload, encode_header};

/// Plaintext processed per wakeup before yielding to other connections.
const READ_BUDGET: usize = 256 << 10;
/// Frames taken from the queue per write pass.
const WRITE_BATCH: usize = 64;

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The close code reported to `on-close` (1006 when no close frame was exchanged).
    pub code: u16,
    pub reason: String,
    /// Who started the close: "peer", "server", or "none" for a dropped connection.
    pub initiator: &'static str,
}

/// Why reading stopped early.
enum Stop {
    Protocol(WsError),
    PeerClosed,
    PluginFailed,
}

struct Session<'a> {
    conn: &'a Arc<ConnShared>,
    metrics: &'a crate::metrics::Metrics,
    dec: Decoder,
    /// Close frame received from the peer.
    peer_close: Option<(u16, String)>,
    /// Close frame taken from our queue (being written or written).
    our_close: Option<(u16, String)>,
    /// Our close frame has been handed to the transport entirely.
    our_close_sent: bool,
    /// We closed because the peer broke the protocol: no need to wait for its close frame.
    failed: bool,
    /// The peer's close frame came before we had queued ours (ours is the reply).
    peer_initiated: bool,
    eof: bool,
    batch: Vec<(Opcode, Bytes)>,
    batch_pos: usize,
    /// Bytes of `batch[batch_pos]` (header + payload) already handed to the transport.
    offset: usize,
    in_msgs: u64,
    in_bytes: u64,
}

pub async fn run(
    t: &mut Transport,
    conn: &Arc<ConnShared>,
    metrics: &crate::metrics::Metrics,
    leftover: &[u8],
    close_timeout: std::time::Duration,
) -> Ended {
    let limits = &conn.route.limits;
    let mut s = Session {
        conn,
        metrics,
        dec: Decoder::new(limits.max_frame_size, limits.max_message_size),
        peer_close: None,
        our_close: None,
        our_close_sent: false,
        failed: false,
        peer_initiated: false,
        eof: false,
        batch: Vec::new(),
        batch_pos: 0,
        offset: 0,
        in_msgs: 0,
        in_bytes: 0,
    };
    if !leftover.is_empty() {
        if let Err(stop) = s.feed(leftover) {
            s.stop(stop);
        }
        s.account();
    }
    let mut close_timer: Option<Pin<Box<Sleep>>> = None;
    loop {
        let kill = conn.killed();
        if kill != Kill::None {
            return Ended { code: CloseCode::ABNORMAL, reason: kill.reason().into(), initiator: "server" };
        }
        if let Err(e) = s.pump(t) {
            return Ended { code: CloseCode::ABNORMAL, reason: format!("write failed: {e}"), initiator: "none" };
        }
        if conn.end_busy() && s.our_close.is_none() && !t.wants_write() {
            continue; // queued while we were busy: send it before waiting
        }
        if let Some(end) = s.finished(t) {
            return end;
        }
        if s.our_close_sent && close_timer.is_none() {
            close_timer = Some(Box::pin(tokio::time::sleep_until(Instant::now() + close_timeout)));
        }
        let reading = !s.eof && s.peer_close.is_none();
        let wants_write = t.wants_write();
        enum Wake {
            Readable,
            Writable,
            Queue,
            CloseTimeout,
            Failed(std::io::Error),
        }
        let wake = tokio::select! {
            r = t.readable(), if reading => r.map_or_else(Wake::Failed, |_| Wake::Readable),
            r = t.writable(), if wants_write => r.map_or_else(Wake::Failed, |_| Wake::Writable),
            _ = conn.woken() => Wake::Queue,
            _ = async { close_timer.as_mut().expect("guarded").await }, if close_timer.is_some() => Wake::CloseTimeout,
        };
        match wake {
            Wake::Readable => {
                conn.begin_busy();
                let status = t.read_with(READ_BUDGET, |chunk| s.feed(chunk));
                s.account();
                match status {
                    Ok(ReadStatus::WouldBlock) => {}
                    Ok(ReadStatus::Budget) => {
                        // Let other connections run; the outer loop then flushes replies,
                        // notices kills and reads on.
                        tokio::task::yield_now().await;
                    }
                    Ok(ReadStatus::Eof) => s.eof = true,
                    Err(ReadError::Io(e)) => {
                        return Ended {
                            code: CloseCode::ABNORMAL,
                            reason: format!("read failed: {e}"),
                            initiator: "none",
                        };
                    }
                    Err(ReadError::Sink(stop)) => s.stop(stop),
                }
            }
            Wake::Writable | Wake::Queue => {}
            Wake::CloseTimeout => {
                conn.kill(Kill::CloseTimeout);
                let (code, reason) = s.our_close.clone().unwrap_or((CloseCode::ABNORMAL, String::new()));
                return Ended { code, reason, initiator: "server" };
            }
            Wake::Failed(e) => {
                return Ended { code: CloseCode::ABNORMAL, reason: format!("socket failed: {e}"), initiator: "none" };
            }
        }
    }
}

impl Session<'_> {
    /// Decodes a chunk of plaintext and handles every complete event in it.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), Stop> {
        self.conn.activity.last_rx.store(coarse_ms(), Relaxed);
        let mut input = chunk;
        while !input.is_empty() {
            if self.peer_close.is_some() || self.failed {
                return Ok(()); // nothing after a close frame or a violation is read
            }
            match self.dec.decode(&mut input) {
                Ok(Some(ev)) => self.event(ev)?,
                Ok(None) => break,
                Err(e) => return Err(Stop::Protocol(e)),
            }
        }
        Ok(())
    }

    fn event(&mut self, ev: Event) -> Result<(), Stop> {
        let conn = self.conn;
        match ev {
            Event::Text(text) => {
                self.in_msgs += 1;
                self.in_bytes += text.len() as u64;
                self.dispatch(Message::Text(text))
            }
            Event::Binary(data) => {
                self.in_msgs += 1;
                self.in_bytes += data.len() as u64;
                self.dispatch(Message::Binary(data))
            }
            Event::Ping(payload) => {
                // Answered by the host: plugins never see heartbeats.
                let _ = conn.send_control(Outgoing::Pong(Bytes::from(payload)));
                Ok(())
            }
            Event::Pong(_) => Ok(()),
            Event::Close(frame) => {
                let (code, reason) = frame.clone().unwrap_or((1005, String::new()));
                self.peer_close = Some((code, reason));
                self.peer_initiated = !conn.is_closing();
                // Echo the peer's code (RFC 6455 5.5.1) after what is already queued.
                let reply = frame.map_or(CloseCode::NORMAL, |(c, _)| c);
                conn.close(reply, "");
                Err(Stop::PeerClosed)
            }
        }
    }

    /// Passes a message along the route's chain until a plugin handles it.
    fn dispatch(&mut self, msg: Message) -> Result<(), Stop> {
        let conn = self.conn;
        if self.our_close.is_some() || conn.is_closing() {
            return Ok(()); // closing: data is no longer delivered
        }
        conn.activity.last_message.store(coarse_ms(), Relaxed);
        if conn.route.builtin == Some(crate::config::Builtin::Echo) {
            let _ = conn.send(crate::plugin::outgoing(msg));
            return Ok(());
        }
        let mut msg = msg;
        for slot in &conn.route.chain {
            match slot.on_message(conn, &msg) {
                Ok(Flow::Pass) => {}
                Ok(Flow::Forward(m)) => msg = m,
                Ok(Flow::Done) => return Ok(()),
                Err(f) if f.bypass => {}
                Err(f) => {
                    conn.close_now(CloseCode::INTERNAL, &format!("plugin {} {}", f.plugin, f.error));
                    return Err(Stop::PluginFailed);
                }
            }
        }
        tracing::debug!(conn = conn.id, "message fell off the end of the chain unhandled");
        Ok(())
    }

    fn stop(&mut self, stop: Stop) {
        if let Stop::Protocol(e) = stop {
            tracing::debug!(conn = self.conn.id, error = %e, "peer violated the protocol");
            self.failed = true;
            // Replies to the messages before the violation still go out, then the close.
            self.conn.close(e.close_code(), &e.to_string());
        }
    }

    /// Publishes read counters.
    fn account(&mut self) {
        if self.in_msgs == 0 {
            return;
        }
        let stats = &self.conn.stats;
        stats.msgs_in.fetch_add(self.in_msgs, Relaxed);
        stats.bytes_in.fetch_add(self.in_bytes, Relaxed);
        let m = &self.metrics;
        m.messages_in.inc_by(self.in_msgs);
        m.bytes_in.inc_by(self.in_bytes);
        self.in_msgs = 0;
        self.in_bytes = 0;
    }

    /// Moves queued frames into the transport (many frames per TLS write) and writes what the
    /// socket takes.
    fn pump(&mut self, t: &mut Transport) -> std::io::Result<()> {
        let (mut out_msgs, mut out_bytes) = (0u64, 0u64);
        loop {
            if self.batch_pos >= self.batch.len() {
                self.batch.clear();
                self.batch_pos = 0;
                if self.our_close.is_some() {
                    break; // nothing is sent after our close frame
                }
                let mut items = Vec::new();
                self.conn.take_outgoing(&mut items, WRITE_BATCH);
                if items.is_empty() {
                    break;
                }
                for item in items {
                    let frame = match item {
                        Outgoing::Text(b) => (Opcode::Text, b),
                        Outgoing::Binary(b) => (Opcode::Binary, b),
                        Outgoing::Ping(b) => (Opcode::Ping, b),
                        Outgoing::Pong(b) => (Opcode::Pong, b),
                        Outgoing::Close(code, reason) => {
                            let payload = Bytes::from(close_payload(code, &reason));
                            self.our_close = Some((code, reason));
                            (Opcode::Close, payload)
                        }
                    };
                    self.batch.push(frame);
                }
            }
            let pending = &self.batch[self.batch_pos..];
            let mut headers = [[0u8; 10]; WRITE_BATCH];
            let mut slices: [IoSlice<'_>; WRITE_BATCH * 2] = [IoSlice::new(&[]); WRITE_BATCH * 2];
            let mut n_slices = 0;
            let mut offered = 0;
            for (i, ((opcode, payload), hdr)) in pending.iter().zip(headers.iter_mut()).enumerate() {
                let hlen = encode_header(*opcode, payload.len(), hdr);
                let skip = if i == 0 { self.offset } else { 0 };
                let (h, p): (&[u8], &[u8]) =
                    if skip < hlen { (&hdr[skip..hlen], &payload[..]) } else { (&[], &payload[skip - hlen..]) };
                for part in [h, p] {
                    if !part.is_empty() {
                        slices[n_slices] = IoSlice::new(part);
                        n_slices += 1;
                        offered += part.len();
                    }
                }
            }
            let mut taken = t.queue(&slices[..n_slices])?;
            let all_taken = taken == offered;
            // Advance past everything the transport took.
            while self.batch_pos < self.batch.len() {
                let (opcode, payload) = &self.batch[self.batch_pos];
                let frame_len = header_len(payload.len()) + payload.len() - self.offset;
                if taken < frame_len {
                    self.offset += taken;
                    break;
                }
                taken -= frame_len;
                self.offset = 0;
                self.batch_pos += 1;
                match opcode {
                    Opcode::Text | Opcode::Binary => {
                        out_msgs += 1;
                        out_bytes += payload.len() as u64;
                    }
                    Opcode::Close => self.our_close_sent = true,
                    _ => {}
                }
            }
            if !all_taken {
                // The TLS buffer is full: write some out before queueing more.
                if !t.flush()? {
                    break;
                }
            }
        }
        if self.batch.capacity() > WRITE_BATCH * 4 && self.batch.is_empty() {
            self.batch = Vec::new();
        }
        let flushed = t.flush()?;
        let blocked = &self.conn.activity.write_blocked_since;
        if flushed {
            blocked.store(0, Relaxed);
        } else if blocked.load(Relaxed) == 0 {
            blocked.store(coarse_ms(), Relaxed);
        }
        if out_msgs > 0 {
            let stats = &self.conn.stats;
            stats.msgs_out.fetch_add(out_msgs, Relaxed);
            stats.bytes_out.fetch_add(out_bytes, Relaxed);
            self.conn.activity.last_message.store(coarse_ms(), Relaxed);
            let m = &self.metrics;
            m.messages_out.inc_by(out_msgs);
            m.bytes_out.inc_by(out_bytes);
        }
        Ok(())
    }

    /// The connection is over when the close handshake completed, our close after a protocol
    /// violation is out, or the peer went away.
    fn finished(&self, t: &Transport) -> Option<Ended> {
        let flushed = !t.wants_write();
        match (&self.peer_close, &self.our_close) {
            (Some((code, reason)), Some(_)) if self.our_close_sent && flushed => {
                // If we closed first, report our code; otherwise the peer's.
                let initiated_by_peer = self.peer_initiated;
                let (code, reason) = if initiated_by_peer {
                    (*code, reason.clone())
                } else {
                    self.our_close.clone().unwrap_or((*code, reason.clone()))
                };
                return Some(Ended { code, reason, initiator: if initiated_by_peer { "peer" } else { "server" } });
            }
            (_, Some((code, reason))) if self.failed && self.our_close_sent && flushed => {
                return Some(Ended { code: *code, reason: reason.clone(), initiator: "server" });
            }
            _ => {}
        }
        if self.eof {
            return Some(match (&self.peer_close, &self.our_close) {
                (Some((code, reason)), _) => Ended { code: *code, reason: reason.clone(), initiator: "peer" },
                (None, Some((code, reason))) if self.our_close_sent => {
                    Ended { code: *code, reason: reason.clone(), initiator: "server" }
                }
                _ => Ended {
                    code: CloseCode::ABNORMAL,
                    reason: "connection dropped without a close frame".into(),
                    initiator: "none",
                },
            });
        }
        None
    }
}

fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}
