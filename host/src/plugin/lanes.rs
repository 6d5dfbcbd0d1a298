//! Where long plugin calls finish. Every call starts on the task of the connection it is for,
//! on the server's I/O threads, where a short call costs nothing extra. A call still running
//! after a short slice of its own execution time moves here: to threads of lower OS priority
//! than the I/O threads, where calls run on, first come first served, until they return or
//! reach their deadline. The I/O threads stay free for every other connection, handshake and
//! heartbeat, and the kernel gives them the CPU first.

use std::future::Future;

use anyhow::{Context, Result};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How much lower the slow lane's threads run than the I/O threads (`nice` levels, relative to
/// the server's own: 10 lower gets about a tenth of the CPU when both want it).
const NICE: i32 = 10;

pub(crate) struct Lanes {
    runtime: Option<Runtime>,
    /// Cancelled when shutdown's grace period is over: calls here are then not waited for.
    stopped: CancellationToken,
}

impl Lanes {
    pub fn new(threads: usize) -> Result<Lanes> {
        // Frames that calls here queue are written by the I/O threads, at full priority.
        let io = tokio::runtime::Handle::try_current().ok();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("wasmsock-slow-lane")
            .on_thread_start(move || {
                lower_priority();
                crate::hub::flush_from_lane(io.clone());
            })
            .enable_all()
            .build()
            .context("starting the slow lane for long plugin calls")?;
        Ok(Lanes { runtime: Some(runtime), stopped: CancellationToken::new() })
    }

    /// Shutdown's grace period is over (see `Registry::stop_calls`).
    pub fn stop(&self) {
        self.stopped.cancel();
    }

    pub async fn stopped(&self) {
        self.stopped.cancelled().await
    }

    /// Cancelled when shutdown's grace period is over, for what waits outside the lanes (a
    /// plugin's outbound HTTP request).
    pub fn stop_token(&self) -> CancellationToken {
        self.stopped.clone()
    }

    pub fn spawn<F>(&self, call: F) -> Option<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.as_ref().map(|r| r.spawn(call))
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Dropped from async code at shutdown: do not block on the calls still running.
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: gettid, getpriority and setpriority take no pointers; `who` is this thread's id,
    // so only this thread's nice value changes (Linux keeps one per thread). A new thread starts
    // with the nice value of the thread that made it: the server's.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (current + NICE).min(19)) != 0
    };
    if failed {
        tracing::debug!("could not lower the slow lane's thread priority");
    }
}
