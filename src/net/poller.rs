//! A core's poller: connections that wait for their peer sit here, not in a task each.
//!
//! Owns: one epoll instance (its registrations level-triggered), the table of what is parked
//! in it, the task that waits for readiness, the periodic sweep, and the hand-back of parked
//! connections when it cannot go on. Does not own: what a parked connection is or does (the
//! [`Parked`] trait, implemented by the runtime's WebSocket reader), tasks other than its own
//! (a connection that leaves goes back through [`Parked::detach`]), or who asks to unpark one
//! (the runtime wires the outbox's unpark callback to [`Poller::unpark`]). It knows sockets,
//! not rooms, parties or cores; everything is static dispatch, nothing per event is boxed.
//!
//! A parked connection costs one slot in the table and one registration in the epoll instance.
//! The epoll fd itself is watched by one io_uring poll (monoio's `readable`). When that fires,
//! the poller asks the epoll instance which fds are readable (up to [`EVENTS_PER_WAKE`]) and
//! lets each connection read and act synchronously ([`Parked::on_ready`]); then it yields, so
//! the core's flusher sends what that queued before the next batch is read.
//!
//! With `--ws-recv ring` ([`RecvMode::Ring`]) a receive ring (`recv_ring`) takes the epoll
//! instance's place: each parked socket has a multishot `recv` armed, the kernel reads, and
//! the poller hands each completion's bytes to its connection ([`Parked::on_data`]). A
//! connection that leaves takes the bytes received for it and not yet handed over
//! ([`Parked::detach`]). Epoll stays the default: with the send ring too the rings were faster
//! on echo at 500 connections only, and the receive ring's 2 MiB of buffers per core put idle
//! memory over its target (PERF.md §1k, §1l).
//!
//! A connection leaves the table when [`Parked::on_ready`] (or a ping) says so: finished (EOF,
//! an error) or going on in a task of its own (a closing handshake, which is short and rare);
//! or when someone else unparks it ([`Poller::unpark`], say our side closed it).
//!
//! With a sweep interval ([`Poller::run_sweeps`]), one sweep per interval walks the table (as
//! uSockets sweeps its sockets' timeouts) and ticks each parked connection ([`Parked::tick`]):
//! it says alive, ping it, or dead. No connection needs a timer of its own.
//!
//! Why: a task per idle connection, parked on its own io_uring poll, cost ~560 bytes (the task
//! and the op's slot in monoio's table) and one `PollAdd` per readiness; a slot here costs the
//! parked value, and one `PollAdd` serves a batch of ready connections. uSockets keeps its
//! sockets in one epoll instance the same way; monoio 0.2.4 offers no multishot poll (or
//! receive: hence a second ring of our own for the ring mode).
//! (PERF.md §2c has the measurements.)

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

use slab::Slab;

use super::recv_ring::{self, RecvRing};
pub use crate::config::RecvMode;

/// Ready connections handled per wake-up at most, before the flusher gets its turn.
pub const EVENTS_PER_WAKE: usize = 256;

/// The slot value that means "not parked" (see [`Parked::set_slot`]); never a real slot.
pub const NOT_PARKED: u32 = u32::MAX;

/// What a parked connection does after it ran.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait in the poller for more.
    Park,
    /// Done: leave the poller and finish ([`Parked::finish`]).
    Finish,
    /// Still going, but not here: leave the poller for a task of its own ([`Parked::detach`]).
    Detach,
}

/// A sweep's verdict on one parked connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    Alive,
    /// Ping it ([`Parked::ping`], after the walk).
    Ping,
    /// Gone: leave the poller and finish.
    Dead,
}

