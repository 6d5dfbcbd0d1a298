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
    /// The connection belongs to a route this plugin does not serve; for
    /// [`webhooks::emit`](crate::webhooks::emit), the URL's host is not in the plugin's
    /// `http_allowed_hosts`.
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
    /// A message or stored value was not the expected JSON: not JSON at all (`invalid JSON`),
    /// or well-formed JSON of another shape than the type asked for (`unexpected JSON`, e.g. a
    /// missing field).
    #[error("{}", describe_json(.0))]
    Json(#[from] serde_json::Error),
    /// A text operation was applied to a binary message.
    #[error("expected a text message")]
    NotText,
    /// [`kv::increment`](crate::kv::increment) found a value that is not a decimal 64-bit
    /// integer, or the sum overflows.
    #[error("not a number")]
    NotANumber,
    /// The shared key/value store (Redis) could not be reached; nothing was changed.
    #[error("unavailable")]
    Unavailable,
}

/// A client that sends `{"name": 1}` where a string is expected sent valid JSON: saying
/// "invalid JSON" would send its author looking for a syntax error.
fn describe_json(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!("unexpected JSON: {e}"),
        _ => format!("invalid JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Vote {
        option: String,
    }

    #[test]
    fn json_errors_tell_malformed_text_from_the_wrong_shape() {
        let malformed = Message::from("{\"option\": ").parse_json::<Vote>().unwrap_err().to_string();
        assert!(malformed.starts_with("invalid JSON: "), "{malformed}");
        let shape = Message::from("{\"opt\": \"a\"}").parse_json::<Vote>().unwrap_err().to_string();
        assert!(shape.starts_with("unexpected JSON: missing field `option`"), "{shape}");
        let kind = Message::from("{\"option\": 1}").parse_json::<Vote>().unwrap_err().to_string();
        assert!(kind.starts_with("unexpected JSON: invalid type"), "{kind}");
    }
}
