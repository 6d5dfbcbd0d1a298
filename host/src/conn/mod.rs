//! Connections: the handshake, the session loop, the outgoing queue and the state shared with
//! plugins and rooms.

mod handshake;
mod outbox;
mod session;
mod shared;

pub use handshake::serve;
pub use outbox::{Outgoing, PushError};
pub use shared::{ConnShared, Identity, Kill};
