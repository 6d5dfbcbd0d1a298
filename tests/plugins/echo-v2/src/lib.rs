//! Test plugin: the echo plugin's next version, which marks its replies with `v2:` so a test can
//! see exactly when a hot reload takes effect.

use wasmsock_sdk::{Conn, Flow, Message, Plugin, export_plugin};

#[derive(Default)]
pub struct EchoV2;

impl Plugin for EchoV2 {
    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let reply = match msg {
            Message::Text(t) => Message::Text(format!("v2:{t}")),
            Message::Binary(mut b) => {
                b.splice(0..0, *b"v2:");
                Message::Binary(b)
            }
        };
        let _ = conn.send(reply);
        Flow::Done
    }
}

export_plugin!(EchoV2);
