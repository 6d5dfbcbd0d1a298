//! Frames out: from the connection's outbox into the transport, many frames per TLS write,
//! remembering how far a frame got when the socket stopped taking bytes.

use std::cell::RefCell;
use std::io::{self, IoSlice};

use bytes::Bytes;

use super::close::CloseFrame;
use crate::hub::{ConnShared, Outgoing};
use crate::transport::{Socket, Transport};
use crate::ws::deflate::Deflater;
use crate::ws::{Opcode, close_payload, encode_header};

/// Frames taken from the queue per write pass.
const BATCH: usize = 64;
/// A pass with at most this many frames pending offers them from a small array.
const FEW: usize = 4;

thread_local! {
    /// The frames of a pass and the queue's items they are made from, lent to the writer of
    /// each pass on this thread and given back empty (with their capacity) when the pass
    /// handed everything over: a writer keeps a batch only while the socket is full, yet a
    /// busy connection does not allocate two vectors per reply.
    static SPARE: RefCell<(Vec<Ready>, Vec<Outgoing>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A frame ready to go: opcode, payload as sent, RSV1 (compressed) and the message's length
/// before compression.
#[derive(Debug)]
struct Ready {
    opcode: Opcode,
    payload: Bytes,
    compressed: bool,
    msg_len: usize,
    /// What the outbox charged for it (its `payload_len`).
    charged: usize,
}

/// Frames taken from the outbox and not yet all handed to the transport. Empty between bursts,
/// so an idle connection keeps no memory here (nor compression state, without context
/// takeover).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Each frame with what the outbox charged for it (its `payload_len`), released to the
    /// outbox once the transport has the whole frame.
    batch: Vec<Ready>,
    /// permessage-deflate, when negotiated.
    deflater: Option<Deflater>,
    pos: usize,
    /// Bytes of `batch[pos]` (header + payload) already handed to the transport.
    offset: usize,
    /// Our close frame was taken from the queue: nothing after it is sent.
    closed: bool,
    /// Frames handed over in this pass, and what the outbox charged for them, not yet
    /// released to the outbox.
    handed_frames: usize,
    handed: usize,
}

/// What one pass did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Data messages and their bytes (before compression) handed to the transport.
    pub msgs: u64,
    pub bytes: u64,
    /// Our close frame left the queue in this pass.
    pub close_taken: Option<CloseFrame>,
    /// The transport has all of our close frame (in this pass).
    pub close_sent: bool,
    /// Everything handed over is written to the socket.
    pub flushed: bool,
}

impl Writer {
    pub fn new(deflater: Option<Deflater>) -> Writer {
        Writer { deflater, ..Writer::default() }
    }

    /// Moves queued frames into the transport and writes what the socket takes now.
    pub fn pump<S: Socket>(&mut self, t: &mut Transport<S>, conn: &ConnShared) -> io::Result<Written> {
        let mut w = Written::default();
        if self.batch.capacity() == 0 {
            self.batch = SPARE.with(|s| std::mem::take(&mut s.borrow_mut().0));
        }
        loop {
            if self.pos >= self.batch.len() && !self.refill(conn, &mut w) {
                break;
            }
            let offered = self.offer(t)?;
            let all_taken = offered.0 == offered.1;
            self.advance(offered.0, &mut w);
            if !all_taken && !t.flush()? {
                break; // the socket is full: wait until it is writable
            }
        }
        if self.pos >= self.batch.len() {
            // All handed over: an idle connection keeps no batch (nor its capacity); the
            // thread keeps one for the next pass.
            let mut batch = std::mem::take(&mut self.batch);
            batch.clear();
            self.pos = 0;
            if batch.capacity() <= BATCH {
                SPARE.with(|s| s.borrow_mut().0 = batch);
            }
        }
        conn.release_outgoing(std::mem::take(&mut self.handed_frames), std::mem::take(&mut self.handed));
        // A frame still in the batch is not out even if the socket took all it was given.
        w.flushed = t.flush()? && self.pos >= self.batch.len();
        Ok(w)
    }

