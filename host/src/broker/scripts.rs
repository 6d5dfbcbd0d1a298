//! Lua scripts run on Redis from calls plugins make: one multiplexed connection, made on first
//! use and dropped when it fails (the next call connects again), every run bounded in time.
//! Scripts go by their SHA-1 (`EVALSHA`), and whole (`EVAL`) when Redis does not have them
//! (after a restart or a failover), so a call does not send the script's text every time.

use std::time::Duration;

use super::client::Redis;

/// A script and its SHA-1, as Redis names it.
pub(super) struct Script {
    body: String,
    sha: String,
}

impl Script {
    pub fn new(body: String) -> Script {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, body.as_bytes());
        let sha = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Script { body, sha }
    }
}

/// Why a script's answer is missing.
#[derive(Debug)]
pub(super) enum ScriptError {
    /// No connection, a broken one, or no answer in time.
    Unreachable,
    /// Redis answered with an error.
    Refused(redis::RedisError),
}

pub(super) struct ScriptConn {
    client: Redis,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    timeout: Duration,
}

impl ScriptConn {
    pub fn new(client: Redis, timeout: Duration) -> ScriptConn {
        ScriptConn { client, conn: tokio::sync::Mutex::new(None), timeout }
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Some(c.clone());
        }
        match self.client.get_multiplexed_async_connection().await {
            Ok(c) => Some(conn.insert(c).clone()),
            Err(e) => {
                tracing::warn!(error = %e, "broker: cannot reach Redis to run a script");
                None
            }
        }
    }

    /// Runs `script` with `keys` and `args` (as many as the script takes, in its order). A kept
    /// connection that turns out broken (Redis restarted, or failed over) is replaced and the
    /// script sent once more on the new one, within the same time bound. Mostly the broken
    /// connection never carried the script; should it break after Redis ran it, the script
    /// runs twice (for a history publish: two entries, as when the caller falls back to the
    /// node's own history after a timeout). Atomic key/value operations, which must not run
    /// twice, do not use this (see `atomic`).
    pub async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<T, ScriptError> {
        let call = |eval: bool| {
            let mut cmd = if eval { redis::cmd("EVAL") } else { redis::cmd("EVALSHA") };
            cmd.arg(if eval { &script.body } else { &script.sha }).arg(keys.len());
            for k in keys {
                cmd.arg(*k);
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        let once = async || {
            let mut conn = self.connection().await.ok_or(ScriptError::Unreachable)?;
            let answer = match call(false).query_async::<T>(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    call(true).query_async::<T>(&mut conn).await
                }
                r => r,
            };
            match answer {
                Ok(v) => Ok(v),
                Err(e) if e.is_io_error() || e.is_unrecoverable_error() || e.is_connection_dropped() => {
                    tracing::warn!(error = %e, "broker: the connection running scripts broke");
                    *self.conn.lock().await = None;
                    Err(ScriptError::Unreachable)
                }
                Err(e) => Err(ScriptError::Refused(e)),
            }
        };
        let twice = async {
            match once().await {
                Err(ScriptError::Unreachable) => once().await,
                r => r,
            }
        };
        tokio::time::timeout(self.timeout, twice).await.unwrap_or_else(|_| {
            tracing::warn!("broker: Redis did not answer a script in time");
            if let Ok(mut c) = self.conn.try_lock() {
                *c = None;
            }
            Err(ScriptError::Unreachable)
        })
    }
}
