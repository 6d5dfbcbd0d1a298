//! Structured logging into the server's log, attributed to the plugin and the current
//! connection. Prefer these to `println!`, which the host also captures but size-limits.
//!
//! ```
//! # let _host = wasmsock_sdk::testing::TestHost::new();
//! wasmsock_sdk::info!("user {} joined {}", "ada", "orders");
//! ```

use crate::sys;

pub use crate::level::Level;

/// Writes one log line at `level`. The macros ([`info!`](crate::info) and friends) call this;
/// use it directly when the level is chosen at run time, or for [`Level::Trace`], which has no
/// macro.
///
/// The host keeps a bounded number of lines per plugin call and truncates long lines, so a
/// chatty plugin cannot flood the server log.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::log::{Level, log};
/// log(Level::Trace, "entering on_message");
/// # assert_eq!(host.logs(), [(Level::Trace, "entering on_message".to_owned())]);
/// ```
pub fn log(level: Level, message: &str) {
    sys::log(level, message)
}

/// Logs at debug level, `format!`-style.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// let bytes = 512;
/// wasmsock_sdk::debug!("message of {bytes} bytes");
/// # assert_eq!(host.logs()[0].1, "message of 512 bytes");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at info level, `format!`-style.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// wasmsock_sdk::info!("user {} joined {}", "ada", "lobby");
/// # assert_eq!(host.logs(), [(wasmsock_sdk::log::Level::Info, "user ada joined lobby".to_owned())]);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level, `format!`-style.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let conn = host.open("/chat");
/// if let Err(e) = conn.join("") {
///     wasmsock_sdk::warn!("could not join: {e}");
/// }
/// # assert_eq!(host.logs()[0].1, "could not join: invalid argument");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at error level, `format!`-style.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// if wasmsock_sdk::config("secret").is_none() {
///     wasmsock_sdk::error!("config key `secret` is missing; rejecting every connection");
/// }
/// # assert_eq!(host.logs()[0].0, wasmsock_sdk::log::Level::Error);
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) };
}
