//! Moving a connection to the core that owns its room: the only `Send` code in partyring.
//!
//! A core that reads a request for a room it does not own (see `shard`) has parsed the head and
//! written nothing for it. It packs the socket's fd and *every byte it has read but not answered*
//! (the request itself, a pipelined request, or WebSocket frames a client sent right after its
//! handshake) into a [`Handoff`] and pushes it onto the owner's inbox, a bounded flume queue.
//! The owner's inbox task (in `core`) is woken by the inbox's [`Doorbell`] (an eventfd the
//! owner reads through its ring; see `doorbell.rs` for why not monoio's cross-thread waker),
//! rebuilds the stream from the fd, and serves it from those bytes as if it had accepted it.
//!
//! Sending returns the `Handoff` on failure (inbox full or the owner gone), so the sender still
//! owns the socket and can answer 503 on it.

use std::{io, os::fd::OwnedFd, sync::Arc, time::Instant};

use super::doorbell::Doorbell;

/// A connection in transit between cores.
#[derive(Debug)]
pub struct Handoff {
    /// The socket. Dropping a `Handoff` closes it.
    pub fd: OwnedFd,
    /// Bytes read from the socket and not yet answered, oldest first.
    pub bytes: Vec<u8>,
    /// The first request in `bytes` already passed its party's `on_before_*` hook on the
    /// sending core (which may have rewritten it): the owner must not run the hook again.
    pub hooked: bool,
    /// The core that sent it (for logs and the receiver's sanity check).
    pub from: usize,
}

/// What arrives in a core's inbox.
#[derive(Debug)]
pub enum Inbound {
    /// A connection to adopt.
    Conn(Handoff),
    /// A party-to-party fetch for a room this core owns.
    Fetch(super::fetch::FetchJob),
    /// Stop accepting, close WebSockets with 1001, finish in-flight requests by `deadline`.
    Shutdown { deadline: Instant },
    /// A `/metrics` scrape on another core wants this core's counters, sent back here.
    Metrics(flume::Sender<crate::metrics::Snapshot>),
}

/// The sending side of every core's inbox, shared by all cores and the `Server` handle.
#[derive(Clone, Debug)]
pub struct Inboxes {
    senders: Arc<[(flume::Sender<Inbound>, Arc<Doorbell>)]>,
}

/// One core's receiving side: the queue and the doorbell its senders ring.
pub struct Inbox {
    pub rx: flume::Receiver<Inbound>,
    pub bell: Arc<Doorbell>,
}

impl Inboxes {
    /// Creates one bounded inbox per core; returns the shared senders and each core's receiver.
    ///
    /// # Errors
    /// An eventfd for a doorbell could not be made (out of file descriptors).
    pub fn new(cores: usize, capacity: usize) -> io::Result<(Inboxes, Vec<Inbox>)> {
        let mut senders = Vec::with_capacity(cores);
        let mut inboxes = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = flume::bounded(capacity);
            let bell = Arc::new(Doorbell::new()?);
            senders.push((tx, bell.clone()));
            inboxes.push(Inbox { rx, bell });
        }
        Ok((
            Inboxes {
                senders: senders.into(),
            },
            inboxes,
        ))
    }

    /// Queues `msg` for core `to` and rings its doorbell.
    fn try_send(&self, to: usize, msg: Inbound) -> Result<(), Inbound> {
        let (tx, bell) = &self.senders[to];
        tx.try_send(msg).map_err(flume::TrySendError::into_inner)?;
        bell.ring();
        Ok(())
    }

    /// Queues `h` for core `to`.
    ///
    /// # Errors
    /// Hands `h` back if that inbox is full or its core has stopped.
    pub fn send(&self, to: usize, h: Handoff) -> Result<(), Handoff> {
        debug_assert_ne!(to, h.from, "a core never hands a connection to itself");
        self.try_send(to, Inbound::Conn(h)).map_err(|e| match e {
            Inbound::Conn(h) => h,
            _ => unreachable!("we sent a connection"),
        })
    }

    /// Queues a party-to-party fetch for core `to`.
    ///
    /// # Errors
    /// That inbox is full or its core has stopped: the job is handed back.
    pub fn send_fetch(
        &self,
        to: usize,
        job: super::fetch::FetchJob,
    ) -> Result<(), Box<super::fetch::FetchJob>> {
        self.try_send(to, Inbound::Fetch(job)).map_err(|e| match e {
            Inbound::Fetch(job) => Box::new(job),
            _ => unreachable!("we sent a fetch"),
        })
    }

    /// Asks core `to` for its metrics snapshot, to be sent on `reply`. False if that inbox is
    /// full or its core has stopped (the scrape reports it missing).
    pub fn send_metrics(&self, to: usize, reply: flume::Sender<crate::metrics::Snapshot>) -> bool {
        self.try_send(to, Inbound::Metrics(reply)).is_ok()
    }

    /// Tells every core to shut down. Blocks while an inbox is full (called from the thread
    /// that handles signals, never from a core).
    pub fn shutdown_all(&self, deadline: Instant) {
        for (tx, bell) in self.senders.iter() {
            if tx.send(Inbound::Shutdown { deadline }).is_ok() {
                bell.ring();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_inbox_hands_back() {
        let (inboxes, rx) = Inboxes::new(2, 1).unwrap();
        let fd = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let h = |from| Handoff {
            fd: fd(),
            bytes: b"GET".to_vec(),
            hooked: false,
            from,
        };
        assert!(inboxes.send(1, h(0)).is_ok());
        let back = inboxes.send(1, h(0)).unwrap_err();
        assert_eq!(back.bytes, b"GET");
        drop(rx);
        assert!(inboxes.send(0, h(1)).is_err(), "closed inbox hands back");
    }
}
