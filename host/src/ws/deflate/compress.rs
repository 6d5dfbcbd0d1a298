//! Compressing what we send. Without server context takeover a message's compressed form
//! depends only on its bytes, the window and the level: compressors are per thread (reset
//! before each message) and a message shared by many connections is compressed once per
//! parameter set ([`Shared`]).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use super::{Agreed, TAIL};

type Key = (u8, u32);

thread_local! {
    /// This thread's compressors, one per (window, level) in use.
    static COMPRESSORS: RefCell<Vec<(Key, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// A connection's compressor side.
#[derive(Debug)]
pub struct Deflater {
    agreed: Agreed,
    /// Our window, kept between messages (server context takeover only).
    kept: Option<Compress>,
    /// Messages this side compressed (the server's count).
    compressions: Counter,
}

/// A message queued to many connections, with its compressed forms as they are made.
#[derive(Debug)]
pub struct Shared {
    pub payload: Bytes,
    /// Per parameter set: the compressed bytes, or `None` when compressing did not pay.
    compressed: Mutex<Vec<(Key, Option<Bytes>)>>,
}

impl Shared {
    pub fn new(payload: Bytes) -> Shared {
        Shared { payload, compressed: Mutex::new(Vec::new()) }
    }

    /// Parameter sets it was compressed for.
    #[cfg(test)]
    pub fn compressed_forms(&self) -> usize {
        self.compressed.lock().len()
    }
}

impl Deflater {
    pub fn new(agreed: Agreed, compressions: Counter) -> Deflater {
        Deflater { agreed, kept: None, compressions }
    }

    /// True while it holds compression state.
    #[cfg(test)]
    pub fn holds_state(&self) -> bool {
        self.kept.is_some()
    }

    /// The payload to send for `payload`, and whether it is compressed (RSV1).
    pub fn message(&mut self, payload: &Bytes) -> (Bytes, bool) {
        if payload.len() < self.agreed.min_size {
            return (payload.clone(), false);
        }
        self.compressions.inc();
        if self.agreed.server_takeover {
            let a = self.agreed;
            let c = self.kept.get_or_insert_with(|| compressor(a.key()));
            return match compress(c, payload) {
                Some(out) => (out, true),
                None => {
                    // A fresh compressor next time: its output never refers to the old window,
                    // which the peer's inflater may still hold, so the stream stays valid.
                    self.kept = None;
                    (payload.clone(), false)
                }
            };
        }
        match fresh(self.agreed.key(), payload) {
            Some(out) => (out, true),
            None => (payload.clone(), false),
        }
    }

    /// Like [`Deflater::message`] for a message many connections share: compressed once per
    /// parameter set, the same bytes for each.
    pub fn shared(&mut self, shared: &Shared) -> (Bytes, bool) {
        if shared.payload.len() < self.agreed.min_size || self.agreed.server_takeover {
            return self.message(&shared.payload);
        }
        let key = self.agreed.key();
        // Compressed under the lock: members on other threads wait for these bytes rather than
        // compress the message again.
        let mut forms = shared.compressed.lock();
        let form = match forms.iter().find(|(k, _)| *k == key) {
            Some((_, form)) => form.clone(),
            None => {
                self.compressions.inc();
                let form = fresh(key, &shared.payload);
                forms.push((key, form.clone()));
                form
            }
        };
        match form {
            Some(out) => (out, true),
            None => (shared.payload.clone(), false),
        }
    }
}

fn compressor((window_bits, level): Key) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits)
}

/// Compresses `payload` as a message of its own with this thread's compressor for `key`;
/// `None` when that would not make it smaller.
fn fresh(key: Key, payload: &[u8]) -> Option<Bytes> {
    COMPRESSORS.with_borrow_mut(|all| {
        let i = match all.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                all.push((key, compressor(key)));
                all.len() - 1
            }
        };
        let c = &mut all[i].1;
        c.reset();
        compress(c, payload).filter(|out| out.len() < payload.len())
    })
}

/// Compresses `input` with a sync flush and strips the flush's trailer (RFC 7692 7.2.1).
fn compress(c: &mut Compress, input: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = c.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let consumed = (c.total_in() - start) as usize;
        if let Err(e) = c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync) {
            tracing::warn!(error = %e, "deflate failed; the message goes uncompressed");
            return None;
        }
        // The flush is complete once all input is in and the output was not full.
        if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&TAIL) {
        return None;
    }
    out.truncate(out.len() - TAIL.len());
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::super::Inflater;
    use super::*;

    fn agreed(server_takeover: bool) -> Agreed {
        Agreed { server_takeover, client_takeover: false, window_bits: 15, level: 1, min_size: 64 }
    }

    fn inflate(inf: &mut Inflater, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        inf.feed(data, &mut out, 1 << 20).expect("inflate");
        inf.finish(&mut out, 1 << 20).expect("finish");
        out
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        let msgs: Vec<Bytes> =
            (0..5).map(|i| Bytes::from(format!("{{\"n\":{i},\"text\":\"{}\"}}", "hello ".repeat(40)))).collect();
        for takeover in [false, true] {
            let mut d = Deflater::new(agreed(takeover), Counter::default());
            let mut inf = Inflater::new(takeover);
            let mut sizes = Vec::new();
            for m in &msgs {
                let (out, compressed) = d.message(m);
                assert!(compressed);
                sizes.push(out.len());
                assert_eq!(inflate(&mut inf, &out), m.to_vec());
            }
            assert_eq!(d.holds_state(), takeover, "only context takeover keeps a compressor");
            if takeover {
                assert!(sizes[4] < sizes[0] / 2, "the window helps later messages: {sizes:?}");
            }
        }
    }

    #[test]
    fn small_or_incompressible_messages_go_plain() {
        let mut d = Deflater::new(agreed(false), Counter::default());
        let small = Bytes::from_static(b"hi");
        assert_eq!(d.message(&small), (small.clone(), false));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64: bytes deflate cannot shrink.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let noise = Bytes::from(noise);
        assert_eq!(d.message(&noise), (noise.clone(), false));
    }

    #[test]
    fn a_shared_message_is_compressed_once_per_parameter_set() {
        let shared = Shared::new(Bytes::from("{\"room\":\"lobby\"} ".repeat(100)));
        let count = Counter::default();
        let (mut a, mut b) = (Deflater::new(agreed(false), count.clone()), Deflater::new(agreed(false), count.clone()));
        let (x, _) = a.shared(&shared);
        let (y, _) = b.shared(&shared);
        assert_eq!(x.as_ptr(), y.as_ptr(), "the same bytes, not a copy");
        assert_eq!((shared.compressed_forms(), count.get()), (1, 1));
        let mut c = Deflater::new(Agreed { window_bits: 10, ..agreed(false) }, count.clone());
        let (z, _) = c.shared(&shared);
        assert_eq!(inflate(&mut Inflater::new(false), &z), shared.payload.to_vec());
        assert_eq!((shared.compressed_forms(), count.get()), (2, 2));
    }
}
