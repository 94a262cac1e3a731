//! A core's receive ring: multishot `recv` into provided buffers, for the poller's sockets.
//!
//! Owns: a second io_uring instance per core (not monoio's: monoio 0.2.4 has no API for
//! multishot receive or provided buffers), its provided-buffer ring ([`BUFS`] x [`BUF_SIZE`],
//! shared by every socket of the core), and the completions taken off it but not yet handled.
//! Does not own: the sockets (their owners keep them open while a receive is armed), or what
//! the bytes mean (the poller hands them to the parked connection).
//!
//! How it is driven: the poller arms one multishot `recv` per parked socket ([`RecvRing::arm`]).
//! The kernel then copies each batch of arriving bytes into a buffer it takes from the ring and
//! posts a completion naming the buffer; no readiness round trip, no `recv` syscall, and an
//! idle socket holds no buffer. Each buffer goes back to the ring right after its bytes were
//! handled.
//!
//! The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG` (`COOP_TASKRUN` where the
//! kernel refuses): the receives that arriving bytes trigger wait as deferred work until the
//! poller enters this ring ([`RecvRing::reap`]), and then run as one batch. The core's thread
//! waits in monoio's ring, not in this one, so an eventfd is registered with this ring: the
//! kernel signals it when work arrives while none is pending, and monoio polls it like any fd.
//! One plain enter runs a bounded share of the deferred work (20 items on Linux 6.13+) and the
//! eventfd is not signalled again while work is left, so `reap` asks each enter for a full
//! queue's worth (with a zero timeout: it never waits), which runs all of it, enters again while
//! completions keep coming, and [`RecvRing::backlogged`] tells the poller not to sleep while
//! anything is left. With `COOP_TASKRUN` instead, each receive ran as task work at the
//! thread's next kernel entry, one or two at a time after every `sendmsg`: 17% slower on echo
//! (PERF.md §1k).
//!
//! Leaving: a socket whose connection leaves the poller must not have a receive that could
//! still take its bytes. [`RecvRing::cancel`] submits what is queued, cancels the socket's
//! receive synchronously (`IORING_REGISTER_SYNC_CANCEL`, which returns once the request is
//! gone), runs the deferred work, then moves every completion posted so far into the backlog and hands back the bytes
//! that were for the leaving socket: nothing it was sent is lost or read by anyone else.
//!
//! Sends: with the send ring (`--ws-send auto`, the default, or `ring`) the core's flusher sends through this ring too
//! ([`RecvRing::send_batch`]): one SQE per connection, submitted 16 per enter ([`SEND_CHUNK`]), every send
//! completing inside it (`MSG_DONTWAIT`). Their completions carry [`SEND_TAG`]; receive
//! completions met while collecting them wait in the backlog.
//!
//! Needs Linux 6.0 (multishot receive, synchronous cancel; buffer rings are 5.19).
//! [`RecvRing::new`] probes for all of it and fails otherwise (then `--ws-recv ring` stops the
//! start). Measured against the epoll poller, the default, in PERF.md §1k and §1l.

