//! Inflating what the peer sends, as it arrives, into a buffer that never grows past the
//! message limit: a deflate bomb fails at `max_message + 1` bytes, whatever it would inflate to.

use flate2::{Decompress, FlushDecompress, Status};
use parking_lot::Mutex;

use super::TAIL;
use crate::ws::WsError;

/// Idle inflaters kept for reuse across connections (each holds a 32 KiB window and its
/// tables; making one per message would cost more than inflating a small message).
const POOL_MAX: usize = 64;
// `Decompress` keeps its state on the heap: moving it in and out of the pool copies no tables.
static POOL: Mutex<Vec<Decompress>> = Mutex::new(Vec::new());

/// Growth step of a message's buffer while inflating (doubling up to the limit).
const MIN_GROWTH: usize = 4 << 10;
const MAX_GROWTH: usize = 1 << 20;

/// A connection's inflater. Without client context takeover it holds one only while a message
/// is being received.
#[derive(Debug)]
pub struct Inflater {
    keep: bool,
    state: Option<Decompress>,
}

impl Inflater {
    /// `keep`: the client keeps its window between messages, so must we.
    pub fn new(keep: bool) -> Inflater {
        Inflater { keep, state: None }
    }

    /// True while it holds inflation state.
    #[cfg(test)]
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }

    /// Inflates `input` (a piece of a compressed message), appending to `out` but never past
    /// `max` bytes in all.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), WsError> {
        let d = self.state.get_or_insert_with(take_pooled);
        inflate(d, input, out, max)
    }

    /// Ends a message: inflates the trailer the sender stripped, then gives the state back to
    /// the pool unless the client keeps its context.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), WsError> {
        let result = self.feed(&TAIL, out, max);
        if !self.keep || result.is_err() {
            self.release();
        }
        result
    }

    /// Drops the message's state (after an error, or at the end of a message).
    pub fn release(&mut self) {
        if let Some(mut d) = self.state.take() {
            d.reset(false);
            let mut pool = POOL.lock();
            if pool.len() < POOL_MAX {
                pool.push(d);
            }
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        self.release();
    }
}

fn take_pooled() -> Decompress {
    POOL.lock().pop().unwrap_or_else(|| Decompress::new(false))
}

fn inflate(d: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), WsError> {
    loop {
        if out.len() == out.capacity() {
            // One byte past the limit is enough to know the message is too big.
            let room = (max + 1).saturating_sub(out.len());
            if room == 0 {
                return Err(WsError::TooBig("message"));
            }
            out.reserve_exact(out.len().clamp(MIN_GROWTH, MAX_GROWTH).min(room));
        }
        let (in_before, out_before) = (d.total_in(), out.len());
        let status = d.decompress_vec(input, out, FlushDecompress::None).map_err(|_| WsError::BadCompressed)?;
        let consumed = (d.total_in() - in_before) as usize;
        input = &input[consumed..];
        if out.len() > max {
            return Err(WsError::TooBig("message"));
        }
        let spare = out.len() < out.capacity();
        match status {
            // The sender ended the deflate stream (BFINAL): what follows starts a new one.
            Status::StreamEnd => {
                d.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
            }
            _ if input.is_empty() && spare => return Ok(()),
            _ if consumed == 0 && out.len() == out_before && spare => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    pub(crate) fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).expect("compress");
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn a_message_inflates_across_pieces_and_the_state_is_released() {
        let text = "the quick brown fox jumps over the lazy dog ".repeat(500);
        let compressed = deflate(text.as_bytes());
        let mut inf = Inflater::new(false);
        let mut out = Vec::new();
        for piece in compressed.chunks(7) {
            inf.feed(piece, &mut out, 1 << 20).expect("inflate");
        }
        inf.finish(&mut out, 1 << 20).expect("finish");
        assert_eq!(out, text.as_bytes());
        assert!(!inf.holds_state(), "nothing is held between messages");
    }

    #[test]
    fn a_bomb_stops_one_byte_past_the_limit() {
        let bomb = deflate(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        let mut inf = Inflater::new(false);
        let mut out = Vec::new();
        let max = 1 << 20;
        assert_eq!(inf.feed(&bomb, &mut out, max), Err(WsError::TooBig("message")));
        assert!(out.capacity() <= max + 1, "buffer grew to {}", out.capacity());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut inf = Inflater::new(false);
        let mut out = Vec::new();
        // Block type 3 is reserved.
        assert_eq!(inf.feed(&[0xff, 0xff, 0xff], &mut out, 1024), Err(WsError::BadCompressed));
    }
}
