//! WebSocket output: each connection's bounded frame queue ([`Outbox`]) and the core's
//! [`Flusher`], which sends every queue that has something in it once per event-loop pass.
//!
//! Broadcast encodes a frame once and pushes the same `Rc<[u8]>` onto every recipient's
//! `Outbox`; pushing does no IO, it only queues and puts the outbox on the core's dirty list
//! (once per pass, however many frames arrive). The flusher task runs after the task that
//! pushed yields, and sends *everything* queued for each dirty connection with one `sendmsg`
//! (up to [`MAX_IOVECS`] frames), so a burst of broadcasts costs one syscall and one TCP segment
//! per recipient instead of one per frame (worth ~10x on loopback: docs/loopback-costs.md).
//!
//! With the send ring (`--ws-send auto`, the default, where the kernel has it, or `ring`) the pass's sends become SQEs on the core's second io_uring instead, all
//! submitted 16 per enter ([`RecvRing::send_batch`]); each completes inside its submit
//! (`MSG_DONTWAIT`), so the flusher takes every result before anything else runs, as it takes a
//! `sendmsg`'s, and nothing is in flight between passes (but after a ring failure, whose
//! connections are closed: docs/ring-modes.md).
//!
//! There is no writer task per connection: an idle connection costs its queue and nothing
//! else. Only a connection whose socket is full (a slow reader) gets a short-lived drain task,
//! which waits for writability, sends, and exits once its queue is empty.
//!
//! The queue is bounded in bytes (`max_outbound_bytes`): a push that would pass the bound first
//! offers the queue to the socket, and if the socket will not take it returns
//! [`SendStatus::Backpressure`]; the caller closes that connection (1008) without slowing anyone
//! else down.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    io::{self, IoSlice},
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    rc::{Rc, Weak},
    task::{Poll, Waker},
};

use monoio::net::TcpStream;
use smallvec::SmallVec;

use super::{recv_ring::RecvRing, send_batch::SendBatch, sock};
use crate::metrics::Metrics;

/// Frames handed to one `sendmsg` at most (Linux allows 1024; 64 frames already fill a segment
/// for any frame size that matters).
pub const MAX_IOVECS: usize = 64;

/// Frames totalling at most this many bytes are copied into one buffer before sending.
const CORK_MAX: usize = 16 * 1024;

/// Sends per submit at most, with `--ws-send ring` (the ring's submission queue holds 1,024,
/// some of them the poller's receives).
const RING_SENDS_MAX: usize = 256;
/// Bytes corked into one ring batch at most, before it is submitted.
const RING_COPY_MAX: usize = 512 * 1024;

thread_local! {
    /// The core's cork buffer (each core is one thread).
    static CORK: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(CORK_MAX));
}

/// `Outbox::parked` of a connection that is not parked in the core's poller.
pub use super::poller::NOT_PARKED;

/// What happened to a pushed frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the flusher will send it.
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
    /// A close frame is queued; nothing more is accepted. Once the queue drains the socket is
    /// half-closed (RFC 6455 7.1.1: the server closes TCP first).
    Closing,
    /// The connection is gone (peer reset, or the reader finished); queued frames are dropped.
    Closed,
}

/// A connection's socket. An idle connection needs only its descriptor: readiness comes from
/// the core's poller, reads and sends are plain syscalls. A monoio stream (~160 bytes over two
/// allocations) is made the first time a task must wait for readiness itself (a closing
/// handshake, a full socket) and kept from then on.
enum Sock {
    Fd(OwnedFd),
    Stream(Rc<TcpStream>),
}

impl Sock {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Fd(fd) => fd.as_fd(),
            Sock::Stream(s) => sock::fd_of(s),
        }
    }
}

/// An outbox's two ends, in one cell.
struct Ends {
    /// `None` for a detached outbox (unit tests) and after `shut`.
    io: Option<Io>,
    /// `None` for a detached outbox, and once closed (see [`Outbox`]).
    sock: Option<Sock>,
}

/// The flusher side of an outbox, present from `attach` until `shut`.
struct Io {
    flusher: Rc<Flusher>,
    /// This outbox, for putting it on the flusher's dirty list from `&self`.
    me: Weak<Outbox>,
}

