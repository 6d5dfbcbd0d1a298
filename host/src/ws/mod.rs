//! RFC 6455 framing for the server side: a streaming decoder that needs no per-connection read
//! buffer, and an encoder that writes headers for unmasked server frames.

mod close;
mod decode;
pub mod deflate;
mod encode;
mod utf8;

#[cfg(test)]
mod props;

pub use close::CloseCode;
pub use decode::{Decoder, Event, WsError};
pub use encode::{Opcode, close_payload, encode_header};

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
