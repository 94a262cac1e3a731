//! A doorbell: how another thread wakes a core whose inbox it just filled.
//!
//! Owns: one eventfd and an "armed" flag, shared (`Arc`) by the core that waits and every
//! thread that rings. Does not own: the queue the ringing announces (the inbox, in `handoff`).
//!
//! Why not monoio's cross-thread waker (a flume `recv_async`): that waker is handed to the
//! core's loop through a side channel, and a loop pass that finds one queued does not wait in
//! the ring, so under `DEFER_TASKRUN` it reaps no completions (see `ring.rs`). A stream of
//! handoffs could then starve the core's sockets. The doorbell's eventfd is read through the
//! ring like any socket: its completion is ordinary ring work, reaped in the same wait as the
//! others, in every ring mode and on the epoll driver.
//!
//! The flag keeps the cost at one `write(2)` per *sleep* of the core, not per message: the
//! waiting side arms it only after it found the queue empty, and a sender writes the eventfd
//! only if it disarms it. The order (arm, then re-check the queue; push, then disarm) closes
//! the race in which both sides miss each other.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicBool, Ordering},
};

#[derive(Debug)]
pub struct Doorbell {
    /// Non-blocking eventfd; the core polls it for readability through its ring.
    fd: OwnedFd,
    /// True while the core sleeps (or is about to) on `fd`; whoever swaps it to false rings.
    armed: AtomicBool,
}

impl Doorbell {
    /// # Errors
    /// `eventfd(2)` failed (out of file descriptors).
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd has no memory-safety preconditions; a negative result is an error,
        // handled below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Doorbell {
            // SAFETY: `fd` was just returned by eventfd, so it is open and owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: AtomicBool::new(false),
        })
    }

    /// Called by a sender after it queued something: wakes the core if it sleeps.
    pub fn ring(&self) {
        // SeqCst pairs with `arm`: the push before this swap is visible to the core's re-check,
        // or the core armed before it and this swap sees `true`.
        if self.armed.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: `fd` is an open eventfd for the doorbell's life, and `one` is the 8
            // readable bytes that eventfd's write takes.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            // The only failure is EAGAIN (counter at its maximum): the core is woken anyway.
            debug_assert!(n == 8 || io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock);
        }
    }

    /// Called by the core before it re-checks its queue and sleeps.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the core when it found work after arming: no sender needs to ring.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Resets the eventfd's counter after a wake, so the next readiness means a new ring.
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: `fd` is an open non-blocking eventfd and `n` has the 8 bytes read fills; a
        // failed read (EAGAIN: nothing to clear) leaves `n` untouched.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }

    /// A duplicate of the eventfd for the core's waiter (monoio takes ownership of what it
    /// polls).
    ///
    /// # Errors
    /// `dup` failed (out of file descriptors).
    pub fn waiter_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd; timeout 0 makes this a non-blocking check.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn rings_only_when_armed_and_once_per_arming() {
        let bell = Doorbell::new().unwrap();
        bell.ring();
        assert!(!readable(bell.as_raw_fd()), "not armed: no write");
        bell.arm();
        bell.ring();
        assert!(readable(bell.as_raw_fd()), "armed: one write");
        bell.clear();
        assert!(!readable(bell.as_raw_fd()), "cleared");
        bell.ring();
        assert!(!readable(bell.as_raw_fd()), "the first ring disarmed it");
        bell.arm();
        bell.disarm();
        bell.ring();
        assert!(!readable(bell.as_raw_fd()), "disarmed by the core");
    }
}
