//! The slice of WASI a plugin gets: clocks, randomness, an empty environment, no preopened
//! directories, no sockets (any socket call traps), and stdout/stderr captured for the log.
//!
//! wasmtime-wasi's synchronous bindings run "blocking" stream and poll operations through
//! `block_on` on the ambient Tokio runtime, which panics on a runtime worker thread, where
//! plugin calls run. So `wasi:io/streams` and `wasi:io/poll` are bound here to a wrapper that
//! polls wasmtime-wasi's own implementation exactly once: the streams a plugin can reach are
//! in-memory and always ready, and anything that would really wait (a sleep) traps with a clear
//! message instead of stalling a server thread.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceType};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
use wasmtime_wasi::{WasiCtx, WasiView};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as AsyncPoll, HostPollable as AsyncPollable};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    Host as AsyncStreams, HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

const BLOCKED: &str = "plugins may not block (sleep, wait or read input); the call was stopped";

/// Adds the permitted WASI interfaces to `linker`.
pub fn add_to_linker<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let l = linker;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
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
    poll::add_to_linker::<T, NonBlocking>(l, |t| Once(t.ctx().table))?;
    streams::add_to_linker::<T, NonBlocking>(l, |t| Once(t.ctx().table))?;
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

struct NonBlocking;
impl HasData for NonBlocking {
    type Data<'a> = Once<'a>;
}

/// The resource table, with every potentially blocking operation polled exactly once.
pub struct Once<'a>(&'a mut ResourceTable);

fn once<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn blocked() -> wasmtime::Error {
    wasmtime::format_err!("{BLOCKED}")
}

impl poll::Host for Once<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        once(AsyncPoll::poll(self.0, pollables)).ok_or_else(blocked)?
    }
}

impl poll::HostPollable for Once<'_> {
    fn block(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        once(AsyncPollable::block(self.0, p)).ok_or_else(blocked)?
    }
    fn ready(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<bool> {
        once(AsyncPollable::ready(self.0, p)).ok_or_else(blocked)?
    }
    fn drop(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        AsyncPollable::drop(self.0, p)
    }
}

impl streams::Host for Once<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(match AsyncStreams::convert_stream_error(self.0, err)? {
            wasmtime_wasi_io::bindings::wasi::io::streams::StreamError::LastOperationFailed(e) => {
                streams::StreamError::LastOperationFailed(e)
            }
            wasmtime_wasi_io::bindings::wasi::io::streams::StreamError::Closed => streams::StreamError::Closed,
        })
    }
}

fn stream_once<T>(f: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    once(f).unwrap_or_else(|| Err(StreamError::trap(BLOCKED)))
}

impl streams::HostOutputStream for Once<'_> {
    fn drop(&mut self, s: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        once(AsyncOutput::drop(self.0, s)).ok_or_else(blocked)?
    }
    fn check_write(&mut self, s: Resource<DynOutputStream>) -> StreamResult<u64> {
        AsyncOutput::check_write(self.0, s)
    }
    fn write(&mut self, s: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncOutput::write(self.0, s, bytes)
    }
    fn blocking_write_and_flush(&mut self, s: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        stream_once(AsyncOutput::blocking_write_and_flush(self.0, s, bytes))
    }
    fn blocking_write_zeroes_and_flush(&mut self, s: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        stream_once(AsyncOutput::blocking_write_zeroes_and_flush(self.0, s, len))
    }
    fn subscribe(&mut self, s: Resource<DynOutputStream>) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncOutput::subscribe(self.0, s)
    }
    fn write_zeroes(&mut self, s: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        AsyncOutput::write_zeroes(self.0, s, len)
    }
    fn flush(&mut self, s: Resource<DynOutputStream>) -> StreamResult<()> {
        AsyncOutput::flush(self.0, s)
    }
    fn blocking_flush(&mut self, s: Resource<DynOutputStream>) -> StreamResult<()> {
        stream_once(AsyncOutput::blocking_flush(self.0, s))
    }
    fn splice(&mut self, dst: Resource<DynOutputStream>, src: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        AsyncOutput::splice(self.0, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_once(AsyncOutput::blocking_splice(self.0, dst, src, len))
    }
}

impl streams::HostInputStream for Once<'_> {
    fn drop(&mut self, s: Resource<DynInputStream>) -> wasmtime::Result<()> {
        once(AsyncInput::drop(self.0, s)).ok_or_else(blocked)?
    }
    fn read(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncInput::read(self.0, s, len)
    }
    fn blocking_read(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        stream_once(AsyncInput::blocking_read(self.0, s, len))
    }
    fn skip(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        AsyncInput::skip(self.0, s, len)
    }
    fn blocking_skip(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        stream_once(AsyncInput::blocking_skip(self.0, s, len))
    }
    fn subscribe(&mut self, s: Resource<DynInputStream>) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncInput::subscribe(self.0, s)
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
