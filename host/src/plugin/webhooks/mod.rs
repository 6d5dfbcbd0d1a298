//! Webhooks: events a plugin reports to the application's backend (a user joined, a channel
//! emptied), held and sent by the host so that the connection that caused them never waits.
//!
//! `emit` checks the event and the URL against the plugin's HTTP policy and queues it, in
//! microseconds. The host batches a plugin's events per (URL, signing) into Pusher's webhook
//! body, `{"time_ms": <ms>, "events": [<event>, ...]}`, sent `webhook_flush_delay` after the
//! batch's first event or as soon as it holds `webhook_max_batch_events` events or
//! `webhook_max_batch_bytes` bytes. Each (URL, signing) sends one batch at a time, so its events
//! arrive in the order they were emitted; a 5xx, a failed connection or a timeout is retried
//! with exponential backoff up to `webhook_max_attempts` tries; a 4xx is not.
//!
//! Everything is bounded per plugin: events and bytes queued or in delivery
//! (`webhook_max_queued_events`, `webhook_max_queued_bytes`; beyond them `emit` fails with
//! `queue-full`), batches in flight (`webhook_max_concurrent`). Every event dropped is counted
//! with its reason. The queues belong to the plugin's slot, keyed by its name, so they survive
//! a hot reload. At shutdown what is queued goes at once, within the grace period; what is left
//! after it is dropped and counted.

mod lane;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::outbound::Outbound;
use crate::config::WebhookSettings;
use crate::metrics::{Metrics, PluginLabel, PluginReasonLabel};

/// Longest webhook URL.
const MAX_URL: usize = 2048;
/// Longest signing secret, most extra headers and longest header value a signing may carry.
const MAX_SECRET: usize = 1024;
const MAX_HEADERS: usize = 16;
const MAX_HEADER_VALUE: usize = 1024;
/// Headers the host sets itself.
const RESERVED: &[&str] =
    &["host", "content-length", "content-type", "transfer-encoding", "connection", "te", "upgrade"];

/// How a batch is signed: `header` carries the hex HMAC-SHA256 of the body under `secret`, and
/// `headers` go with every request (Pusher: `X-Pusher-Signature`, and `X-Pusher-Key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signing {
    pub secret: String,
    pub header: String,
    pub headers: Vec<(String, String)>,
}

impl Signing {
    fn check(&self) -> Result<(), EmitError> {
        let valid_name = |n: &str| {
            http::HeaderName::from_bytes(n.as_bytes()).is_ok() && !RESERVED.contains(&n.to_ascii_lowercase().as_str())
        };
        let valid_value = |v: &str| v.len() <= MAX_HEADER_VALUE && http::HeaderValue::from_str(v).is_ok();
        let ok = !self.secret.is_empty()
            && self.secret.len() <= MAX_SECRET
            && valid_name(&self.header)
            && self.headers.len() <= MAX_HEADERS
            && self.headers.iter().all(|(n, v)| valid_name(n) && valid_value(v));
        if ok { Ok(()) } else { Err(EmitError::Invalid("bad signing: empty or long secret, or a bad header")) }
    }

    fn bytes(&self) -> usize {
        self.secret.len() + self.header.len() + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}

/// Where a batch goes and how it is signed: one batch at a time per key.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    url: String,
    uri: http::Uri,
    signing: Option<Signing>,
}

impl Key {
    /// What a queue for this key costs beyond its events (charged to the bytes bound).
    fn bytes(&self) -> usize {
        self.url.len() + self.signing.as_ref().map_or(0, Signing::bytes)
    }
}

/// Why `emit` refused an event (nothing was queued; the drop is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The URL's host is not in `http_allowed_hosts`.
    Denied,
    /// Malformed: the URL, the event (not JSON) or the signing.
    Invalid(&'static str),
    /// The event alone is larger than `webhook_max_batch_bytes`.
    TooLarge,
    /// The plugin's queue is at its bound (events or bytes).
    QueueFull,
    /// Shutdown's grace period is over.
    Stopped,
}

