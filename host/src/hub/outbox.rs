//! The bounded queue of frames waiting to be written to one connection.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::ws::CloseCode;
use crate::ws::deflate::Shared;

/// A frame to send. Payloads are `Bytes` so one publish to N members shares one buffer.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(CloseCode, String),
    /// A data message queued to many connections (a room publish): one payload, compressed at
    /// most once per permessage-deflate parameter set, whatever the number of members.
    Shared {
        text: bool,
        msg: Arc<Shared>,
    },
}

impl Outgoing {
    /// Payload bytes (the close reason for a close frame).
    pub fn payload_len(&self) -> usize {
        match self {
            Outgoing::Text(b) | Outgoing::Binary(b) | Outgoing::Ping(b) | Outgoing::Pong(b) => b.len(),
            Outgoing::Close(_, r) => r.len(),
            Outgoing::Shared { msg, .. } => msg.payload.len(),
        }
    }

    /// This data message in the form a fan-out shares (other frames as they are).
    pub fn to_shared(&self) -> Outgoing {
        match self {
            Outgoing::Text(b) => Outgoing::Shared { text: true, msg: Arc::new(Shared::new(b.clone())) },
            Outgoing::Binary(b) => Outgoing::Shared { text: false, msg: Arc::new(Shared::new(b.clone())) },
            other => other.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// The queue is at its message or byte limit.
    Full,
}

/// What the queue holds. `closing` is set once a close frame is queued: nothing may follow it.
///
/// The byte limit counts frames the writer has taken but not yet handed to the transport
/// (`in_flight`) as well as the queued ones: a writer blocked on a peer that does not read
/// holds a batch of frames, and without counting them the queue would refill behind it, so a
/// member that never reads could be made to hold many times its bound.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    in_flight: usize,
    /// Frames the connection's own writer took and has not handed to the transport yet:
    /// nothing may be written ahead of them.
    taken: usize,
    max_messages: usize,
    max_bytes: usize,
    closing: bool,
}

impl Outbox {
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Outbox { queue: VecDeque::new(), bytes: 0, in_flight: 0, taken: 0, max_messages, max_bytes, closing: false }
    }

    /// Queues a data frame, within the limits. A single message larger than the byte limit is
    /// still accepted when nothing is queued or in flight, so a limit below the message size
    /// cannot wedge a connection (the message size limit bounds it).
    pub fn push(&mut self, item: Outgoing) -> Result<(), PushError> {
        if self.closing {
            return Err(PushError::Closed);
        }
        let w = item.payload_len();
        let held = self.bytes + self.in_flight;
        let empty = self.queue.is_empty() && self.in_flight == 0;
        if !empty && (self.queue.len() >= self.max_messages || held + w > self.max_bytes) {
            return Err(PushError::Full);
        }
        self.bytes += w;
        self.queue.push_back(item);
        Ok(())
    }

    /// Queues a control frame; pings and pongs bypass the data limits (they are tiny and the
    /// peer's own pings are bounded by what it sends).
    pub fn push_control(&mut self, item: Outgoing) -> Result<(), PushError> {
        if self.closing {
            return Err(PushError::Closed);
        }
        if self.queue.len() >= self.max_messages.saturating_mul(2).max(16) {
            return Err(PushError::Full);
        }
        self.bytes += item.payload_len();
        self.queue.push_back(item);
        Ok(())
    }

