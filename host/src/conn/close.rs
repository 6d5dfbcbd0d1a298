//! The close handshake of one connection as a state machine (RFC 6455 7.1): who started it,
//! which close frames went which way, and when the connection is over. Pure: the session
//! feeds it what happened on the wire and asks whether it is done.

use crate::ws::CloseCode;

/// A close frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseFrame {
    pub code: CloseCode,
    pub reason: String,
}

/// Who started the close, for the connection log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initiator {
    Peer,
    Server,
    /// Nobody: the connection was dropped without a close handshake.
    Nobody,
}

impl Initiator {
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Peer => "peer",
            Initiator::Server => "server",
            Initiator::Nobody => "none",
        }
    }
}

/// How a connection ended: what `on-close` and the log are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// The close code (1006 when no close frame was exchanged).
    pub code: CloseCode,
    pub reason: String,
    pub initiator: Initiator,
}

impl Ended {
    /// Ended without a close handshake (a dropped socket, a kill, a refused handshake).
    pub fn abnormal(reason: impl Into<String>, initiator: Initiator) -> Ended {
        Ended { code: CloseCode::ABNORMAL, reason: reason.into(), initiator }
    }

    fn with(frame: &CloseFrame, initiator: Initiator) -> Ended {
        Ended { code: frame.code, reason: frame.reason.clone(), initiator }
    }
}

/// Where the close handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseState {
    /// Data flows both ways.
    Open,
    /// We started the close: our frame was queued first. `ours` is known once it leaves the
    /// queue and `sent` once the transport has all of it; `theirs` is the peer's answer.
    /// After a protocol violation the peer's answer is not awaited.
    ClosedByUs { ours: Option<CloseFrame>, sent: bool, theirs: Option<CloseFrame>, await_reply: bool },
    /// The peer started it; our reply goes out after what was already queued.
    ClosedByPeer { theirs: CloseFrame, reply_sent: bool },
}

impl CloseState {
    /// True while data messages from the peer are still delivered.
    pub fn is_open(&self) -> bool {
        matches!(self, CloseState::Open)
    }

    /// True while the peer may still send frames we read (its close has not arrived).
    pub fn reading(&self) -> bool {
        !matches!(self, CloseState::ClosedByPeer { .. } | CloseState::ClosedByUs { theirs: Some(_), .. })
    }

    /// The peer's close frame arrived. `ours_queued`: our own close frame was already queued
    /// (then the close is ours and their frame is the answer); otherwise a reply is owed.
    /// Returns true if the caller must queue the reply (echoing the peer's code).
    pub fn peer_closed(&mut self, theirs: CloseFrame, ours_queued: bool) -> bool {
        match self {
            CloseState::Open if ours_queued => {
                *self = CloseState::ClosedByUs { ours: None, sent: false, theirs: Some(theirs), await_reply: true };
                false
            }
            CloseState::Open => {
                *self = CloseState::ClosedByPeer { theirs, reply_sent: false };
                true
            }
            CloseState::ClosedByUs { theirs: t @ None, .. } => {
                *t = Some(theirs);
                false
            }
            // A second close frame cannot be decoded (reading stops at the first).
            _ => false,
        }
    }

    /// Our close frame left the queue for the transport. `violation`: it answers a protocol
    /// violation, so the peer's reply is not awaited.
    pub fn ours_dequeued(&mut self, frame: CloseFrame, violation: bool) {
        match self {
            CloseState::Open => {
                *self = CloseState::ClosedByUs { ours: Some(frame), sent: false, theirs: None, await_reply: !violation }
            }
            CloseState::ClosedByUs { ours: o @ None, await_reply, .. } => {
                *o = Some(frame);
                *await_reply &= !violation;
            }
            // The reply to the peer's close, or a second frame (the queue allows only one).
            _ => {}
        }
    }

    /// The peer broke the protocol after we started the close: its answer is no longer awaited.
    pub fn peer_violated(&mut self) {
        if let CloseState::ClosedByUs { await_reply, .. } = self {
            *await_reply = false;
        }
    }

    /// The transport has all of our close frame.
    pub fn ours_sent(&mut self) {
        match self {
            CloseState::ClosedByUs { sent, .. } => *sent = true,
            CloseState::ClosedByPeer { reply_sent, .. } => *reply_sent = true,
            CloseState::Open => {}
        }
    }