/// The bounded frame queue of one connection. Lives in an `Rc` shared by the room (pushers),
/// the connection's reader, and (while it is dirty) the core's flusher; single-threaded, so
/// `Cell`/`RefCell` suffice.
///
/// It also owns the connection's socket, which its reader reads through it ([`Outbox::recv`]):
/// the socket is closed once the outbox is shut and the reader has let go
/// ([`Outbox::release_reader`]), or when the outbox is dropped. Nobody keeps the descriptor's
/// number past a borrow, so it can never name another file later.
pub struct Outbox {
    frames: RefCell<VecDeque<Rc<[u8]>>>,
    /// Bytes queued and not yet sent.
    queued: Cell<usize>,
    /// The bound on `queued` (a limit over 4 GiB is taken as 4 GiB). Every queued frame is at
    /// most this long, but for the close frame (at most 125 bytes of payload).
    limit: u32,
    /// Bytes of the front frame already sent (a `sendmsg` may stop mid-frame).
    sent_of_front: Cell<u32>,
    state: Cell<OutState>,
    /// On the flusher's dirty list.
    scheduled: Cell<bool>,
    /// The socket was full: a drain task owns sending until the queue is empty.
    blocked: Cell<bool>,
    /// The connection's slot in the core's WebSocket poller while it is
    /// parked there ([`NOT_PARKED`] otherwise): a close from our side must take it out, as
    /// nothing else would notice until the peer sends something.
    parked: Cell<u32>,
    /// The tasks waiting on this outbox, boxed the first time one waits: an idle connection
    /// waits in the core's poller, not here.
    waiters: Cell<Option<Box<Waiters>>>,
    ends: RefCell<Ends>,
    /// The reader still uses the socket (set by `attached`).
    reader: Cell<bool>,
}

// One per open WebSocket, in an `Rc`: with the `Rc`'s two counts it takes 128 bytes, one of
// mimalloc's size classes; 8 more would put it in the 160-byte class.
const _: () = assert!(std::mem::size_of::<Outbox>() <= 112);

/// Who waits on an outbox (see `Outbox::waiters`).
#[derive(Default)]
struct Waiters {
    /// The drain task, waiting for writability or for `shut`.
    drainer: Option<Waker>,
    /// The reader's task, waiting for the queue to drain or the state to change.
    watcher: Option<Waker>,
}

/// Which of [`Waiters`].
#[derive(Copy, Clone)]
enum Waiter {
    Drainer,
    Watcher,
}

impl Waiters {
    fn slot(&mut self, which: Waiter) -> &mut Option<Waker> {
        match which {
            Waiter::Drainer => &mut self.drainer,
            Waiter::Watcher => &mut self.watcher,
        }
    }
}

impl Outbox {
    /// A detached outbox: it queues but never sends by itself (for tests).
    pub fn new(limit: usize) -> Self {
        Outbox {
            frames: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            sent_of_front: Cell::new(0),
            state: Cell::new(OutState::Open),
            scheduled: Cell::new(false),
            blocked: Cell::new(false),
            parked: Cell::new(NOT_PARKED),
            waiters: Cell::new(None),
            ends: RefCell::new(Ends {
                io: None,
                sock: None,
            }),
            reader: Cell::new(false),
        }
    }

    /// An outbox that sends on `socket` through the core's `flusher`, for a connection whose
    /// reader reads `socket` through it until [`Outbox::release_reader`].
    pub fn attached(limit: usize, flusher: Rc<Flusher>, socket: OwnedFd) -> Rc<Self> {
        Rc::new_cyclic(|me| {
            let outbox = Outbox::new(limit);
            *outbox.ends.borrow_mut() = Ends {
                io: Some(Io {
                    flusher,
                    me: me.clone(),
                }),
                sock: Some(Sock::Fd(socket)),
            };
            outbox.reader.set(true);
            outbox
        })
    }

    pub fn state(&self) -> OutState {
        self.state.get()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued.get()
    }

    /// The frames waiting to be sent, in order (for tests that check what was queued, and
    /// that a broadcast shares one frame among its recipients).
    #[cfg(test)]
    pub(crate) fn queued_frames(&self) -> Vec<Rc<[u8]>> {
        self.frames.borrow().iter().cloned().collect()
    }

