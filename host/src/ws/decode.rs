use thiserror::Error;

use super::close::CloseCode;
use super::deflate::Inflater;
use super::encode::Opcode;
use super::utf8::Utf8Progress;

/// A complete event from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: code and reason, or `None` for an empty close frame.
    Close(Option<(CloseCode, String)>),
}

/// A protocol violation by the peer, with the close code it earns.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WsError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    #[error("{0} exceeds the configured limit")]
    TooBig(&'static str),
    #[error("invalid compressed data")]
    BadCompressed,
}

impl WsError {
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) => CloseCode::PROTOCOL,
            // RFC 7692 says only that the connection fails; the data is what is invalid.
            WsError::InvalidUtf8 | WsError::BadCompressed => CloseCode::INVALID_DATA,
            WsError::TooBig(_) => CloseCode::TOO_BIG,
        }
    }
}

/// Streaming decoder of client frames. It copies payload bytes (unmasking them) straight from
/// whatever slice the transport hands it into the message being assembled, so a connection
/// holds no read buffer between messages, only this small state.
#[derive(Debug)]
pub struct Decoder {
    max_frame: u64,
    max_message: usize,
    hdr: [u8; 14],
    hdr_len: u8,
    frame: Option<Frame>,
    msg: Option<Partial>,
    ctrl: Vec<u8>,
    /// Counts data messages completed, and control frames completed outside a data message:
    /// what is in progress changed when it changes (a ping between fragments does not).
    generation: u64,
    /// Set when permessage-deflate was negotiated: RSV1 marks a compressed message.
    inflater: Option<Inflater>,
}

#[derive(Debug)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    offset: usize,
}

#[derive(Debug)]
struct Partial {
    text: bool,
    buf: Vec<u8>,
    utf8: Utf8Progress,
    /// Compressed (RSV1 on its first frame): `buf` holds what was inflated so far.
    compressed: bool,
    /// Bytes of its frames' payloads so far (the compressed size, for a compressed message).
    wire: u64,
}

/// Initial capacity for a message whose length is announced: enough for typical messages,
/// but a peer announcing a huge frame does not make us allocate it before it arrives.
const INITIAL_RESERVE: usize = 64 * 1024;

impl Decoder {
    pub fn new(max_frame: usize, max_message: usize) -> Self {
        Decoder {
            max_frame: max_frame as u64,
            max_message,
            hdr: [0; 14],
            hdr_len: 0,
            frame: None,
            msg: None,
            ctrl: Vec::new(),
            generation: 0,
            inflater: None,
        }
    }

    /// Accepts compressed messages (permessage-deflate); `keep`: the client keeps its context.
    pub fn with_inflater(mut self, keep: bool) -> Self {
        self.inflater = Some(Inflater::new(keep));
        self
    }

    /// True while it holds inflation state (only between messages with client context takeover).
    #[cfg(test)]
    pub fn holds_inflate_state(&self) -> bool {
        self.inflater.as_ref().is_some_and(Inflater::holds_state)
    }

    /// True while a frame or a fragmented message is partly received.
    pub fn in_progress(&self) -> bool {
        self.hdr_len > 0 || self.frame.is_some() || self.msg.is_some()
    }

    /// Changes whenever a data message, or a control frame outside one, completes: a caller
    /// timing how long something is in progress restarts its clock when this changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes held for the message being assembled (its buffer's capacity, and the control
    /// frame's).
    pub fn held(&self) -> usize {
        self.msg.as_ref().map_or(0, |m| m.buf.capacity()) + self.ctrl.capacity()
    }

    /// Drops what is being assembled (the connection is being shed).
    pub fn discard(&mut self) {
        self.msg = None;
        self.frame = None;
        self.hdr_len = 0;
        self.ctrl = Vec::new();
    }

