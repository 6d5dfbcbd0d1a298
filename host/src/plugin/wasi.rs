//! The slice of WASI a plugin gets: clocks, randomness, an empty environment, no preopened
//! directories, no sockets (any socket call traps), stdout/stderr captured for the log, and
//! `wasi:http/outgoing-handler` under the plugin's policy (see `outbound`).
//!
//! `wasi:io/streams` and `wasi:io/poll` are the async versions: plugin calls run on fibers, so a
//! plugin waiting for an HTTP answer (or its body) suspends its call and holds no thread. The
//! only other thing that could wait is a sleep, which traps with a clear message instead: a
//! plugin acts on time through host timers, not by holding its connection's call.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceType};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtxView, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration as WasiDuration, Instant};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
use wasmtime_wasi::{WasiCtx, WasiView};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

const SLEEP: &str = "plugins may not sleep (a call that waits holds its connection); use a host timer instead";

/// Adds the permitted WASI interfaces to `linker`.
pub fn add_to_linker<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let l = linker;
    monotonic_clock::add_to_linker::<T, NoSleep>(l, |t| NoSleepClock(t.clocks()))?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    // No directory is ever preopened, so no descriptor can exist: the filesystem interfaces are
    // linked only so that plugins using `std::fs` load (and get "no such file").
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    wasmtime_wasi::p2::bindings::sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<T, Table>(l, |t| t.ctx().table)?;
    Ok(())
}

/// The host resource type behind a WASI resource this module provides, by interface and name.
pub fn host_resource(interface: &str, name: &str) -> Option<ResourceType> {
    let iface = interface.split('@').next()?;
    Some(match (iface, name) {
        ("wasi:io/poll", "pollable") => ResourceType::host::<DynPollable>(),
        ("wasi:io/streams", "input-stream") => ResourceType::host::<DynInputStream>(),
        ("wasi:io/streams", "output-stream") => ResourceType::host::<DynOutputStream>(),
        ("wasi:io/error", "error") => ResourceType::host::<wasmtime_wasi_io::streams::Error>(),
        _ => return None,
    })
}

/// A fresh WASI context: nothing inherited, stdout/stderr into `capture`.
pub fn context(capture: &Capture) -> WasiCtx {
    WasiCtx::builder().stdout(capture.clone()).stderr(capture.clone()).allow_blocking_current_thread(false).build()
}

struct Table;
impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

struct NoSleep;
impl HasData for NoSleep {
    type Data<'a> = NoSleepClock<'a>;
}

/// The monotonic clock, whose timers (what a sleep waits on) trap unless already due.
pub struct NoSleepClock<'a>(WasiClocksCtxView<'a>);

impl monotonic_clock::Host for NoSleepClock<'_> {
    fn now(&mut self) -> wasmtime::Result<Instant> {
        self.0.now()
    }
    fn resolution(&mut self) -> wasmtime::Result<Instant> {
        self.0.resolution()
    }
    fn subscribe_instant(&mut self, when: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        if when > self.0.now()? {
            wasmtime::bail!("{SLEEP}");
        }
        self.0.subscribe_instant(when)
    }
    fn subscribe_duration(&mut self, duration: WasiDuration) -> wasmtime::Result<Resource<DynPollable>> {
        if duration > 0 {
            wasmtime::bail!("{SLEEP}");
        }
        self.0.subscribe_duration(duration)
    }
}

/// Guest stdout/stderr, kept for the host to log after each call. Bounded: bytes beyond
/// `limit` are counted and dropped, never reported to the guest as an error (a failing
/// `println!` would panic the plugin).
#[derive(Clone)]
pub struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
pub struct CaptureBuf {
    pub bytes: Vec<u8>,
    pub dropped: usize,
    limit: usize,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Capture(Arc::new(Mutex::new(CaptureBuf { limit, ..CaptureBuf::default() })))
    }

    /// Takes what was captured: the text and how many bytes were dropped.
    pub fn take(&self) -> Option<(Vec<u8>, usize)> {
        let mut c = self.0.lock();
        if c.bytes.is_empty() && c.dropped == 0 {
            return None;
        }
        Some((std::mem::take(&mut c.bytes), std::mem::take(&mut c.dropped)))
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.0.lock();
        let room = c.limit.saturating_sub(c.bytes.len());
        let keep = room.min(data.len());
        c.bytes.extend_from_slice(&data[..keep]);
        c.dropped += data.len() - keep;
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
