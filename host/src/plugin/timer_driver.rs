//! The one task that fires plugin timers: it sleeps until the earliest timer is due (or an
//! earlier one is set), takes what is due, and runs each fire as a plugin call about no
//! connection (or the timer's connection) under the plugin's deadline and failure policy.
//!
//! Timers belong to the plugin's name, so the version loaded when one comes due gets the call.
//! A plugin's fires run a few at a time (its `max_idle_instances`, at least one), so a burst of
//! due timers reuses warm instances instead of taking every instance slot from connections.
//! At shutdown the task stops: pending timers are dropped, fires waiting for their turn are
//! dropped, and fires already running finish (the grace period's end stops them like any call).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use crate::hub::{Due, Hub};
use crate::metrics::{PluginKindLabel, PluginLabel};
use crate::ws::CloseCode;

/// Most timers taken per turn of the loop (the loop turns again at once when there are more).
const BATCH: usize = 1024;

/// Starts the driver. The handle resolves after `shutdown`, once the fires in flight are done.
pub(crate) fn start(registry: Arc<Registry>, hub: Arc<Hub>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(registry, hub, shutdown))
}

async fn run(registry: Arc<Registry>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut fires = JoinSet::new();
    // One gate per plugin (bounded by the number of plugins).
    let mut gates: HashMap<Arc<str>, Arc<Semaphore>> = HashMap::new();
    loop {
        while fires.try_join_next().is_some() {}
        let next = hub.timers.next_due();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = hub.timers.changed() => continue,
            _ = due => {}
        }
        for due in hub.timers.take_due(Instant::now(), BATCH) {
            let gate = gates
                .entry(due.plugin.clone())
                .or_insert_with(|| {
                    let n = registry.existing(&due.plugin).map_or(1, |s| s.settings().max_idle_instances.max(1));
                    Arc::new(Semaphore::new(n))
                })
                .clone();
            fires.spawn(fire(registry.clone(), hub.clone(), due, gate, shutdown.clone()));
        }
    }
    let dropped = hub.timers.stop();
    tracing::info!(dropped, running = fires.len(), "timers stopped: pending timers dropped");
    while fires.join_next().await.is_some() {}
}

/// One fire: the plugin's `on-timer`, when its turn comes and everything it needs is there.
async fn fire(registry: Arc<Registry>, hub: Arc<Hub>, due: Due, gate: Arc<Semaphore>, shutdown: CancellationToken) {
    let _turn = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return,
        turn = gate.acquire_owned() => turn,
    };
    let metrics = &hub.metrics.timers;
    let dropped = |reason: &'static str| {
        tracing::debug!(plugin = %due.plugin, timer = %due.key, conn = due.conn, reason, "timer came due without a call");
        metrics.dropped.get_or_create(&PluginKindLabel { plugin: due.plugin.to_string(), kind: reason }).inc();
    };
    let Some(slot) = registry.existing(&due.plugin) else {
        return dropped("not_loaded");
    };
    let conn = match due.conn {
        None => None,
        // Its end removes its timers; one taken just before is dropped here.
        Some(id) => match hub.get(id).filter(|c| !c.data.lock().gone) {
            Some(c) => Some(c),
            None => return dropped("connection_gone"),
        },
    };
    let fired = || {
        metrics.fired.get_or_create(&PluginLabel { plugin: due.plugin.to_string() }).inc();
    };
    match slot.on_timer(&due, conn.as_ref()).await {
        Ok(true) => fired(),
        Ok(false) => dropped("no_export"),
        // Not loaded, quarantined, shutting down: no call was made.
        Err(f) if f.is_unavailable() => dropped(f.error.kind()),
        // A failed call (logged and counted by the slot): the policy applies to the timer's
        // connection as to a failed message.
        Err(f) => {
            fired();
            if let Some(c) = conn.as_ref().filter(|_| !f.bypass) {
                c.close_now(CloseCode::INTERNAL, &f.reason());
            }
        }
    }
}