    /// Consumes bytes from `input` until one event is complete (returned) or `input` is empty.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Event>, WsError> {
        loop {
            if self.frame.is_none() && !self.read_header(input)? {
                return Ok(None);
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(None);
            };
            let take = (frame.remaining.min(input.len() as u64)) as usize;
            let (chunk, rest) = input.split_at(take);
            *input = rest;
            if frame.opcode.is_control() {
                unmask_extend(&mut self.ctrl, chunk, frame.mask, frame.offset);
            } else if let Some(msg) = self.msg.as_mut() {
                if msg.compressed {
                    let inflater = self.inflater.as_mut().ok_or(WsError::Protocol("compressed without deflate"))?;
                    inflate_unmasked(inflater, chunk, frame.mask, frame.offset, &mut msg.buf, self.max_message)?;
                } else {
                    unmask_extend(&mut msg.buf, chunk, frame.mask, frame.offset);
                }
                if msg.text && msg.utf8.advance(&msg.buf).is_err() {
                    return Err(WsError::InvalidUtf8);
                }
            }
            frame.offset += take;
            frame.remaining -= take as u64;
            if frame.remaining > 0 {
                return Ok(None);
            }
            let (opcode, fin) = (frame.opcode, frame.fin);
            self.frame = None;
            if opcode.is_control() {
                if self.msg.is_none() {
                    self.generation += 1;
                }
                return self.control(opcode).map(Some);
            }
            if fin {
                self.generation += 1;
                return self.finish_message().map(Some);
            }
        }
    }

    /// Collects and validates a frame header; false if `input` ran out first.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<bool, WsError> {
        let mut need = 2;
        loop {
            let have = self.hdr_len as usize;
            if have >= 2 {
                need = header_len(self.hdr[1]);
            }
            if have >= need {
                break;
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(false);
            };
            self.hdr[have] = b;
            self.hdr_len += 1;
            *input = rest;
        }
        self.hdr_len = 0;
        let h = &self.hdr;
        let fin = h[0] & 0x80 != 0;
        let rsv1 = h[0] & 0x40 != 0;
        if h[0] & 0x30 != 0 || (rsv1 && self.inflater.is_none()) {
            return Err(WsError::Protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = Opcode::from_u8(h[0] & 0x0f).ok_or(WsError::Protocol("unknown opcode"))?;
        // RFC 7692 6: RSV1 marks the first frame of a compressed data message, nothing else.
        if rsv1 && (opcode.is_control() || opcode == Opcode::Continuation) {
            return Err(WsError::Protocol("RSV1 set on a control or continuation frame"));
        }
        if h[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, mask_at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => {
                let len = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("frame length has the top bit set"));
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]];
        if opcode.is_control() {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > 125 {
                return Err(WsError::Protocol("control frame longer than 125 bytes"));
            }
            self.ctrl.clear();
        } else {
            if len > self.max_frame {
                return Err(WsError::TooBig("frame"));
            }
            match (opcode, &mut self.msg) {
                (Opcode::Continuation, None) => {
                    return Err(WsError::Protocol("continuation frame without a message"));
                }
                (Opcode::Continuation, Some(msg)) => {
                    // A compressed message's inflated size is checked as it inflates.
                    let so_far = if msg.compressed { msg.wire } else { msg.buf.len() as u64 };
                    if so_far + len > self.max_message as u64 {
                        return Err(WsError::TooBig("message"));
                    }
                    msg.wire += len;
                }
                (_, Some(_)) => {
                    return Err(WsError::Protocol("new message before the last one finished"));
                }
                (op, None) => {
                    if len > self.max_message as u64 {
                        return Err(WsError::TooBig("message"));
                    }
                    // A compressed message's buffer grows as it inflates.
                    let reserve = if rsv1 { 0 } else { (len as usize).min(INITIAL_RESERVE) };
                    self.msg = Some(Partial {
                        text: op == Opcode::Text,
                        buf: Vec::with_capacity(reserve),
                        utf8: Utf8Progress::default(),
                        compressed: rsv1,
                        wire: len,
                    });
                }
            }
        }
        self.frame = Some(Frame { opcode, fin, remaining: len, mask, offset: 0 });
        Ok(true)
    }

    fn control(&mut self, opcode: Opcode) -> Result<Event, WsError> {
        let payload = std::mem::take(&mut self.ctrl);
        Ok(match opcode {
            Opcode::Ping => Event::Ping(payload),
            Opcode::Pong => Event::Pong(payload),
            _ => match payload.len() {
                0 => Event::Close(None),
                1 => return Err(WsError::Protocol("close frame with a 1-byte payload")),
                _ => {
                    let code = CloseCode::from_wire(u16::from_be_bytes([payload[0], payload[1]]))
                        .ok_or(WsError::Protocol("invalid close code"))?;
                    let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?.to_owned();
                    Event::Close(Some((code, reason)))
                }
            },
        })
    }

    fn finish_message(&mut self) -> Result<Event, WsError> {
        let Some(mut msg) = self.msg.take() else {
            return Err(WsError::Protocol("message end without a message"));
        };
        if msg.compressed {
            let inflater = self.inflater.as_mut().ok_or(WsError::Protocol("compressed without deflate"))?;
            inflater.finish(&mut msg.buf, self.max_message)?;
            if msg.text && msg.utf8.advance(&msg.buf).is_err() {
                return Err(WsError::InvalidUtf8);
            }
        }
        if !msg.text {
            return Ok(Event::Binary(msg.buf));
        }
        if !msg.utf8.complete(&msg.buf) {
            return Err(WsError::InvalidUtf8);
        }
        Ok(Event::Text(validated_string(msg.buf)))
    }
}

