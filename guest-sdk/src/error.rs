use thiserror::Error;

/// Why a host call or a JSON conversion failed.
///
/// Most failures are the peer's or the configuration's doing, not a bug in the plugin, so the
/// usual handling is to ignore or log them and carry on; a plugin call that panics is a trap,
/// and the host replaces the instance. The enum is `#[non_exhaustive]`: match with a wildcard
/// arm. It implements [`std::error::Error`], so `?` lifts it into `Box<dyn Error>`,
/// `anyhow::Error` and the like.
///
/// ```
/// # let host = wasmsock_sdk::testing::TestHost::new();
/// # let conn = host.open("/chat");
/// use wasmsock_sdk::Error;
/// match conn.join("") {
///     Ok(()) => {}
///     Err(Error::QueueFull | Error::UnknownConnection) => {} // a slow or vanished peer
///     Err(Error::InvalidArgument) => wasmsock_sdk::warn!("bad room name"),
///     Err(other) => wasmsock_sdk::error!("join failed: {other}"),
/// }
/// # assert_eq!(host.logs()[0].1, "bad room name");
/// // Errors display as short lower-case phrases, ready for a log line or a reply.
/// assert_eq!(Error::QueueFull.to_string(), "outgoing queue full");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection is closed or never existed.
    #[error("unknown connection")]
    UnknownConnection,
    /// The connection belongs to a route this plugin does not serve.
    #[error("connection not permitted for this plugin")]
    NotPermitted,
    /// The receiver's outgoing queue is full (a slow consumer).
    #[error("outgoing queue full")]
    QueueFull,
    /// The value exceeds a size limit of the host configuration.
    #[error("too large")]
    TooLarge,
    /// A count limit of the host configuration was reached (rooms per connection, keys in the
    /// store, sends in one plugin call, ...).
    #[error("limit reached")]
    LimitReached,
    /// The host refused an argument (empty room name, bad close code, ...).
    #[error("invalid argument")]
    InvalidArgument,
    /// What the host keeps for this plugin (key/value entries, attachments, room memberships)
    /// is at the plugin's share of the server's bound (`[host] max_memory`); delete keys or
    /// attachments, or leave rooms, before storing more.
    #[error("host memory for this plugin is full")]
    HostMemoryFull,
    /// A message or stored value was not the expected JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A text operation was applied to a binary message.
    #[error("expected a text message")]
    NotText,
}
