//! A client's byte stream: plain TCP or TLS (rustls driven directly, without an async wrapper),
//! with non-blocking reads that hand plaintext to a callback and vectored, batched writes.
//!
//! Driving rustls ourselves lets a read go straight from rustls's decrypted record into the
//! WebSocket decoder (no intermediate per-connection buffer), and lets many queued frames
//! become one TLS write and one syscall.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// What a read pass ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Nothing more to read now.
    WouldBlock,
    /// The read budget was used up; more may be waiting.
    Budget,
    /// The peer closed its side (cleanly or not).
    Eof,
}

/// A read failure: the transport's, or the callback's own error.
#[derive(Debug)]
pub enum ReadError<E> {
    Io(io::Error),
    Sink(E),
}

pub struct Transport {
    tcp: TcpStream,
    tls: Option<Box<ServerConnection>>,
    /// Plain mode only: accepted bytes the socket has not taken yet.
    pending: Vec<u8>,
}

/// Bytes buffered in rustls before `queue` refuses more (and the caller flushes).
const TLS_BUFFER_LIMIT: usize = 256 << 10;
/// Size of one plain-mode socket read.
const PLAIN_READ: usize = 64 << 10;

thread_local! {
    /// Scratch for plain-mode reads: reads and their processing never cross an await, so one
    /// buffer per thread serves every connection.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; PLAIN_READ]);
}

struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport {
    pub fn plain(tcp: TcpStream) -> Transport {
        Transport { tcp, tls: None, pending: Vec::new() }
    }

    pub fn tls(tcp: TcpStream, mut conn: ServerConnection) -> Transport {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Transport { tcp, tls: Some(Box::new(conn)), pending: Vec::new() }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Runs the TLS handshake to completion (no-op for plain TCP).
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            let Some(tls) = self.tls.as_deref_mut() else {
                return Ok(());
            };
            if !tls.is_handshaking() {
                break;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut TcpIo(&self.tcp)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.tcp.writable().await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !tls.is_handshaking() {
                break;
            }
            match tls.read_tls(&mut TcpIo(&self.tcp)) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed during TLS handshake"));
                }
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // Best effort: tell the peer why (the alert is queued by rustls).
                        let _ = tls.write_tls(&mut TcpIo(&self.tcp));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.readable().await?,
                Err(e) => return Err(e),
            }
        }
        self.flush_all().await
    }

    /// Reads what is available without waiting and hands plaintext to `sink`, until the socket
    /// would block, the peer closed, or about `budget` bytes were processed.
    pub fn read_with<E>(
        &mut self,
        budget: usize,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<ReadStatus, ReadError<E>> {
        let mut done = 0usize;
        match self.tls.as_deref_mut() {
            None => SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                loop {
                    if done >= budget {
                        return Ok(ReadStatus::Budget);
                    }
                    match self.tcp.try_read(&mut scratch) {
                        Ok(0) => return Ok(ReadStatus::Eof),
                        Ok(n) => {
                            done += n;
                            sink(&scratch[..n]).map_err(ReadError::Sink)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(ReadStatus::WouldBlock);
                        }
                        Err(e) => return Err(ReadError::Io(e)),
                    }
                }
            }),
            Some(tls) => loop {
                // Hand over plaintext rustls already has, chunk by chunk, without copying.
                let taken = {
                    let mut reader = tls.reader();
                    match io::BufRead::fill_buf(&mut reader) {
                        Ok([]) => return Ok(ReadStatus::Eof), // close_notify received
                        Ok(chunk) => {
                            sink(chunk).map_err(ReadError::Sink)?;
                            chunk.len()
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            return Ok(ReadStatus::Eof);
                        }
                        Err(e) => return Err(ReadError::Io(e)),
                    }
                };
                if taken > 0 {
                    io::BufRead::consume(&mut tls.reader(), taken);
                    done += taken;
                    continue;
                }
                if done >= budget {
                    return Ok(ReadStatus::Budget);
                }
                match tls.read_tls(&mut TcpIo(&self.tcp)) {
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            let _ = tls.write_tls(&mut TcpIo(&self.tcp));
                            return Err(ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(ReadStatus::WouldBlock);
                    }
                    Err(e) => return Err(ReadError::Io(e)),
                }
            },
        }
    }

    /// Accepts plaintext for sending; returns how many bytes were taken (TLS takes less when its
    /// buffer is full: flush and retry).
    pub fn queue(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            Some(tls) => tls.writer().write_vectored(bufs),
            None => {
                // Try the socket directly first; copy only what it does not take.
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                let mut written = 0;
                if self.pending.is_empty() {
                    match self.tcp.try_write_vectored(bufs) {
                        Ok(n) => written = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                if self.pending.len() >= TLS_BUFFER_LIMIT && written < total {
                    return Ok(written);
                }
                let mut skip = written;
                for b in bufs {
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    self.pending.extend_from_slice(&b[skip..]);
                    skip = 0;
                }
                Ok(total)
            }
        }
    }

    /// True while bytes wait to be written to the socket.
    pub fn wants_write(&self) -> bool {
        match &self.tls {
            Some(tls) => tls.wants_write(),
            None => !self.pending.is_empty(),
        }
    }

    /// Writes as much as the socket takes now; true when nothing is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self.tls.as_deref_mut() {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut TcpIo(&self.tcp)) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                Ok(true)
            }
            None => {
                while !self.pending.is_empty() {
                    match self.tcp.try_write(&self.pending) {
                        Ok(n) => {
                            self.pending.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                self.pending = Vec::new();
                Ok(true)
            }
        }
    }

    /// Writes everything, waiting for the socket as needed.
    pub async fn flush_all(&mut self) -> io::Result<()> {
        while !self.flush()? {
            self.tcp.writable().await?;
        }
        Ok(())
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Queues TLS close_notify (no-op for plain TCP).
    pub fn send_close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
        }
    }

    /// Subject of the verified client certificate, when mutual TLS presented one.
    pub fn client_cert_subject(&self) -> Option<String> {
        let certs = self.tls.as_ref()?.peer_certificates()?;
        crate::tls::subject_of(certs.first()?)
    }

    /// Negotiated TLS version, for the connection log.
    pub fn tls_version(&self) -> &'static str {
        match self.tls.as_ref().and_then(|t| t.protocol_version()) {
            None => "none",
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "other",
        }
    }
}
