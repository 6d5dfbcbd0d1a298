//! Rooms across nodes through Redis pub/sub (and, optionally, plugin key/value stores shared
//! through Redis hashes).
//!
//! A publish is delivered to local members at once, as without a broker, and queued (bounded)
//! for Redis on one channel, `<prefix>:rooms`. Every node subscribes to it and delivers what
//! other nodes published to its own members; a node skips its own messages, so nothing is
//! delivered twice. One publishing connection and one subscribing connection per node keep the
//! order of one publisher's messages. When Redis is down, local delivery goes on, publishes
//! wait in the queue (bounded in count and bytes; the overflow is dropped and counted), and
//! both connections come back with exponential backoff.
//!
//! The publisher sends what has queued up as one pipeline (one round trip for many publishes).
//! Every frame carries the node's sequence number, so when a pipeline is sent again after a
//! connection failure, the frames Redis had already relayed are recognised and dropped by the
//! receivers: delivery across nodes is exactly once while Redis is up, at most once across an
//! outage (Redis pub/sub keeps nothing for an absent subscriber).
//!
//! The shared key/value store is eventually consistent: reads are local, writes go to Redis
//! (`HSET <prefix>:kv:<plugin>`) and to the other nodes (`<prefix>:kv`), and a node (re)loads
//! the whole store from Redis whenever its subscription (re)connects. A reload takes Redis's
//! values except for keys this node wrote that are not yet through to Redis (or were written
//! during the reload), and keeps keys Redis lacks: a Redis without persistence comes back
//! empty after a restart, and deleting what it lacks would empty every node's store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use prometheus_client::metrics::gauge::Gauge;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use crate::config::BrokerSettings;
use crate::hub::Outgoing;
use crate::hub::{Hub, RoomKey};

const VERSION: u8 = 2;
const KIND_TEXT: u8 = 1;
const KIND_BINARY: u8 = 2;
const KIND_KV_SET: u8 = 3;
const KIND_KV_DELETE: u8 = 4;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A Redis that stops answering counts as down: reconnect rather than wait forever.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most publishes in one pipeline, and most bytes.
const BATCH_ITEMS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
/// Nodes whose sequence numbers a node remembers (a cluster has a handful; node ids change on
/// restart, so old ones pile up slowly and are forgotten all at once past this).
const MAX_KNOWN_NODES: usize = 4096;

/// What goes out to Redis.
enum Outbound {
    Publish { key: RoomKey, text: bool, payload: Bytes },
    Kv { plugin: Arc<str>, key: String, value: Option<Bytes> },
}

impl Outbound {
    fn size(&self) -> usize {
        match self {
            Outbound::Publish { key, payload, .. } => key.plugin.len() + key.name.len() + payload.len(),
            Outbound::Kv { plugin, key, value } => plugin.len() + key.len() + value.as_ref().map_or(0, |v| v.len()),
        }
    }
}