/// Turns bytes already validated by [`Utf8Progress`] into a `String` without a second pass.
#[allow(unsafe_code)]
fn validated_string(buf: Vec<u8>) -> String {
    debug_assert!(std::str::from_utf8(&buf).is_ok());
    // SAFETY: `finish_message` only calls this after `Utf8Progress` validated every byte of
    // `buf` (`complete` is true), so the bytes are valid UTF-8.
    unsafe { String::from_utf8_unchecked(buf) }
}

/// Header length implied by the second header byte (mask bit and length code).
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Unmasks `src` in pieces on the stack and inflates them into `out`, within `max` bytes.
fn inflate_unmasked(
    inflater: &mut Inflater,
    src: &[u8],
    mask: [u8; 4],
    offset: usize,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), WsError> {
    let mut piece = [0u8; 4096];
    for (i, chunk) in src.chunks(piece.len()).enumerate() {
        let p = &mut piece[..chunk.len()];
        p.copy_from_slice(chunk);
        unmask(p, mask, offset + i * 4096);
        inflater.feed(p, out, max)?;
    }
    Ok(())
}

/// Appends `src` unmasked with `mask`, where `offset` is the position of `src[0]` in the frame.
fn unmask_extend(dst: &mut Vec<u8>, src: &[u8], mask: [u8; 4], offset: usize) {
    let start = dst.len();
    dst.extend_from_slice(src);
    unmask(&mut dst[start..], mask, offset);
}

