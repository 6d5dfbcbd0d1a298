//! One (URL, signing) key's delivery task: waits until a batch is due, sends it (retrying),
//! and goes on until the key's queue is empty. One batch at a time, so a key's events arrive
//! in the order they were emitted.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use super::{Key, TaskGuard, Webhooks};
use crate::plugin::outbound::{self, Failure};

/// Longest wait between two tries of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a batch's delivery ended.
enum Outcome {
    Delivered,
    /// Answered with a status that is not retried (4xx, 3xx).
    Rejected(u16),
    /// The policy refused it when sending (a name resolving to an internal address).
    Denied,
    /// Every try failed.
    Failed,
    /// Shutdown's grace period ended first.
    Shutdown,
}

impl Outcome {
    fn dropped_reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Delivered => None,
            Outcome::Rejected(_) => Some("rejected"),
            Outcome::Denied => Some("denied"),
            Outcome::Failed => Some("failed"),
            Outcome::Shutdown => Some("shutdown"),
        }
    }
}

/// One try's result: the status answered, or why there was none and whether to try again.
enum Attempt {
    Answered(u16),
    Failed { retry: bool, detail: String },
}

pub(super) async fn run(hooks: Arc<Webhooks>, key: Arc<Key>, wake: Arc<Notify>, _guard: TaskGuard) {
    let s = &hooks.settings;
    loop {
        let Some(batch) = next_batch(&hooks, &key, &wake).await else { return };
        let bytes: usize = batch.iter().map(String::len).sum();
        let outcome = if hooks.stop.is_cancelled() { Outcome::Shutdown } else { deliver(&hooks, &key, &batch).await };
        {
            let mut q = hooks.queues.lock();
            q.events -= batch.len();
            q.bytes -= bytes;
        }
        match outcome.dropped_reason() {
            None => {
                hooks.batches.inc();
            }
            Some(reason) => {
                hooks.drop_events(reason, batch.len());
                let detail = match outcome {
                    Outcome::Rejected(status) => format!("the backend answered {status}"),
                    Outcome::Failed => format!("{} tries failed", s.max_attempts),
                    _ => String::new(),
                };
                tracing::warn!(
                    plugin = %hooks.plugin,
                    url = %key.url,
                    events = batch.len(),
                    reason,
                    "webhook batch dropped {detail}"
                );
            }
        }
    }
}

/// The key's next batch once it is due (its delay passed, full, or shutdown begun); `None`
/// when the queue is empty, and then the key's lane is gone (a later event starts a new task).
async fn next_batch(hooks: &Webhooks, key: &Arc<Key>, wake: &Notify) -> Option<Vec<String>> {
    let s = &hooks.settings;
    loop {
        let due = {
            let mut q = hooks.queues.lock();
            let lane = q.lanes.get_mut(key)?;
            let Some(&(first, _)) = lane.queue.front() else {
                q.lanes.remove(key);
                q.bytes -= key.bytes();
                return None;
            };
            let full = lane.queue.len() >= s.max_batch_events || lane.queued_bytes >= s.max_batch_bytes;
            let due = first + s.flush_delay;
            if full || Instant::now() >= due || hooks.shutdown.flush.is_cancelled() || hooks.stop.is_cancelled() {
                return Some(take(lane, s.max_batch_events, s.max_batch_bytes));
            }
            due
        };
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            () = wake.notified() => {}
            () = hooks.shutdown.flush.cancelled() => {}
            () = hooks.stop.cancelled() => {}
        }
    }
}

/// The oldest events, up to `max_events` and `max_bytes` (at least one).
fn take(lane: &mut super::Lane, max_events: usize, max_bytes: usize) -> Vec<String> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some((_, event)) = lane.queue.front() {
        if !batch.is_empty() && (batch.len() >= max_events || bytes + event.len() > max_bytes) {
            break;
        }
        bytes += event.len();
        lane.queued_bytes -= event.len();
        batch.extend(lane.queue.pop_front().map(|(_, e)| e));
    }
    batch
}

/// Pusher's webhook body.
pub(super) fn body(time_ms: u128, events: &[String]) -> String {
    let mut body = String::with_capacity(40 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    let _ = write!(body, "{{\"time_ms\":{time_ms},\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    body
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    tag.as_ref().iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// Sends the batch, retrying 5xx, failed connections and timeouts with exponential backoff.
/// Every try carries the same body (and signature); `time_ms` is when the batch was made.
async fn deliver(hooks: &Webhooks, key: &Key, events: &[String]) -> Outcome {
    let s = &hooks.settings;
    let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let body = Bytes::from(body(time_ms, events));
    let signature = key.signing.as_ref().map(|sg| sign(&sg.secret, &body));
    let mut backoff = s.retry_backoff;
    for attempt in 1..=s.max_attempts {
        let result = tokio::select! {
            r = try_once(hooks, key, body.clone(), signature.as_deref()) => r,
            () = hooks.stop.cancelled() => return Outcome::Shutdown,
        };
        let detail = match result {
            Ok(Attempt::Answered(status)) if (200..300).contains(&status) => return Outcome::Delivered,
            Ok(Attempt::Answered(status)) if status < 500 => return Outcome::Rejected(status),
            Ok(Attempt::Answered(status)) => format!("the backend answered {status}"),
            Ok(Attempt::Failed { retry: true, detail }) => detail,
            Ok(Attempt::Failed { retry: false, detail }) => {
                tracing::warn!(plugin = %hooks.plugin, url = %key.url, "webhook denied: {detail} (see http_allow_private)");
                return Outcome::Denied;
            }
            Err(detail) => detail,
        };
        tracing::info!(plugin = %hooks.plugin, url = %key.url, attempt, "webhook delivery failed: {detail}");
        if attempt == s.max_attempts {
            break;
        }
        hooks.retries.inc();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = hooks.stop.cancelled() => return Outcome::Shutdown,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Outcome::Failed
}

/// One POST under the plugin's HTTP policy (allowed hosts, SSRF guard, `http_timeout`, TLS),
/// holding one of the plugin's `webhook_max_concurrent` slots.
async fn try_once(hooks: &Webhooks, key: &Key, body: Bytes, signature: Option<&str>) -> Result<Attempt, String> {
    let permit = hooks.in_flight.clone().acquire_owned().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let target = hooks.outbound.admit(&key.uri)?;
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(key.uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("wasmsock/", env!("CARGO_PKG_VERSION"), " webhooks"));
    if let Some(authority) = key.uri.authority() {
        request = request.header(http::header::HOST, authority.as_str());
    }
    if let (Some(signing), Some(signature)) = (&key.signing, signature) {
        for (name, value) in &signing.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = request.header(signing.header.as_str(), signature);
    }
    let body = Full::new(body).map_err(|never| match never {}).boxed_unsync();
    let request = request.body(body).map_err(|e| format!("cannot build the request: {e}"))?;
    match outbound::send(&hooks.outbound, target, request, started, permit).await {
        // Only the status matters; dropping the answer closes the connection.
        Ok((response, _io)) => Ok(Attempt::Answered(response.status().as_u16())),
        Err((failure, _, detail)) => {
            Ok(Attempt::Failed { retry: !matches!(failure, Failure::Denied | Failure::Private), detail })
        }
    }
}
