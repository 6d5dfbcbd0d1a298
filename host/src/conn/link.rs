//! An upgraded connection's transport, shared: the connection's task reads and writes through
//! it, and while that task is idle, whoever queues frames for the connection (a publish to its
//! room, another connection's plugin) writes them itself ([`Flush`]) instead of waking it.
//!
//! Why: a publish to N members used to wake N tasks, and each turn of a task (its scheduling,
//! its state, re-arming its waits) cost more than encrypting and writing the frame. Order is
//! kept because every frame goes through the connection's queue, and only the holder of the
//! transport's lock takes frames from it to write them: the connection's task holds it for
//! each pass of its writer, others only try to take it.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use prometheus_client::metrics::counter::Counter;

use crate::clock::coarse_ms;
use crate::hub::{ConnShared, Flush, Outgoing};
use crate::metrics::Metrics;
use crate::transport::{Socket, Transport};
use crate::ws::{Opcode, encode_header};

/// Most frames and bytes written for a connection from outside its task at once: a small
/// backlog (one TLS record's worth). A bigger one waits for the connection's task, which
/// writes in larger batches and keeps its place in a frame the socket takes only part of.
const DIRECT_FRAMES: usize = 16;
const DIRECT_BYTES: usize = 16 << 10;

thread_local! {
    /// The frames taken and their encoding, lent to each direct write on this thread.
    static SCRATCH: RefCell<(Vec<Outgoing>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

pub(crate) struct Link<S: Socket> {
    /// `None` once the session is over: the rest of the connection's life is its task's alone.
    transport: Mutex<Option<Transport<S>>>,
    messages_out: Counter,
    bytes_out: Counter,
}

impl<S: Socket> Link<S> {
    pub fn new(t: Transport<S>, metrics: &Metrics) -> Arc<Link<S>> {
        Arc::new(Link {
            transport: Mutex::new(Some(t)),
            messages_out: metrics.messages_out.clone(),
            bytes_out: metrics.bytes_out.clone(),
        })
    }

    /// The socket's readiness to read, or with `write` to write. Polled under the lock (a
    /// direct write holds it for a few frames at most) so that the socket needs no handle of
    /// its own: an `Arc` per connection.
    pub fn poll_ready(&self, cx: &mut Context<'_>, write: bool) -> Poll<io::Result<()>> {
        match &*self.transport.lock() {
            Some(t) if write => t.socket().poll_write_ready(cx),
            Some(t) => t.socket().poll_read_ready(cx),
            None => Poll::Ready(Err(io::Error::other("the session is over"))),
        }
    }

    /// The transport, for the connection's task (never across an await).
    pub fn lock(&self) -> MappedMutexGuard<'_, Transport<S>> {
        MutexGuard::map(self.transport.lock(), |t| t.as_mut().expect("the transport is taken after the session only"))
    }

    /// Ends the sharing: the transport, back to the connection's task alone.
    pub fn take(&self) -> Option<Transport<S>> {
        self.transport.lock().take()
    }
}

impl<S: Socket> Flush for Link<S> {
    fn flush(&self, conn: &ConnShared) -> bool {
        let Some(mut guard) = self.transport.try_lock() else { return false };
        let Some(t) = guard.as_mut() else { return false };
        if !t.is_idle() {
            return false;
        }
        // `try_borrow_mut`: a write cannot start another on the same thread, but if one ever
        // did, it would wake the task rather than panic.
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else { return false };
            let (items, plain) = &mut *scratch;
            if !conn.take_all(items, DIRECT_FRAMES, DIRECT_BYTES) {
                return false;
            }
            if items.is_empty() {
                return true;
            }
            plain.clear();
            let (mut msgs, mut bytes) = (0u64, 0u64);
            for item in items.drain(..) {
                let (opcode, payload) = match &item {
                    Outgoing::Text(b) => (Opcode::Text, b),
                    Outgoing::Binary(b) => (Opcode::Binary, b),
                    // Uncompressed: a connection that agreed on compression keeps its queue to
                    // its own task (its compressor is there).
                    Outgoing::Shared { text, msg } => (if *text { Opcode::Text } else { Opcode::Binary }, &msg.payload),
                    Outgoing::Ping(b) => (Opcode::Ping, b),
                    Outgoing::Pong(b) => (Opcode::Pong, b),
                    // Never taken: a queue with a close in it stays with the connection's task.
                    Outgoing::Close(..) => continue,
                };
                if !opcode.is_control() {
                    msgs += 1;
                    bytes += payload.len() as u64;
                }
                let mut header = [0u8; 10];
                let n = encode_header(opcode, payload.len(), &mut header);
                plain.extend_from_slice(&header[..n]);
                plain.extend_from_slice(payload);
            }
            t.send_plain(plain);
            if msgs > 0 {
                conn.stats.msgs_out.fetch_add(msgs, Relaxed);
                conn.stats.bytes_out.fetch_add(bytes, Relaxed);
                conn.activity.last_message.store(coarse_ms(), Relaxed);
                self.messages_out.inc_by(msgs);
                self.bytes_out.inc_by(bytes);
            }
            // What the socket did not take (or a failure) is the task's to finish.
            t.is_idle()
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::transport::Trickle;
    use crate::ws::CloseCode;

    fn conn() -> ConnShared {
        let settings =
            crate::Settings::from_toml("[[routes]]\npath = \"/r\"\nbuiltin = \"echo\"\n", &crate::Overrides::default())
                .expect("settings");
        let addr = "127.0.0.1:9".parse().expect("addr");
        ConnShared::new(1, Arc::new(settings.routes[0].clone()), addr, Counter::default())
    }

    fn sink_link(room: usize) -> Arc<Link<Trickle>> {
        Link::new(Transport::plain(Trickle::with_room(room)), &Metrics::new())
    }

    fn written(link: &Link<Trickle>) -> Vec<u8> {
        link.lock().socket().taken()
    }

    fn text(s: &'static str) -> Outgoing {
        Outgoing::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn an_idle_connections_queue_is_written_whole_in_order_and_counted() {
        let (c, link) = (conn(), sink_link(1 << 20));
        assert_eq!(c.queue(text("one")), Ok(true), "an idle connection asks the caller to write");
        c.queue(Outgoing::Ping(Bytes::from_static(b"p"))).expect("queued");
        c.queue(Outgoing::Binary(Bytes::from_static(&[7, 8]))).expect("queued");
        assert!(link.flush(&c));
        assert_eq!(written(&link), [&[0x81, 3][..], b"one", &[0x89, 1], b"p", &[0x82, 2, 7, 8]].concat());
        assert!(!c.has_outgoing());
        let stats = (c.stats.msgs_out.load(Relaxed), c.stats.bytes_out.load(Relaxed));
        assert_eq!(stats, (2, 5), "data messages only");
    }

    #[test]
    fn frames_the_connections_task_holds_or_writes_go_first() {
        let (c, link) = (conn(), sink_link(1 << 20));
        c.queue(text("first")).expect("queued");
        let mut held = Vec::new();
        c.take_outgoing(&mut held, 8); // the task's writer has it, not yet handed over
        c.queue(text("second")).expect("queued");
        assert!(!link.flush(&c), "must wait for the writer's frame");
        c.release_outgoing(1, 5);
        {
            let _task = link.lock(); // the task is at the socket
            assert!(!link.flush(&c));
        }
        assert!(written(&link).is_empty() && c.has_outgoing(), "nothing written, nothing lost");
        assert!(link.flush(&c));
        assert_eq!(written(&link), [&[0x81, 6][..], b"second"].concat());
    }

    #[test]
    fn a_close_a_big_backlog_a_full_socket_or_the_sessions_end_leave_the_rest_to_the_task() {
        let (c, link) = (conn(), sink_link(1 << 20));
        c.queue(Outgoing::Text(Bytes::from(vec![b'x'; DIRECT_BYTES + 1]))).expect("queued");
        assert!(!link.flush(&c), "more than one record's worth");
        let mut held = Vec::new();
        c.take_outgoing(&mut held, 8);
        c.release_outgoing(1, DIRECT_BYTES + 1);

        c.queue(text("bye")).expect("queued");
        c.close(CloseCode::NORMAL, "done");
        assert!(!link.flush(&c), "the task sees its close out");

        let (c, link) = (conn(), sink_link(3));
        c.queue(text("partial")).expect("queued");
        assert!(!link.flush(&c), "the socket took 3 of 9 bytes");
        assert_eq!(written(&link), [0x81, 7, b'p']);
        c.queue(text("next")).expect("queued");
        assert!(!link.flush(&c), "behind the unsent rest");
        assert!(!link.lock().flush().expect("flush"), "the rest stays for the task to flush");

        let (c, link) = (conn(), sink_link(1 << 20));
        let t = link.take();
        c.queue(text("late")).expect("queued");
        assert!(!link.flush(&c) && c.has_outgoing());
        drop(t);
    }
}
