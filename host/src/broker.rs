//! Rooms across nodes through Redis pub/sub (and, optionally, plugin key/value stores shared
//! through Redis hashes).
//!
//! A publish is delivered to local members at once, as without a broker, and queued (bounded)
//! for Redis on one channel, `<prefix>:rooms`. Every node subscribes to it and delivers what
//! other nodes published to its own members; a node skips its own messages, so nothing is
//! delivered twice. One publishing connection and one subscribing connection per node keep the
//! order of one publisher's messages. When Redis is down, local delivery goes on, publishes
//! wait in the bounded queue (the overflow is dropped and counted), and both connections come
//! back with exponential backoff.
//!
//! The shared key/value store is eventually consistent: reads are local, writes go to Redis
//! (`HSET <prefix>:kv:<plugin>`) and to the other nodes (`<prefix>:kv`), and a node (re)loads
//! the whole store from Redis whenever its subscription (re)connects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use crate::config::BrokerSettings;
use crate::conn::Outgoing;
use crate::hub::{Hub, RoomKey};

const VERSION: u8 = 1;
const KIND_TEXT: u8 = 1;
const KIND_BINARY: u8 = 2;
const KIND_KV_SET: u8 = 3;
const KIND_KV_DELETE: u8 = 4;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What goes out to Redis.
enum Outbound {
    Publish { key: RoomKey, text: bool, payload: Bytes },
    Kv { plugin: Arc<str>, key: String, value: Option<Bytes> },
}

pub struct Broker {
    node: u64,
    shared_kv: bool,
    tx: mpsc::Sender<Outbound>,
    hub: Arc<Hub>,
}