    /// Runs `f` on the socket while the outbox is attached (`None` after `shut`). `f` must not
    /// shut the outbox.
    fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        let ends = self.ends.borrow();
        match (&ends.io, &ends.sock) {
            (Some(_), Some(s)) => Some(f(s.fd())),
            _ => None,
        }
    }

    /// Reads from the socket into `buf` (the reader's side; see [`sock::recv`]). `Ok(0)` once
    /// the socket is closed.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.ends.borrow().sock.as_ref() {
            Some(s) => sock::recv(s.fd(), buf),
            None => Ok(0),
        }
    }

    /// The socket's descriptor for as long as it is open (-1 once closed): for registering it
    /// elsewhere (the core's poller), never for keeping.
    pub fn raw_fd(&self) -> RawFd {
        self.ends.borrow().sock.as_ref().map_or(-1, |s| s.fd().as_raw_fd())
    }

    /// The socket as a monoio stream, for a task that waits for its readiness; `None` once it is
    /// closed. The first call makes the stream (see [`Sock`]); if monoio cannot take the
    /// descriptor (the epoll driver's registration failed) the socket is closed, and the caller
    /// treats the connection as gone.
    pub fn stream(&self) -> Option<Rc<TcpStream>> {
        let mut ends = self.ends.borrow_mut();
        let sock = &mut ends.sock;
        let stream = match sock.take()? {
            Sock::Stream(s) => s,
            Sock::Fd(fd) => match TcpStream::from_std(std::net::TcpStream::from(fd)) {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for a websocket's readiness: closed");
                    return None;
                }
            },
        };
        *sock = Some(Sock::Stream(stream.clone()));
        Some(stream)
    }

    /// The reader is done with the socket: it is closed now if the outbox is shut already.
    pub fn release_reader(&self) {
        self.reader.set(false);
        if self.state.get() == OutState::Closed {
            self.ends.borrow_mut().sock.take();
        }
    }

    /// Queues a frame unless the connection is closing or the byte bound would be passed.
    ///
    /// Over the bound, the queue is first offered to the socket right here: a burst that
    /// arrives within one event-loop pass (say, a sender's 64 KiB read full of messages) can
    /// pass the bound before the flusher has had a chance to run, and a recipient that reads
    /// fine must not pay for that. Only a socket that will not take the bytes (a peer that
    /// really is slow) gets `Backpressure`.
    pub fn push(&self, frame: Rc<[u8]>) -> SendStatus {
        if self.state.get() != OutState::Open {
            return SendStatus::Dropped;
        }
        if self.queued.get() + frame.len() > self.limit as usize {
            if !self.blocked.get() {
                match self.with_fd(|fd| self.send_some(fd)) {
                    Some(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                        self.shut();
                        return SendStatus::Dropped;
                    }
                    _ => {}
                }
            }
            if self.queued.get() + frame.len() > self.limit as usize {
                return SendStatus::Backpressure;
            }
        }
        self.enqueue(frame);
        SendStatus::Queued
    }

    fn enqueue(&self, frame: Rc<[u8]>) {
        self.queued.set(self.queued.get() + frame.len());
        self.frames.borrow_mut().push_back(frame);
        if let Some(io) = self.ends.borrow().io.as_ref() {
            io.flusher.metrics.ws_frames_queued.inc();
        }
        self.schedule();
    }

    /// The core's counters, while the outbox is attached (for the rare events counted outside
    /// this file, such as a close for overflow).
    pub fn metrics(&self) -> Option<Rc<Metrics>> {
        self.ends
            .borrow()
            .io
            .as_ref()
            .map(|io| io.flusher.metrics.clone())
    }

    /// Puts this outbox on the flusher's dirty list (once per pass; not while a drain task
    /// owns it).
    fn schedule(&self) {
        if self.scheduled.get() || self.blocked.get() {
            return;
        }
        let ends = self.ends.borrow();
        let Some(io) = ends.io.as_ref() else { return };
        let Some(me) = io.me.upgrade() else { return };
        self.scheduled.set(true);
        io.flusher.schedule(me);
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
        self.state.set(OutState::Closing);
        self.enqueue(frame);
        self.wake_watcher();
        self.unpark();
        true
    }

    /// Records where the connection is parked in the core's poller (or `NOT_PARKED`).
    pub(crate) fn set_parked(&self, slot: u32) {
        self.parked.set(slot);
    }

    /// The state left `Open`: a parked connection is handed back to a task, which runs the
    /// closing handshake (with its timeout).
    fn unpark(&self) {
        let slot = self.parked.get();
        if slot != NOT_PARKED {
            let flusher = self.ends.borrow().io.as_ref().map(|io| io.flusher.clone());
            if let Some(flusher) = flusher {
                flusher.unpark(slot as usize);
            }
        }
    }

    /// Marks the connection gone: queued frames are dropped, the socket is released (closed
    /// now unless the reader still uses it) and any drain task exits.
    pub fn shut(&self) {
        self.state.set(OutState::Closed);
        self.frames.borrow_mut().clear();
        self.queued.set(0);
        let io = self.ends.borrow_mut().io.take();
        self.wake(Waiter::Drainer);
        self.wake(Waiter::Watcher);
        let slot = self.parked.get();
        if let (Some(io), true) = (&io, slot != NOT_PARKED) {
            io.flusher.unpark(slot as usize);
        }
        drop(io);
        if !self.reader.get() {
            self.ends.borrow_mut().sock.take();
        }
    }

    fn wake_watcher(&self) {
        self.wake(Waiter::Watcher);
    }

    fn wake(&self, which: Waiter) {
        let Some(mut waiters) = self.waiters.take() else {
            return;
        };
        let waker = waiters.slot(which).take();
        self.waiters.set(Some(waiters));
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Registers `waker` as `which` (replacing the one before).
    fn wait(&self, which: Waiter, waker: &Waker) {
        let mut waiters = self.waiters.take().unwrap_or_default();
        *waiters.slot(which) = Some(waker.clone());
        self.waiters.set(Some(waiters));
    }

    /// Resolves once the state is no longer `Open` (a close was requested by anyone).
    pub async fn closing(&self) {
        poll_fn(|cx| {
            if self.state.get() != OutState::Open {
                Poll::Ready(())
            } else {
                self.wait(Waiter::Watcher, cx.waker());
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
                self.wait(Waiter::Watcher, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once the connection is `Closed` (the drain task's way out).
    async fn wait_closed(&self) {
        poll_fn(|cx| {
            if self.state.get() == OutState::Closed {
                Poll::Ready(())
            } else {
                self.wait(Waiter::Drainer, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Sends as much of the queue as the socket takes now with one `sendmsg`.
    /// Returns true when the queue is empty afterwards.
    fn send_some(&self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        let n = {
            let frames = self.frames.borrow();
            if frames.is_empty() {
                return Ok(true);
            }
            let mut iov: SmallVec<[IoSlice<'_>; MAX_IOVECS]> = SmallVec::new();
            let skip = self.sent_of_front.get() as usize;
            let mut total = 0;
            for (i, f) in frames.iter().take(MAX_IOVECS).enumerate() {
                let part = if i == 0 { &f[skip..] } else { &f[..] };
                total += part.len();
                iov.push(IoSlice::new(part));
            }
            if iov.len() > 1 && total <= CORK_MAX {
                // Several small frames: copy them into one buffer and send that, as uWS corks.
                // The kernel then copies one contiguous run into its buffers instead of walking
                // a list of small iovecs, which costs less than the copy here.
                CORK.with(|cork| {
                    let mut cork = cork.borrow_mut();
                    cork.clear();
                    for part in &iov {
                        cork.extend_from_slice(part);
                    }
                    sock::send(fd, &cork)
                })?
            } else {
                sock::sendv(fd, &iov)?
            }
        };
        if let Some(io) = self.ends.borrow().io.as_ref() {
            io.flusher.metrics.sent_bytes.add(n as u64);
        }
        self.advance(n);
        Ok(self.queued.get() == 0)
    }

    fn advance(&self, mut n: usize) {
        self.queued.set(self.queued.get() - n);
        let mut frames = self.frames.borrow_mut();
        while n > 0 {
            let front_left = frames[0].len() - self.sent_of_front.get() as usize;
            if n >= front_left {
                n -= front_left;
                frames.pop_front();
                self.sent_of_front.set(0);
            } else {
                // `n` < `front_left`, and a frame is at most `limit` (a `u32`) long.
                self.sent_of_front.set(self.sent_of_front.get() + n as u32);
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

    /// Sends what the socket takes now (the flusher's part). A full socket hands the rest to a
    /// drain task; a failed one shuts the outbox.
    fn flush(self: &Rc<Self>) {
        let sent = self.with_fd(|fd| loop {
            match self.send_some(fd) {
                Ok(true) => {
                    self.after_drained(fd);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        });
        match sent {
            None | Some(Ok(())) => {}
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => self.block(),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket write failed");
                self.shut();
            }
        }
    }

    /// The socket is full: a drain task sends the rest as it takes it.
    fn block(self: &Rc<Self>) {
        self.blocked.set(true);
        monoio::spawn(drain(self.clone()));
    }

    /// Once our close frame is out, half-close the socket.
    fn after_drained(&self, fd: BorrowedFd<'_>) {
        if self.state.get() == OutState::Closing && self.queued.get() == 0 {
            sock::shutdown_write(fd);
        }
    }
}

/// Sends a blocked connection's queue as its socket accepts it, then hands it back to the
/// flusher. Exits early if the connection is shut (a peer that never reads must not keep this
/// task, or the socket, alive).
async fn drain(outbox: Rc<Outbox>) {
    let Some(stream) = outbox.stream() else {
        outbox.shut();
        return;
    };
    let fd = sock::fd_of(&stream);
    loop {
        monoio::select! {
            r = stream.writable(false) => if r.is_err() {
                outbox.shut();
                return;
            },
            _ = outbox.wait_closed() => return,
        }
        match outbox.send_some(fd) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                outbox.shut();
                return;
            }
        }
    }
    outbox.blocked.set(false);
    outbox.after_drained(fd);
}

/// What [`Flusher::on_unpark`] calls, with the parked connection's slot.
pub type Unparker = Box<dyn Fn(usize)>;

/// A core's list of outboxes with something to send, and the task that sends them.
pub struct Flusher {
    dirty: RefCell<Vec<Rc<Outbox>>>,
    /// The flusher task, parked while the list is empty.
    waker: Cell<Option<Waker>>,
    /// The core's counters, reached by every attached outbox through its `Io` (so an outbox
    /// carries no pointer of its own for them).
    metrics: Rc<Metrics>,
    /// Called with a parked connection's slot when our side closes it or its outbox is shut
    /// (the owner of the poller hands that connection back to a task). Only on close paths.
    unparker: RefCell<Option<Unparker>>,
    /// With the send ring (`--ws-send auto` or `ring`): the core's ring, which each pass's sends go through
    /// ([`Flusher::send_through`]), and the batch they are built in.
    ring: RefCell<Option<Rc<RefCell<RecvRing>>>>,
    batch: RefCell<SendBatch>,
    /// The outboxes of the batch being sent (see `Flusher::flush_through`).
    members: RefCell<Vec<RingMember>>,
}

/// An outbox in a ring batch: the bytes its send offered, and the send's outcome.
type RingMember = (Rc<Outbox>, usize, Option<i32>);

impl Flusher {
    pub fn new(metrics: Rc<Metrics>) -> Rc<Self> {
        Rc::new(Flusher {
            dirty: RefCell::new(Vec::new()),
            waker: Cell::new(None),
            metrics,
            unparker: RefCell::new(None),
            ring: RefCell::new(None),
            batch: RefCell::new(SendBatch::default()),
            members: RefCell::new(Vec::new()),
        })
    }

    /// Sends through `ring` from now on: each pass's sends are submitted as SQEs, 16 per enter
    /// (`--ws-send auto` or `ring`; see [`RecvRing::send_batch`]).
    pub fn send_through(&self, ring: Rc<RefCell<RecvRing>>) {
        *self.ring.borrow_mut() = Some(ring);
    }

    /// Sets what happens when a parked connection's outbox starts closing or is shut (see
    /// [`Outbox::set_parked`]).
    pub fn on_unpark(&self, unparker: Unparker) {
        *self.unparker.borrow_mut() = Some(unparker);
    }

    fn unpark(&self, slot: usize) {
        if let Some(unparker) = &*self.unparker.borrow() {
            unparker(slot);
        }
    }

    fn schedule(&self, outbox: Rc<Outbox>) {
        self.dirty.borrow_mut().push(outbox);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The core's flusher task: runs for the core's lifetime.
    pub async fn run(self: Rc<Self>) {
        let mut batch = Vec::new();
        loop {
            poll_fn(|cx| {
                if self.dirty.borrow().is_empty() {
                    self.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            let ring = self.ring.borrow().clone();
            if let Some(ring) = ring {
                self.flush_through(&ring, &mut batch);
                continue;
            }
            for outbox in batch.drain(..) {
                outbox.scheduled.set(false);
                if outbox.state.get() != OutState::Closed {
                    outbox.flush();
                }
            }
        }
    }
}

#[path = "writer_ring.rs"]
mod ring;

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
