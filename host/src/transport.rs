//! A client's byte stream: plain, or TLS through rustls's unbuffered API with buffers we own.
//! Reads hand plaintext to a callback; writes take many frames at once. The stream is any
//! [`Socket`]: TCP in the server, a Unix socket pair in tests.
//!
//! Why not an async TLS stream: owning the buffers is what keeps an idle connection small.
//! Bytes are read into a per-thread scratch buffer (reads and their processing never cross an
//! await), so a connection keeps receive bytes only while a TLS record is incomplete, and keeps
//! send bytes only while the socket is full. Both buffers are released as soon as they empty.
//! A buffered rustls connection would keep a 4 KiB read buffer per connection for its lifetime.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice, Read};
use std::task::{Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A non-blocking byte stream with readiness: what the transport needs from a socket.
pub(crate) trait Socket: Send + Sync + 'static {
    /// One read without waiting. A read that returns less than asked for means the socket is
    /// drained: readiness is cleared then, which spares the extra read that would only return
    /// EAGAIN (one syscall less per message).
    fn try_read_drained(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Readiness through the socket's own reader and writer wakers (a connection has one task
    /// waiting), polled so that the socket can be reached under a lock (see `conn::link`).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.poll_write_ready(cx))
    }
    /// Sends FIN (no more data from us), keeping the read side open.
    fn shutdown_write(&self);
}

macro_rules! tokio_socket {
    ($t:ty) => {
        impl Socket for $t {
            fn try_read_drained(&self, buf: &mut [u8]) -> io::Result<usize> {
                let mut got = None;
                let r = self.try_io(Interest::READABLE, || {
                    let n = (&*socket2::SockRef::from(self)).read(buf)?;
                    if n > 0 && n < buf.len() {
                        got = Some(n);
                        return Err(io::ErrorKind::WouldBlock.into()); // clears readiness
                    }
                    Ok(n)
                });
                match (r, got) {
                    (_, Some(n)) => Ok(n),
                    (r, None) => r,
                }
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$t>::try_write_vectored(self, bufs)
            }
            // Not tokio's `readable()` future: that one enters the socket's waiter list under
            // its lock on every wait and leaves it again when the session's `select!` drops it.
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_write_ready(self, cx)
            }
            fn shutdown_write(&self) {
                let _ = socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write);
            }
        }
    };
}
tokio_socket!(TcpStream);
tokio_socket!(UnixStream);

/// What a read pass ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStatus {
    /// Nothing more to read now.
    WouldBlock,
    /// The read budget was used up; more may be waiting.
    Budget,
    /// The peer closed its side (cleanly or not).
    Eof,
}

/// A read failure: the transport's, or the callback's own error.
#[derive(Debug)]
pub(crate) enum ReadError<E> {
    Io(io::Error),
    Sink(E),
}

