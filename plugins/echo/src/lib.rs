//! The echo plugin: every message comes back to its sender, text as text, binary as binary.
//!
//! This is the worked example of a wasmsock plugin; see the repository README for the
//! five-minute walkthrough.

use wasmsock_sdk::{Conn, Flow, Message, Plugin, export_plugin};

#[derive(Default)]
pub struct Echo;

impl Plugin for Echo {
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        // A closed peer or a full queue (slow consumer) is the host's to handle: nothing to do.
        let _ = conn.send(msg);
        Flow::Done
    }
}

export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsock_sdk::testing::TestHost;

    #[test]
    fn echoes_text_and_binary_to_the_sender_only() {
        let host = TestHost::new();
        let (a, b) = (host.open("/echo"), host.open("/echo"));
        assert_eq!(host.message(&Echo, a, "hello".into()), Flow::Done);
        assert_eq!(host.message(&Echo, a, vec![0u8, 159, 255].into()), Flow::Done);
        assert_eq!(host.sent(a), vec![Message::from("hello"), Message::Binary(vec![0, 159, 255])]);
        assert!(host.sent(b).is_empty());
    }

    #[test]
    fn a_closed_peer_is_not_an_error() {
        let host = TestHost::new();
        let a = host.open("/echo");
        host.close(&Echo, a, 1000, "bye");
        assert_eq!(host.message(&Echo, a, "late".into()), Flow::Done);
        assert!(!host.is_open(a));
    }
}