pub struct Broker {
    node: u64,
    shared_kv: bool,
    tx: mpsc::Sender<Outbound>,
    /// Payload bytes waiting for Redis, bounded by `max_bytes`.
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    hub: Arc<Hub>,
    /// The highest sequence number seen from every other node.
    seen: Mutex<HashMap<u64, u64>>,
    /// Key/value writes of this node not yet through to Redis.
    pending_kv: Arc<PendingKv>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
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
        let client = match tls_files(settings)? {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        }
        .context("[broker] cannot use the Redis URL")?;
        let (tx, rx) = mpsc::channel(settings.max_pending.max(1));
        let node = random_node_id();
        let queued = Arc::new(AtomicUsize::new(0));
        let broker = Arc::new(Broker {
            node,
            shared_kv: settings.shared_kv,
            tx,
            queued: queued.clone(),
            max_bytes: settings.max_pending_bytes.max(1),
            hub,
            seen: Mutex::new(HashMap::new()),
            pending_kv: Arc::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let channels = Channels::new(&settings.prefix);
        let queue = Queue { rx, queued };
        let link = Arc::new(Link::new(broker.hub.metrics.broker_connected.clone()));
        let p = tokio::spawn(publisher(
            client.clone(),
            channels.clone(),
            node,
            queue,
            broker.hub.clone(),
            link.clone(),
            broker.pending_kv.clone(),
        ));
        // The subscriber holds the broker (it delivers through it): `stop` breaks that cycle.
        let s = tokio::spawn(subscriber(client, channels, broker.clone(), link));
        if let Ok(mut tasks) = broker.tasks.lock() {
            tasks.extend([p.abort_handle(), s.abort_handle()]);
        }
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

    /// Applies a key/value write on this node with `local`, which returns its result and whether
    /// it changed anything; with a shared store, a change is then queued for Redis and the other
    /// nodes. The key counts as pending from before the local write, so that a reload from Redis
    /// running meanwhile cannot undo it.
    pub fn kv_write<T>(
        &self,
        plugin: &Arc<str>,
        key: &str,
        value: Option<Bytes>,
        local: impl FnOnce() -> (T, bool),
    ) -> T {
        if !self.shared_kv {
            return local().0;
        }
        self.pending_kv.add(plugin, key);
        let (result, changed) = local();
        if !changed || !self.send(Outbound::Kv { plugin: plugin.clone(), key: key.to_owned(), value }) {
            self.pending_kv.done(plugin, key);
        }
        result
    }

    /// Stops talking to Redis (server shutdown).
    pub fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }

    /// Queues `out` for Redis; false if it was dropped.
    fn send(&self, out: Outbound) -> bool {
        let size = out.size();
        let m = &self.hub.metrics;
        // Counted until Redis has answered; before the send, so that it never goes below zero.
        m.broker_pending.inc();
        let fits = self.queued.fetch_add(size, Relaxed) + size <= self.max_bytes;
        if !fits || self.tx.try_send(out).is_err() {
            // Redis is slow or down and the queue is full: drop rather than grow.
            self.queued.fetch_sub(size, Relaxed);
            m.broker_pending.dec();
            m.broker_dropped.inc();
            return false;
        }
        true
    }

    /// Applies a message from another node.
    fn deliver(&self, frame: &[u8]) -> Result<()> {
        let f = Frame::decode(frame)?;
        if f.node == self.node {
            return Ok(()); // our own publish: local members already have it
        }
        if !self.first_time(f.node, f.seq) {
            return Ok(()); // sent again after a connection failure, but Redis had relayed it
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

    /// Whether `seq` is new from `node` (one node's frames arrive in order).
    fn first_time(&self, node: u64, seq: u64) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return true };
        if seen.len() >= MAX_KNOWN_NODES && !seen.contains_key(&node) {
            seen.clear();
        }
        let last = seen.entry(node).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        true
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
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

/// `[version][node u64][seq u64][kind][plugin len u16][plugin][name len u16][name][payload]`
struct Frame<'a> {
    node: u64,
    seq: u64,
    kind: u8,
    plugin: &'a str,
    name: &'a str,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    fn encode(node: u64, seq: u64, kind: u8, plugin: &str, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + plugin.len() + name.len() + payload.len());
        out.push(VERSION);
        out.extend_from_slice(&node.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
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
        let (head, rest) = take(b, 18)?;
        if head[0] != VERSION {
            bail!("broker message version {} (this node speaks {VERSION})", head[0]);
        }
        let node = u64::from_be_bytes(head[1..9].try_into()?);
        let seq = u64::from_be_bytes(head[9..17].try_into()?);
        let kind = head[17];
        let mut rest = rest;
        let mut strings = [""; 2];
        for s in &mut strings {
            let (len, r) = take(rest, 2)?;
            let (bytes, r) = take(r, u16::from_be_bytes([len[0], len[1]]) as usize)?;
            *s = std::str::from_utf8(bytes)?;
            rest = r;
        }
        Ok(Frame { node, seq, kind, plugin: strings[0], name: strings[1], payload: rest })
    }
}

/// Which of a node's two Redis connections are up. The gauge reads 1 only while both are: a
/// node that receives but cannot publish is as cut off as one that cannot receive.
struct Link {
    up: Mutex<[bool; 2]>,
    gauge: Gauge,
    /// Wakes a publisher in its backoff when the subscription finds Redis back, so that the
    /// publishes queued during an outage go out at once rather than up to `BACKOFF_MAX` later.
    /// (A wake-up given while the publisher was not waiting is kept, and cuts one later backoff
    /// short: one early reconnect attempt, harmless.)
    redis_back: tokio::sync::Notify,
}

const PUBLISHING: usize = 0;
const SUBSCRIBED: usize = 1;

impl Link {
    fn new(gauge: Gauge) -> Link {
        gauge.set(0);
        Link { up: Mutex::new([false; 2]), gauge, redis_back: tokio::sync::Notify::new() }
    }

    fn set(&self, which: usize, up: bool) {
        if let Ok(mut flags) = self.up.lock() {
            flags[which] = up;
            self.gauge.set(i64::from(flags[PUBLISHING] && flags[SUBSCRIBED]));
            if which == SUBSCRIBED && up && !flags[PUBLISHING] {
                self.redis_back.notify_one();
            }
        }
    }
}

/// Key/value writes this node has queued for Redis and Redis has not yet answered, by plugin
/// and key, and the keys written while a reload from Redis runs. A reload leaves all of these
/// alone: the local value (or its absence) is newer than what the reload read from Redis.
#[derive(Default)]
struct PendingKv(Mutex<PendingState>);

type KvKey = (Arc<str>, String);

#[derive(Default)]
struct PendingState {
    /// Writes not yet answered by Redis, per key (bounded by the publish queue).
    counts: HashMap<KvKey, u32>,
    /// While a reload runs: the keys written or settled since it began (bounded by the keys
    /// the stores may hold).
    during_reload: Option<std::collections::HashSet<KvKey>>,
}

impl PendingKv {
    fn add(&self, plugin: &Arc<str>, key: &str) {
        if let Ok(mut s) = self.0.lock() {
            let k = (plugin.clone(), key.to_owned());
            if let Some(r) = &mut s.during_reload {
                r.insert(k.clone());
            }
            *s.counts.entry(k).or_insert(0) += 1;
        }
    }

    fn done(&self, plugin: &Arc<str>, key: &str) {
        if let Ok(mut s) = self.0.lock() {
            let k = (plugin.clone(), key.to_owned());
            if let Some(n) = s.counts.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    s.counts.remove(&k);
                }
            }
            // Settled after the reload read Redis: what it read may predate this write.
            if let Some(r) = &mut s.during_reload {
                r.insert(k);
            }
        }
    }