impl<E> From<io::Error> for ReadError<E> {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

pub(crate) struct Transport<S: Socket = TcpStream> {
    socket: S,
    tls: Option<Box<UnbufferedServerConnection>>,
    /// Received TLS bytes not yet processed (an incomplete record); empty otherwise.
    inbuf: Vec<u8>,
    /// Bytes to send that the socket has not taken yet (ciphertext for TLS), from `out_pos`.
    outbuf: Vec<u8>,
    out_pos: usize,
    /// Plaintext that arrived with the end of the TLS handshake, before anyone read.
    early: Vec<u8>,
    /// The peer closed: TCP EOF, or TLS close_notify.
    peer_closed: bool,
    /// A write failed where nobody could be told (see [`Transport::send_plain`]): the next
    /// flush reports it.
    failed: Option<io::Error>,
}

/// One socket read's outcome.
enum Step {
    Read(usize),
    WouldBlock,
}

/// Size of one socket read.
const READ_SIZE: usize = 64 << 10;
/// Plaintext encrypted per call (four full TLS records).
const PLAIN_CHUNK: usize = 64 << 10;
/// Pending output beyond which `queue` takes no more until the socket drains.
const OUT_LIMIT: usize = 256 << 10;
/// Sent bytes at the front of the send buffer beyond which it is compacted, so a peer that
/// keeps the socket just short of drained does not make the buffer grow with everything sent.
const OUT_COMPACT: usize = 64 << 10;

thread_local! {
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
    static PLAIN_SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(PLAIN_CHUNK));
    static CIPHER_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; PLAIN_CHUNK + 4096]);
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: Socket> Transport<S> {
    pub fn plain(socket: S) -> Transport<S> {
        Transport {
            socket,
            tls: None,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            early: Vec::new(),
            peer_closed: false,
            failed: None,
        }
    }

    pub fn socket(&self) -> &S {
        &self.socket
    }

    pub fn tls(socket: S, conn: UnbufferedServerConnection) -> Transport<S> {
        Transport { tls: Some(Box::new(conn)), ..Transport::plain(socket) }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.try_read_drained(buf)
    }

    /// Runs the TLS handshake to completion (no-op for plain TCP).
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            let mut buf = std::mem::take(&mut self.inbuf);
            // Application data may follow the client's Finished in the same read: keep it.
            let mut early = std::mem::take(&mut self.early);
            let consumed = self.process_tls(&mut buf, &mut |plain: &[u8]| {
                early.extend_from_slice(plain);
                Ok::<(), io::Error>(())
            });
            self.early = early;
            buf.drain(..consumed.as_ref().map_or(0, |c| *c));
            // Emptied at the end of the handshake: let the ClientHello's buffer go rather than
            // keep it for the connection's life.
            self.inbuf = if buf.is_empty() { Vec::new() } else { buf };
            if let Err(ReadError::Io(e) | ReadError::Sink(e)) = consumed {
                // Send the alert rustls queued, if the socket takes it.
                let _ = self.flush();
                return Err(e);
            }
            self.flush_all().await?;
            if !self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                break;
            }
            if self.peer_closed {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed during TLS handshake"));
            }
            // More handshake bytes are needed. (The read goes through the thread's scratch:
            // a buffer in this async fn would live in every connection's task for good.)
            let got = READ_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let n = self.recv(&mut scratch[..16 << 10])?;
                if self.inbuf.len() + n > 64 << 10 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "handshake too large"));
                }
                self.inbuf.extend_from_slice(&scratch[..n]);
                Ok(n)
            });
            match got {
                Ok(0) => self.peer_closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.socket.readable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is available without waiting and hands plaintext to `sink`, until the socket
    /// would block, the peer closed, or about `budget` bytes were processed.
    pub fn read_with<E>(
        &mut self,
        budget: usize,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<ReadStatus, ReadError<E>> {
        let mut done = 0usize;
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            done += early.len();
            sink(&early).map_err(ReadError::Sink)?;
        }
        loop {
            if self.tls.is_some() && !self.inbuf.is_empty() {
                // An incomplete record that the last read completed.
                let mut buf = std::mem::take(&mut self.inbuf);
                let consumed = match self.process_tls(&mut buf, &mut sink) {
                    Ok(c) => c,
                    Err(e) => {
                        self.inbuf = buf;
                        return Err(e);
                    }
                };
                buf.drain(..consumed);
                if !buf.is_empty() {
                    self.inbuf = buf;
                }
            }
            if self.peer_closed {
                return Ok(ReadStatus::Eof);
            }
            if done >= budget {
                return Ok(ReadStatus::Budget);
            }
            let step = READ_SCRATCH.with(|scratch| -> Result<Step, ReadError<E>> {
                let mut scratch = scratch.borrow_mut();
                let n = match self.recv(&mut scratch) {
                    Ok(0) => {
                        self.peer_closed = true;
                        return Ok(Step::Read(0));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::WouldBlock),
                    Err(e) => return Err(ReadError::Io(e)),
                };
                if self.tls.is_none() {
                    sink(&scratch[..n]).map_err(ReadError::Sink)?;
                } else if self.inbuf.is_empty() {
                    // The common case: whole records, processed straight from the scratch;
                    // only an incomplete tail is kept.
                    let consumed = self.process_tls(&mut scratch[..n], &mut sink)?;
                    if consumed < n {
                        self.inbuf = scratch[consumed..n].to_vec();
                    }
                } else {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                }
                Ok(Step::Read(n))
            })?;
            match step {
                Step::WouldBlock => return Ok(ReadStatus::WouldBlock),
                Step::Read(n) => done += n,
            }
        }
    }

    /// Feeds TLS records from `buf` through rustls: application data goes to `sink`, handshake
    /// and alert output is appended to the send buffer. Returns how many bytes of `buf` were
    /// consumed (the rest is an incomplete record).
    fn process_tls<E>(
        &mut self,
        buf: &mut [u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, ReadError<E>> {
        let Some(tls) = self.tls.as_deref_mut() else { return Ok(0) };
        let mut pos = 0;
        loop {
            let status = tls.process_tls_records(&mut buf[pos..]);
            let discard = status.discard;
            let state = status.state.map_err(tls_error)?;
            let more = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        sink(record.payload).map_err(ReadError::Sink)?;
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outbuf, |out| encode.encode(out))?;
                    true
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // The records are in `outbuf`, ahead of anything sent later: sent in order.
                    transmit.done();
                    true
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                    false
                }
                // Need more bytes (mid-record, or mid-handshake), or nothing left to read.
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => false,
                // 0-RTT is not enabled; anything else is for future rustls versions.
                _ => false,
            };
            pos += discard;
            if !more {
                return Ok(pos);
            }
        }
    }

    /// Accepts plaintext for sending; returns how many bytes were taken (less when the send
    /// buffer is full: flush and retry).
    pub fn queue(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.outbuf.len() - self.out_pos >= OUT_LIMIT {
            return Ok(0);
        }
        match self.tls.is_some() {
            false => {
                // Straight to the socket when nothing waits; copy only what it does not take.
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                let mut written = 0;
                if self.out_pos == self.outbuf.len() {
                    match self.socket.try_write_vectored(bufs) {
                        Ok(n) => written = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                let mut skip = written;
                for b in bufs {
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    self.outbuf.extend_from_slice(&b[skip..]);
                    skip = 0;
                }
                Ok(total)
            }
            true => PLAIN_SCRATCH.with(|plain| {
                let mut plain = plain.borrow_mut();
                plain.clear();
                for b in bufs {
                    let room = PLAIN_CHUNK - plain.len();
                    if room == 0 {
                        break;
                    }
                    plain.extend_from_slice(&b[..b.len().min(room)]);
                }
                self.encrypt(&plain)?;
                Ok(plain.len())
            }),
        }
    }

    /// Nothing waits to be written: what is sent now goes straight to the socket.
    pub fn is_idle(&self) -> bool {
        self.out_pos == self.outbuf.len() && self.failed.is_none()
    }

    /// Sends `plain` whole (encrypted, for TLS) after anything pending, keeping what the socket
    /// does not take. A failure is kept for the next [`flush`](Self::flush) when the caller
    /// cannot act on it.
    pub fn send_plain(&mut self, plain: &[u8]) {
        let sent = if self.tls.is_some() { self.encrypt(plain) } else { self.send_bytes(plain) };
        if let Err(e) = sent {
            self.failed = Some(e);
        }
    }

    /// Encrypts `plain` into records and sends them (or keeps what the socket does not take).
    fn encrypt(&mut self, plain: &[u8]) -> io::Result<()> {
        CIPHER_SCRATCH.with(|cipher| {
            let mut cipher = cipher.borrow_mut();
            let n = loop {
                let Some(tls) = self.tls.as_deref_mut() else { return Ok(()) };
                let status = tls.process_tls_records(&mut []);
                match status.state.map_err(tls_error)? {
                    ConnectionState::WriteTraffic(mut w) => match w.encrypt(plain, &mut cipher) {
                        Ok(n) => break n,
                        Err(EncryptError::InsufficientSize(s)) => cipher.resize(s.required_size, 0),
                        Err(e) => return Err(io::Error::other(e.to_string())),
                    },
                    ConnectionState::EncodeTlsData(mut encode) => {
                        encode_into(&mut self.outbuf, |out| encode.encode(out))?;
                    }
                    ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                    ConnectionState::ReadTraffic(mut records) => {
                        // Plaintext nobody will read any more (reading stopped at a close or a
                        // protocol error): discard it so sending can go on.
                        while records.next_record().is_some() {}
                    }
                    other => return Err(io::Error::other(format!("cannot send in TLS state {other:?}"))),
                }
            };
            self.send_bytes(&cipher[..n])
        })
    }

    /// Writes `bytes` now if nothing is queued before them, keeping what the socket refuses.
    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut written = 0;
        if self.out_pos == self.outbuf.len() {
            match self.socket.try_write(bytes) {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if written < bytes.len() {
            self.outbuf.extend_from_slice(&bytes[written..]);
        }
        Ok(())
    }

    /// Writes as much as the socket takes now; true when nothing is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        while self.out_pos < self.outbuf.len() {
            match self.socket.try_write(&self.outbuf[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.out_pos >= OUT_COMPACT {
                        self.outbuf.drain(..self.out_pos);
                        self.out_pos = 0;
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        // Everything went out: give the buffer back.
        self.outbuf = Vec::new();
        self.out_pos = 0;
        Ok(true)
    }

    /// Writes everything, waiting for the socket as needed.
    pub async fn flush_all(&mut self) -> io::Result<()> {
        while !self.flush()? {
            self.socket.writable().await?;
        }
        Ok(())
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Sends FIN: no more bytes from us (after what is already written).
    pub fn shutdown_write(&self) {
        self.socket.shutdown_write();
    }

    /// Queues TLS close_notify (no-op for plain TCP or if TLS cannot send any more).
    pub fn send_close_notify(&mut self) {
        let Some(tls) = self.tls.as_deref_mut() else { return };
        let mut alert = [0u8; 64];
        let n = match tls.process_tls_records(&mut []).state {
            Ok(ConnectionState::WriteTraffic(mut w)) => w.queue_close_notify(&mut alert).unwrap_or(0),
            _ => 0,
        };
        if n > 0 {
            let _ = self.send_bytes(&alert[..n]);
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

/// Appends a handshake record produced by `encode` to `out`, growing it as rustls asks.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) -> io::Result<()> {
    let start = out.len();
    let mut room = 4096;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(e) => {
                out.truncate(start);
                return Err(io::Error::other(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    use super::*;
    use crate::config::{ClientAuth, TlsMode, TlsSettings};

    /// Plaintext read until `want` bytes arrived.
    async fn read_exactly(t: &mut Transport<UnixStream>, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < want {
            let status = t.read_with(1 << 20, |c| {
                got.extend_from_slice(c);
                Ok::<(), ()>(())
            });
            if matches!(status, Ok(ReadStatus::WouldBlock)) && got.len() < want {
                t.readable().await.expect("readable");
            }
        }
        got
    }

    #[tokio::test]
    async fn tls_over_any_stream_handshakes_reads_writes_and_ends() {
        let dir = std::env::temp_dir().join(format!("wasmsock-transport-{}", std::process::id()));
        let tls = TlsSettings { mode: TlsMode::Dev, client_ca: None, client_auth: ClientAuth::Off };
        let setup = crate::tls::setup(&tls, &dir).expect("dev certificate").expect("TLS on");
        let ca = setup.dev_cert.clone().expect("dev cert path");
        let (server_end, client_end) = UnixStream::pair().expect("pair");
        let conn = UnbufferedServerConnection::new(setup.config.clone()).expect("session");
        let mut t = Transport::tls(server_end, conn);

        // A real rustls client on the other end, blocking, in a thread.
        let client_end = client_end.into_std().expect("std");
        client_end.set_nonblocking(false).expect("blocking");
        let client = std::thread::spawn(move || {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(&ca).expect("pem") {
                roots.add(cert.expect("cert")).expect("root");
            }
            let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
            let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
            let mut sock = client_end;
            let mut stream = rustls::Stream::new(&mut conn, &mut sock);
            stream.write_all(b"hello").expect("write");
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply).expect("read");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest); // ends at the server's close_notify
            conn.send_close_notify();
            let _ = conn.write_tls(&mut sock);
            (reply, rest)
        });

        t.handshake().await.expect("handshake");
        assert_eq!(t.tls_version(), "TLSv1.3");
        assert_eq!(read_exactly(&mut t, 5).await, b"hello");
        assert_eq!(t.queue(&[IoSlice::new(b"wor"), IoSlice::new(b"ld")]).expect("queue"), 5);
        t.flush_all().await.expect("flush");
        t.send_close_notify();
        t.flush_all().await.expect("flush");
        let (reply, rest) =
            tokio::task::spawn_blocking(move || client.join().expect("client thread")).await.expect("join");
        assert_eq!(&reply, b"world");
        assert!(rest.is_empty());
        // The client's close_notify reads as the end of the stream.
        loop {
            match t.read_with(1 << 20, |_| Ok::<(), ()>(())) {
                Ok(ReadStatus::Eof) => break,
                Ok(ReadStatus::WouldBlock) => t.readable().await.expect("readable"),
                other => panic!("unexpected {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_send_buffer_does_not_grow_with_what_a_slow_reader_took() {
        let mut t = Transport::plain(Trickle::default());
        let chunk = vec![7u8; 16 << 10];
        t.queue(&[IoSlice::new(&chunk), IoSlice::new(&chunk)]).expect("queue");
        // The peer takes as much as we send, so the buffer never drains completely and is never
        // given back whole; what was sent must still not pile up in front of what was not.
        let mut most = 0;
        for _ in 0..500 {
            t.socket.give(chunk.len());
            assert!(!t.flush().expect("flush"));
            t.queue(&[IoSlice::new(&chunk)]).expect("queue");
            most = most.max(t.outbuf.len());
        }
        assert!(most <= OUT_COMPACT + 2 * chunk.len(), "send buffer reached {most} bytes");
    }

    #[test]
    fn an_idle_transport_is_small() {
        // Part of every connection's idle cost (see BENCHMARKS.md, memory per connection).
        assert!(std::mem::size_of::<Transport>() <= 160, "{}", std::mem::size_of::<Transport>());
    }
}

/// A socket in memory for tests: keeps what it takes, at most `room` bytes until given more.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Trickle {
    room: std::sync::Mutex<usize>,
    got: std::sync::Mutex<Vec<u8>>,
}

#[cfg(test)]
impl Trickle {
    pub fn with_room(room: usize) -> Trickle {
        Trickle { room: std::sync::Mutex::new(room), got: Default::default() }
    }

    /// Lets it take `more` bytes.
    pub fn give(&self, more: usize) {
        *self.room.lock().expect("lock") += more;
    }

    /// What it took so far.
    pub fn taken(&self) -> Vec<u8> {
        self.got.lock().expect("lock").clone()
    }
}

#[cfg(test)]
impl Socket for Trickle {
    fn try_read_drained(&self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut room = self.room.lock().expect("lock");
        let n = buf.len().min(*room);
        *room -= n;
        self.got.lock().expect("lock").extend_from_slice(&buf[..n]);
        if n == 0 { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(n) }
    }
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_write(bufs.first().map_or(&[][..], |b| &b[..]))
    }
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn shutdown_write(&self) {}
}
