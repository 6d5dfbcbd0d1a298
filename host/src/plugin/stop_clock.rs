//! A call's own CPU time once shutdown stopped plugin calls: what its stop allowance counts.
//!
//! Epoch ticks count wall-clock time while the call's thread holds the fiber. That is the
//! right measure for a deadline (tens of milliseconds, which a wait for a core hardly dents),
//! but not for an allowance of a millisecond at shutdown, when every on-close still owed is made
//! at once and a call's thread may wait through most of that millisecond (for a core, or in the
//! kernel). Counted in ticks, an on-close was now and then stopped before its first line on a
//! loaded machine (twice in CI; here 4 times in 140 runs of the shutdown test beside a build and
//! other copies of it). Counted in the thread's CPU time, each call gets the allowance to
//! itself, however busy the machine.

use std::sync::OnceLock;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// CPU time of the call's own execution since [`StopClock::start`], read at its epoch ticks.
#[derive(Debug)]
pub struct StopClock {
    thread: ThreadId,
    at: Duration,
    spent: Duration,
}

impl StopClock {
    /// Starts counting now, on the thread running the call.
    pub fn start() -> StopClock {
        StopClock { thread: std::thread::current().id(), at: thread_cpu_time(), spent: Duration::ZERO }
    }

    /// The call's CPU time since `start`, as of now. Called on the thread running the call.
    /// A call that moved to another thread since the last reading (it waited, and another
    /// thread polled it on) is counted from here on that thread: what it ran on the old one
    /// after that reading is not seen, at most a tick's worth.
    pub fn spent(&mut self) -> Duration {
        let (thread, now) = (std::thread::current().id(), thread_cpu_time());
        if thread == self.thread {
            self.spent += now.saturating_sub(self.at);
        }
        self.thread = thread;
        self.at = now;
        self.spent
    }
}

/// CPU time this thread has run (wall-clock time since the first reading, should the kernel not
/// keep a per-thread clock).
#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call; the clock id is a
    // constant, and an unknown one makes the call fail, not write elsewhere.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if !read {
        static FIRST: OnceLock<Instant> = OnceLock::new();
        return FIRST.get_or_init(Instant::now).elapsed();
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_waits_spends_nothing_and_one_that_runs_spends_its_time() {
        let mut clock = StopClock::start();
        std::thread::sleep(Duration::from_millis(30));
        let waited = clock.spent();
        assert!(waited < Duration::from_millis(10), "sleeping counted as {waited:?}");
        let busy = Instant::now();
        while busy.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(busy.elapsed());
        }
        let ran = clock.spent() - waited;
        // At least a third of the 30 ms, should the test's own thread have shared its core.
        assert!(ran >= Duration::from_millis(10), "30 ms of work counted as {ran:?}");
    }

    #[test]
    fn a_call_that_moved_thread_keeps_what_it_had_spent() {
        let mut clock = StopClock::start();
        let busy = Instant::now();
        while busy.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(busy.elapsed());
        }
        let before = clock.spent();
        let after = std::thread::spawn(move || clock.spent()).join().expect("the thread ran");
        assert_eq!(after, before, "moving to a thread that ran other work adds nothing and loses nothing");
    }
}
