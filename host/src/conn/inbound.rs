//! What a read brings: the plaintext of one read pass decoded into events, appended to the
//! session's queue.
//!
//! Decoding runs inside the transport's read callback (while rustls lends its records); the
//! events are handled after the read returns, outside any transport or TLS borrow. That is
//! what lets a plugin call touch anything, and later wait, without the TLS layer calling it.

use std::collections::VecDeque;

use crate::ws::{Decoder, Event, WsError};

/// The decoder, and the violation that ended the peer's stream.
#[derive(Debug)]
pub(crate) struct Inbound {
    decoder: Decoder,
    /// A close frame or a protocol violation ended the peer's stream: later bytes are ignored.
    stopped: bool,
    /// The violation, handled after the events before it.
    violation: Option<WsError>,
}

impl Inbound {
    /// `inflate`: permessage-deflate was negotiated (with whether the client keeps its context).
    pub fn new(max_frame: usize, max_message: usize, inflate: Option<bool>) -> Inbound {
        let mut decoder = Decoder::new(max_frame, max_message);
        if let Some(keep) = inflate {
            decoder = decoder.with_inflater(keep);
        }
        Inbound { decoder, stopped: false, violation: None }
    }

    /// Decodes `chunk`, appending complete events to `events`. Never fails: a violation ends
    /// decoding and is reported by [`Inbound::violation`], to be handled after the events
    /// before it.
    pub fn decode(&mut self, chunk: &[u8], events: &mut VecDeque<Event>) {
        let mut input = chunk;
        while !input.is_empty() && !self.stopped {
            match self.decoder.decode(&mut input) {
                Ok(Some(ev)) => {
                    if matches!(ev, Event::Close(_)) {
                        self.stopped = true;
                        self.decoder.discard(); // a message the close interrupted
                    }
                    events.push_back(ev);
                }
                Ok(None) => break,
                Err(e) => {
                    self.stopped = true;
                    self.decoder.discard();
                    self.violation = Some(e);
                }
            }
        }
    }

    /// The violation that followed the events decoded so far, if any (once).
    pub fn violation(&mut self) -> Option<WsError> {
        self.violation.take()
    }

    /// True while a message (or a frame) is partly received.
    pub fn in_progress(&self) -> bool {
        !self.stopped && self.decoder.in_progress()
    }

    /// See [`Decoder::generation`].
    pub fn generation(&self) -> u64 {
        self.decoder.generation()
    }

    /// Bytes held for the message being assembled.
    pub fn held(&self) -> usize {
        self.decoder.held()
    }

    /// Stops decoding and frees what was being assembled: the connection is being shed.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.decoder.discard();
    }

    /// True once the peer's stream ended at a close frame or a violation.
    #[cfg(test)]
    fn stopped(&self) -> bool {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::CloseCode;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [9, 8, 7, 6];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn a_read_becomes_events_in_order_and_nothing_after_a_close() {
        let mut bytes = masked(1, b"one");
        bytes.extend(masked(9, b"ping"));
        bytes.extend(masked(8, &[0x03, 0xe8]));
        bytes.extend(masked(1, b"after the close"));
        let mut inbound = Inbound::new(1 << 10, 1 << 10, None);
        let mut events = VecDeque::new();
        // Split anywhere: records and reads need not align with frames.
        inbound.decode(&bytes[..5], &mut events);
        inbound.decode(&bytes[5..], &mut events);
        let violation = inbound.violation();
        assert_eq!(
            Vec::from(events),
            vec![
                Event::Text("one".into()),
                Event::Ping(b"ping".to_vec()),
                Event::Close(Some((CloseCode::NORMAL, String::new())))
            ]
        );
        assert!(violation.is_none() && inbound.stopped());
    }

    #[test]
    fn a_violation_comes_after_the_events_before_it() {
        let mut bytes = masked(1, b"fine");
        bytes.extend([0x81, 0x01, b'x']); // unmasked
        bytes.extend(masked(1, b"never"));
        let mut inbound = Inbound::new(1 << 10, 1 << 10, None);
        let mut events = VecDeque::new();
        inbound.decode(&bytes, &mut events);
        assert_eq!(Vec::from(events), vec![Event::Text("fine".into())]);
        assert_eq!(inbound.violation().map(|v| v.close_code()), Some(CloseCode::PROTOCOL));
        let mut events = VecDeque::new();
        inbound.decode(&masked(1, b"ignored"), &mut events);
        assert!(events.is_empty() && inbound.violation().is_none());
    }
}