impl EmitError {
    fn reason(self) -> &'static str {
        match self {
            EmitError::Denied => "denied",
            EmitError::Invalid(_) => "invalid",
            EmitError::TooLarge => "too_large",
            EmitError::QueueFull => "queue_full",
            EmitError::Stopped => "shutdown",
        }
    }
}

/// What the server's shutdown tells every plugin's webhooks, and how it waits for them.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Shutdown has begun: batches go at once, without waiting for their delay.
    pub flush: CancellationToken,
    /// Delivery tasks alive (shutdown waits for them, within its grace period).
    pub tasks: Arc<TaskCount>,
}

/// Counts delivery tasks, so shutdown can wait until none is left.
#[derive(Default)]
pub struct TaskCount {
    count: AtomicUsize,
    idle: Notify,
}

impl TaskCount {
    fn enter(self: &Arc<Self>) -> TaskGuard {
        self.count.fetch_add(1, SeqCst);
        TaskGuard(self.clone())
    }

    /// Resolves when no delivery task is left.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count.load(SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One key's events not yet taken into a batch.
struct Lane {
    /// Each event with the time it was queued (the first one's sets when its batch is due).
    queue: VecDeque<(Instant, String)>,
    queued_bytes: usize,
    wake: Arc<Notify>,
}

/// Everything queued or in delivery, and the bounds' counts.
#[derive(Default)]
struct Queues {
    lanes: HashMap<Arc<Key>, Lane>,
    /// Events (and bytes, keys' included) queued or being delivered.
    events: usize,
    bytes: usize,
}

/// One plugin's webhooks: shared by every version of the plugin (a reload keeps its queues).
pub struct Webhooks {
    plugin: Arc<str>,
    settings: WebhookSettings,
    /// The plugin's HTTP policy: allowed hosts, SSRF guard, timeout, TLS.
    outbound: Arc<Outbound>,
    queues: Mutex<Queues>,
    in_flight: Arc<Semaphore>,
    shutdown: Shutdown,
    /// Shutdown's grace period is over: deliveries stop, what is left is dropped.
    stop: CancellationToken,
    /// The server's runtime: delivery tasks run there, whichever thread the plugin call is on.
    runtime: Option<Handle>,
    events: Counter,
    batches: Counter,
    retries: Counter,
    dropped: Family<PluginReasonLabel, Counter>,
}

impl Webhooks {
    pub fn new(
        outbound: Arc<Outbound>,
        settings: WebhookSettings,
        metrics: &Metrics,
        shutdown: Shutdown,
        stop: CancellationToken,
        runtime: Option<Handle>,
    ) -> Webhooks {
        let plugin = outbound.plugin().clone();
        let label = PluginLabel { plugin: plugin.to_string() };
        Webhooks {
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent)),
            events: metrics.plugin_webhook_events.get_or_create(&label).clone(),
            batches: metrics.plugin_webhook_batches.get_or_create(&label).clone(),
            retries: metrics.plugin_webhook_retries.get_or_create(&label).clone(),
            dropped: metrics.plugin_webhook_dropped.clone(),
            queues: Mutex::default(),
            plugin,
            settings,
            outbound,
            shutdown,
            stop,
            runtime,
        }
    }

    fn drop_events(&self, reason: &'static str, n: usize) {
        self.dropped.get_or_create(&PluginReasonLabel { plugin: self.plugin.to_string(), reason }).inc_by(n as u64);
    }

    /// Queues `event` (a JSON value's text) for `url`; returns at once. A refusal is counted
    /// (and a policy denial logged); nothing is sent for it.
    pub fn emit(self: &Arc<Self>, url: String, event: String, signing: Option<Signing>) -> Result<(), EmitError> {
        let result = self.enqueue(url, event, signing);
        if let Err(e) = result {
            self.drop_events(e.reason(), 1);
        }
        result
    }

    fn enqueue(self: &Arc<Self>, url: String, event: String, signing: Option<Signing>) -> Result<(), EmitError> {
        if self.stop.is_cancelled() {
            return Err(EmitError::Stopped);
        }
        if url.len() > MAX_URL {
            return Err(EmitError::Invalid("URL too long"));
        }
        let uri = http::Uri::try_from(url.as_str()).map_err(|_| EmitError::Invalid("bad URL"))?;
        if let Err(why) = self.outbound.admit(&uri) {
            tracing::warn!(plugin = %self.plugin, %url, "webhook refused: {why} (see http_allowed_hosts)");
            return Err(EmitError::Denied);
        }
        if let Some(s) = &signing {
            s.check()?;
        }
        if event.len() > self.settings.max_batch_bytes {
            return Err(EmitError::TooLarge);
        }
        // Checked here, so a batch (the events joined by commas) is JSON too.
        if serde_json::from_str::<serde::de::IgnoredAny>(&event).is_err() {
            return Err(EmitError::Invalid("the event is not JSON"));
        }
        let key = Arc::new(Key { url, uri, signing });
        let s = &self.settings;
        let mut q = self.queues.lock();
        let new_lane = !q.lanes.contains_key(&key);
        let cost = event.len() + if new_lane { key.bytes() } else { 0 };
        if q.events >= s.max_queued_events || q.bytes + cost > s.max_queued_bytes {
            return Err(EmitError::QueueFull);
        }
        q.events += 1;
        q.bytes += cost;
        self.events.inc();
        let len = event.len();
        let lane = q.lanes.entry(key.clone()).or_insert_with(|| Lane {
            queue: VecDeque::new(),
            queued_bytes: 0,
            wake: Arc::new(Notify::new()),
        });
        lane.queue.push_back((Instant::now(), event));
        lane.queued_bytes += len;
        let wake = lane.wake.clone();
        drop(q);
        if new_lane {
            let guard = self.shutdown.tasks.enter();
            let task = lane::run(self.clone(), key, wake, guard);
            match &self.runtime {
                Some(handle) => drop(handle.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        } else {
            wake.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpSettings;
    use crate::config::hosts::HostPattern;

    fn webhooks(settings: WebhookSettings) -> (Arc<Webhooks>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let http = HttpSettings {
            allowed_hosts: vec![HostPattern::parse("http://127.0.0.1:9").unwrap()],
            ..HttpSettings::default()
        };
        let out = Arc::new(Outbound::new("p".into(), http, &metrics, CancellationToken::new()));
        let w = Webhooks::new(out, settings, &metrics, Shutdown::default(), CancellationToken::new(), None);
        (Arc::new(w), metrics)
    }

    #[tokio::test]
    async fn emit_checks_the_policy_the_event_and_the_bounds() {
        let settings = WebhookSettings {
            max_queued_events: 2,
            flush_delay: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let (w, _m) = webhooks(settings);
        let url = "http://127.0.0.1:9/hook".to_owned();
        assert_eq!(w.emit("http://10.0.0.1:9/".into(), "{}".into(), None), Err(EmitError::Denied));
        assert!(matches!(w.emit(url.clone(), "{not json".into(), None), Err(EmitError::Invalid(_))));
        let bad = Signing { secret: "s".into(), header: "content-length".into(), headers: vec![] };
        assert!(matches!(w.emit(url.clone(), "{}".into(), Some(bad)), Err(EmitError::Invalid(_))));
        w.emit(url.clone(), "{\"a\":1}".into(), None).unwrap();
        let signed =
            Signing { secret: "s".into(), header: "x-sig".into(), headers: vec![("x-key".into(), "k".into())] };
        w.emit(url.clone(), "[1]".into(), Some(signed)).unwrap();
        assert_eq!(w.emit(url, "2".into(), None), Err(EmitError::QueueFull));
        let q = w.queues.lock();
        assert_eq!((q.events, q.lanes.len()), (2, 2));
    }

    #[test]
    fn the_body_is_pushers_shape_and_the_signature_hex_hmac() {
        let body = lane::body(1_700_000_000_000, &["{\"name\":\"a\"}".to_owned(), "2".to_owned()]);
        assert_eq!(body, "{\"time_ms\":1700000000000,\"events\":[{\"name\":\"a\"},2]}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"][1], 2);
        // RFC 4231, test case 2.
        assert_eq!(
            lane::sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
