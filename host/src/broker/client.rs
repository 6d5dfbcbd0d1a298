//! The Redis client from the `[broker]` settings: the URL, the password, and for `rediss://`
//! the CA and client certificate, read at start so that a bad file stops the start rather
//! than every later connection. Also the URL as logs may show it.

use anyhow::{Context, Result};

use crate::config::BrokerSettings;

/// A client for `settings` (it connects later, as often as needed).
pub(super) fn client(settings: &BrokerSettings) -> Result<redis::Client> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
        .with_context(|| format!("[broker] url {:?} is not a Redis URL", settings.url))?;
    if let Some(password) = &settings.password {
        let redis_settings = info.redis_settings().clone().set_password(password.clone());
        info = info.set_redis_settings(redis_settings);
    }
    match tls_files(settings)? {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
    .context("[broker] cannot use the Redis URL")
}

/// The CA and client certificate for `rediss://`.
fn tls_files(settings: &BrokerSettings) -> Result<Option<redis::TlsCertificates>> {
    if settings.ca.is_none() && settings.client_cert.is_none() {
        return Ok(None);
    }
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("[broker] cannot read the {what} {}", p.display()))
    };
    let root_cert = settings.ca.as_deref().map(|p| read("CA bundle", p)).transpose()?;
    let client_tls = match &settings.client_cert {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("client certificate", cert)?,
            client_key: read("client key", key)?,
        }),
        None => None,
    };
    Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
}

/// The URL without its password, for logs.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:s3cret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