/// What can wait in a [`Poller`]. The runtime's WebSocket reader implements it.
pub trait Parked: Sized {
    /// The fd to watch for readability; open for as long as the value lives.
    fn fd(&self) -> RawFd;
    /// Where it is parked now ([`NOT_PARKED`] once it left), so that a close from elsewhere
    /// can find it ([`Poller::unpark`]).
    fn set_slot(&self, slot: u32);
    /// The fd is readable: read and act.
    fn on_ready(&mut self) -> Next;
    /// The sweep's periodic check.
    fn tick(&mut self) -> Tick;
    /// The sweep asked for a ping ([`Tick::Ping`]).
    fn ping(&mut self) -> Next;
    /// It left the poller, done.
    fn finish(self);
    /// It left the poller and goes on elsewhere (the runtime spawns its task). `unread` holds
    /// bytes the receive ring had taken from the socket for it and not yet handed over (empty
    /// with epoll): they come before anything read from the socket after this.
    fn detach(self, unread: Vec<u8>);
    /// Bytes the receive ring read from the socket: act on them.
    fn on_data(&mut self, data: &mut [u8]) -> Next;
    /// The receive ring's receive ended: end of stream (`None`) or a read error.
    fn on_read_end(&mut self, error: Option<io::Error>) -> Next;
}

enum Slot<P> {
    Parked(P),
    /// Taken out while it runs (`on_ready`, `ping`); it may be unparked meanwhile.
    Busy,
}

/// How a poller learns that a parked socket has bytes (see the module docs).
enum Source {
    /// An epoll instance (level-triggered registrations); the connection reads them itself.
    Epoll(RawFd),
    /// The core's receive ring: the kernel has read them already.
    Ring(Box<RingSource>),
}

/// The receive ring and what the poller keeps beside it.
struct RingSource {
    /// Shared with the core's flusher when it sends through the ring (`--ws-send auto` or `ring`).
    ring: Rc<RefCell<RecvRing>>,
    /// Per table slot, the generation of its receive: completions are tagged with slot and
    /// generation, so one that comes after its connection left is never taken for a later
    /// connection in the same slot.
    gens: RefCell<Vec<u32>>,
    next_gen: Cell<u32>,
    /// Where a completion's bytes are copied before the connection acts on them (it may
    /// leave meanwhile, which needs the ring).
    scratch: RefCell<Vec<u8>>,
}

pub struct Poller<P> {
    source: Source,
    /// Owns the epoll fd (closed on drop) or a duplicate of the receive ring's wake-up eventfd;
    /// monoio waits for its readability. It is not a socket, but only `readable` is ever called on it, which is a
    /// poll of the fd (io_uring `PollAdd`, or a registration in the epoll fallback driver),
    /// valid for any pollable fd.
    waiter: monoio::net::TcpStream,
    slots: RefCell<Slab<Slot<P>>>,
    /// Set by [`Poller::stop`]; the wakers are the poller and sweep tasks.
    stopped: Cell<bool>,
    stop_waker: Cell<Option<Waker>>,
    sweep_waker: Cell<Option<Waker>>,
    /// Whose poller this is, for log lines (the core's index).
    owner: usize,
}