    /// Takes the next frames from the outbox; false if there are none (or we closed).
    fn refill(&mut self, conn: &ConnShared, w: &mut Written) -> bool {
        self.batch.clear();
        self.pos = 0;
        if self.closed {
            return false;
        }
        let mut items = SPARE.with(|s| std::mem::take(&mut s.borrow_mut().1));
        conn.take_outgoing(&mut items, BATCH);
        for item in items.drain(..) {
            let charged = item.payload_len();
            let (opcode, payload) = match item {
                Outgoing::Text(b) => (Opcode::Text, b),
                Outgoing::Binary(b) => (Opcode::Binary, b),
                Outgoing::Shared { text, msg } => {
                    let opcode = if text { Opcode::Text } else { Opcode::Binary };
                    let msg_len = msg.payload.len();
                    let (payload, compressed) = match &mut self.deflater {
                        Some(d) => d.shared(&msg),
                        None => (msg.payload.clone(), false),
                    };
                    self.batch.push(Ready { opcode, payload, compressed, msg_len, charged });
                    continue;
                }
                Outgoing::Ping(b) => (Opcode::Ping, b),
                Outgoing::Pong(b) => (Opcode::Pong, b),
                Outgoing::Close(code, reason) => {
                    let payload = Bytes::from(close_payload(code, &reason));
                    w.close_taken = Some(CloseFrame { code, reason });
                    self.closed = true;
                    (Opcode::Close, payload)
                }
            };
            let msg_len = payload.len();
            let (payload, compressed) = match &mut self.deflater {
                Some(d) if !opcode.is_control() => d.message(&payload),
                _ => (payload, false),
            };
            self.batch.push(Ready { opcode, payload, compressed, msg_len, charged });
        }
        SPARE.with(|s| s.borrow_mut().1 = items);
        !self.batch.is_empty()
    }

    /// Hands the pending frames to the transport as one vectored write; returns (taken, offered).
    fn offer<S: Socket>(&self, t: &mut Transport<S>) -> io::Result<(usize, usize)> {
        // Most passes carry a frame or two: their slices fit in a few hundred bytes of stack,
        // rather than the full batch's 2.7 KB, which would be written out on every pass.
        if self.batch.len() - self.pos <= FEW {
            self.offer_up_to::<S, FEW, { 2 * FEW }>(t)
        } else {
            self.offer_up_to::<S, BATCH, { 2 * BATCH }>(t)
        }
    }

    /// [`offer`](Self::offer) for at most `N` pending frames (`SLICES` = 2 × `N`).
    fn offer_up_to<S: Socket, const N: usize, const SLICES: usize>(
        &self,
        t: &mut Transport<S>,
    ) -> io::Result<(usize, usize)> {
        let pending = &self.batch[self.pos..];
        let mut headers = [[0u8; 10]; N];
        let mut slices: [IoSlice<'_>; SLICES] = [IoSlice::new(&[]); SLICES];
        let (mut n, mut offered) = (0, 0);
        for (i, (frame, hdr)) in pending.iter().zip(headers.iter_mut()).enumerate() {
            let payload = &frame.payload;
            let hlen = encode_header(frame.opcode, payload.len(), hdr);
            if frame.compressed {
                hdr[0] |= 0x40; // RSV1: a compressed message (RFC 7692 6)
            }
            let skip = if i == 0 { self.offset } else { 0 };
            let (h, p): (&[u8], &[u8]) =
                if skip < hlen { (&hdr[skip..hlen], &payload[..]) } else { (&[], &payload[skip - hlen..]) };
            for part in [h, p] {
                if !part.is_empty() {
                    slices[n] = IoSlice::new(part);
                    n += 1;
                    offered += part.len();
                }
            }
        }
        Ok((t.queue(&slices[..n])?, offered))
    }

    /// Moves past the `taken` bytes the transport accepted.
    fn advance(&mut self, mut taken: usize, w: &mut Written) {
        while self.pos < self.batch.len() {
            let frame = &self.batch[self.pos];
            let frame_len = header_len(frame.payload.len()) + frame.payload.len() - self.offset;
            if taken < frame_len {
                self.offset += taken;
                return;
            }
            taken -= frame_len;
            self.offset = 0;
            self.pos += 1;
            self.handed += frame.charged;
            self.handed_frames += 1;
            match frame.opcode {
                Opcode::Text | Opcode::Binary => {
                    w.msgs += 1;
                    w.bytes += frame.msg_len as u64;
                }
                Opcode::Close => w.close_sent = true,
                _ => {}
            }
        }
    }
}

fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}
