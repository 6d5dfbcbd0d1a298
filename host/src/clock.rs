//! A process-wide millisecond clock for activity stamps kept in atomics.
//!
//! `coarse_ms` is one atomic load, refreshed every epoch tick (1 ms by default) by the wasm
//! engine's ticker thread: hot paths stamp activity without a clock read per message. While
//! the ticker is parked (no plugin code ran for a while, see `plugin::ticker`) it reads the
//! clock instead.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

static COARSE: AtomicU64 = AtomicU64::new(0);
/// A ticker refreshes `COARSE`: it is at most a tick old.
static LIVE: AtomicBool = AtomicBool::new(false);

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
    match LIVE.load(Relaxed) {
        true => COARSE.load(Relaxed),
        false => start().elapsed().as_millis() as u64 + 1,
    }
}

/// Refreshes [`coarse_ms`]; called by the epoch ticker on every tick.
pub fn refresh() {
    now_ms();
    LIVE.store(true, Relaxed);
}

/// The ticker stops refreshing: [`coarse_ms`] reads the clock until it does again. (With
/// several tickers in one process, as in tests, each one's last word before parking is this,
/// and a live one's next refresh undoes it.)
pub fn pause() {
    LIVE.store(false, Relaxed);
}
