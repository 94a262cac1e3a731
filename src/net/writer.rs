//! A WebSocket connection's outbound queue and the task that drains it.
//!
//! Broadcast encodes a frame once and pushes the same `Rc<[u8]>` onto every recipient's
//! [`Outbox`]; pushing never does IO, it only queues and wakes the connection's writer task. The
//! writer runs later in the same event-loop pass and sends *everything* queued with one
//! `sendmsg` (up to [`MAX_IOVECS`] frames), so a burst of broadcasts costs one syscall and one
//! TCP segment per recipient instead of one per frame (worth ~10× on loopback: PERF-NOTES §3).
//!
//! The queue is bounded in bytes (`max_outbound_bytes`): a push that would pass the bound returns
//! [`SendStatus::Backpressure`], and the caller closes that connection (1008) without slowing
//! anyone else down.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    io::{self, IoSlice},
    os::fd::RawFd,
    rc::Rc,
    task::{Poll, Waker},
};

use smallvec::SmallVec;

use super::sock;

/// Frames handed to one `sendmsg` at most (Linux allows 1024; 64 frames already fill a segment
/// for any frame size that matters).
pub const MAX_IOVECS: usize = 64;

/// What happened to a pushed frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the writer will send it.
    Queued,
    /// Not queued: the connection's queue is over its byte bound. Close it.
    Backpressure,
    /// Not queued: the connection is closing or closed.
    Dropped,
}

/// Where the outbound side of a connection stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OutState {
    Open,
    /// A close frame is queued; nothing more is accepted. Once the queue drains the writer
    /// half-closes the socket.
    Closing,
    /// The connection is gone (peer reset, or the reader finished); the writer exits.
    Closed,
}