    /// Whether a reload must keep the local value of `key`.
    fn keeps_local(&self, plugin: &Arc<str>, key: &str) -> bool {
        self.0.lock().is_ok_and(|s| {
            let k = (plugin.clone(), key.to_owned());
            s.counts.contains_key(&k) || s.during_reload.as_ref().is_some_and(|r| r.contains(&k))
        })
    }

    /// Starts recording the keys written from now until the returned guard is dropped.
    fn reload(&self) -> ReloadGuard<'_> {
        if let Ok(mut s) = self.0.lock() {
            s.during_reload = Some(Default::default());
        }
        ReloadGuard(self)
    }

    /// Marks the key/value writes of a batch Redis has answered (or refused).
    fn settle(&self, batch: &[Outbound]) {
        for out in batch {
            if let Outbound::Kv { plugin, key, .. } = out {
                self.done(plugin, key);
            }
        }
    }
}

struct ReloadGuard<'a>(&'a PendingKv);

impl Drop for ReloadGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.0.lock() {
            s.during_reload = None;
        }
    }
}

/// Whether a failed Redis command may succeed if sent again: a lost connection, or a Redis that
/// is loading its data, read-only or without a master during a failover.
fn retryable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Server(S::BusyLoading | S::ReadOnly | S::MasterDown | S::TryAgain))
}

/// The publisher's end of the queue, with the byte count it gives back.
struct Queue {
    rx: mpsc::Receiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// Waits for one item, then takes what else is already queued, up to a batch.
    async fn next_batch(&mut self, batch: &mut Vec<Outbound>) -> bool {
        let Some(first) = self.rx.recv().await else { return false };
        let mut bytes = first.size();
        batch.push(first);
        while batch.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(o) => {
                    bytes += o.size();
                    batch.push(o);
                }
                Err(_) => break,
            }
        }
        self.queued.fetch_sub(bytes, Relaxed);
        true
    }
}

async fn publisher(
    client: redis::Client,
    ch: Channels,
    node: u64,
    mut queue: Queue,
    hub: Arc<Hub>,
    link: Arc<Link>,
    pending_kv: Arc<PendingKv>,
) {
    let m = &hub.metrics;
    let mut backoff = BACKOFF_MIN;
    let mut seq = 0u64;
    let mut batch = Vec::new();
    // A pipeline that failed, kept (with its sequence numbers) to be sent again.
    let mut unsent: Option<(redis::Pipeline, u64)> = None;
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(c) => {
                backoff = BACKOFF_MIN;
                link.set(PUBLISHING, true);
                c
            }
            Err(e) => {
                m.broker_errors.inc();
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "broker: cannot connect to Redis for publishing");
                tokio::select! {
                    _ = tokio::time::sleep(jitter(backoff)) => {}
                    _ = link.redis_back.notified() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            let (pipe, publishes) = match unsent.take() {
                Some(p) => p,
                None => {
                    batch.clear();
                    if !queue.next_batch(&mut batch).await {
                        return; // the node is shutting down
                    }
                    pipeline(&batch, &ch, node, &mut seq)
                }
            };
            let sent = tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
            match sent {
                Ok(Ok(())) => {
                    m.broker_published.inc_by(publishes);
                    m.broker_pending.dec_by(batch.len() as i64);
                    pending_kv.settle(&batch);
                }
                // Redis answered, with an error (e.g. a key of another type): sending the same
                // commands again would fail the same way, so this batch is given up.
                Ok(Err(e)) if !retryable(&e) => {
                    m.broker_errors.inc();
                    tracing::warn!(error = %e, "broker: Redis refused a batch; it is dropped");
                    m.broker_pending.dec_by(batch.len() as i64);
                    pending_kv.settle(&batch);
                }
                failed => {
                    m.broker_errors.inc();
                    let error = failed.map_or_else(
                        |_| "timed out".to_owned(),
                        |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                    );
                    tracing::warn!(%error, "broker: publishing to Redis failed; reconnecting");
                    link.set(PUBLISHING, false);
                    unsent = Some((pipe, publishes)); // sent again once reconnected
                    break;
                }
            }
        }
    }
}