/// Unmasks `buf` in place, where `offset` is the position of `buf[0]` in the frame.
fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let rot = (offset & 3) as u32 * 8;
    let m32 = u32::from_le_bytes(mask).rotate_right(rot);
    let m64 = (m32 as u64) | ((m32 as u64) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ m64;
        c.copy_from_slice(&v.to_le_bytes());
    }
    let m = m32.to_le_bytes();
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, WsError> {
        let mut input = bytes;
        let mut out = Vec::new();
        while let Some(ev) = d.decode(&mut input)? {
            out.push(ev);
        }
        assert!(input.is_empty());
        Ok(out)
    }

    #[test]
    fn text_binary_and_control_frames() {
        let mut d = Decoder::new(1 << 20, 1 << 20);
        let mut bytes = frame(true, 1, b"Hello");
        bytes.extend(frame(true, 2, &[1, 2, 3]));
        bytes.extend(frame(true, 9, b"hb"));
        bytes.extend(frame(true, 8, &[0x03, 0xe8, b'o', b'k']));
        let evs = decode_all(&mut d, &bytes).unwrap();
        assert_eq!(
            evs,
            vec![
                Event::Text("Hello".into()),
                Event::Binary(vec![1, 2, 3]),
                Event::Ping(b"hb".to_vec()),
                Event::Close(Some((CloseCode::NORMAL, "ok".into()))),
            ]
        );
    }

    #[test]
    fn byte_at_a_time_with_fragments_and_interleaved_ping() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut bytes = frame(false, 1, &payload[..100]);
        bytes.extend(frame(true, 9, b""));
        bytes.extend(frame(false, 0, &payload[100..300]));
        bytes.extend(frame(true, 0, &payload[300..]));
        let mut d = Decoder::new(1 << 20, 1 << 20);
        let mut events = Vec::new();
        for b in &bytes {
            let mut one: &[u8] = std::slice::from_ref(b);
            if let Some(ev) = d.decode(&mut one).unwrap() {
                events.push(ev);
            }
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], Event::Ping(vec![]));
        assert_eq!(events[1], Event::Text(String::from_utf8(payload).unwrap()));
        assert!(!d.in_progress());
    }

    #[test]
    fn violations_map_to_close_codes() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x81, 0x00], 1002), // unmasked
            (
                {
                    let mut f = frame(true, 1, b"x");
                    f[0] |= 0x40;
                    f
                },
                1002,
            ), // RSV1
            (frame(true, 3, b""), 1002), // reserved opcode
            (frame(false, 9, b""), 1002), // fragmented ping
            (frame(true, 9, &[0; 126]), 1002), // long ping
            (frame(true, 0, b"x"), 1002), // stray continuation
            (frame(true, 1, &[0xce, 0xba, 0xff]), 1007), // bad UTF-8
            (frame(true, 8, &[0x03]), 1002), // 1-byte close
            (frame(true, 8, &[0x03, 0xed]), 1002), // close code 1005
            (frame(true, 8, &[0x03, 0xe8, 0xff]), 1007), // bad close reason
            (frame(true, 2, &[0; 2000]), 1009), // too big
        ];
        for (bytes, code) in cases {
            let mut d = Decoder::new(1024, 1024);
            let err = decode_all(&mut d, &bytes).unwrap_err();
            assert_eq!(err.close_code().get(), code, "{err} for {bytes:02x?}");
        }
        let mut d = Decoder::new(1024, 1024);
        let mut two = frame(false, 1, b"a");
        two.extend(frame(true, 2, b"b"));
        assert_eq!(decode_all(&mut d, &two).unwrap_err().close_code(), CloseCode::PROTOCOL);
    }

    #[test]
    fn fragmented_message_limit_counts_all_fragments() {
        let mut d = Decoder::new(600, 1000);
        let mut bytes = frame(false, 2, &[0; 600]);
        bytes.extend(frame(true, 0, &[0; 600]));
        assert_eq!(decode_all(&mut d, &bytes).unwrap_err(), WsError::TooBig("message"));
    }

    #[test]
    fn invalid_utf8_fails_fast_before_the_message_ends() {
        let mut d = Decoder::new(1 << 20, 1 << 20);
        let first = frame(false, 1, &[b'a', 0xff]);
        assert_eq!(decode_all(&mut d, &first).unwrap_err(), WsError::InvalidUtf8);
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_inflate_fragmented_and_byte_at_a_time() {
        let text = "permessage-deflate ".repeat(300);
        let z = deflated(text.as_bytes());
        let mut bytes = frame(false, 1, &z[..10]);
        bytes[0] |= 0x40; // RSV1 on the first frame only
        bytes.extend(frame(true, 9, b"hb"));
        bytes.extend(frame(true, 0, &z[10..]));
        bytes.extend(frame(true, 2, b"plain"));
        let mut d = Decoder::new(1 << 20, 1 << 20).with_inflater(false);
        let mut events = Vec::new();
        for b in &bytes {
            let mut one: &[u8] = std::slice::from_ref(b);
            if let Some(ev) = d.decode(&mut one).unwrap() {
                events.push(ev);
            }
        }
        assert_eq!(events, vec![Event::Ping(b"hb".to_vec()), Event::Text(text), Event::Binary(b"plain".to_vec())]);
        assert!(!d.in_progress() && !d.holds_inflate_state(), "nothing held between messages");
    }

    #[test]
    fn compressed_violations_map_to_close_codes() {
        let with_rsv1 = |mut f: Vec<u8>| {
            f[0] |= 0x40;
            f
        };
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (with_rsv1(frame(true, 1, &[0xff, 0xff, 0xff])), 1007), // not deflate data
            (with_rsv1(frame(true, 1, &deflated(&[0xc3, 0x28]))), 1007), // not UTF-8
            (with_rsv1(frame(true, 9, b"")), 1002),                 // RSV1 on a ping
            (
                {
                    let mut f = with_rsv1(frame(false, 1, &deflated(b"a")));
                    f.extend(with_rsv1(frame(true, 0, b"")));
                    f
                },
                1002,
            ), // RSV1 on a continuation
            (
                {
                    let mut f = frame(true, 1, b"x");
                    f[0] |= 0x20;
                    f
                },
                1002,
            ), // RSV2 is never ours
            (with_rsv1(frame(true, 2, &deflated(&[7; 5000]))), 1009), // inflates past the limit
        ];
        for (bytes, code) in cases {
            let mut d = Decoder::new(1024, 1024).with_inflater(false);
            let err = decode_all(&mut d, &bytes).unwrap_err();
            assert_eq!(err.close_code().get(), code, "{err} for {bytes:02x?}");
        }
    }

    #[test]
    fn unmask_handles_every_offset() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..37).collect();
        for split in 0..data.len() {
            let mut out = Vec::new();
            let masked: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            unmask_extend(&mut out, &masked[..split], mask, 0);
            unmask_extend(&mut out, &masked[split..], mask, split);
            assert_eq!(out, data);
        }
    }
}