impl Broker {
    /// Starts the publishing and subscribing tasks. Does not wait for Redis: a node serves its
    /// own clients whether or not Redis is up.
    pub fn start(settings: &BrokerSettings, hub: Arc<Hub>) -> Result<Arc<Broker>> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
            .with_context(|| format!("[broker] url {:?} is not a Redis URL", settings.url))?;
        if let Some(password) = &settings.password {
            let redis_settings = info.redis_settings().clone().set_password(password.clone());
            info = info.set_redis_settings(redis_settings);
        }
        let client = redis::Client::open(info).context("[broker] cannot use the Redis URL")?;
        let (tx, rx) = mpsc::channel(settings.max_pending.max(1));
        let node = random_node_id();
        let broker = Arc::new(Broker { node, shared_kv: settings.shared_kv, tx, hub });
        let channels = Channels::new(&settings.prefix);
        tokio::spawn(publisher(client.clone(), channels.clone(), node, rx, broker.hub.clone()));
        tokio::spawn(subscriber(client, channels, broker.clone()));
        tracing::info!(node = format!("{node:016x}"), url = %redact(&settings.url), shared_kv = settings.shared_kv, "broker: Redis pub/sub for rooms across nodes");
        Ok(broker)
    }

    /// Queues a room publish for the other nodes (local members already have it).
    pub fn publish(&self, key: &RoomKey, item: &Outgoing) {
        let (text, payload) = match item {
            Outgoing::Text(b) => (true, b.clone()),
            Outgoing::Binary(b) => (false, b.clone()),
            _ => return,
        };
        self.send(Outbound::Publish { key: key.clone(), text, payload });
    }

    pub fn shares_kv(&self) -> bool {
        self.shared_kv
    }

    /// Queues a key/value change for Redis and the other nodes.
    pub fn kv_changed(&self, plugin: &Arc<str>, key: &str, value: Option<Bytes>) {
        if self.shared_kv {
            self.send(Outbound::Kv { plugin: plugin.clone(), key: key.to_owned(), value });
        }
    }

    fn send(&self, out: Outbound) {
        let m = &self.hub.metrics;
        if self.tx.try_send(out).is_err() {
            // Redis is slow or down and the queue is full: drop rather than grow.
            m.broker_dropped.inc();
        }
    }

    /// Applies a message from another node.
    fn deliver(&self, frame: &[u8]) -> Result<()> {
        let f = Frame::decode(frame)?;
        if f.node == self.node {
            return Ok(()); // our own publish: local members already have it
        }
        let plugin: Arc<str> = Arc::from(f.plugin);
        match f.kind {
            KIND_TEXT | KIND_BINARY => {
                self.hub.metrics.broker_received.inc();
                let payload = Bytes::copy_from_slice(f.payload);
                let item = if f.kind == KIND_TEXT { Outgoing::Text(payload) } else { Outgoing::Binary(payload) };
                self.hub.rooms.publish(&RoomKey::new(&plugin, f.name), &item, None);
            }
            KIND_KV_SET => {
                let _ = self.hub.kv.set(&plugin, f.name, Bytes::copy_from_slice(f.payload));
            }
            KIND_KV_DELETE => {
                self.hub.kv.delete(&plugin, f.name);
            }
            k => bail!("unknown message kind {k}"),
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Channels {
    rooms: String,
    kv: String,
    kv_prefix: String,
}

impl Channels {
    fn new(prefix: &str) -> Channels {
        Channels { rooms: format!("{prefix}:rooms"), kv: format!("{prefix}:kv"), kv_prefix: format!("{prefix}:kv:") }
    }
}

/// `[version][node u64][kind][plugin len u16][plugin][name len u16][name][payload]`
struct Frame<'a> {
    node: u64,
    kind: u8,
    plugin: &'a str,
    name: &'a str,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    fn encode(node: u64, kind: u8, plugin: &str, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + plugin.len() + name.len() + payload.len());
        out.push(VERSION);
        out.extend_from_slice(&node.to_be_bytes());
        out.push(kind);
        for s in [plugin, name] {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn decode(b: &'a [u8]) -> Result<Frame<'a>> {
        let take = |b: &'a [u8], n: usize| -> Result<(&'a [u8], &'a [u8])> {
            if b.len() < n {
                bail!("truncated broker message");
            }
            Ok(b.split_at(n))
        };
        let (head, rest) = take(b, 10)?;
        if head[0] != VERSION {
            bail!("broker message version {} (this node speaks {VERSION})", head[0]);
        }
        let node = u64::from_be_bytes(head[1..9].try_into()?);
        let kind = head[9];
        let mut rest = rest;
        let mut strings = [""; 2];
        for s in &mut strings {
            let (len, r) = take(rest, 2)?;
            let (bytes, r) = take(r, u16::from_be_bytes([len[0], len[1]]) as usize)?;
            *s = std::str::from_utf8(bytes)?;
            rest = r;
        }
        Ok(Frame { node, kind, plugin: strings[0], name: strings[1], payload: rest })
    }
}

async fn publisher(client: redis::Client, ch: Channels, node: u64, mut rx: mpsc::Receiver<Outbound>, hub: Arc<Hub>) {
    let m = &hub.metrics;
    let mut backoff = BACKOFF_MIN;
    let mut pending: Option<Outbound> = None;
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(c) => {
                backoff = BACKOFF_MIN;
                c
            }
            Err(e) => {
                m.broker_errors.inc();
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "broker: cannot connect to Redis for publishing");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            let out = match pending.take() {
                Some(o) => o,
                None => match rx.recv().await {
                    Some(o) => o,
                    None => return, // the node is shutting down
                },
            };
            let result: redis::RedisResult<()> = match &out {
                Outbound::Publish { key, text, payload } => {
                    let kind = if *text { KIND_TEXT } else { KIND_BINARY };
                    let frame = Frame::encode(node, kind, &key.plugin, &key.name, payload);
                    conn.publish(&ch.rooms, frame).await
                }
                Outbound::Kv { plugin, key, value } => {
                    let hash = format!("{}{plugin}", ch.kv_prefix);
                    let (kind, stored): (u8, redis::RedisResult<()>) = match value {
                        Some(v) => (KIND_KV_SET, conn.hset(&hash, key, v.as_ref()).await),
                        None => (KIND_KV_DELETE, conn.hdel(&hash, key).await),
                    };
                    match stored {
                        Ok(()) => {
                            let frame = Frame::encode(node, kind, plugin, key, value.as_deref().unwrap_or_default());
                            conn.publish(&ch.kv, frame).await
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(()) => {
                    if matches!(out, Outbound::Publish { .. }) {
                        m.broker_published.inc();
                    }
                }
                Err(e) => {
                    m.broker_errors.inc();
                    tracing::warn!(error = %e, "broker: publishing to Redis failed; reconnecting");
                    pending = Some(out); // sent again once reconnected
                    break;
                }
            }
        }
    }
}

async fn subscriber(client: redis::Client, ch: Channels, broker: Arc<Broker>) {
    let m = &broker.hub.metrics;
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        match subscribe_once(&client, &ch, &broker, &mut first, &mut backoff).await {
            Ok(()) => tracing::warn!("broker: Redis subscription ended; reconnecting"),
            Err(e) => {
                m.broker_errors.inc();
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "broker: Redis subscription failed; reconnecting");
            }
        }
        m.broker_connected.set(0);
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn subscribe_once(
    client: &redis::Client,
    ch: &Channels,
    broker: &Broker,
    first: &mut bool,
    backoff: &mut Duration,
) -> Result<()> {
    let m = &broker.hub.metrics;
    let mut pubsub = client.get_async_pubsub().await.context("connecting")?;
    pubsub.subscribe(&ch.rooms).await.context("subscribing")?;
    if broker.shared_kv {
        pubsub.subscribe(&ch.kv).await.context("subscribing")?;
        load_kv(client, ch, broker).await.context("loading the shared key/value store")?;
    }
    m.broker_connected.set(1);
    if !std::mem::take(first) {
        m.broker_reconnects.inc();
        tracing::info!("broker: reconnected to Redis");
    } else {
        tracing::info!("broker: connected to Redis");
    }
    *backoff = BACKOFF_MIN;
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let payload: &[u8] = msg.get_payload_bytes();
        if let Err(e) = broker.deliver(payload) {
            m.broker_errors.inc();
            tracing::warn!(error = %e, "broker: ignoring a malformed message");
        }
    }
    Ok(())
}

/// Reads every plugin's shared store from Redis into the local stores.
async fn load_kv(client: &redis::Client, ch: &Channels, broker: &Broker) -> Result<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}*", ch.kv_prefix);
    let hashes: Vec<String> = {
        let mut iter = conn.scan_match::<_, String>(&pattern).await?;
        let mut all = Vec::new();
        while let Some(h) = iter.next().await {
            all.push(h?);
        }
        all
    };
    for hash in hashes {
        let Some(plugin) = hash.strip_prefix(&ch.kv_prefix) else { continue };
        let plugin: Arc<str> = Arc::from(plugin);
        let entries: Vec<(String, Vec<u8>)> = conn.hgetall(&hash).await?;
        for (key, value) in entries {
            let _ = broker.hub.kv.set(&plugin, &key, Bytes::from(value));
        }
    }
    Ok(())
}

fn jitter(d: Duration) -> Duration {
    let r = random_node_id() % 1000;
    d.mul_f64(0.5 + r as f64 / 2000.0)
}

fn random_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let bytes = Frame::encode(7, KIND_TEXT, "rooms", "lobby", b"hello");
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!((f.node, f.kind, f.plugin, f.name, f.payload), (7, KIND_TEXT, "rooms", "lobby", &b"hello"[..]));
        assert!(Frame::decode(&bytes[..12]).is_err());
        assert!(Frame::decode(b"").is_err());
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(Frame::decode(&wrong).is_err());
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:s3cret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