/// One round trip's commands for `batch`, numbered from `seq`; and how many are room publishes.
fn pipeline(batch: &[Outbound], ch: &Channels, node: u64, seq: &mut u64) -> (redis::Pipeline, u64) {
    let mut pipe = redis::pipe();
    let mut publishes = 0;
    for out in batch {
        *seq += 1;
        match out {
            Outbound::Publish { key, text, payload } => {
                let kind = if *text { KIND_TEXT } else { KIND_BINARY };
                let frame = Frame::encode(node, *seq, kind, &key.plugin, &key.name, payload);
                pipe.cmd("PUBLISH").arg(&ch.rooms).arg(frame).ignore();
                publishes += 1;
            }
            Outbound::Kv { plugin, key, value } => {
                let hash = format!("{}{plugin}", ch.kv_prefix);
                let kind = match value {
                    Some(v) => {
                        pipe.cmd("HSET").arg(&hash).arg(key).arg(v.as_ref()).ignore();
                        KIND_KV_SET
                    }
                    None => {
                        pipe.cmd("HDEL").arg(&hash).arg(key).ignore();
                        KIND_KV_DELETE
                    }
                };
                let frame = Frame::encode(node, *seq, kind, plugin, key, value.as_deref().unwrap_or_default());
                pipe.cmd("PUBLISH").arg(&ch.kv).arg(frame).ignore();
            }
        }
    }
    (pipe, publishes)
}

async fn subscriber(client: redis::Client, ch: Channels, broker: Arc<Broker>, link: Arc<Link>) {
    let m = &broker.hub.metrics;
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        match subscribe_once(&client, &ch, &broker, &link, &mut first, &mut backoff).await {
            Ok(()) => tracing::warn!("broker: Redis subscription ended; reconnecting"),
            Err(e) => {
                m.broker_errors.inc();
                // The step that failed and the underlying cause (the Redis error repeats its
                // own source in its message, so the full chain would say it twice).
                let (step, cause) = (e.to_string(), e.root_cause().to_string());
                let error = if step == cause { cause } else { format!("{step}: {cause}") };
                tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "broker: Redis subscription failed; reconnecting");
            }
        }
        link.set(SUBSCRIBED, false);
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn subscribe_once(
    client: &redis::Client,
    ch: &Channels,
    broker: &Broker,
    link: &Link,
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
    link.set(SUBSCRIBED, true);
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
    let _recording = broker.pending_kv.reload();
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
    let mut remote: HashMap<Arc<str>, HashMap<String, Vec<u8>>> = HashMap::new();
    for hash in hashes {
        let Some(plugin) = hash.strip_prefix(&ch.kv_prefix) else { continue };
        let plugin: Arc<str> = Arc::from(plugin);
        // A key under our prefix that is not a hash (someone else's) is skipped, not fatal:
        // failing here would keep the subscription, and every room, down.
        let entries: HashMap<String, Vec<u8>> = match conn.hgetall(&hash).await {
            Ok(e) => e,
            Err(e) if retryable(&e) => return Err(e.into()),
            Err(e) => {
                broker.hub.metrics.broker_errors.inc();
                tracing::warn!(key = %hash, error = %e, "broker: skipping a shared key/value entry Redis refused");
                continue;
            }
        };
        remote.insert(plugin, entries);
    }
    let (kv, pending) = (&broker.hub.kv, &broker.pending_kv);
    for (plugin, entries) in remote {
        for (key, value) in entries.into_iter().filter(|(k, _)| !pending.keeps_local(&plugin, k)) {
            let _ = kv.set(&plugin, &key, Bytes::from(value));
        }
    }
    Ok(())
}

