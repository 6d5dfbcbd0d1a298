//! A process-wide millisecond clock for cheap activity stamps in atomics.

use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the process started using this clock (never 0 after the first call).
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64 + 1
}
