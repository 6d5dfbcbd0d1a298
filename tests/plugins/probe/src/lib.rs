//! Test plugin: makes the host's behaviour observable to tests.
//!
//! - `on_connect`: `?reject=STATUS&reason=...` refuses the handshake; `?as=NAME` accepts with that
//!   identity (`?as=cert`: the TLS client certificate's subject); `?monitor=1` joins the `monitor` room, which receives a line for every `on-close`;
//!   `?protocol=P` answers with subprotocol P.
//! - `on_message`: `close CODE REASON` asks the host to close; `whoami` replies the identity;
//!   `id` replies the connection id; `kv-set K V`, `kv-get K`, `attach V`, `attachment`,
//!   `join ROOM`, `leave ROOM` and `publish ROOM TEXT` use host-held state;
//!   `pass` passes the message on; `forward TEXT` forwards TEXT; `version` replies which build
//!   this is (`probe v1`; `tests/plugins/probe-v2` is the same code answering `probe v2`);
//!   anything else is echoed back.
//! - timers: `timer KEY MS` (for this connection), `timer-free KEY MS`, `cancel KEY`, `timers N`
//!   (N day-long timers, answering how many were refused); `on_timer` says `fired KEY VERSION` to
//!   the connection (to room `timers` without one) and panics for keys starting with `trap`.
//! - `on_close`: logs `probe on_close ID CODE` and publishes `closed ID CODE REASON` to `monitor`
//!   (except for monitors themselves).

const VERSION: &str = "probe v1";

include!("probe.rs");
