//! A core: one OS thread, one monoio ring, and everything that thread owns.
//!
//! `Core` is `!Send` on purpose (`Rc`, `RefCell`): rooms, their connections and histories are
//! touched only by their owner thread, so the hot path takes no locks and no atomics. The only
//! ways in from outside are the accept socket and the handoff inbox.
//!
//! Each core runs its accept loop (on its SO_REUSEPORT listener) and its inbox loop
//! (connections, fetches and metrics requests from other cores) beside each other, plus four
//! long-lived tasks: the flusher (sends every WebSocket queue with something in it, once per
//! pass), the WebSocket poller and its liveness sweeps, the alarm timer and (core 0) the cron
//! task. Every HTTP connection is one task; an open WebSocket has no task of its own while it
//! waits in the poller, and gets one only for a closing handshake or a slow reader's drain.
//!
//! `Core` is the only type that names all of a core's state; the layers below it reach what
//! they need through narrow handles: rooms through [`RoomHost`](crate::room::RoomHost)
//! (`runtime::host`), WebSocket queues through the flusher's unpark callback.

use std::{
    cell::{Cell, RefCell},
    future::{poll_fn, Future},
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use crate::{
    config::{Config, RecvMode, RingMode, SendMode},
    http::DateCache,
    metrics::Metrics,
    net::{recv_ring::RecvRing, writer::Flusher},
    party::{Parties, PartySet},
    room::{Host, Room, RoomTable},
    storage::Storage,
};

use super::{
    alarms::Alarms,
    handoff::{Inbound, Inbox, Inboxes},
    http_conn as conn,
    ws_conn::WsPoller,
};

/// Per-core counters readable from any thread (tests, metrics). Touched once per connection
/// event, never per message, so relaxed atomics cost nothing that matters.
#[derive(Debug, Default)]
pub struct CoreStats {
    pub accepted: AtomicU64,
    pub handoffs_sent: AtomicU64,
    pub handoffs_received: AtomicU64,
    pub handoffs_refused: AtomicU64,
    /// Connections refused because the core was at `max_connections_per_core`.
    pub refused_at_capacity: AtomicU64,
}

impl CoreStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spawns a connection task whose panic (a bug, never expected) ends only that connection:
/// unguarded, a panicking task would take down the core's whole event loop, and with it every
/// room on the core. Party handlers have their own, finer guard (`party::Parties`).
pub fn spawn_guarded(core: usize, fut: impl Future<Output = ()> + 'static) {
    monoio::spawn(CatchUnwind { core, fut });
}

struct CatchUnwind<F> {
    core: usize,
    fut: F,
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let core = self.core;
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self` nor accessed
        // other than through this pinned projection, and `CatchUnwind` has no Drop impl.
        let fut = unsafe { self.map_unchecked_mut(|s| &mut s.fut) };
        match panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                tracing::error!(core, "a connection task panicked: connection dropped");
                Poll::Ready(())
            }
        }
    }
}

/// Size of the per-core buffer every WebSocket read lands in before it is decoded.
pub const READ_BUF_BYTES: usize = 64 * 1024;

pub struct Core {
    /// This core's index, 0-based; also the CPU it is pinned to when pinning is on.
    pub id: usize,
    pub config: Arc<Config>,
    pub inboxes: Inboxes,
    pub stats: Arc<CoreStats>,
    /// This core's party instances; a party's index is its id in the room table.
    pub parties: Parties,
    pub rooms: RefCell<RoomTable>,
    pub date: DateCache,
    /// Shared by every WebSocket read on this core: reads are synchronous after readiness, so
    /// it is never held across an `.await`, and idle connections park no buffer of their own.
    pub read_buf: RefCell<Box<[u8]>>,
    /// Sends every WebSocket queue that has something in it, once per event-loop pass.
    pub flusher: Rc<Flusher>,
    /// This core's counters for `/metrics` (plain cells; the flusher holds a clone).
    pub metrics: Rc<Metrics>,
    /// Serial numbers for connections (newest wins when ids collide).
    next_serial: Cell<u64>,
    /// A heap trim waits for a burst of new WebSockets to end (see `Core::trim_after_burst`).
    trim_pending: Cell<bool>,
    /// Set when shutdown starts: the time by which this core must be done.
    shutdown_deadline: Cell<Option<Instant>>,
    /// Connections that must finish before a shutdown completes: WebSockets, and HTTP
    /// connections with a request in progress (idle keep-alive ones are just dropped).
    busy: Cell<usize>,
    /// The core's main task, waiting for shutdown to start or for `busy` to reach 0.
    waiter: Cell<Option<Waker>>,
    /// Connections this core holds now (HTTP and WebSocket), against `conn_cap`.
    live: Cell<usize>,
    /// `max_connections_per_core`, or unlimited.
    conn_cap: usize,
    /// Connections the whole process holds, against `process_cap` (shared by every core;
    /// touched once per connection, never per message).
    process_live: Arc<AtomicUsize>,
    process_cap: usize,
    /// Connections being refused right now (see `conn::refuse`).
    pub refusing: Cell<usize>,
    /// The storage of every room on this core: this core's log under `data_dir`, or memory.
    pub storage: Storage,
    /// Room alarms waiting to fire on this core.
    pub alarms: Alarms,
    /// Open WebSockets waiting for their peers (`None` if the epoll instance could not be
    /// made: then every connection keeps a task of its own).
    pub(crate) ws_poller: Option<WsPoller>,
    /// What this core's rooms reach outside themselves (alarms, coming back, other rooms).
    pub host: Host,
}

/// Parked connections the poller's table has room for from the start (fewer if the core's
/// cap is lower): its slots are reserved, not touched, so only those in use take memory, and
/// the table never moves as it fills (each move used to leave the old copy in the allocator).
const POLLER_RESERVE: usize = 1 << 16;

/// How long no new WebSocket must have opened before a core trims its heap.
const TRIM_QUIET: Duration = Duration::from_millis(200);

/// Connections one core refuses politely at the same time; more are closed at once.
const REFUSING_MAX: usize = 64;

/// Counts one connection held by this core while it lives (see `Core::live`).
pub struct ConnGuard(Rc<Core>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
        self.0.process_live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one busy connection while it lives (see `Core::busy`).
pub struct BusyGuard(Rc<Core>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.not_busy();
    }
}

/// An open WebSocket's hold on its core, in one pointer (there is one per idle connection):
/// held against the cap (a [`ConnGuard`]), busy (a shutdown waits for it, as a [`BusyGuard`]),
/// and counted in `websockets_open`.
pub struct WsGuard(ConnGuard);

impl WsGuard {
    pub fn core(&self) -> &Rc<Core> {
        &self.0 .0
    }
}

impl Drop for WsGuard {
    fn drop(&mut self) {
        let core = self.core();
        core.metrics.websockets_open.dec();
        core.not_busy();
    }
}

impl ConnGuard {
    /// The connection is an open WebSocket from now on.
    pub fn into_ws(self) -> WsGuard {
        let core = &self.0;
        core.busy.set(core.busy.get() + 1);
        core.metrics.websockets_open.inc();
        WsGuard(self)
    }
}

impl Core {
    pub fn new(
        id: usize,
        shared: Shared,
        stats: Arc<CoreStats>,
        storage: Storage,
        host: Host,
        recv_ring: Option<RecvRing>,
    ) -> Self {
        let Shared {
            config,
            parties,
            inboxes,
            process_live,
        } = shared;
        let parties = parties.instantiate(&config);
        let conn_cap = match config.max_connections_per_core {
            0 => usize::MAX,
            n => n,
        };
        let names = (0..parties.len())
            .map(|i| parties.name(i).clone())
            .collect();
        let rooms = RoomTable::new(names, storage.clone(), host.clone());
        let metrics = Rc::new(Metrics::default());
        // One ring for receives (the poller's) and sends (the flusher's), as configured.
        let receive_through_ring = config.ws_recv == RecvMode::Ring;
        let recv_ring = recv_ring.map(|r| Rc::new(RefCell::new(r)));
        let flusher = Flusher::new(metrics.clone());
        if let Some(ring) = recv_ring
            .as_ref()
            .filter(|_| config.ws_send != SendMode::Syscall)
        {
            flusher.send_through(ring.clone());
        }
        let process_cap = crate::config::process_connection_cap();
        Core {
            id,
            config,
            inboxes,
            stats,
            parties,
            rooms: RefCell::new(rooms),
            date: DateCache::new(),
            read_buf: RefCell::new(vec![0u8; READ_BUF_BYTES].into_boxed_slice()),
            flusher,
            metrics,
            next_serial: Cell::new(0),
            trim_pending: Cell::new(false),
            shutdown_deadline: Cell::new(None),
            busy: Cell::new(0),
            waiter: Cell::new(None),
            live: Cell::new(0),
            conn_cap,
            process_live,
            process_cap,
            refusing: Cell::new(0),
            storage,
            alarms: Alarms::default(),
            host,
            ws_poller: match WsPoller::new(
                id,
                conn_cap.min(process_cap).min(POLLER_RESERVE),
                recv_ring.clone().filter(|_| receive_through_ring),
            ) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(core = id, error = %e, "no websocket poller: one task per connection");
                    None
                }
            },
        }
    }

    /// Runs `f` on a room, loading it (and running the party's `on_start`) if it is not in
    /// memory; drops it afterwards if it has nothing to keep. Must not be called from inside a
    /// room handler (the room table is borrowed then).
    pub fn with_room<R>(&self, party: usize, id: &str, f: impl FnOnce(&mut Room) -> R) -> R {
        self.try_with_room(party, id, f)
            .expect("with_room called from inside a room handler")
    }

    /// [`Core::with_room`], or `None` if the room table is borrowed (called from inside a
    /// handler).
    pub fn try_with_room<R>(
        &self,
        party: usize,
        id: &str,
        f: impl FnOnce(&mut Room) -> R,
    ) -> Option<R> {
        let mut rooms = self.rooms.try_borrow_mut().ok()?;
        let room = rooms.get_or_create(party, id);
        if !room.started {
            room.started = true;
            self.parties.start(party, room);
        }
        let r = f(room);
        // Looked up again (hashing the id) only to drop a room that is now empty.
        if room.is_empty() {
            rooms.remove_if_empty(party, id);
        }
        Some(r)
    }

    /// Runs `f` on a room only if it is in memory; drops it afterwards if it is empty.
    pub fn with_existing_room<R>(
        &self,
        party: usize,
        id: &str,
        f: impl FnOnce(&mut Room) -> R,
    ) -> Option<R> {
        let mut rooms = self.rooms.borrow_mut();
        let room = rooms.get_mut(party, id)?;
        let r = f(room);
        if room.is_empty() {
            rooms.remove_if_empty(party, id);
        }
        Some(r)
    }

    /// Counts a connection as held by this core until the guard drops.
    pub fn conn_guard(self: &Rc<Self>) -> ConnGuard {
        self.live.set(self.live.get() + 1);
        self.process_live.fetch_add(1, Ordering::Relaxed);
        ConnGuard(self.clone())
    }

    /// Connections held by this core now.
    pub fn live_connections(&self) -> usize {
        self.live.get()
    }

    /// Marks a connection busy until the guard drops.
    pub fn busy_guard(self: &Rc<Self>) -> BusyGuard {
        self.busy.set(self.busy.get() + 1);
        BusyGuard(self.clone())
    }

    /// A busy connection is done (see `Core::busy`).
    fn not_busy(&self) {
        self.busy.set(self.busy.get() - 1);
        if self.busy.get() == 0 {
            if let Some(w) = self.waiter.take() {
                w.wake();
            }
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown_deadline.get().is_some()
    }

    fn begin_shutdown(&self, deadline: Instant) {
        if self.shutdown_deadline.get().is_none() {
            self.shutdown_deadline.set(Some(deadline));
            if let Some(w) = self.waiter.take() {
                w.wake();
            }
        }
    }

    /// Closes every WebSocket on this core with 1001 (going away).
    fn close_all_websockets(&self) {
        let rooms = self.rooms.borrow();
        for room in rooms.iter() {
            for (_, conn) in &room.conns {
                conn.close_with(crate::ws::close::GOING_AWAY, "Server shutting down", false);
            }
        }
    }

    /// Resolves when `pred` holds, re-checked whenever the core's waiter is woken.
    async fn wait_until(&self, pred: impl Fn(&Core) -> bool) {
        poll_fn(|cx| {
            if pred(self) {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    pub fn cores(&self) -> usize {
        self.config.threads
    }

    /// The index of the party called `name`, if there is one.
    pub fn party_index(&self, name: &str) -> Option<usize> {
        self.parties.index(name)
    }

    pub fn next_serial(&self) -> u64 {
        let s = self.next_serial.get();
        self.next_serial.set(s + 1);
        s
    }

    /// A WebSocket was just opened: once none has been for [`TRIM_QUIET`], the program's heap
    /// trim runs (`metrics::set_heap_trim`), so that what the burst's handshakes used and freed
    /// does not stay in the allocator while the connections sit idle. One timer per burst,
    /// nothing while connections keep coming.
    pub fn trim_after_burst(self: &Rc<Self>) {
        let Some(trim) = crate::metrics::heap_trim() else {
            return;
        };
        if self.trim_pending.replace(true) {
            return;
        }
        let core = self.clone();
        spawn_guarded(self.id, async move {
            loop {
                let seen = core.next_serial.get();
                monoio::time::sleep(TRIM_QUIET).await;
                if core.next_serial.get() == seen {
                    break;
                }
            }
            core.trim_pending.set(false);
            trim();
        });
    }
}

/// The send mode a core runs: `Ring` when it has a ring and was not told `syscall`; `auto`
/// without a ring (a kernel that refused it) sends with `sendmsg`.
fn resolved_send(asked: SendMode, have_ring: bool) -> SendMode {
    if have_ring && asked != SendMode::Syscall {
        SendMode::Ring
    } else {
        SendMode::Syscall
    }
}

/// What every core gets a clone of at start.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub parties: PartySet,
    pub inboxes: Inboxes,
    /// Connections held by the whole process (see `Core::process_live`).
    pub process_live: Arc<AtomicUsize>,
}

/// Opens core `id`'s storage: its log under `data_dir` (replayed), or memory.
fn open_storage(id: usize, config: &Config) -> std::io::Result<Storage> {
    if !config.persist {
        return Ok(Storage::memory());
    }
    Storage::open(&config.data_dir, id, config.fsync)
}

/// Runs core `id` until it is shut down: opens its storage and builds the ring (reporting on
/// `ready` whether that worked), accepts and adopts connections; on shutdown stops accepting,
/// closes WebSockets with 1001, waits (until the deadline) for in-flight requests and closing
/// handshakes to finish, and closes the storage (its last writes fsynced).
pub fn run(
    id: usize,
    shared: Shared,
    listener: std::net::TcpListener,
    inbox: Inbox,
    stats: Arc<CoreStats>,
    ready: std::sync::mpsc::Sender<std::io::Result<(RingMode, RecvMode, SendMode)>>,
) {
    let config = shared.config.clone();
    let storage = match open_storage(id, &config) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(std::io::Error::new(
                e.kind(),
                format!(
                    "core {id}: cannot open storage in {}: {e}",
                    config.data_dir.display()
                ),
            )));
            return;
        }
    };
    let (mut rt, ring_mode) = match super::ring::build(config.ring_mode) {
        Ok(built) => built,
        Err(e) => {
            tracing::error!(core = id, mode = %config.ring_mode, error = %e, "cannot build the event loop");
            let _ = ready.send(Err(std::io::Error::new(
                e.kind(),
                format!(
                    "core {id}: cannot build the event loop ({} mode): {e}",
                    config.ring_mode
                ),
            )));
            return;
        }
    };
    // The core's second ring (receives, sends or both) is built here, on the core's thread (it
    // is `SINGLE_ISSUER`), and handed to the poller and the flusher. A kernel that refuses it
    // stops the start where a ring was asked for by name, as a forced ring mode does (an A/B run
    // must measure what it asked for); the default send mode (`auto`) then sends with `sendmsg`.
    let forced = config.ws_recv == RecvMode::Ring || config.ws_send == SendMode::Ring;
    let recv_ring = match (config.ws_recv, config.ws_send) {
        (RecvMode::Epoll, SendMode::Syscall) => None,
        _ => match RecvRing::new(config.ws_recv == RecvMode::Ring) {
            Ok(ring) => Some(ring),
            Err(e) if !forced => {
                tracing::warn!(core = id, error = %e, "no websocket send ring on this kernel; sending with sendmsg");
                None
            }
            Err(e) => {
                let _ = ready.send(Err(std::io::Error::new(
                    e.kind(),
                    format!("core {id}: cannot build the websocket ring (--ws-recv/--ws-send ring): {e}"),
                )));
                return;
            }
        },
    };
    let send = resolved_send(config.ws_send, recv_ring.is_some());
    rt.block_on(async move {
        storage.start();
        let core = Rc::new_cyclic(|me| {
            Core::new(
                id,
                shared,
                stats,
                storage,
                super::host::CoreHost::shared(me.clone()),
                recv_ring,
            )
        });
        let recv = core.ws_poller.as_ref().map_or(RecvMode::Epoll, |p| p.mode());
        let _ = ready.send(Ok((ring_mode, recv, send)));
        // A parked connection that our side starts closing goes back to a task of its own.
        let weak = Rc::downgrade(&core);
        core.flusher.on_unpark(Box::new(move |slot| {
            if let Some(poller) = weak.upgrade().as_ref().and_then(|c| c.ws_poller.as_ref()) {
                poller.unpark(slot);
            }
        }));
        monoio::spawn(super::alarms::run(core.clone()));
        monoio::spawn(super::cron::run(core.clone()));
        monoio::spawn(core.flusher.clone().run());
        // Guarded: a panic there (a bug) must not take the core down; the poller then hands its
        // connections to tasks of their own.
        let c = core.clone();
        spawn_guarded(id, async move {
            if let Some(poller) = &c.ws_poller {
                poller.run().await;
            }
        });
        let c = core.clone();
        spawn_guarded(id, async move {
            if let (Some(poller), Some(interval)) = (&c.ws_poller, c.config.ws_ping_interval) {
                poller.run_sweeps(interval).await;
            }
        });
        // The inbox loop runs beside the core's life (not spawned): it is dropped, and its
        // doorbell wait cancelled, while the ring still exists. A spawned task parked on a ring
        // op at the end of `block_on` would be leaked with the ring it references, and the
        // ring's pending ops would keep the listener's socket open after shutdown.
        let inbox = async {
            inbox_loop(core.clone(), inbox).await;
            std::future::pending::<()>().await
        };
        let life = async {
            monoio::select! {
                _ = accept_loop(core.clone(), listener) => {},
                _ = core.wait_until(Core::shutting_down) => {},
            }
            // The listener was dropped with the accept loop: no new connections from here on.
            let deadline = core.shutdown_deadline.get().unwrap_or_else(Instant::now);
            core.close_all_websockets();
            if let Some(poller) = &core.ws_poller {
                poller.stop();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if monoio::time::timeout(left, core.wait_until(|c| c.busy.get() == 0))
                .await
                .is_err()
            {
                tracing::warn!(
                    core = id,
                    busy = core.busy.get(),
                    "shutdown deadline passed with connections still busy"
                );
            }
            if let Some(poller) = &core.ws_poller {
                poller.clear();
            }
            if let Err(e) = core.storage.close().await {
                tracing::error!(core = id, error = %e, "storage failed before shutdown");
            }
        };
        monoio::select! {
            _ = inbox => {},
            _ = life => {},
        }
        // Before the event loop goes: a poller task dropped unstopped would hand its
        // connections to new tasks, which nothing would run.
        if let Some(poller) = &core.ws_poller {
            poller.stop();
        }
    });
}

async fn accept_loop(core: Rc<Core>, listener: std::net::TcpListener) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core = core.id, error = %e, "cannot adopt the listener");
            return;
        }
    };
    // Accept errors are usually transient (EMFILE/ENFILE under a connection storm, ECONNABORTED):
    // back off, capped, instead of spinning or giving up.
    let mut backoff = Duration::from_millis(1);
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(1);
                CoreStats::bump(&core.stats.accepted);
                let _ = stream.set_nodelay(true);
                if core.live.get() >= core.conn_cap
                    || core.process_live.load(Ordering::Relaxed) >= core.process_cap
                {
                    CoreStats::bump(&core.stats.refused_at_capacity);
                    // Refusals are capped too: past a small allowance the socket is just closed.
                    if core.refusing.get() < REFUSING_MAX {
                        spawn_guarded(core.id, conn::refuse(core.clone(), stream));
                    }
                    continue;
                }
                spawn_guarded(
                    core.id,
                    conn::serve(core.clone(), stream, Vec::new(), false),
                );
            }
            Err(e) => {
                tracing::warn!(core = core.id, error = %e, "accept failed; backing off {backoff:?}");
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Inbox messages handled before the inbox loop lets the core's other tasks run.
const INBOX_BATCH: u32 = 64;

/// Adopts connections handed over by other cores (see `handoff`) and takes shutdown orders.
/// Sleeps on the inbox's doorbell, read through the ring (see `doorbell.rs` for why).
async fn inbox_loop(core: Rc<Core>, inbox: Inbox) {
    // Without a waiter (no fd for it, or its poll failed) the loop polls the queue every
    // millisecond instead: slower handoffs, but shutdown and handoffs still arrive.
    let mut waiter = match inbox
        .bell
        .waiter_fd()
        .and_then(|fd| monoio::net::TcpStream::from_std(std::net::TcpStream::from(fd)))
    {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(core = core.id, error = %e, "cannot wait on the inbox doorbell; polling it every 1 ms");
            None
        }
    };
    // Messages taken since the loop last waited: a steady stream must not starve the core's
    // other tasks.
    let mut taken = 0u32;
    loop {
        let msg = match inbox.rx.try_recv() {
            Ok(msg) => {
                taken += 1;
                if taken.is_multiple_of(INBOX_BATCH) {
                    crate::net::poller::yield_once().await;
                }
                msg
            }
            Err(flume::TryRecvError::Disconnected) => return,
            Err(flume::TryRecvError::Empty) => {
                taken = 0;
                let Some(w) = &waiter else {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                inbox.bell.arm();
                if !inbox.rx.is_empty() {
                    inbox.bell.disarm();
                    continue;
                }
                // The waiter is an eventfd, polled (io_uring PollAdd or an epoll registration)
                // and never read through monoio; `clear` reads it.
                if let Err(e) = w.readable(false).await {
                    tracing::error!(core = core.id, error = %e, "inbox doorbell wait failed; polling it every 1 ms");
                    waiter = None;
                }
                inbox.bell.clear();
                continue;
            }
        };
        let h = match msg {
            Inbound::Conn(h) => h,
            Inbound::Fetch(job) => {
                super::fetch::serve_job(core.clone(), job);
                continue;
            }
            Inbound::Shutdown { deadline } => {
                core.begin_shutdown(deadline);
                continue;
            }
            Inbound::Metrics(reply) => {
                // The asker may have given up (timed out): then the answer is just dropped.
                let _ = reply.try_send(super::metrics::snapshot(&core));
                continue;
            }
        };
        CoreStats::bump(&core.stats.handoffs_received);
        let stream = std::net::TcpStream::from(h.fd);
        match monoio::net::TcpStream::from_std(stream) {
            Ok(stream) => {
                spawn_guarded(
                    core.id,
                    conn::serve(core.clone(), stream, h.bytes, h.hooked),
                );
            }
            Err(e) => {
                tracing::warn!(core = core.id, from = h.from, error = %e, "cannot adopt a handed-off connection")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{resolved_send, SendMode};

    #[test]
    fn the_default_send_mode_uses_the_ring_only_where_there_is_one() {
        assert_eq!(resolved_send(SendMode::Auto, true), SendMode::Ring);
        assert_eq!(resolved_send(SendMode::Auto, false), SendMode::Syscall);
        assert_eq!(resolved_send(SendMode::Ring, true), SendMode::Ring);
        assert_eq!(resolved_send(SendMode::Syscall, true), SendMode::Syscall);
        assert_eq!(resolved_send(SendMode::Syscall, false), SendMode::Syscall);
    }
}
