/// Incremental UTF-8 validation of a message that arrives in pieces, failing as soon as the
/// bytes seen so far cannot start valid UTF-8 (RFC 6455 8.1 "fail fast").
#[derive(Debug, Default)]
pub struct Utf8Progress {
    /// Bytes of the buffer known to be complete, valid UTF-8.
    valid: usize,
}

impl Utf8Progress {
    /// Validates `buf[self.valid..]`; an incomplete sequence at the end is fine for now.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(), ()> {
        match simdutf8::compat::from_utf8(&buf[self.valid..]) {
            Ok(_) => {
                self.valid = buf.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                self.valid += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// True when the whole buffer has been validated (no dangling partial sequence).
    pub fn complete(&self, buf: &[u8]) -> bool {
        self.valid == buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Progress;

    #[test]
    fn split_sequence_is_accepted_across_chunks() {
        let text = "héllo €".as_bytes();
        let mut buf = Vec::new();
        let mut p = Utf8Progress::default();
        for b in text {
            buf.push(*b);
            p.advance(&buf).unwrap();
        }
        assert!(p.complete(&buf));
    }

    #[test]
    fn invalid_byte_fails_immediately_and_truncated_tail_is_incomplete() {
        let mut p = Utf8Progress::default();
        assert!(p.advance(&[b'a', 0xff]).is_err());
        let mut p = Utf8Progress::default();
        let buf = [0xe2, 0x82];
        p.advance(&buf).unwrap();
        assert!(!p.complete(&buf));
    }
}