    /// Queues the close frame after everything already queued; false if one was queued already.
    pub fn push_close(&mut self, code: CloseCode, reason: String) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        self.bytes += reason.len();
        self.queue.push_back(Outgoing::Close(code, reason));
        true
    }

    /// Drops queued data frames and queues a close frame at once (for kills and errors, where
    /// delivering a backlog would only delay the close).
    pub fn close_now(&mut self, code: CloseCode, reason: String) {
        self.queue.clear();
        self.closing = true;
        self.bytes = reason.len();
        self.queue.push_back(Outgoing::Close(code, reason));
    }

    /// Marks the queue closed without a frame (the socket is gone).
    pub fn seal(&mut self) -> usize {
        self.closing = true;
        let dropped = self.queue.len();
        self.queue = VecDeque::new();
        self.bytes = 0;
        self.in_flight = 0;
        self.taken = 0;
        dropped
    }

    /// Payload bytes held: queued, and taken by the writer but not yet handed to the transport.
    pub fn bytes(&self) -> usize {
        self.bytes + self.in_flight
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Moves up to `max` frames into `into`, releasing the queue's memory when it empties.
    /// Their bytes stay counted, in flight, until the writer [`released`](Self::release) them.
    pub fn drain_into(&mut self, into: &mut Vec<Outgoing>, max: usize) {
        let n = self.queue.len().min(max);
        self.taken += n;
        for item in self.queue.drain(..n) {
            self.bytes -= item.payload_len();
            self.in_flight += item.payload_len();
            into.push(item);
        }
        if self.queue.is_empty() && self.queue.capacity() > 32 {
            self.queue = VecDeque::new();
        }
    }

    /// The writer handed `frames` taken frames, `bytes` of them (their `payload_len`), to the
    /// transport.
    pub fn release(&mut self, frames: usize, bytes: usize) {
        self.taken = self.taken.saturating_sub(frames);
        self.in_flight = self.in_flight.saturating_sub(bytes);
    }

    /// Moves every queued frame into `into` for a writer that hands them to the transport at
    /// once (see `ConnShared::flush_or_wake`), so they are never in flight: only when the
    /// connection's own writer holds none (they go first), no close is queued (the
    /// connection's task sees its close out), and they are at most `max_frames` frames of
    /// `max_bytes` in all. False otherwise, leaving them queued.
    pub fn take_all(&mut self, into: &mut Vec<Outgoing>, max_frames: usize, max_bytes: usize) -> bool {
        if self.closing || self.taken > 0 || self.queue.len() > max_frames || self.bytes > max_bytes {
            return false;
        }
        into.extend(self.queue.drain(..));
        self.bytes = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Outgoing {
        Outgoing::Text(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn limits_by_count_and_bytes() {
        let mut o = Outbox::new(2, 100);
        o.push(text(10)).unwrap();
        o.push(text(10)).unwrap();
        assert_eq!(o.push(text(1)), Err(PushError::Full));
        let mut v = Vec::new();
        o.drain_into(&mut v, 10);
        assert_eq!(v.len(), 2);
        o.release(2, 20);
        o.push(text(90)).unwrap();
        assert_eq!(o.push(text(20)), Err(PushError::Full));
    }

    #[test]
    fn frames_the_writer_holds_count_until_it_releases_them() {
        let mut o = Outbox::new(100, 100);
        o.push(text(60)).unwrap();
        let mut v = Vec::new();
        o.drain_into(&mut v, 10);
        assert_eq!(o.push(text(60)), Err(PushError::Full), "the taken 60 bytes are still held");
        o.push(text(40)).unwrap();
        o.release(1, 60);
        v.clear();
        o.drain_into(&mut v, 10);
        o.release(1, 40);
        o.push(text(100)).unwrap();
    }

    #[test]
    fn all_is_taken_at_once_only_behind_nothing_and_within_bounds() {
        let mut o = Outbox::new(100, 10_000);
        o.push(text(10)).unwrap();
        let mut held = Vec::new();
        o.drain_into(&mut held, 1);
        o.push(text(20)).unwrap();
        let mut v = Vec::new();
        assert!(!o.take_all(&mut v, 8, 1000), "the writer holds a frame that goes first");
        o.release(1, 10);
        assert!(!o.take_all(&mut v, 8, 19), "over the byte bound");
        assert!(o.take_all(&mut v, 8, 1000));
        assert_eq!((v.len(), o.bytes(), o.is_empty()), (1, 0, true));
        o.push(text(1)).unwrap();
        o.push(text(1)).unwrap();
        assert!(!o.take_all(&mut v, 1, 1000), "over the frame bound");
        assert!(o.push_close(CloseCode::NORMAL, String::new()));
        assert!(!o.take_all(&mut v, 8, 1000), "a close is queued");
    }

    #[test]
    fn oversized_message_fits_an_empty_queue() {
        let mut o = Outbox::new(8, 10);
        o.push(text(50)).unwrap();
        assert_eq!(o.push(text(1)), Err(PushError::Full));
    }

    #[test]
    fn nothing_follows_a_close() {
        let mut o = Outbox::new(8, 1000);
        o.push(text(1)).unwrap();
        assert!(o.push_close(CloseCode::NORMAL, "bye".into()));
        assert!(!o.push_close(CloseCode::GOING_AWAY, "again".into()));
        assert_eq!(o.push(text(1)), Err(PushError::Closed));
        let mut v = Vec::new();
        o.drain_into(&mut v, 10);
        assert!(matches!(v.last(), Some(Outgoing::Close(CloseCode::NORMAL, _))));
    }
}
