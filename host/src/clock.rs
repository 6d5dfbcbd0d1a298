//! A process-wide millisecond clock for activity stamps kept in atomics.
//!
//! `coarse_ms` is one atomic load, refreshed every epoch tick (1 ms by default) by the wasm
//! engine's ticker thread: hot paths stamp activity without a clock read per message. While no
//! plugin code runs the ticker wakes less often (see `plugin::ticker`): the clock is then up
//! to 10 ms old, which the stamps' users (heartbeats, idle and write timeouts) do not notice.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

static COARSE: AtomicU64 = AtomicU64::new(0);

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the process started using this clock (never 0).
pub fn now_ms() -> u64 {
    let now = start().elapsed().as_millis() as u64 + 1;
    COARSE.fetch_max(now, Relaxed);
    now
}

/// [`now_ms`] as of the last refresh (at most a tick old).
pub fn coarse_ms() -> u64 {
    match COARSE.load(Relaxed) {
        0 => now_ms(),
        t => t,
    }
}

/// Refreshes [`coarse_ms`]; called by the epoch ticker.
pub fn refresh() {
    now_ms();
}
