//! The core's WebSocket poller: open WebSockets wait for their peer here, not in a task each.
//!
//! An open connection that is waiting for data costs one slot in this table (its
//! `ws_conn::Reader`: the decoder and a few pointers) and one registration in the core's epoll
//! instance. The registrations are level-triggered, and the epoll fd itself is watched by one
//! io_uring poll (monoio's `readable`). When that fires, the poller asks the epoll instance
//! which sockets are readable (up to [`EVENTS_PER_WAKE`]) and lets each reader read and decode
//! synchronously (`Reader::on_ready`); then it yields, so the core's flusher sends what the
//! messages queued before the next batch is read.
//!
//! A connection leaves the table when it starts to close: the peer's close frame, EOF, a read
//! error, a protocol error, or a close from our side (the outbox calls
//! [`WsPoller::unpark_closing`]). EOF and errors leave the room at once; a closing handshake
//! (waiting for the echo to drain, the peer's close frame, or `close_timeout`) runs as a task,
//! as before the poller existed: it is short and rare.
//!
//! With `ws_ping_interval`, one sweep per interval walks the table (as uSockets sweeps its
//! sockets' timeouts) and ticks each connection's session (`ws::session`, whose liveness rule
//! a connection in a task follows too): one that was silent since the last sweep is pinged,
//! and one still silent at the sweep after that is dropped. So a silent peer is pinged after one to two
//! intervals and dropped one interval later; no connection needs a timer of its own.
//!
//! Why: a task per idle connection, parked on its own io_uring poll, cost ~560 bytes (the task
//! and the op's slot in monoio's table) and one `PollAdd` per readiness; a slot here costs
//! ~200 bytes, and one `PollAdd` serves a batch of ready connections. uSockets keeps its
//! sockets in one epoll instance the same way; monoio 0.2.4 offers no multishot poll.
//! (PERF.md §2c has the measurements.)

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    task::{Poll, Waker},
};

use slab::Slab;

use super::ws_conn::{Next, Reader};
use crate::runtime::core::{spawn_guarded, Core};
use crate::ws::session::Liveness;

/// Ready connections read per wake-up at most, before the flusher gets its turn.
pub const EVENTS_PER_WAKE: usize = 256;

enum Slot {
    Parked(Reader),
    /// Taken out while its reader runs (`on_ready`); party code may close it meanwhile.
    Busy,
}

pub struct WsPoller {
    epfd: RawFd,
    /// Owns `epfd` (closed on drop); monoio waits for its readability. It is not a socket, but
    /// only `readable` is ever called on it, which is a poll of the fd (io_uring `PollAdd`, or
    /// a registration in the epoll fallback driver), valid for any pollable fd.
    waiter: monoio::net::TcpStream,
    slots: RefCell<Slab<Slot>>,
    /// Set by [`WsPoller::stop`] at shutdown; the wakers are the poller and sweep tasks.
    stopped: Cell<bool>,
    stop_waker: Cell<Option<Waker>>,
    sweep_waker: Cell<Option<Waker>>,
}