use std::{
    collections::VecDeque,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::{cqueue, opcode, types, IoUring};

use super::send_batch::SendBatch;

/// SQEs one enter submits at most (`submit_all`). The sends of one enter run back to back in
/// the kernel; on loopback each leaves the receiving socket's work as a softirq on this CPU, and
/// in a long enter that work piled up past the softirq's budget and went to `ksoftirqd`: 10-21%
/// of the CPU with a whole pass per enter, and the rounds with most of it the slowest. With 16
/// per enter it was 3-4% (PERF.md §1m).
const SEND_CHUNK: usize = 16;

/// `IORING_ENTER_GETEVENTS` (linux/io_uring.h; the io-uring crate keeps its constants private).
const ENTER_GETEVENTS: u32 = 1;

/// Provided buffers per core. Each completion holds one until it is handled; a socket that
/// finds none left ends its receive with `ENOBUFS` and is armed again (its bytes wait in the
/// socket meanwhile). The whole set is touched in turn under load, so it is resident memory:
/// 1,024 x 2 KiB = 2 MiB per core.
pub const BUFS: u16 = 1024;
/// Bytes per provided buffer (uWebSockets' io_uring backend uses 2 KiB too). A larger read is
/// split over several completions; the session keeps a frame's head across them.
pub const BUF_SIZE: usize = 2048;
/// The one buffer group.
const BGID: u16 = 0;
/// Submission queue entries: re-arms of one loop pass, submitted together.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries (more are kept by the kernel in its overflow list, never dropped).
const CQ_ENTRIES: u32 = 8192;
/// Enters per [`RecvRing::reap`] at most (each runs every deferred receive pending; more are
/// needed only while completions keep coming).
const MAX_ENTERS: usize = 64;
/// The `user_data` bit of a send's completion; a receive's tag never sets it (the poller keeps
/// its generations below 2^31).
pub const SEND_TAG: u64 = 1 << 63;
/// Waits for a batch's sends to complete, at most (each one completes inside the submit; see
/// [`RecvRing::send_batch`]).
const MAX_SEND_WAITS: usize = 1024;

/// One completion: the socket's key (`user_data`), the result, the flags.
#[derive(Copy, Clone, Debug)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// The provided buffer holding the bytes, if the completion took one.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// The receive stays armed (a multishot receive ends with a completion without this).
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

pub struct RecvRing {
    ring: IoUring,
    /// Registered with the ring: the kernel signals it when work for the ring arrives (see
    /// the module docs); the poller waits for it to be readable.
    efd: OwnedFd,
    /// The ring defers its work (`DEFER_TASKRUN`) until [`RecvRing::reap`] runs it.
    defer: bool,
    /// The last `reap` stopped at its bound with work perhaps left.
    unreaped: bool,
    /// The provided buffers; `None` for a ring built for sends only (`RecvRing::new(false)`),
    /// which arms no receive.
    bufs: Option<BufRing>,
    /// Completions taken off the ring by [`RecvRing::cancel`], handed out before newer ones.
    backlog: VecDeque<Completion>,
    /// SQEs pushed and not yet submitted.
    unsubmitted: bool,
    /// Send batches whose completions never came (an enter failed): the kernel may still read
    /// their bytes, so they are kept until the ring is dropped (after its cancel).
    orphans: Vec<SendBatch>,
    /// The number of the current send batch (31 bits), in its sends' tags: a late completion of
    /// an orphaned batch is never taken for a send of a later one.
    send_gen: u64,
}

impl RecvRing {
    /// A ring for receives and sends, or with `receive` false for sends only (then without
    /// the 2 MiB of provided buffers, and [`RecvRing::arm`] refuses).
    ///
    /// # Errors
    /// The kernel lacks io_uring or one of the features above (then use epoll).
    pub fn new(receive: bool) -> io::Result<RecvRing> {
        let (ring, defer) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
        {
            Ok(ring) => (ring, true),
            Err(_) => (
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .setup_submit_all()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)?,
                false,
            ),
        };
        // SAFETY: eventfd has no memory-safety preconditions; a negative result is an error.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` was just returned by eventfd, so it is open and owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        // Only the poller waits for it; a ring for sends only would signal it for nobody.
        if receive {
            ring.submitter().register_eventfd(efd.as_raw_fd())?;
        }
        // Synchronous cancel (6.0) of a request that does not exist answers ENOENT; an older
        // kernel answers EINVAL for the unknown register opcode.
        match ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::user_data(u64::MAX))
        {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Ok(()) => {}
            Err(e) => return Err(e),
        }
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::RecvMulti::CODE) {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let bufs = if receive {
            Some(BufRing::new(&ring)?)
        } else {
            None
        };
        Ok(RecvRing {
            ring,
            efd,
            defer,
            unreaped: false,
            bufs,
            backlog: VecDeque::new(),
            unsubmitted: false,
            orphans: Vec::new(),
            send_gen: 0,
        })
    }

    /// The fd to wait on: readable once work for the ring arrived (then call
    /// [`RecvRing::reap`]).
    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Resets the wake-up fd, submits what is queued and runs the ring's deferred work, so that
    /// every completion due so far is in the queue for [`RecvRing::pop`].
    ///
    /// # Errors
    /// `io_uring_enter` failed.
    pub fn reap(&mut self) -> io::Result<()> {
        let mut count = 0u64;
        // SAFETY: `efd` is an open eventfd and `count` the 8 writable bytes its read takes;
        // EAGAIN (nothing signalled) leaves it untouched.
        unsafe { libc::read(self.efd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        if !self.defer {
            return self.submit();
        }
        // An enter runs at most max(20, min_complete) deferred items (Linux 6.13+), the rest
        // waiting in a list that signals nothing: arriving work signals the eventfd only when
        // it finds that list empty. So each enter asks for as many completions as the queue
        // holds (the kernel's own cap), which runs every item pending, with a zero timeout, so
        // it never waits: ETIME is the normal answer. Stopping after a 20-item enter that
        // posted nothing could leave the rest of the list unsignalled until other work came.
        self.unreaped = true;
        let zero = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&zero);
        for _ in 0..MAX_ENTERS {
            let before = self.ring.completion().len();
            match self
                .ring
                .submitter()
                .submit_with_args(CQ_ENTRIES as usize, &args)
            {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                Err(e) => return Err(e),
            }
            self.unsubmitted = !self.ring.submission().is_empty();
            // Every pending item ran, so an enter that posted nothing leaves nothing behind.
            // (The ring's TASKRUN flag is no guide: it was seen to stay set with nothing to run.)
            if self.ring.completion().len() == before {
                self.unreaped = false;
                break;
            }
        }
        Ok(())
    }

    /// Queues a multishot receive on `fd`, its completions tagged `user_data`. `fd` must stay
    /// open until the receive ended (a completion without `more`) or was cancelled.
    ///
    /// # Errors
    /// The submission queue is full and submitting it failed.
    pub fn arm(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        if self.bufs.is_none() {
            return Err(io::Error::other("this ring was built for sends only"));
        }
        let sqe = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(user_data);
        loop {
            // SAFETY: the SQE references only the socket, which its owner keeps open while the
            // receive is armed (the poller cancels it before the socket can be closed), and the
            // buffer ring, which lives as long as the ring (see `BufRing`).
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.unsubmitted = true;
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Submits what [`RecvRing::arm`] queued.
    ///
    /// # Errors
    /// `io_uring_enter` failed (other than `EINTR`/`EBUSY`, which leave the SQEs for later).
    pub fn submit(&mut self) -> io::Result<()> {
        if !self.unsubmitted && !self.ring.submission().cq_overflow() {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => {
                self.unsubmitted = !self.ring.submission().is_empty();
                Ok(())
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::EBUSY) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the receive tagged `user_data` (see the module docs) and returns the bytes it had
    /// received and not yet handed out, in order.
    ///
    /// # Errors
    /// Submitting or cancelling failed: the receive may still be armed.
    pub fn cancel(&mut self, user_data: u64) -> io::Result<Vec<u8>> {
        // A receive still in the submission queue would be armed after the cancel.
        for _ in 0..MAX_ENTERS {
            if !self.unsubmitted {
                break;
            }
            self.reap()?;
        }
        if self.unsubmitted {
            return Err(io::Error::other("the receive ring does not take submissions"));
        }
        match self
            .ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::user_data(user_data).all())
        {
            Ok(()) => {}
            // Already ended (its last completion is in the queue, or was handled).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // Deferred work may still hold completions for it (bytes received before the cancel).
        self.reap()?;
        self.backlog.extend(self.ring.completion().map(|c| Completion {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
        let mut unread = Vec::new();
        let mut bufs = self.bufs.as_mut();
        self.backlog.retain(|c| {
            if c.user_data != user_data {
                return true;
            }
            // A buffer implies a receive, and receives imply the buffers (`arm`).
            if let (Some(bid), Some(bufs)) = (c.buffer(), bufs.as_deref_mut()) {
                if c.result > 0 {
                    unread.extend_from_slice(bufs.get(bid, c.result as usize));
                }
                bufs.give_back(bid);
            }
            false
        });
        // The reap above consumed the wake-up the poller may still be waiting for.
        self.wake_if_backlogged();
        Ok(unread)
    }

    /// Signals the wake-up fd if completions wait that it does not show: after a `reap` or a
    /// submission outside the poller's own batch (a cancel, an arm), whose completions would
    /// otherwise wait for the next unrelated wake-up.
    pub fn wake_if_backlogged(&mut self) {
        if self.backlogged() {
            let one: u64 = 1;
            // SAFETY: `efd` is an open eventfd and `one` the 8 bytes its write takes; the only
            // failure (EAGAIN, counter at its maximum) means it is signalled already.
            unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Completions or deferred work wait that the wake-up fd does not show: taken off the queue
    /// by a cancel, left in the queue by a batch that stopped early, or left deferred by a
    /// [`RecvRing::reap`] that hit its bound. Call `reap` and take them without waiting.
    pub fn backlogged(&mut self) -> bool {
        !self.backlog.is_empty() || self.unreaped || !self.ring.completion().is_empty()
    }

    /// The next completion, oldest first. Its buffer (if any) must go back with
    /// [`RecvRing::give_back`] once its bytes were handled.
    pub fn pop(&mut self) -> Option<Completion> {
        loop {
            let c = match self.backlog.pop_front() {
                Some(c) => c,
                None => self.ring.completion().next().map(|c| Completion {
                    user_data: c.user_data(),
                    result: c.result(),
                    flags: c.flags(),
                })?,
            };
            // A send's completion here is one of an orphaned batch (see `send_batch`): nobody
            // waits for it.
            if c.user_data & SEND_TAG == 0 {
                return Some(c);
            }
        }
    }

    /// Copies the `len` bytes of buffer `bid` into `out` (cleared first). The buffer stays
    /// ours until [`RecvRing::give_back`].
    pub fn copy_out(&self, bid: u16, len: usize, out: &mut Vec<u8>) {
        out.clear();
        if let Some(bufs) = &self.bufs {
            out.extend_from_slice(bufs.get(bid, len));
        }
    }

    /// Hands buffer `bid` back to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        if let Some(bufs) = &mut self.bufs {
            bufs.give_back(bid);
        }
    }

    /// Sends every send of `batch` (16 SQEs per enter), and fills in each result (bytes sent, or
    /// minus an errno: `-EAGAIN` for a socket that takes nothing now).
    ///
    /// Every send carries `MSG_DONTWAIT`, which io_uring honours by completing the request
    /// with `-EAGAIN` instead of waiting for the socket, so each one completes inside the
    /// submit, no task work involved; a send is never left in flight when this returns. The
    /// ring is `SUBMIT_ALL`, and the submission queue is empty when this returns (else the
    /// process aborts, see `submit_all`): an SQE naming a socket by number never waits for a
    /// later enter, by which time its connection may be closed and the number reused. Should a
    /// completion not come all the same, the batch's buffers are kept by the ring for as long
    /// as it lives, `batch` is left empty, and an error returned. Receive completions met on
    /// the way wait in the backlog, in order.
    ///
    /// # Errors
    /// The queue had no room for the batch (nothing was sent), or a completion did not come.
    pub fn send_batch(&mut self, batch: &mut SendBatch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pending = 0usize;
        // A new number first: a late completion of an orphaned batch, met from here on, is
        // never taken for one of this batch's sends.
        self.send_gen = (self.send_gen + 1) & 0x7fff_ffff;
        // The poller's receives first, so the batch fits in the queue whole.
        self.submit_all(batch, &mut pending);
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if room < batch.len() {
            return Err(io::Error::other(
                "the ring's submission queue has no room for the sends",
            ));
        }
        batch.materialise();
        let tag = SEND_TAG | self.send_gen << 32;
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        {
            let mut sq = self.ring.submission();
            for i in 0..batch.sends.len() {
                let send = &batch.sends[i];
                let iovs = &batch.iovs[send.parts.0..send.parts.1];
                let sqe = if iovs.len() == 1 {
                    opcode::Send::new(
                        types::Fd(send.fd),
                        iovs[0].iov_base.cast(),
                        iovs[0].iov_len as u32,
                    )
                    .flags(flags)
                    .build()
                } else {
                    opcode::SendMsg::new(types::Fd(send.fd), &batch.hdrs[i])
                        .flags(flags as u32)
                        .build()
                }
                .user_data(tag | i as u64);
                // SAFETY: the SQE points at `batch`'s iovecs, header and bytes (its frames are
                // kept by the batch), which stay in place and unchanged until every send of the
                // batch has completed: this function waits for that, or hands the batch to
                // `orphans` (dropped only after the ring's requests are cancelled). The queue
                // has room for all of them (checked above), so the push cannot fail.
                let pushed = unsafe { sq.push(&sqe) };
                debug_assert!(pushed.is_ok(), "room was checked");
                pending += 1;
            }
        }
        self.submit_all(batch, &mut pending);
        self.collect_sends(batch, &mut pending);
        // Each send completed inside the submit; this is for a kernel that posts one later.
        let short = types::Timespec::new().nsec(1_000_000);
        let args = types::SubmitArgs::new().timespec(&short);
        let mut waits = 0;
        while pending > 0 && waits < MAX_SEND_WAITS {
            waits += 1;
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(_) => break,
            }
            self.collect_sends(batch, &mut pending);
        }
        self.unsubmitted = !self.ring.submission().is_empty();
        self.wake_if_backlogged();
        if pending > 0 {
            self.orphans.push(std::mem::take(batch));
            return Err(io::Error::other("sends through the ring did not complete"));
        }
        Ok(())
    }

    /// Submits everything queued, at most [`SEND_CHUNK`] SQEs per enter, taking completions
    /// off the queue between enters (and flushing any that overflowed it: a full
    /// completion queue answers `EBUSY`). An SQE that stayed queued could be submitted by a
    /// later enter after its socket was closed and the number reused, sending one client's
    /// bytes to another; a ring that takes no submissions at all is broken beyond that, so the
    /// process aborts rather than risk it.
    fn submit_all(&mut self, batch: &mut SendBatch, pending: &mut usize) {
        let mut last = None;
        for _ in 0..MAX_SEND_WAITS {
            if self.ring.submission().is_empty() {
                return;
            }
            let (n, overflowed) = {
                let sq = self.ring.submission();
                (sq.len().min(SEND_CHUNK) as u32, sq.cq_overflow())
            };
            // Completions that overflowed the queue are only flushed back into it by an enter
            // that asks for events (as `Submitter::submit` does).
            let flags = if overflowed {
                ENTER_GETEVENTS
            } else {
                0
            };
            // SAFETY: submits `n` of the queued SQEs (n <= the queue's length), with no wait and
            // no argument. What those SQEs point at is kept valid by the invariants stated where
            // each is pushed (`arm`: the socket and the buffer ring; `send_batch`: the batch).
            let entered =
                unsafe { self.ring.submitter().enter::<libc::sigset_t>(n, 0, flags, None) };
            if let Err(e) = entered {
                last = Some(e);
                // A transient refusal (no memory, an interrupt): give the kernel a moment
                // rather than spend the bound at once.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.collect_sends(batch, pending);
        }
        if self.ring.submission().is_empty() {
            return;
        }
        tracing::error!(error = ?last, "the websocket ring takes no submissions; aborting");
        std::process::abort();
    }

    /// Takes the completions queued so far: sends' results into `batch`, receives into the
    /// backlog.
    fn collect_sends(&mut self, batch: &mut SendBatch, pending: &mut usize) {
        for c in self.ring.completion() {
            if c.user_data() & SEND_TAG != 0 {
                if (c.user_data() >> 32) & 0x7fff_ffff != self.send_gen {
                    continue; // an orphaned batch's
                }
                let i = (c.user_data() & 0xffff_ffff) as usize;
                if let Some(send) = batch.sends.get_mut(i) {
                    if send.result.is_none() {
                        send.result = Some(c.result());
                        *pending -= 1;
                    }
                }
            } else {
                self.backlog.push_back(Completion {
                    user_data: c.user_data(),
                    result: c.result(),
                    flags: c.flags(),
                });
            }
        }
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // Closing a ring cancels its requests asynchronously; end every receive now, so none
        // can write into `bufs` after they are freed.
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::any());
    }
}

/// The provided-buffer ring: [`BUFS`] entries in a page-aligned mapping registered with the
/// ring, pointing into one allocation of [`BUFS`] x [`BUF_SIZE`] bytes. (The floor peer's
/// `--io uring` variant, `loadtest/peers/floor/src/uring.rs`, has its own copy: the floor
/// depends on nothing of partyring, so that it measures the kernel without our code.)
struct BufRing {
    entries: *mut types::BufRingEntry,
    map_len: usize,
    data: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let map_len = BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; no existing memory is touched; the result is
        // checked against MAP_FAILED below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut br = BufRing {
            entries: map.cast(),
            map_len,
            data: vec![0u8; BUFS as usize * BUF_SIZE].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: `entries` is a page-aligned mapping of BUFS entries, unmapped only in `drop`;
        // the `RecvRing` cancels every receive synchronously and then drops its ring (field
        // order: `ring` before `bufs`) before this, so the kernel never reads the entries or
        // writes the buffers after they are freed.
        unsafe {
            ring.submitter()
                .register_buf_ring(br.entries as u64, BUFS, BGID)?
        };
        for bid in 0..BUFS {
            br.give_back(bid);
        }
        Ok(br)
    }

    fn get(&self, bid: u16, len: usize) -> &[u8] {
        let at = usize::from(bid) * BUF_SIZE;
        &self.data[at..at + len.min(BUF_SIZE)]
    }

    fn give_back(&mut self, bid: u16) {
        debug_assert!(bid < BUFS);
        let slot = usize::from(self.tail & (BUFS - 1));
        let addr = self.data.as_ptr() as u64 + u64::from(bid) * BUF_SIZE as u64;
        // SAFETY: `slot` < BUFS, inside the mapping; the kernel reads an entry only once the
        // tail (published below with a release store) covers it, and it has consumed every
        // entry the tail passed over before this slot is reused (the buffer was handed to us).
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(addr);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` gives the address of the ring's tail field inside the
        // mapping, a properly aligned u16 the kernel reads atomically; a release store
        // publishes the entry written above.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: `entries` is the mapping of `map_len` bytes made in `new`; the ring that read
        // it is already closed (see `new`).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixStream,
        rc::Rc,
    };

    use super::*;

    fn wait(ring: &mut RecvRing) -> Completion {
        for _ in 0..2000 {
            ring.reap().unwrap();
            if let Some(c) = ring.pop() {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("no completion");
    }

    /// Bytes arrive without a read call, tagged with the socket's key; cancel hands back what
    /// was received and not handled, and ends the receive (so later bytes stay in the socket).
    #[test]
    fn receives_and_cancels_without_losing_bytes() {
        let Ok(mut ring) = RecvRing::new(true) else {
            eprintln!("no multishot receive on this kernel: skipped");
            return;
        };
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        ring.arm(b.as_raw_fd(), 7).unwrap();
        ring.submit().unwrap();
        a.write_all(b"hello").unwrap();
        let c = wait(&mut ring);
        assert_eq!((c.user_data, c.result), (7, 5));
        assert!(c.more());
        let mut got = Vec::new();
        ring.copy_out(c.buffer().unwrap(), 5, &mut got);
        assert_eq!(got, b"hello");
        ring.give_back(c.buffer().unwrap());

        a.write_all(b"unread").unwrap();
        // Let the kernel post it before the cancel (the cancel must return it either way).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut unread = ring.cancel(7).unwrap();
        a.write_all(b" after").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        ring.reap().unwrap();
        assert!(ring.pop().is_none(), "the receive is gone");
        let mut rest = [0u8; 64];
        let n = (&b).read(&mut rest).unwrap_or(0);
        unread.extend_from_slice(&rest[..n]);
        assert_eq!(unread, b"unread after");
    }

    /// A batch's sends reach their sockets in one submit, each result in its place: a single
    /// frame, frames corked into one copy, several frames as one `sendmsg`; a socket that is
    /// full answers `-EAGAIN` rather than waiting. A receive that completes meanwhile is kept
    /// for `pop`.
    #[test]
    fn a_batch_sends_in_one_submit_and_reports_each_result() {
        let Ok(mut ring) = RecvRing::new(true) else {
            eprintln!("no io_uring receive ring on this kernel: skipped");
            return;
        };
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..4).map(|_| UnixStream::pair().unwrap()).collect();
        for (a, _) in &pairs {
            a.set_nonblocking(true).unwrap();
        }
        // The fourth socket is full before the batch.
        let full = &pairs[3].0;
        let mut filled = 0;
        while let Ok(n) = (&*full).write(&[0u8; 4096]) {
            filled += n;
        }
        assert!(filled > 0);
        // A receive armed on the first pair's other end, completed by a write from `a`.
        let (recv_a, recv_b) = UnixStream::pair().unwrap();
        ring.arm(recv_b.as_raw_fd(), 42).unwrap();
        ring.submit().unwrap();
        (&recv_a).write_all(b"ping").unwrap();

        let one: Rc<[u8]> = Rc::from(&b"single"[..]);
        let two: Rc<[u8]> = Rc::from(&b"-second"[..]);
        let mut batch = SendBatch::default();
        batch.begin(pairs[0].0.as_raw_fd());
        batch.add_frame(&one, 0);
        batch.begin(pairs[1].0.as_raw_fd());
        batch.add_copy(b"cor");
        batch.add_copy(b"ked");
        batch.begin(pairs[2].0.as_raw_fd());
        batch.add_frame(&one, 2);
        batch.add_frame(&two, 0);
        batch.begin(full.as_raw_fd());
        batch.add_frame(&one, 0);
        ring.send_batch(&mut batch).unwrap();
        assert_eq!(batch.result(0), Some(6));
        assert_eq!(batch.result(1), Some(6));
        assert_eq!(batch.result(2), Some(11));
        assert_eq!(batch.result(3), Some(-libc::EAGAIN));
        let mut got = [0u8; 64];
        let n = (&pairs[0].1).read(&mut got).unwrap();
        assert_eq!(&got[..n], b"single");
        let n = (&pairs[1].1).read(&mut got).unwrap();
        assert_eq!(&got[..n], b"corked");
        let n = (&pairs[2].1).read(&mut got).unwrap();
        assert_eq!(&got[..n], b"ngle-second");
        batch.clear();
        assert!(batch.is_empty());

        let c = wait(&mut ring);
        assert_eq!((c.user_data, c.result), (42, 4));
        ring.give_back(c.buffer().unwrap());
        ring.cancel(42).unwrap();
    }
}
