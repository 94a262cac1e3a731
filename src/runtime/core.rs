//! A core: one OS thread, one monoio ring, and everything that thread owns.
//!
//! `Core` is `!Send` on purpose (`Rc`, `RefCell`): rooms, their connections and histories are
//! touched only by their owner thread, so the hot path takes no locks and no atomics. The only
//! ways in from outside are the accept socket and the handoff inbox.
//!
//! Each core runs two kinds of long-lived task: the accept loop (on its SO_REUSEPORT listener)
//! and the inbox loop (connections handed over by other cores); every connection is one more
//! task (two once it is a WebSocket: reader and writer).

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    config::Config,
    http::DateCache,
    net::conn,
    party::{self, Party},
    room::RoomTable,
};

use super::handoff::{Handoff, Inboxes};

/// Per-core counters readable from any thread (tests, metrics). Touched once per connection
/// event, never per message, so relaxed atomics cost nothing that matters.
#[derive(Debug, Default)]
pub struct CoreStats {
    pub accepted: AtomicU64,
    pub handoffs_sent: AtomicU64,
    pub handoffs_received: AtomicU64,
    pub handoffs_refused: AtomicU64,
}

impl CoreStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
    /// The party implementations, in `party::builtin()` order; index = party id.
    pub parties: Vec<Box<dyn Party>>,
    pub rooms: RefCell<RoomTable>,
    pub date: DateCache,
    /// Shared by every WebSocket read on this core: reads are synchronous after readiness, so
    /// it is never held across an `.await`, and idle connections park no buffer of their own.
    pub read_buf: RefCell<Box<[u8]>>,
    /// Serial numbers for connections (newest wins when ids collide).
    next_serial: std::cell::Cell<u64>,
}

impl Core {
    pub fn new(id: usize, config: Arc<Config>, inboxes: Inboxes, stats: Arc<CoreStats>) -> Self {
        let parties = party::builtin();
        let rooms = RoomTable::new(parties.len(), config.history_limit);
        Core {
            id,
            config,
            inboxes,
            stats,
            parties,
            rooms: RefCell::new(rooms),
            date: DateCache::new(),
            read_buf: RefCell::new(vec![0u8; READ_BUF_BYTES].into_boxed_slice()),
            next_serial: std::cell::Cell::new(0),
        }
    }

    pub fn cores(&self) -> usize {
        self.config.threads
    }

    /// The index of the party called `name`, if there is one.
    pub fn party_index(&self, name: &str) -> Option<usize> {
        self.parties.iter().position(|p| p.name() == name)
    }

    pub fn next_serial(&self) -> u64 {
        let s = self.next_serial.get();
        self.next_serial.set(s + 1);
        s
    }
}

/// Runs core `id` until the process ends: builds the ring, then accepts and adopts connections.
pub fn run(
    id: usize,
    config: Arc<Config>,
    listener: std::net::TcpListener,
    inbox: flume::Receiver<Handoff>,
    inboxes: Inboxes,
    stats: Arc<CoreStats>,
) {
    let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(4096)
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(core = id, error = %e, "cannot build the event loop");
            return;
        }
    };
    rt.block_on(async move {
        let core = Rc::new(Core::new(id, config, inboxes, stats));
        monoio::spawn(inbox_loop(core.clone(), inbox));
        accept_loop(core, listener).await;
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
                monoio::spawn(conn::serve(core.clone(), stream, Vec::new()));
            }
            Err(e) => {
                tracing::warn!(core = core.id, error = %e, "accept failed; backing off {backoff:?}");
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Adopts connections handed over by other cores (see `handoff`).
async fn inbox_loop(core: Rc<Core>, inbox: flume::Receiver<Handoff>) {
    while let Ok(h) = inbox.recv_async().await {
        CoreStats::bump(&core.stats.handoffs_received);
        let stream = std::net::TcpStream::from(h.fd);
        match monoio::net::TcpStream::from_std(stream) {
            Ok(stream) => {
                monoio::spawn(conn::serve(core.clone(), stream, h.bytes));
            }
            Err(e) => {
                tracing::warn!(core = core.id, from = h.from, error = %e, "cannot adopt a handed-off connection")
            }
        }
    }
}