impl WsPoller {
    /// A poller for the current core. Must be called inside the core's runtime.
    pub fn new() -> io::Result<WsPoller> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; a negative result is an
        // error, handled below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1, so it is open and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let waiter = monoio::net::TcpStream::from_std(std::net::TcpStream::from(owned))?;
        Ok(WsPoller {
            epfd: fd,
            waiter,
            slots: RefCell::new(Slab::new()),
            stopped: Cell::new(false),
            stop_waker: Cell::new(None),
            sweep_waker: Cell::new(None),
        })
    }

    /// Connections parked now (0 while the table is being changed, which a metrics snapshot
    /// never overlaps).
    pub fn len(&self) -> usize {
        self.slots.try_borrow().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parks an open connection until its socket is readable. Gives the reader back if the
    /// socket cannot be registered (then it keeps a task of its own).
    pub(crate) fn park(&self, reader: Reader) -> Option<Reader> {
        if self.stopped.get() {
            return Some(reader);
        }
        let mut slots = self.slots.borrow_mut();
        let entry = slots.vacant_entry();
        let key = entry.key();
        let Ok(slot) = u32::try_from(key) else {
            return Some(reader);
        };
        if slot == crate::net::writer::NOT_PARKED {
            return Some(reader);
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: key as u64,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; both fds are open
        // (the reader owns its socket through its stream).
        let r = unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, reader.fd(), &mut ev) };
        if r < 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot register a websocket with the core's poller");
            return Some(reader);
        }
        reader.conn().outbox.set_parked(slot);
        entry.insert(Slot::Parked(reader));
        None
    }

    /// Takes a parked reader out of the table and the epoll instance.
    fn take(&self, key: usize) -> Option<Reader> {
        let reader = {
            let mut slots = self.slots.borrow_mut();
            match slots.get(key) {
                Some(Slot::Parked(_)) => match slots.remove(key) {
                    Slot::Parked(r) => r,
                    Slot::Busy => unreachable!("checked above"),
                },
                _ => return None,
            }
        };
        self.unregister(&reader);
        Some(reader)
    }

    fn unregister(&self, reader: &Reader) {
        reader
            .conn()
            .outbox
            .set_parked(crate::net::writer::NOT_PARKED);
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux 2.6.9);
        // both fds are open. A failure (the fd was never added) changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.epfd,
                libc::EPOLL_CTL_DEL,
                reader.fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Our side closed a parked connection (or its outbox was shut): hand it to a task that runs
    /// the closing handshake. A connection whose reader is running right now is left alone:
    /// the reader checks the state when it returns.
    pub fn unpark_closing(&self, key: usize) {
        if let Some(reader) = self.take(key) {
            finish(reader, Next::Task);
        }
    }

    /// Ends the poller task (at shutdown, once every connection has been closed and so
    /// handed to a task). Its pending poll must not outlive the event loop: a task parked on
    /// an io_uring op when the runtime is dropped is never freed, nor is what it holds.
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

    /// One liveness tick of every parked connection (see the module docs). Pings are sent and
    /// dead connections dropped after the walk: sending can close a connection (its queue over
    /// the bound), which takes it out of the table.
    fn sweep(&self) {
        let mut ping = Vec::new();
        let mut dead = Vec::new();
        for (key, slot) in self.slots.borrow_mut().iter_mut() {
            if let Slot::Parked(reader) = slot {
                match reader.tick() {
                    Liveness::Alive => {}
                    Liveness::Ping => ping.push(key),
                    Liveness::Dead => dead.push(key),
                }
            }
        }
        for key in ping {
            self.ping(key);
        }
        for key in dead {
            if let Some(reader) = self.take(key) {
                finish(reader, Next::Leave);
            }
        }
    }

    /// The core's ping sweep task, when `ws_ping_interval` is set.
    pub async fn run_sweeps(core: Rc<Core>) {
        let (Some(poller), Some(interval)) = (&core.ws_poller, core.config.ws_ping_interval) else {
            return;
        };
        loop {
            monoio::select! {
                _ = monoio::time::sleep(interval) => poller.sweep(),
                _ = poller.stopped(&poller.sweep_waker) => return,
            }
        }
    }

    /// The poller cannot go on (its wait or `epoll_wait` failed, or it panicked): every parked
    /// connection gets a task of its own again (the task path waits on its own socket), and
    /// nothing more is parked.
    fn evacuate(&self) {
        self.stopped.set(true);
        let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(reader) = self.take(key) {
                finish(reader, Next::Task);
            }
        }
    }

    /// Drops every parked connection (at the end of a shutdown): they hold the core, and the
    /// core holds them.
    pub fn clear(&self) {
        let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(reader) = self.take(key) {
                drop(reader);
            }
        }
    }

    /// Pings a parked connection (the sweep's second half).
    fn ping(&self, key: usize) {
        self.with_busy(key, |reader| {
            reader.ping();
            reader.next()
        });
    }

    /// One ready connection: read, decode, act; then park it again or let it go.
    fn ready(&self, key: usize) {
        self.with_busy(key, Reader::on_ready);
    }

    /// Runs `f` on a parked reader taken out of its slot (which is marked busy meanwhile, as `f`
    /// may close the connection); then parks it again or lets it go, as `f` says.
    fn with_busy(&self, key: usize, f: impl FnOnce(&mut Reader) -> Next) {
        let mut reader = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(key) {
                Some(slot @ Slot::Parked(_)) => match std::mem::replace(slot, Slot::Busy) {
                    Slot::Parked(r) => r,
                    Slot::Busy => unreachable!("matched Parked"),
                },
                _ => return,
            }
        };
        // Party code is guarded on its own (`party::Parties`); this contains a bug of ours to
        // the one connection, as `spawn_guarded` does for tasks.
        let next = match panic::catch_unwind(AssertUnwindSafe(|| f(&mut reader))) {
            Ok(next) => next,
            Err(_) => {
                tracing::error!("a websocket reader panicked: connection dropped");
                Next::Leave
            }
        };
        if next == Next::Park {
            if let Some(slot) = self.slots.borrow_mut().get_mut(key) {
                *slot = Slot::Parked(reader);
            }
            return;
        }
        self.slots.borrow_mut().remove(key);
        self.unregister(&reader);
        finish(reader, next);
    }

    /// The core's poller task: runs for the core's lifetime (until `stop`). If it ends any
    /// other way, a panic included, its connections are handed to tasks of their own.
    pub async fn run(core: Rc<Core>) {
        let Some(poller) = &core.ws_poller else {
            return;
        };
        struct Evacuate<'a>(&'a WsPoller);
        impl Drop for Evacuate<'_> {
            fn drop(&mut self) {
                // Not when the event loop itself is going away (the core is no longer current
                // by then): no task could be spawned, and `clear` drops the connections.
                if !self.0.stopped.get() && crate::runtime::core::current().is_some() {
                    self.0.evacuate();
                }
            }
        }
        let _evacuate = Evacuate(poller);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAKE];
        loop {
            let stopped = poller.stopped(&poller.stop_waker);
            monoio::select! {
                r = poller.waiter.readable(false) => if let Err(e) = r {
                    tracing::error!(core = core.id, error = %e, "websocket poller cannot wait; connections go back to tasks");
                    return;
                },
                _ = stopped => return,
            }
            // SAFETY: `events` holds EVENTS_PER_WAKE initialised entries, and the kernel writes
            // at most that many; `epfd` is open for the poller's life.
            let n = unsafe {
                libc::epoll_wait(poller.epfd, events.as_mut_ptr(), EVENTS_PER_WAKE as i32, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(core = core.id, error = %e, "websocket poller: epoll_wait failed; connections go back to tasks");
                return;
            }
            for ev in &events[..n as usize] {
                poller.ready(ev.u64 as usize);
            }
            // Let the flusher and every other task run before the next batch. Under io_uring
            // the wait above already goes through the ring; monoio's epoll fallback answers it
            // at once while any socket is still readable, and would never give them a turn.
            yield_once().await;
        }
    }
}

impl AsRawFd for WsPoller {
    fn as_raw_fd(&self) -> RawFd {
        self.epfd
    }
}

/// Returns to the executor once, so every other ready task runs first.
pub(crate) async fn yield_once() {
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

/// The rest of a connection that left the poller.
fn finish(mut reader: Reader, next: Next) {
    match next {
        Next::Park => unreachable!("a parked reader is not finished"),
        Next::Leave => {
            if panic::catch_unwind(AssertUnwindSafe(|| reader.leave())).is_err() {
                tracing::error!("a websocket reader panicked while leaving its room");
            }
        }
        Next::Task => {
            let core = reader.core_id();
            spawn_guarded(core, reader.run());
        }
    }
}
