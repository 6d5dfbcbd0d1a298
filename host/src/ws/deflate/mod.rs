//! permessage-deflate (RFC 7692): the handshake's negotiation, bounded streaming inflation of
//! what the peer sends, and compression of what we send (once per parameter set for a message
//! many connections share).
//!
//! Without context takeover, the default, a connection holds no compression state between
//! messages: inflaters come from a small process-wide pool for the length of one message, and
//! compressors are per thread. With context takeover each connection keeps its own (see the
//! README for what that costs).

mod compress;
mod inflate;
mod negotiate;

pub use compress::{Deflater, Shared};
pub use inflate::Inflater;
pub use negotiate::negotiate;

/// How a route answers permessage-deflate offers (`[compression]`, or a route's `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Answer offers at all.
    pub enabled: bool,
    /// Both sides keep their LZ77 window between messages (better ratios on small, similar
    /// messages; costs a compressor and an inflater per connection for its whole life).
    pub context_takeover: bool,
    /// Our compressor's window (9-15): the most we use, whatever the client allows.
    pub window_bits: u8,
    /// Messages shorter than this are sent uncompressed.
    pub min_size: usize,
    /// zlib level 1 (fastest) to 9 (smallest).
    pub level: u32,
}

/// What one connection agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// We keep our compressor's window between messages.
    pub server_takeover: bool,
    /// The client keeps its window: our inflater must persist between messages.
    pub client_takeover: bool,
    /// Our compressor's window bits.
    pub window_bits: u8,
    pub level: u32,
    pub min_size: usize,
}

impl Agreed {
    /// What a compressed message depends on: two connections with the same key get the same
    /// bytes for the same message (only without server context takeover).
    fn key(&self) -> (u8, u32) {
        (self.window_bits, self.level)
    }
}

/// The trailer a sync flush ends with, which RFC 7692 strips on the wire and the receiver adds back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
