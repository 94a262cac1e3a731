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
//! sockets in one epoll instance the same way; monoio 0.2.4 offers no multishot poll.
//! (PERF.md §2c has the measurements.)

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    panic::{self, AssertUnwindSafe},
    task::{Poll, Waker},
    time::Duration,
};

use slab::Slab;

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
    /// It left the poller and goes on elsewhere (the runtime spawns its task).
    fn detach(self);
}

enum Slot<P> {
    Parked(P),
    /// Taken out while it runs (`on_ready`, `ping`); it may be unparked meanwhile.
    Busy,
}

pub struct Poller<P> {
    epfd: RawFd,
    /// Owns `epfd` (closed on drop); monoio waits for its readability. It is not a socket, but
    /// only `readable` is ever called on it, which is a poll of the fd (io_uring `PollAdd`, or
    /// a registration in the epoll fallback driver), valid for any pollable fd.
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
    /// grows past that if it must). Must be called inside the monoio runtime.
    pub fn new(owner: usize, capacity: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; a negative result is an
        // error, handled below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1, so it is open and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let waiter = monoio::net::TcpStream::from_std(std::net::TcpStream::from(owned))?;
        Ok(Poller {
            epfd: fd,
            waiter,
            slots: RefCell::new(Slab::with_capacity(capacity)),
            stopped: Cell::new(false),
            stop_waker: Cell::new(None),
            sweep_waker: Cell::new(None),
            owner,
        })
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
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: key as u64,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; both fds are open
        // (`Parked::fd` is open while the value lives).
        let r = unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, parked.fd(), &mut ev) };
        if r < 0 {
            tracing::warn!(owner = self.owner, error = %io::Error::last_os_error(), "cannot register a connection with the poller");
            return Some(parked);
        }
        parked.set_slot(slot);
        entry.insert(Slot::Parked(parked));
        None
    }

    /// Takes a parked connection out of the table and the epoll instance.
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
        self.unregister(&parked);
        Some(parked)
    }

    fn unregister(&self, parked: &P) {
        parked.set_slot(NOT_PARKED);
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux 2.6.9);
        // both fds are open. A failure (the fd was never added) changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.epfd,
                libc::EPOLL_CTL_DEL,
                parked.fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Someone else needs the connection in `key` to run (say, our side closed it): it is
    /// detached to a task of its own. One that is running right now is left alone: it reports
    /// what it does next when it returns.
    pub fn unpark(&self, key: usize) {
        if let Some(parked) = self.take(key) {
            release(parked, Next::Detach);
        }
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
            if let Some(parked) = self.take(key) {
                release(parked, Next::Finish);
            }
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
            if let Some(parked) = self.take(key) {
                release(parked, Next::Detach);
            }
        }
    }

    /// Drops every parked connection (at the end of a shutdown: they may hold what holds the
    /// poller).
    pub fn clear(&self) {
        let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
        for key in keys {
            drop(self.take(key));
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
        self.unregister(&parked);
        release(parked, next);
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
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAKE];
        loop {
            let stopped = self.stopped(&self.stop_waker);
            monoio::select! {
                r = self.waiter.readable(false) => if let Err(e) = r {
                    tracing::error!(owner = self.owner, error = %e, "poller cannot wait; connections go back to tasks");
                    return;
                },
                _ = stopped => return,
            }
            // SAFETY: `events` holds EVENTS_PER_WAKE initialised entries, and the kernel writes
            // at most that many; `epfd` is open for the poller's life.
            let n = unsafe {
                libc::epoll_wait(self.epfd, events.as_mut_ptr(), EVENTS_PER_WAKE as i32, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(owner = self.owner, error = %e, "poller: epoll_wait failed; connections go back to tasks");
                return;
            }
            for ev in &events[..n as usize] {
                self.with_busy(ev.u64 as usize, P::on_ready);
            }
            // Let the flusher and every other task run before the next batch. Under io_uring
            // the wait above already goes through the ring; monoio's epoll fallback answers it
            // at once while any socket is still readable, and would never give them a turn.
            yield_once().await;
        }
    }
}

impl<P> AsRawFd for Poller<P> {
    fn as_raw_fd(&self) -> RawFd {
        self.epfd
    }
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
fn release<P: Parked>(parked: P, next: Next) {
    let r = panic::catch_unwind(AssertUnwindSafe(|| match next {
        Next::Park => unreachable!("a parked connection is not released"),
        Next::Finish => parked.finish(),
        Next::Detach => parked.detach(),
    }));
    if r.is_err() {
        tracing::error!("a connection panicked while leaving the poller");
    }
}

#[cfg(test)]
mod tests {
    use std::{
        cell::RefCell,
        collections::VecDeque,
        io::{Read, Write},
        os::unix::net::UnixStream,
        rc::Rc,
    };

    use super::*;

    /// What the fakes did, in order.
    type Log = Rc<RefCell<Vec<String>>>;

    /// A parked connection standing in for the runtime's reader: it reads what its socket has
    /// and parks again, detaches on `q`, panics on `!`, finishes on EOF; its ticks are scripted.
    struct Fake {
        name: &'static str,
        sock: UnixStream,
        slot: Rc<Cell<u32>>,
        ticks: VecDeque<Tick>,
        log: Log,
    }

    impl Fake {
        fn log(&self, what: &str) {
            self.log.borrow_mut().push(format!("{} {what}", self.name));
        }
    }

    impl Parked for Fake {
        fn fd(&self) -> RawFd {
            self.sock.as_raw_fd()
        }

        fn set_slot(&self, slot: u32) {
            self.slot.set(slot);
        }