impl<P: Parked> Poller<P> {
    /// A poller for `owner`'s event loop, its table reserved for `capacity` connections (it
    /// grows past that if it must), learning of bytes through `ring` if given (built on this
    /// thread: it is `SINGLE_ISSUER`), else through an epoll instance. Must be called inside the
    /// monoio runtime.
    pub fn new(
        owner: usize,
        capacity: usize,
        ring: Option<Rc<RefCell<RecvRing>>>,
    ) -> io::Result<Self> {
        let (source, fd) = match ring {
            Some(ring) => {
                // SAFETY: dup has no memory-safety preconditions; a negative result is an
                // error, handled below.
                let fd = unsafe { libc::fcntl(ring.borrow().fd(), libc::F_DUPFD_CLOEXEC, 0) };
                let source = Source::Ring(Box::new(RingSource {
                    ring,
                    gens: RefCell::new(Vec::new()),
                    next_gen: Cell::new(0),
                    scratch: RefCell::new(Vec::with_capacity(recv_ring::BUF_SIZE)),
                }));
                (source, fd)
            }
            None => {
                // SAFETY: epoll_create1 has no memory-safety preconditions; a negative result
                // is an error, handled below.
                let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
                (Source::Epoll(fd), fd)
            }
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 or fcntl, so it is open and owned by
        // nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let waiter = monoio::net::TcpStream::from_std(std::net::TcpStream::from(owned))?;
        Ok(Poller {
            source,
            waiter,
            slots: RefCell::new(Slab::with_capacity(capacity)),
            stopped: Cell::new(false),
            stop_waker: Cell::new(None),
            sweep_waker: Cell::new(None),
            owner,
        })
    }

    /// How this poller learns of bytes ([`RecvMode::Ring`] or [`RecvMode::Epoll`]).
    pub fn mode(&self) -> RecvMode {
        match self.source {
            Source::Epoll(_) => RecvMode::Epoll,
            Source::Ring(_) => RecvMode::Ring,
        }
    }

    /// Connections parked now (0 while the table is being changed, which a metrics snapshot
    /// never overlaps).
    pub fn parked(&self) -> usize {
        self.slots.try_borrow().map_or(0, |s| s.len())
    }

    /// Parks a connection until its fd is readable. Gives it back if the poller is stopped or
    /// the fd cannot be registered (then it must wait some other way).
    pub fn park(&self, parked: P) -> Option<P> {
        if self.stopped.get() {
            return Some(parked);
        }
        let mut slots = self.slots.borrow_mut();
        let entry = slots.vacant_entry();
        let key = entry.key();
        let Ok(slot) = u32::try_from(key) else {
            return Some(parked);
        };
        if slot == NOT_PARKED {
            return Some(parked);
        }
        if let Err(e) = self.register(key, parked.fd()) {
            tracing::warn!(owner = self.owner, error = %e, "cannot register a connection with the poller");
            return Some(parked);
        }
        parked.set_slot(slot);
        entry.insert(Slot::Parked(parked));
        None
    }

    /// Starts watching `fd` for the connection in slot `key`.
    fn register(&self, key: usize, fd: RawFd) -> io::Result<()> {
        match &self.source {
            Source::Epoll(epfd) => {
                let mut ev = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                    u64: key as u64,
                };
                // SAFETY: `ev` is a valid epoll_event for the duration of the call; both fds
                // are open (`Parked::fd` is open while the value lives).
                let r = unsafe { libc::epoll_ctl(*epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            Source::Ring(src) => {
                let RingSource {
                    ring,
                    gens,
                    next_gen,
                    ..
                } = &**src;
                // 0 marks a slot with no receive; a generation stays under 2^31, so a receive's
                // tag never has the bit of a send's (`recv_ring::SEND_TAG`).
                let gen = match next_gen.get() {
                    g if g >= MAX_GEN => 1,
                    g => g + 1,
                };
                next_gen.set(gen);
                let mut gens = gens.borrow_mut();
                if gens.len() <= key {
                    gens.resize(key + 1, 0);
                }
                gens[key] = gen;
                let mut ring = ring.borrow_mut();
                ring.arm(fd, user_data(key, gen))?;
                // Now: the poller submits its re-arms after each batch, but it may be asleep.
                ring.submit()?;
                // Bytes already in the socket complete inside the submit.
                ring.wake_if_backlogged();
                Ok(())
            }
        }
    }

    /// Takes a parked connection out of the table (the caller unregisters it).
    fn take(&self, key: usize) -> Option<P> {
        let parked = {
            let mut slots = self.slots.borrow_mut();
            match slots.get(key) {
                Some(Slot::Parked(_)) => match slots.remove(key) {
                    Slot::Parked(p) => p,
                    Slot::Busy => unreachable!("checked above"),
                },
                _ => return None,
            }
        };
        Some(parked)
    }

    /// Stops watching the connection that was in slot `key`. Returns the bytes the receive ring
    /// had read for it and not handed over (see `recv_ring`).
    fn unregister(&self, key: usize, parked: &P) -> Vec<u8> {
        parked.set_slot(NOT_PARKED);
        match &self.source {
            Source::Epoll(epfd) => {
                // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux
                // 2.6.9); both fds are open. A failure (the fd was never added) changes nothing.
                unsafe {
                    libc::epoll_ctl(*epfd, libc::EPOLL_CTL_DEL, parked.fd(), std::ptr::null_mut())
                };
                Vec::new()
            }
            Source::Ring(src) => {
                let RingSource { ring, gens, .. } = &**src;
                let gen = std::mem::take(&mut gens.borrow_mut()[key]);
                match ring.borrow_mut().cancel(user_data(key, gen)) {
                    Ok(unread) => unread,
                    Err(e) => {
                        // Not seen in practice: the cancel is synchronous and the request ours.
                        tracing::error!(owner = self.owner, error = %e, "cannot cancel a connection's receive; bytes it takes are lost");
                        Vec::new()
                    }
                }
            }
        }
    }

    /// Takes the connection in `key` out (table and watch) and lets it go as `next` says.
    fn take_and_release(&self, key: usize, next: Next) {
        if let Some(parked) = self.take(key) {
            let unread = self.unregister(key, &parked);
            release(parked, next, unread);
        }
    }

    /// Someone else needs the connection in `key` to run (say, our side closed it): it is
    /// detached to a task of its own. One that is running right now is left alone: it reports
    /// what it does next when it returns.
    pub fn unpark(&self, key: usize) {
        self.take_and_release(key, Next::Detach);
    }

    /// Ends the poller and sweep tasks, and parks nothing more (at shutdown, once every
    /// connection has been closed and so detached; and when the event loop ends). Their pending
    /// poll must not outlive the event loop: a task parked on an io_uring op when the runtime is
    /// dropped is never freed, nor is what it holds.
    pub fn stop(&self) {
        self.stopped.set(true);
        for waker in [&self.stop_waker, &self.sweep_waker] {
            if let Some(w) = waker.take() {
                w.wake();
            }
        }
    }

    /// Resolves once `stop` has been called; `slot` keeps the waiting task's waker.
    async fn stopped(&self, slot: &Cell<Option<Waker>>) {
        poll_fn(|cx| {
            if self.stopped.get() {
                Poll::Ready(())
            } else {
                slot.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// One tick of every parked connection (see the module docs). Pings are sent and dead
    /// connections finished after the walk: either can end a connection's stay (a ping can
    /// close a connection whose queue is over its bound), which changes the table.
    fn sweep(&self) {
        let mut ping = Vec::new();
        let mut dead = Vec::new();
        for (key, slot) in self.slots.borrow_mut().iter_mut() {
            if let Slot::Parked(parked) = slot {
                match parked.tick() {
                    Tick::Alive => {}
                    Tick::Ping => ping.push(key),
                    Tick::Dead => dead.push(key),
                }
            }
        }
        for key in ping {
            self.with_busy(key, P::ping);
        }
        for key in dead {
            self.take_and_release(key, Next::Finish);
        }
    }

    /// The sweep task: one sweep per `interval` until `stop`.
    pub async fn run_sweeps(&self, interval: Duration) {
        loop {
            monoio::select! {
                _ = monoio::time::sleep(interval) => self.sweep(),
                _ = self.stopped(&self.sweep_waker) => return,
            }
        }
    }

    /// The poller cannot go on (its wait or `epoll_wait` failed, or it panicked): every parked
    /// connection is detached to a task of its own, and nothing more is parked.
    fn evacuate(&self) {
        self.stopped.set(true);
        let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            self.take_and_release(key, Next::Detach);
        }
    }

    /// Drops every parked connection (at the end of a shutdown: they may hold what holds the
    /// poller).
    pub fn clear(&self) {
        let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(parked) = self.take(key) {
                self.unregister(key, &parked);
            }
        }
    }

    /// Runs `f` on a parked connection taken out of its slot (marked busy meanwhile, as `f` may
    /// unpark connections, itself included); then parks it again or lets it go, as `f` says.
    fn with_busy(&self, key: usize, f: impl FnOnce(&mut P) -> Next) {
        let mut parked = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(key) {
                Some(slot @ Slot::Parked(_)) => match std::mem::replace(slot, Slot::Busy) {
                    Slot::Parked(p) => p,
                    Slot::Busy => unreachable!("matched Parked"),
                },
                _ => return,
            }
        };
        // The connection's own code guards what it calls (party handlers); this contains a bug
        // of ours to the one connection, as a guarded task would.
        let next = match panic::catch_unwind(AssertUnwindSafe(|| f(&mut parked))) {
            Ok(next) => next,
            Err(_) => {
                tracing::error!(owner = self.owner, "a parked connection panicked: dropped");
                Next::Finish
            }
        };
        if next == Next::Park {
            if let Some(slot) = self.slots.borrow_mut().get_mut(key) {
                *slot = Slot::Parked(parked);
            }
            return;
        }
        self.slots.borrow_mut().remove(key);
        let unread = self.unregister(key, &parked);
        release(parked, next, unread);
    }

    /// The poller task: runs until `stop`. If it ends any other way, a panic included, its
    /// connections are detached to tasks of their own (so `stop` must be called before the
    /// event loop goes away, when nothing could be spawned).
    pub async fn run(&self) {
        struct Evacuate<'a, P: Parked>(&'a Poller<P>);
        impl<P: Parked> Drop for Evacuate<'_, P> {
            fn drop(&mut self) {
                if !self.0.stopped.get() {
                    self.0.evacuate();
                }
            }
        }
        let _evacuate = Evacuate(self);
        let mut events = match self.source {
            Source::Epoll(_) => vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAKE],
            Source::Ring(_) => Vec::new(),
        };
        loop {
            // Work the receive ring's wake-up fd does not show (see `RecvRing::backlogged`)
            // makes it readable now, so the wait below returns at once, but through monoio's
            // ring. Looping here with a yield instead kept monoio from ever entering its ring to
            // wait, and under DEFER_TASKRUN nothing of that ring is completed otherwise (accepts,
            // timers, a drain task's writability): echo runs stalled for good (PERF.md §1l).
            self.signal_if_backlogged();
            let stopped = self.stopped(&self.stop_waker);
            monoio::select! {
                r = self.waiter.readable(false) => if let Err(e) = r {
                    tracing::error!(owner = self.owner, error = %e, "poller cannot wait; connections go back to tasks");
                    return;
                },
                _ = stopped => return,
            }
            let go_on = match &self.source {
                Source::Epoll(epfd) => self.epoll_batch(*epfd, &mut events),
                Source::Ring(_) => self.ring_batch(),
            };
            if !go_on {
                return;
            }
            // Let the flusher and every other task run before the next batch. Under io_uring
            // the wait above already goes through the ring; monoio's epoll fallback answers it
            // at once while any socket is still readable, and would never give them a turn.
            yield_once().await;
        }
    }
}

impl<P: Parked> Poller<P> {
    /// The receive ring holds work its wake-up fd does not show (for tests).
    #[cfg(test)]
    fn backlogged(&self) -> bool {
        match &self.source {
            Source::Epoll(_) => false,
            Source::Ring(src) => src.ring.borrow_mut().backlogged(),
        }
    }