/// The CA and client certificate for `rediss://`, read now so that a bad file stops the start.
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
        let bytes = Frame::encode(7, 42, KIND_TEXT, "rooms", "lobby", b"hello");
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!(
            (f.node, f.seq, f.kind, f.plugin, f.name, f.payload),
            (7, 42, KIND_TEXT, "rooms", "lobby", &b"hello"[..])
        );
        assert!(Frame::decode(&bytes[..20]).is_err());
        assert!(Frame::decode(b"").is_err());
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(Frame::decode(&wrong).is_err());
    }

    fn broker(max_items: usize, max_bytes: usize) -> (Broker, mpsc::Receiver<Outbound>) {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let hub = Arc::new(Hub::new(crate::hub::KvLimits { max_key: 64, max_value: 64, max_keys: 8 }, metrics));
        let (tx, rx) = mpsc::channel(max_items);
        let b = Broker {
            node: 1,
            shared_kv: false,
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            max_bytes,
            hub,
            seen: Mutex::new(HashMap::new()),
            pending_kv: Arc::default(),
            tasks: Mutex::new(Vec::new()),
        };
        (b, rx)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_in_count() {
        let (b, _rx) = broker(100, 1000);
        let key = RoomKey::new(&Arc::from("rooms"), "lobby");
        let item = Outgoing::Text(Bytes::from(vec![b'x'; 400]));
        for _ in 0..3 {
            b.publish(&key, &item);
        }
        // Two fit in 1000 bytes; the third is dropped and counted, and gives its bytes back.
        assert_eq!(b.hub.metrics.broker_dropped.get(), 1);
        assert_eq!(b.queued.load(Relaxed), 2 * (400 + "rooms".len() + "lobby".len()));
        assert_eq!(b.hub.metrics.broker_pending.get(), 2, "the dropped one is not pending");
        let (b, _rx) = broker(1, 1 << 20);
        b.publish(&key, &item);
        b.publish(&key, &item);
        assert_eq!(b.hub.metrics.broker_dropped.get(), 1, "count bound");
    }

    #[test]
    fn a_frame_sent_again_after_a_failure_is_delivered_once() {
        let (b, _rx) = broker(1, 1);
        assert!(b.first_time(7, 1));
        assert!(b.first_time(7, 2));
        assert!(!b.first_time(7, 2), "resent");
        assert!(!b.first_time(7, 1), "resent");
        assert!(b.first_time(8, 1), "another node counts on its own");
        assert!(b.first_time(7, 3));
    }

    #[tokio::test]
    async fn connected_means_both_connections_and_redis_back_wakes_the_publisher() {
        let link = Link::new(Gauge::default());
        link.set(SUBSCRIBED, true);
        assert_eq!(link.gauge.get(), 0, "the publisher is not up yet");
        let woken = tokio::time::timeout(Duration::from_secs(1), link.redis_back.notified()).await;
        assert!(woken.is_ok(), "a publisher in backoff hears that Redis is back");
        link.set(PUBLISHING, true);
        assert_eq!(link.gauge.get(), 1);
        link.set(PUBLISHING, false);
        assert_eq!(link.gauge.get(), 0);
    }

    #[test]
    fn a_key_stays_pending_until_every_queued_write_to_it_is_settled() {
        let p = PendingKv::default();
        let plugin: Arc<str> = Arc::from("rooms");
        let write = || Outbound::Kv { plugin: plugin.clone(), key: "k".into(), value: None };
        p.add(&plugin, "k");
        p.add(&plugin, "k");
        p.settle(&[write()]);
        assert!(p.keeps_local(&plugin, "k"), "one write still on its way");
        p.settle(&[write()]);
        assert!(!p.keeps_local(&plugin, "k"));
        p.done(&plugin, "k"); // settling more than was added changes nothing
        assert!(!p.keeps_local(&plugin, "k"));
    }

    #[test]
    fn a_key_written_during_a_reload_keeps_its_local_value_until_the_reload_ends() {
        let p = PendingKv::default();
        let plugin: Arc<str> = Arc::from("rooms");
        let reload = p.reload();
        // Written and already through to Redis, but perhaps after the reload read Redis.
        p.add(&plugin, "k");
        p.done(&plugin, "k");
        assert!(p.keeps_local(&plugin, "k"));
        assert!(!p.keeps_local(&plugin, "other"));
        drop(reload);
        assert!(!p.keeps_local(&plugin, "k"));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:s3cret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