    /// True once our close frame (or reply) is with the transport: nothing more may be sent.
    pub fn ours_out(&self) -> bool {
        matches!(self, CloseState::ClosedByUs { sent: true, .. } | CloseState::ClosedByPeer { reply_sent: true, .. })
    }

    /// Our close frame, once known (for a close-handshake timeout).
    pub fn ours(&self) -> Option<&CloseFrame> {
        match self {
            CloseState::ClosedByUs { ours, .. } => ours.as_ref(),
            _ => None,
        }
    }

    /// Whether the connection is over: the handshake completed and everything is written
    /// (`flushed`), or the peer's stream ended (`eof`).
    pub fn finished(&self, flushed: bool, eof: bool) -> Option<Ended> {
        use CloseState::*;
        match self {
            ClosedByUs { ours: Some(o), sent: true, theirs, await_reply }
                if flushed && (theirs.is_some() || !await_reply) =>
            {
                return Some(Ended::with(o, Initiator::Server));
            }
            ClosedByPeer { theirs, reply_sent: true } if flushed => return Some(Ended::with(theirs, Initiator::Peer)),
            _ => {}
        }
        if !eof {
            return None;
        }
        Some(match self {
            ClosedByPeer { theirs, .. } => Ended::with(theirs, Initiator::Peer),
            ClosedByUs { ours: Some(o), sent: true, .. } => Ended::with(o, Initiator::Server),
            ClosedByUs { theirs: Some(t), .. } => Ended::with(t, Initiator::Peer),
            _ => Ended::abnormal("connection dropped without a close frame", Initiator::Nobody),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u16, reason: &str) -> CloseFrame {
        CloseFrame { code: CloseCode::from_wire(code).expect("valid"), reason: reason.into() }
    }

    #[test]
    fn the_peer_closes_and_we_echo() {
        let mut s = CloseState::Open;
        assert!(s.peer_closed(frame(1000, "bye"), false), "a reply is owed");
        assert!(!s.reading() && !s.is_open());
        s.ours_dequeued(frame(1000, ""), false);
        assert_eq!(s.finished(true, false), None, "the reply is not out yet");
        s.ours_sent();
        assert_eq!(s.finished(false, false), None, "not flushed");
        let ended = s.finished(true, false).expect("done");
        assert_eq!((ended.code.get(), ended.reason.as_str(), ended.initiator), (1000, "bye", Initiator::Peer));
    }

    #[test]
    fn we_close_and_wait_for_the_answer() {
        let mut s = CloseState::Open;
        s.ours_dequeued(frame(1001, "going away"), false);
        assert!(s.reading(), "the peer's answer is still read");
        s.ours_sent();
        assert_eq!(s.finished(true, false), None, "waiting for the peer");
        assert!(!s.peer_closed(frame(1001, ""), false), "no reply to an answer");
        let ended = s.finished(true, false).expect("done");
        assert_eq!((ended.code.get(), ended.initiator), (1001, Initiator::Server));
    }

    #[test]
    fn a_close_queued_before_the_peers_is_ours() {
        // Our close frame was queued (by a plugin, say) but not yet written when the peer's came.
        let mut s = CloseState::Open;
        assert!(!s.peer_closed(frame(1000, "peer"), true));
        s.ours_dequeued(frame(4000, "plugin"), false);
        s.ours_sent();
        let ended = s.finished(true, false).expect("done");
        assert_eq!((ended.code.get(), ended.initiator), (4000, Initiator::Server));
    }

    #[test]
    fn after_a_violation_the_answer_is_not_awaited() {
        let mut s = CloseState::Open;
        s.ours_dequeued(frame(1002, "protocol error"), true);
        s.ours_sent();
        let ended = s.finished(true, false).expect("done without the peer");
        assert_eq!((ended.code.get(), ended.initiator), (1002, Initiator::Server));
    }

    #[test]
    fn end_of_stream_decides_by_what_was_exchanged() {
        assert_eq!(CloseState::Open.finished(true, true).map(|e| e.code), Some(CloseCode::ABNORMAL));
        let mut s = CloseState::Open;
        s.peer_closed(frame(1000, ""), false);
        assert_eq!(s.finished(false, true).map(|e| e.initiator), Some(Initiator::Peer));
        let mut s = CloseState::Open;
        s.ours_dequeued(frame(1001, ""), false);
        assert_eq!(s.finished(true, true).map(|e| e.code), Some(CloseCode::ABNORMAL), "ours never got out");
        s.ours_sent();
        assert_eq!(s.finished(false, true).map(|e| e.code.get()), Some(1001));
    }
}
