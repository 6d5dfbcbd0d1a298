//! The webhook types the in-memory host records as well (kept apart from `webhooks`, which
//! calls into `sys`, so that `sys` can name them without a module cycle).

/// How the host signs a batch: the lower-case hex HMAC-SHA256 of the request body under a
/// secret, in a header of your choice, plus fixed headers sent with every request.
///
/// ```
/// use wasmsock_sdk::webhooks::Signing;
///
/// let s = Signing::hmac_sha256("s3cret").header("x-signature").with_header("x-app", "demo");
/// assert_eq!(s.signature_header(), "x-signature");
/// assert_eq!(s.headers(), [("x-app".to_owned(), "demo".to_owned())]);
/// assert_eq!(Signing::hmac_sha256("k").signature_header(), Signing::DEFAULT_HEADER);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    secret: String,
    header: String,
    headers: Vec<(String, String)>,
}

impl Signing {
    /// The signature's header unless [`Signing::header`] names another.
    pub const DEFAULT_HEADER: &'static str = "x-wasmsock-signature";

    /// Signs with `secret`, in [`Signing::DEFAULT_HEADER`].
    pub fn hmac_sha256(secret: impl Into<String>) -> Signing {
        Signing { secret: secret.into(), header: Self::DEFAULT_HEADER.to_owned(), headers: Vec::new() }
    }

    /// Pusher's webhook signing: `X-Pusher-Signature` under the app's secret, and `X-Pusher-Key`.
    pub fn pusher(key: &str, secret: impl Into<String>) -> Signing {
        Signing::hmac_sha256(secret).header("x-pusher-signature").with_header("x-pusher-key", key)
    }

    /// The header that carries the signature.
    pub fn header(mut self, name: &str) -> Signing {
        self.header = name.to_owned();
        self
    }

    /// A fixed header sent with every request (at most 16; `host`, `content-type` and the
    /// like are the host's own and refused).
    pub fn with_header(mut self, name: &str, value: &str) -> Signing {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &str {
        &self.header
    }

    /// The fixed headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// A webhook event a plugin emitted, as `testing::TestHost::webhooks` lists it (only the
/// in-memory host records them, so on wasm32 it is never built).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Where it goes.
    pub url: String,
    /// The event, parsed.
    pub event: serde_json::Value,
    /// How its batch would be signed.
    pub signing: Option<Signing>,
}
