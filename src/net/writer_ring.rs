//! The flusher's sends through the core's ring (`--ws-send auto`, the default, or `ring`; see
//! `net/writer.rs` for the queue and the flusher, `net/send_batch.rs` and
//! `RecvRing::send_batch` for the batch): each dirty outbox adds the send `sendmsg` would have
//! made to one batch, the batch goes 16 SQEs per enter, and each outcome is taken as a
//! `sendmsg`'s.

use std::{cell::RefCell, io, os::fd::AsRawFd, os::fd::RawFd, rc::Rc};

use super::{
    Flusher, OutState, Outbox, CORK_MAX, MAX_IOVECS, RING_COPY_MAX, RING_SENDS_MAX,
};
use crate::net::{recv_ring::RecvRing, send_batch::SendBatch};

impl Outbox {
    /// Adds what [`Outbox::send_some`] would send now to `batch`, as one send on `fd`: the
    /// same frames, corked the same way. Returns its length in bytes (0: nothing queued, no
    /// send added).
    pub(super) fn add_to(&self, batch: &mut SendBatch, fd: RawFd) -> usize {
        let frames = self.frames.borrow();
        if frames.is_empty() {
            return 0;
        }
        let skip = self.sent_of_front.get() as usize;
        let count = frames.len().min(MAX_IOVECS);
        let total: usize = frames.iter().take(count).map(|f| f.len()).sum::<usize>() - skip;
        batch.begin(fd);
        let cork = count > 1 && total <= CORK_MAX;
        for (i, f) in frames.iter().take(count).enumerate() {
            let from = if i == 0 { skip } else { 0 };
            if cork {
                batch.add_copy(&f[from..]);
            } else {
                batch.add_frame(f, from);
            }
        }
        total
    }

    /// Takes the outcome of the send [`Outbox::add_to`] added (`sent`: bytes, or minus an
    /// errno), as `flush` takes `send_some`'s. Returns true when more is queued and the socket
    /// took everything offered (send again).
    pub(super) fn sent_by_ring(self: &Rc<Self>, offered: usize, sent: Option<i32>) -> bool {
        if self.state.get() == OutState::Closed {
            return false;
        }
        match sent {
            Some(n) if n >= 0 => {
                let n = n as usize;
                if let Some(io) = self.ends.borrow().io.as_ref() {
                    io.flusher.metrics.sent_bytes.add(n as u64);
                }
                self.advance(n);
                if n < offered {
                    // The socket took part of it: it is full now.
                    self.block();
                    false
                } else if self.queued.get() > 0 {
                    true
                } else {
                    self.with_fd(|fd| self.after_drained(fd));
                    false
                }
            }
            Some(e) if -e == libc::EAGAIN => {
                self.block();
                false
            }
            Some(e) => {
                tracing::debug!(error = %io::Error::from_raw_os_error(-e), "websocket write failed");
                self.shut();
                false
            }
            None => {
                // The ring failed (logged by the flusher); what reached the socket is unknown.
                self.shut();
                false
            }
        }
    }
}

impl Flusher {
    /// One pass's sends through the ring: every dirty outbox's send goes in one batch (or a
    /// few, past the bounds), submitted 16 per enter; outboxes that sent all they offered and
    /// have more queued (over [`MAX_IOVECS`] frames) go again in another batch. The outcome of
    /// each send is taken as `flush` takes a `sendmsg`'s. Leaves `todo` empty.
    pub(super) fn flush_through(&self, ring: &RefCell<RecvRing>, todo: &mut Vec<Rc<Outbox>>) {
        // Reused from pass to pass, as the batch is: (outbox, bytes offered, outcome).
        let mut members = std::mem::take(&mut *self.members.borrow_mut());
        let mut again = Vec::new();
        for outbox in todo.iter() {
            outbox.scheduled.set(false);
        }
        let mut next = 0;
        while next < todo.len() {
            {
                let mut batch = self.batch.borrow_mut();
                while next < todo.len()
                    && batch.len() < RING_SENDS_MAX
                    && batch.copied_bytes() < RING_COPY_MAX
                {
                    let outbox = &todo[next];
                    next += 1;
                    if outbox.state.get() == OutState::Closed || outbox.blocked.get() {
                        continue;
                    }
                    let Some(fd) = outbox.with_fd(|fd| fd.as_raw_fd()) else {
                        continue;
                    };
                    match outbox.add_to(&mut batch, fd) {
                        0 => {
                            outbox.with_fd(|fd| outbox.after_drained(fd));
                        }
                        offered => members.push((outbox.clone(), offered, None)),
                    }
                }
                let sent = ring.borrow_mut().send_batch(&mut batch);
                for (i, member) in members.iter_mut().enumerate() {
                    member.2 = batch.result(i);
                }
                if let Err(e) = sent {
                    // Those without an outcome are closed (`sent_by_ring`): what reached them
                    // is unknown.
                    let closed = members.iter().filter(|m| m.2.is_none()).count();
                    tracing::error!(error = %e, closed, "cannot send through the websocket ring");
                }
                batch.clear();
            }
            // The batch is released: closing a connection reaches the poller, and the ring.
            for (outbox, offered, sent) in members.drain(..) {
                if outbox.sent_by_ring(offered, sent) {
                    again.push(outbox);
                }
            }
            if next == todo.len() && !again.is_empty() {
                todo.clear();
                std::mem::swap(todo, &mut again);
                next = 0;
            }
        }
        todo.clear();
        *self.members.borrow_mut() = members;
    }
}
