use thiserror::Error;

/// Why a host call or a JSON conversion failed.
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
    /// A count limit of the host configuration was reached.
    #[error("limit reached")]
    LimitReached,
    /// The host refused an argument (empty room name, bad close code, ...).
    #[error("invalid argument")]
    InvalidArgument,
    /// A message or stored value was not the expected JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A text operation was applied to a binary message.
    #[error("expected a text message")]
    NotText,
}
