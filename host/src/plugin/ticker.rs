//! The epoch ticker: advances the engine's epoch every tick while plugin code runs (the
//! deadlines count ticks, see `instance::on_tick`) and refreshes the coarse clock. Once no
//! plugin code has run for [`IDLE_TICKS`] ticks it wakes only every [`IDLE_REFRESH`], for the
//! clock, so that a server with no plugin code to run does not wake a thousand times a second
//! (and its I/O threads are not preempted for it).
//!
//! Whatever is about to run plugin code calls [`Ticking::touch`] first (each poll of a call,
//! each instantiation) and the running code touches it on every tick it sees, so the ticker
//! never sleeps under a call that runs.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::Engine;

/// Ticks without plugin code before the ticker parks: a stream of calls keeps it going
/// without a wake-up per call, a pause of this long lets it sleep.
const IDLE_TICKS: u32 = 10;
/// How often an idle ticker still refreshes the coarse clock.
const IDLE_REFRESH: Duration = Duration::from_millis(10);

/// What callers and the ticker share.
#[derive(Debug)]
pub(crate) struct Ticking {
    /// Plugin code ran (or is about to) since the ticker last looked.
    active: AtomicBool,
    /// The ticker is parked, or about to: a touch must unpark it.
    parked: AtomicBool,
    stop: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

impl Ticking {
    /// Plugin code is about to run, or runs: the ticker must tick. One load on the usual
    /// path (it is already marked, and not parked).
    pub fn touch(&self) {
        if !self.active.load(SeqCst) {
            self.active.store(true, SeqCst);
        }
        // SeqCst pairs with the ticker's store of `parked` and load of `active`: either it
        // sees this touch before it parks, or this load sees it parked and unparks it.
        if self.parked.load(SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }
}

/// The ticker thread; stopped and joined on drop.
pub(crate) struct Ticker {
    /// Leaked, one per server: every plugin call reaches it, and a `&'static` costs a call
    /// nothing where an `Arc` clone costs two atomic operations.
    pub ticking: &'static Ticking,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn start(engine: Engine, tick: Duration) -> Result<Ticker> {
        let ticking: &'static Ticking = Box::leak(Box::new(Ticking {
            active: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        }));
        let thread = std::thread::Builder::new()
            .name("wasmsock-epoch".into())
            .spawn(move || run(&engine, tick, ticking))
            .context("starting the epoch thread")?;
        let _ = ticking.thread.set(thread.thread().clone());
        Ok(Ticker { ticking, thread: Some(thread) })
    }
}

fn run(engine: &Engine, tick: Duration, t: &Ticking) {
    let mut idle: u32 = 0;
    while !t.stop.load(SeqCst) {
        if idle < IDLE_TICKS {
            std::thread::sleep(tick);
        } else {
            // Nothing ran for a while: sleep longer, unless something is about to run.
            t.parked.store(true, SeqCst);
            if !t.active.load(SeqCst) && !t.stop.load(SeqCst) {
                std::thread::park_timeout(IDLE_REFRESH);
            }
            t.parked.store(false, SeqCst);
        }
        engine.increment_epoch();
        crate::clock::refresh();
        idle = if t.active.swap(false, SeqCst) { 0 } else { idle.saturating_add(1) };
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.ticking.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn ticker() -> (Engine, Ticker) {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        let engine = Engine::new(&cfg).expect("engine");
        let ticker = Ticker::start(engine.clone(), Duration::from_millis(1)).expect("ticker");
        (engine, ticker)
    }

    #[test]
    fn it_parks_when_nothing_runs_and_a_touch_brings_the_ticks_back_at_once() {
        let (_engine, ticker) = ticker();
        let t = ticker.ticking;
        let start = Instant::now();
        while !t.parked.load(SeqCst) {
            assert!(start.elapsed() < Duration::from_secs(5), "the ticker never parked");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Parked, the coarse clock still tells the time, if less finely.
        std::thread::sleep(Duration::from_millis(30));
        let (coarse, now) = (crate::clock::coarse_ms(), crate::clock::now_ms());
        assert!(now - coarse <= IDLE_REFRESH.as_millis() as u64 + 2, "coarse clock {coarse} ms, clock {now} ms");
        t.touch();
        let start = Instant::now();
        while t.parked.load(SeqCst) {
            assert!(start.elapsed() < Duration::from_secs(1), "a touch did not wake the ticker");
            std::thread::yield_now();
        }
        // While touched every tick (as a running call does), it keeps ticking.
        for _ in 0..(3 * IDLE_TICKS) {
            t.touch();
            std::thread::sleep(Duration::from_millis(1));
            assert!(!t.parked.load(SeqCst), "parked under running code");
        }
    }
}