/// The bounded frame queue of one connection. Lives in an `Rc` shared by the room (pushers) and
/// the connection's reader and writer tasks; single-threaded, so `Cell`/`RefCell` suffice.
pub struct Outbox {
    frames: RefCell<VecDeque<Rc<[u8]>>>,
    /// Bytes of the front frame already sent (a `sendmsg` may stop mid-frame).
    sent_of_front: Cell<usize>,
    /// Bytes queued and not yet sent.
    queued: Cell<usize>,
    limit: usize,
    state: Cell<OutState>,
    /// The writer task, parked until there is something to send.
    writer: Cell<Option<Waker>>,
    /// Tasks waiting for the queue to drain or the state to change (the reader, when closing).
    watcher: Cell<Option<Waker>>,
    /// The socket, once the writer task owns it: lets `push` drain the queue when a burst
    /// reaches the bound (see `push`).
    fd: Cell<Option<RawFd>>,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Outbox {
            frames: RefCell::new(VecDeque::new()),
            sent_of_front: Cell::new(0),
            queued: Cell::new(0),
            limit,
            state: Cell::new(OutState::Open),
            writer: Cell::new(None),
            watcher: Cell::new(None),
            fd: Cell::new(None),
        }
    }

    pub fn state(&self) -> OutState {
        self.state.get()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued.get()
    }

    /// Queues a frame unless the connection is closing or the byte bound would be passed.
    ///
    /// Over the bound, the queue is first offered to the socket right here: a burst that
    /// arrives within one event-loop pass (say, a sender's 64 KiB read full of messages) can
    /// pass the bound before the recipient's writer task has had a chance to run, and a
    /// recipient that reads fine must not pay for that. Only a socket that will not take the
    /// bytes (a peer that really is slow) gets `Backpressure`.
    pub fn push(&self, frame: Rc<[u8]>) -> SendStatus {
        if self.state.get() != OutState::Open {
            return SendStatus::Dropped;
        }
        if self.queued.get() + frame.len() > self.limit {
            if let Some(fd) = self.fd.get() {
                match self.send_some(fd) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.shut();
                        return SendStatus::Dropped;
                    }
                }
            }
            if self.queued.get() + frame.len() > self.limit {
                return SendStatus::Backpressure;
            }
        }
        self.enqueue(frame);
        SendStatus::Queued
    }

    fn enqueue(&self, frame: Rc<[u8]>) {
        self.queued.set(self.queued.get() + frame.len());
        self.frames.borrow_mut().push_back(frame);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queues a final close frame and stops accepting more. With `discard_pending`, frames not
    /// yet started are dropped first (the peer is not reading; the close frame should not wait
    /// behind megabytes it will never take). Returns false if already closing.
    pub fn close_with(&self, frame: Rc<[u8]>, discard_pending: bool) -> bool {
        if self.state.get() != OutState::Open {
            return false;
        }
        if discard_pending {
            let mut frames = self.frames.borrow_mut();
            let keep = usize::from(self.sent_of_front.get() > 0);
            while frames.len() > keep {
                let f = frames.pop_back().expect("len > keep");
                self.queued.set(self.queued.get() - f.len());
            }
        }
        self.enqueue(frame);
        self.state.set(OutState::Closing);
        self.wake_watcher();
        true
    }

    /// Marks the connection gone: the writer exits and queued frames are dropped.
    pub fn shut(&self) {
        self.state.set(OutState::Closed);
        self.frames.borrow_mut().clear();
        self.queued.set(0);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        self.wake_watcher();
    }

    fn wake_watcher(&self) {
        if let Some(w) = self.watcher.take() {
            w.wake();
        }
    }

    /// Resolves once the state is no longer `Open` (a close was requested by anyone).
    pub async fn closing(&self) {
        poll_fn(|cx| {
            if self.state.get() != OutState::Open {
                Poll::Ready(())
            } else {
                self.watcher.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once everything queued has been sent, or the connection is gone.
    pub async fn drained(&self) {
        poll_fn(|cx| {
            if self.queued.get() == 0 || self.state.get() == OutState::Closed {
                Poll::Ready(())
            } else {
                self.watcher.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once the connection is `Closed` (used by the writer while it waits for room).
    async fn wait_closed(&self) {
        poll_fn(|cx| {
            if self.state.get() == OutState::Closed {
                Poll::Ready(())
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Sends as much of the queue as the socket takes now with one `sendmsg`.
    /// Returns true when the queue is empty afterwards.
    fn send_some(&self, fd: RawFd) -> io::Result<bool> {
        let n = {
            let frames = self.frames.borrow();
            if frames.is_empty() {
                return Ok(true);
            }
            let mut iov: SmallVec<[IoSlice<'_>; MAX_IOVECS]> = SmallVec::new();
            let skip = self.sent_of_front.get();
            for (i, f) in frames.iter().take(MAX_IOVECS).enumerate() {
                iov.push(IoSlice::new(if i == 0 { &f[skip..] } else { &f[..] }));
            }
            sock::sendv(fd, &iov)?
        };
        self.advance(n);
        Ok(self.queued.get() == 0)
    }

    fn advance(&self, mut n: usize) {
        self.queued.set(self.queued.get() - n);
        let mut frames = self.frames.borrow_mut();
        while n > 0 {
            let front_left = frames[0].len() - self.sent_of_front.get();
            if n >= front_left {
                n -= front_left;
                frames.pop_front();
                self.sent_of_front.set(0);
            } else {
                self.sent_of_front.set(self.sent_of_front.get() + n);
                n = 0;
            }
        }
        if frames.is_empty() {
            // A burst can leave a large ring behind; an idle connection should not keep it.
            if frames.capacity() > 64 {
                *frames = VecDeque::new();
            }
            drop(frames);
            self.wake_watcher();
        }
    }
}

/// The writer task of one connection: waits for frames, sends them, and half-closes the socket
/// after the close frame. Exits when the outbox is `Closed` or the socket fails.
pub async fn write_loop(outbox: Rc<Outbox>, stream: Rc<monoio::net::TcpStream>, fd: RawFd) {
    outbox.fd.set(Some(fd));
    loop {
        // Park until something is queued.
        poll_fn(|cx| {
            if outbox.queued.get() > 0 || outbox.state.get() == OutState::Closed {
                Poll::Ready(())
            } else {
                outbox.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        if outbox.state.get() == OutState::Closed {
            return;
        }
        loop {
            match outbox.send_some(fd) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Wait for room in the socket, unless the connection is torn down first
                    // (a peer that never reads must not keep this task and its fd alive).
                    monoio::select! {
                        r = stream.writable(false) => if r.is_err() {
                            outbox.shut();
                            return;
                        },
                        _ = outbox.wait_closed() => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "websocket write failed");
                    outbox.shut();
                    return;
                }
            }
        }
        if outbox.state.get() == OutState::Closing && outbox.queued.get() == 0 {
            // Our close frame is out: RFC 6455 §7.1.1 has the server close TCP first.
            sock::shutdown_write(fd);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::fd::AsRawFd, os::unix::net::UnixStream};

    use super::*;

    #[test]
    fn partial_sends_keep_frame_boundaries_and_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let outbox = Outbox::new(64 << 20);
        let mut want = Vec::new();
        for i in 0..300u32 {
            // Frames of varied sizes, so sends stop mid-frame.
            let frame: Vec<u8> = (0..(i * 97 % 5000 + 1)).map(|j| (i + j) as u8).collect();
            want.extend_from_slice(&frame);
            assert_eq!(outbox.push(frame.into()), SendStatus::Queued);
        }
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 7000];
        for _ in 0..100_000 {
            match outbox.send_some(a.as_raw_fd()) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
            let n = b.read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(outbox.queued_bytes(), 0);
        drop(a);
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn close_frame_jumps_the_queue_when_discarding() {
        let outbox = Outbox::new(100);
        assert_eq!(outbox.push(vec![1; 60].into()), SendStatus::Queued);
        assert_eq!(outbox.push(vec![2; 60].into()), SendStatus::Backpressure);
        assert!(outbox.close_with(vec![8; 4].into(), true));
        assert_eq!(
            outbox.queued_bytes(),
            4,
            "pending frames dropped, close queued"
        );
        assert_eq!(outbox.push(vec![3; 1].into()), SendStatus::Dropped);
        assert!(
            !outbox.close_with(vec![8; 4].into(), true),
            "only one close"
        );
        outbox.shut();
        assert_eq!(
            (outbox.state(), outbox.queued_bytes()),
            (OutState::Closed, 0)
        );
    }
}
