//! Watches the plugin directory and reloads changed plugins (debounced, compiled off the async
//! runtime, one file at a time in the order the changes arrived).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::registry::{LoadOutcome, Registry, plugin_name};

/// How long a file must be quiet before it is (re)loaded: long enough for `cp` of a plugin to
/// finish, short enough to feel instant.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchGuard {
    _debouncer: Box<dyn std::any::Any + Send>,
}

/// Starts watching the registry's directory. `on_change` is told about every outcome (tests
/// and the admin API use it).
pub fn watch(registry: Arc<Registry>, on_change: Option<mpsc::UnboundedSender<LoadOutcome>>) -> Result<WatchGuard> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let paths: BTreeSet<PathBuf> = events
                .iter()
                .filter(|e| may_change_content(&e.kind))
                .flat_map(|e| e.paths.iter())
                .filter(|p| plugin_name(p).is_some())
                .cloned()
                .collect();
            if !paths.is_empty() {
                let _ = tx.send(paths.into_iter().collect());
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::error!(error = %e, "plugin directory watch error");
            }
        }
    })
    .context("cannot start the plugin directory watcher")?;
    debouncer
        .watch(registry.dir(), RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch plugin directory {}", registry.dir().display()))?;

    tokio::spawn(async move {
        while let Some(paths) = rx.recv().await {
            for path in paths {
                let reg = registry.clone();
                let outcome = match tokio::task::spawn_blocking(move || reg.sync_path(&path)).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(error = %e, "plugin load task failed");
                        continue;
                    }
                };
                if let Some(tx) = &on_change {
                    let _ = tx.send(outcome);
                }
            }
        }
    });
    Ok(WatchGuard { _debouncer: Box::new(debouncer) })
}

/// Whether an event may mean new content. Opening and reading a file are events too (inotify
/// reports them), and the registry's own reads must not bring it back to read again; a writer
/// closing its file is kept, it marks a write that finished.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}
