//! Where the broker's connections go: one Redis from the `[broker]` URL (with the password,
//! and for `rediss://` the CA and client certificate, read at start so that a bad file stops
//! the start rather than every later connection), or the master that Redis Sentinel names.
//! Also the URL as logs may show it.

use std::sync::Arc;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use crate::config::{BrokerSettings, SentinelSettings};

/// The broker's Redis: every connection (publishing, subscribed, scripts) asks it for a client
/// when it (re)connects. With Sentinel that is the master the sentinels name at that moment,
/// so a node follows a failover the next time its connections fail (Sentinel closes the
/// clients of a demoted master, so they do fail).
#[derive(Clone)]
pub(super) struct Redis(Arc<Target>);

enum Target {
    Direct(redis::Client),
    Sentinel {
        sentinels: tokio::sync::Mutex<SentinelClient>,
        /// The master last found, for the log line when it changes.
        master: Mutex<Option<String>>,
        name: String,
    },
}

impl Redis {
    /// A client for the current master (the one Redis without Sentinel).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match &*self.0 {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel { sentinels, master, name } => {
                let client = sentinels.lock().await.async_get_client().await?;
                let addr = client.get_connection_info().addr().to_string();
                let previous = master.lock().replace(addr.clone());
                if previous.as_deref() != Some(addr.as_str()) {
                    tracing::info!(master = %addr, previous = previous.as_deref().unwrap_or("none"), name = %name, "broker: Redis master (from Sentinel)");
                }
                Ok(client)
            }
        }
    }

    pub async fn get_multiplexed_async_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.client().await?.get_multiplexed_async_connection().await
    }

    pub async fn get_async_pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.client().await?.get_async_pubsub().await
    }
}

/// The broker's Redis for `settings` (it connects later, as often as needed).
pub(super) fn redis(settings: &BrokerSettings) -> Result<Redis> {
    let target = match &settings.sentinel {
        Some(s) => sentinel(s, settings.password.as_deref())?,
        None => Target::Direct(client(settings)?),
    };
    Ok(Redis(Arc::new(target)))
}

fn sentinel(s: &SentinelSettings, password: Option<&str>) -> Result<Target> {
    let sentinels: Vec<String> = s
        .addrs
        .iter()
        .map(|a| match &s.password {
            Some(p) => format!("redis://:{}@{a}", percent_encode(p)),
            None => format!("redis://{a}"),
        })
        .collect();
    let mut master = redis::RedisConnectionInfo::default();
    if let Some(p) = password {
        master = master.set_password(p);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    let client = SentinelClient::build(sentinels, s.master_name.as_str(), Some(node), SentinelServerType::Master)
        .context("[broker] sentinels")?;
    Ok(Target::Sentinel {
        sentinels: tokio::sync::Mutex::new(client),
        master: Mutex::new(None),
        name: s.master_name.clone(),
    })
}

/// `s` safe in a URL's userinfo.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client for `settings`' URL.
fn client(settings: &BrokerSettings) -> Result<redis::Client> {
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