    /// Makes the wake-up fd readable if the receive ring holds work it does not show.
    fn signal_if_backlogged(&self) {
        if let Source::Ring(src) = &self.source {
            src.ring.borrow_mut().wake_if_backlogged();
        }
    }

    /// Asks the epoll instance which sockets are readable and lets each read. False: the
    /// poller cannot go on.
    fn epoll_batch(&self, epfd: RawFd, events: &mut [libc::epoll_event]) -> bool {
        // SAFETY: `events` holds EVENTS_PER_WAKE initialised entries, and the kernel writes at
        // most that many; `epfd` is open for the poller's life (the waiter owns it).
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS_PER_WAKE as i32, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return true;
            }
            tracing::error!(owner = self.owner, error = %e, "poller: epoll_wait failed; connections go back to tasks");
            return false;
        }
        for ev in &events[..n as usize] {
            self.with_busy(ev.u64 as usize, P::on_ready);
        }
        true
    }

    /// Hands up to [`EVENTS_PER_WAKE`] of the receive ring's completions to their connections,
    /// then submits the receives that must be armed again. False: the poller cannot go on.
    fn ring_batch(&self) -> bool {
        let Source::Ring(src) = &self.source else {
            unreachable!("called for the ring source only")
        };
        let RingSource {
            ring,
            gens,
            scratch,
            ..
        } = &**src;
        if let Err(e) = ring.borrow_mut().reap() {
            tracing::error!(owner = self.owner, error = %e, "poller: cannot run the receive ring; connections go back to tasks");
            return false;
        }
        for _ in 0..EVENTS_PER_WAKE {
            let Some(c) = ring.borrow_mut().pop() else {
                break;
            };
            let (key, gen) = split_user_data(c.user_data);
            let live = gen != 0
                && gens.borrow().get(key) == Some(&gen)
                && matches!(self.slots.borrow().get(key), Some(Slot::Parked(_)));
            let mut rearm = live && !c.more();
            if c.result > 0 {
                let bid = c.buffer().expect("a receive's bytes are in a provided buffer");
                if live {
                    let mut buf = std::mem::take(&mut *scratch.borrow_mut());
                    ring.borrow_mut().copy_out(bid, c.result as usize, &mut buf);
                    ring.borrow_mut().give_back(bid);
                    self.with_busy(key, |p| p.on_data(&mut buf));
                    *scratch.borrow_mut() = buf;
                } else {
                    ring.borrow_mut().give_back(bid);
                }
            } else {
                if let Some(bid) = c.buffer() {
                    ring.borrow_mut().give_back(bid);
                }
                match -c.result {
                    // Out of buffers (its bytes wait in the socket) or cancelled: not an end.
                    libc::ENOBUFS | libc::ECANCELED => {}
                    0 if live => {
                        rearm = false;
                        self.with_busy(key, |p| p.on_read_end(None));
                    }
                    errno if live => {
                        rearm = false;
                        let e = io::Error::from_raw_os_error(errno);
                        self.with_busy(key, |p| p.on_read_end(Some(e)));
                    }
                    _ => {}
                }
            }
            // The connection may have left in the meantime (its slot's generation is reset).
            if rearm && gens.borrow().get(key) == Some(&gen) {
                if let Some(Slot::Parked(p)) = self.slots.borrow().get(key) {
                    if let Err(e) = ring.borrow_mut().arm(p.fd(), c.user_data) {
                        tracing::error!(owner = self.owner, error = %e, "poller: cannot arm a receive; connections go back to tasks");
                        return false;
                    }
                }
            }
        }
        if let Err(e) = ring.borrow_mut().submit() {
            tracing::error!(owner = self.owner, error = %e, "poller: cannot submit to the receive ring; connections go back to tasks");
            return false;
        }
        true
    }
}

/// The largest generation of a receive (see `register`).
const MAX_GEN: u32 = (1 << 31) - 1;

/// A receive's tag: the table slot and its generation.
fn user_data(key: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | key as u64
}

fn split_user_data(user_data: u64) -> (usize, u32) {
    ((user_data & 0xffff_ffff) as usize, (user_data >> 32) as u32)
}

/// Returns to the executor once, so every other ready task runs first.
pub async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A connection that left the poller: finished or detached, a panic contained to it.
fn release<P: Parked>(parked: P, next: Next, unread: Vec<u8>) {
    let r = panic::catch_unwind(AssertUnwindSafe(|| match next {
        Next::Park => unreachable!("a parked connection is not released"),
        Next::Finish => parked.finish(),
        Next::Detach => parked.detach(unread),
    }));
    if r.is_err() {
        tracing::error!("a connection panicked while leaving the poller");
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
