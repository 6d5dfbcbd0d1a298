//! Timers the host holds for this plugin: one-shot, by key, calling
//! [`Plugin::on_timer`](crate::Plugin::on_timer) when they come due. For periodic work, set
//! the timer again from `on_timer`.
//!
//! Timers belong to the plugin, not to an instance: they survive a hot reload (the version
//! loaded when one comes due gets the call). A timer set with [`set_for`] is tied to a
//! connection: it goes when the connection ends (after its `on_close`) and never fires after.
//! The host bounds them: at most `max_timers` armed per plugin (10,000 by default; past it
//! [`Error::LimitReached`]), a delay of at most a day and keys of 1 to 256 bytes
//! ([`Error::InvalidArgument`]).
//!
//! ```
//! use std::time::Duration;
//! use wasmsock_sdk::{Conn, Flow, Message, Plugin, testing::TestHost, timers};
//!
//! /// Says "tick" to a connection a second after its first message, until it says "stop".
//! #[derive(Default)]
//! struct Ticker;
//!
//! impl Plugin for Ticker {
//!     fn on_message(&self, conn: Conn, msg: Message) -> Flow {
//!         let key = format!("tick:{}", conn.id());
//!         match msg.as_text() {
//!             Some("stop") => { timers::cancel(&key); }
//!             _ => timers::set_for(conn, &key, Duration::from_secs(1)).unwrap(),
//!         }
//!         Flow::Done
//!     }
//!
//!     fn on_timer(&self, key: &str, conn: Option<Conn>) {
//!         if let Some(conn) = conn {
//!             let _ = conn.send_text("tick");
//!             let _ = timers::set_for(conn, key, Duration::from_secs(1)); // again in a second
//!         }
//!     }
//! }
//!
//! let host = TestHost::new();
//! let conn = host.open("/ticks");
//! host.message(&Ticker, conn, "start".into());
//! assert_eq!(host.advance(&Ticker, Duration::from_millis(2500)).len(), 2);
//! assert_eq!(host.sent(conn), vec!["tick".into(), "tick".into()]);
//! host.message(&Ticker, conn, "stop".into());
//! assert!(host.advance(&Ticker, Duration::from_secs(5)).is_empty());
//! ```

use std::time::Duration;

use crate::{Conn, Error, sys};

/// Arms timer `key` to call [`Plugin::on_timer`](crate::Plugin::on_timer) once, after
/// `delay`, without a connection. Setting a key that is armed replaces its timer.
///
/// ```
/// use std::time::Duration;
/// use wasmsock_sdk::{Error, testing::TestHost, timers};
///
/// let host = TestHost::new();
/// timers::set("report", Duration::from_secs(60)).unwrap();
/// timers::set("report", Duration::from_secs(30)).unwrap(); // replaces the first
/// assert_eq!(host.timers().len(), 1);
/// assert_eq!(host.timers()[0].due_in, Duration::from_secs(30));
/// assert!(matches!(timers::set("", Duration::ZERO), Err(Error::InvalidArgument)));
/// assert!(matches!(timers::set("later", Duration::from_secs(2 * 86_400)), Err(Error::InvalidArgument)));
/// ```
pub fn set(key: &str, delay: Duration) -> Result<(), Error> {
    sys::set_timer(key, millis(delay), None)
}

/// Arms timer `key` for connection `conn`: `on_timer` gets the connection. The timer is removed
/// when the connection ends; [`Error::UnknownConnection`] if it has ended already.
///
/// ```
/// use std::time::Duration;
/// use wasmsock_sdk::{Plugin, testing::TestHost, timers};
///
/// #[derive(Default)]
/// struct Nothing;
/// impl Plugin for Nothing {}
///
/// let host = TestHost::new();
/// let conn = host.open("/game");
/// timers::set_for(conn, "turn", Duration::from_secs(30)).unwrap();
/// host.close(&Nothing, conn, 1000, "");
/// assert!(host.timers().is_empty(), "the connection took its timer with it");
/// assert!(timers::set_for(conn, "turn", Duration::from_secs(30)).is_err());
/// ```
pub fn set_for(conn: Conn, key: &str, delay: Duration) -> Result<(), Error> {
    sys::set_timer(key, millis(delay), Some(conn.id()))
}

/// Disarms timer `key`; false if it was not armed (never set, already fired or cancelled).
///
/// ```
/// use std::time::Duration;
/// use wasmsock_sdk::{testing::TestHost, timers};
///
/// let host = TestHost::new();
/// timers::set("expire", Duration::from_secs(5)).unwrap();
/// assert!(timers::cancel("expire"));
/// assert!(!timers::cancel("expire"));
/// assert!(host.timers().is_empty());
/// assert_eq!(host.cancelled_timers(), ["expire"]);
/// ```
pub fn cancel(key: &str) -> bool {
    sys::cancel_timer(key)
}

/// The delay in milliseconds, rounded up (a timer never fires early), saturating: the host
/// refuses anything over a day.
fn millis(delay: Duration) -> u32 {
    let ms = delay.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}
