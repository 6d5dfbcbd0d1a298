//! The HTTP request that opens the conversation (an upgrade, or a plain GET for a file).

use crate::http::{self, HttpError, HttpRequest};
use crate::transport::{ReadError, ReadStatus, Socket, Transport};

/// Reads the request; `Ok(None)` if the peer closed first. Also returns the bytes that came
/// after it (early WebSocket frames).
pub(crate) async fn read<S: Socket>(
    t: &mut Transport<S>,
    max: usize,
) -> Result<Option<(HttpRequest, Vec<u8>)>, HttpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // Plaintext may already be buffered (sent with the TLS handshake): read before waiting.
        let status = t.read_with(max, |chunk| {
            if buf.len() + chunk.len() > max + 64 * 1024 {
                return Err(HttpError::TooLarge); // request plus early frames beyond any sense
            }
            buf.extend_from_slice(chunk);
            Ok(())
        });
        let status = match status {
            Ok(s) => s,
            Err(ReadError::Sink(e)) => return Err(e),
            Err(ReadError::Io(_)) => return Ok(None),
        };
        if let Some((req, n)) = http::parse(&buf, max)? {
            return Ok(Some((req, buf.split_off(n))));
        }
        match status {
            ReadStatus::Eof => return Ok(None),
            ReadStatus::Budget => {}
            ReadStatus::WouldBlock => {
                if t.readable().await.is_err() {
                    return Ok(None);
                }
            }
        }
    }
}
