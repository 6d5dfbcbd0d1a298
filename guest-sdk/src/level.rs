//! The log severity, a plain type below `sys` (which passes it to the host) and `log` (which
//! exports it).

/// Log severity. Ordered from [`Level::Trace`] (least severe) to [`Level::Error`]; the server's
/// log filter decides which levels are kept.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// use wasmsock_sdk::log::{Level, log};
/// let backlog = 900;
/// let level = if backlog > 800 { Level::Warn } else { Level::Debug };
/// log(level, "queue is filling up");
/// assert!(Level::Warn > Level::Info);
/// # assert_eq!(host.logs(), [(Level::Warn, "queue is filling up".to_owned())]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}