        fn on_ready(&mut self) -> Next {
            let mut buf = [0u8; 64];
            match self.sock.read(&mut buf) {
                Ok(0) => Next::Finish,
                Ok(n) => {
                    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.log(&format!("read {got}"));
                    assert!(!got.contains('!'), "told to panic");
                    if got.contains('q') {
                        Next::Detach
                    } else {
                        Next::Park
                    }
                }
                Err(e) => panic!("read: {e}"),
            }
        }

        fn tick(&mut self) -> Tick {
            self.ticks.pop_front().unwrap_or(Tick::Alive)
        }

        fn ping(&mut self) -> Next {
            self.log("ping");
            Next::Park
        }

        fn finish(self) {
            self.log("finish");
        }

        fn detach(self) {
            self.log("detach");
        }
    }

    /// A fake on one end of a socket pair, with the other end to play the peer.
    fn fake(name: &'static str, ticks: &[Tick], log: &Log) -> (Fake, UnixStream, Rc<Cell<u32>>) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let slot = Rc::new(Cell::new(NOT_PARKED));
        let f = Fake {
            name,
            sock: a,
            slot: slot.clone(),
            ticks: ticks.iter().copied().collect(),
            log: log.clone(),
        };
        (f, b, slot)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// Runs the event loop until `log` holds `n` entries (at most 5 s).
    async fn until_logged(log: &Log, n: usize) {
        for _ in 0..5000 {
            if log.borrow().len() >= n {
                return;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("only {:?} after 5 s", log.borrow());
    }

    fn parked(poller: &Poller<Fake>, f: Fake) {
        assert!(poller.park(f).is_none(), "parked");
    }

    #[test]
    fn readiness_runs_the_ready_connection_and_follows_its_answer() {
        let log = Log::default();
        block_on(async {
            let poller = Rc::new(Poller::new(0, 4).unwrap());
            let (a, mut peer_a, slot_a) = fake("a", &[], &log);
            let (b, mut peer_b, slot_b) = fake("b", &[], &log);
            let (c, peer_c, _) = fake("c", &[], &log);
            parked(&poller, a);
            parked(&poller, b);
            parked(&poller, c);
            assert_eq!(poller.parked(), 3);
            assert_ne!(slot_a.get(), NOT_PARKED);
            let p = poller.clone();
            monoio::spawn(async move { p.run().await });

            peer_a.write_all(b"hi").unwrap();
            until_logged(&log, 1).await;
            assert_eq!(*log.borrow(), ["a read hi"]);
            assert_eq!(poller.parked(), 3, "a parks again");

            peer_b.write_all(b"q").unwrap();
            until_logged(&log, 3).await;
            assert_eq!(&log.borrow()[1..], ["b read q", "b detach"]);
            assert_eq!(slot_b.get(), NOT_PARKED, "b left the table");

            drop(peer_c);
            until_logged(&log, 4).await;
            assert_eq!(log.borrow()[3], "c finish", "EOF finishes c");

            peer_a.write_all(b"!").unwrap();
            until_logged(&log, 6).await;
            assert_eq!(
                &log.borrow()[4..],
                ["a read !", "a finish"],
                "a panic finishes a"
            );
            assert_eq!((poller.parked(), slot_a.get()), (0, NOT_PARKED));
            poller.stop();
        });
    }

    #[test]
    fn a_sweep_pings_and_finishes_as_the_ticks_say() {
        let log = Log::default();
        block_on(async {
            let poller = Poller::new(0, 4).unwrap();
            let (a, _pa, slot_a) = fake("a", &[Tick::Ping, Tick::Alive], &log);
            let (b, _pb, slot_b) = fake("b", &[Tick::Alive, Tick::Dead], &log);
            parked(&poller, a);
            parked(&poller, b);
            poller.sweep();
            assert_eq!(*log.borrow(), ["a ping"]);
            poller.sweep();
            assert_eq!(*log.borrow(), ["a ping", "b finish"]);
            assert_eq!(poller.parked(), 1);
            assert_ne!(slot_a.get(), NOT_PARKED);
            assert_eq!(slot_b.get(), NOT_PARKED);
        });
    }

    #[test]
    fn unpark_detaches_and_a_stopped_poller_parks_nothing() {
        let log = Log::default();
        block_on(async {
            let poller = Poller::new(0, 4).unwrap();
            let (a, _pa, slot_a) = fake("a", &[], &log);
            parked(&poller, a);
            let key = slot_a.get() as usize;
            poller.unpark(key);
            poller.unpark(key);
            assert_eq!(*log.borrow(), ["a detach"], "once");
            assert_eq!((poller.parked(), slot_a.get()), (0, NOT_PARKED));

            poller.stop();
            let (b, _pb, _) = fake("b", &[], &log);
            let b = poller.park(b).expect("given back");
            assert_eq!(b.name, "b");
        });
    }

    #[test]
    fn a_poller_task_that_ends_unstopped_detaches_everything() {
        let log = Log::default();
        block_on(async {
            let poller = Poller::new(0, 4).unwrap();
            let (a, _pa, _) = fake("a", &[], &log);
            let (b, _pb, _) = fake("b", &[], &log);
            parked(&poller, a);
            parked(&poller, b);
            // The task's future dropped while the poller was not stopped (as after a panic).
            monoio::select! {
                _ = poller.run() => unreachable!("nothing stops it"),
                _ = monoio::time::sleep(Duration::from_millis(5)) => {}
            }
            let mut got = log.borrow().clone();
            got.sort();
            assert_eq!(got, ["a detach", "b detach"]);
            assert_eq!(poller.parked(), 0);
            let (c, _pc, _) = fake("c", &[], &log);
            assert!(poller.park(c).is_some(), "nothing more is parked");
        });
    }
}
