//! Non-blocking socket syscalls used after the ring reports readiness.
//!
//! partyring waits for readiness through io_uring (monoio's `readable`/`writable`, a PollAdd
//! op) and then moves bytes with plain `recv`/`sendmsg` and `MSG_DONTWAIT`. That keeps an idle
//! connection from parking a read buffer in the kernel (a pending io_uring read must own one),
//! lets one per-core buffer serve every read, and lets a connection's queued frames leave in one
//! `sendmsg` without handing their ownership to the ring. On loopback the per-segment kernel work
//! dwarfs the syscall itself (docs/loopback-costs.md), so nothing is lost by not batching.
//!
//! Every function returns `ErrorKind::WouldBlock` when the socket is not ready. Each takes a
//! `BorrowedFd`, so the descriptor is open for the call by construction: [`fd_of`] borrows a
//! socket's from the stream that owns it.

use std::{
    io,
    io::IoSlice,
    os::fd::{AsRawFd, BorrowedFd},
};

use monoio::net::TcpStream;

/// The descriptor of `stream`, borrowed for as long as `stream` is (monoio's `TcpStream` has
/// no `AsFd`).
pub fn fd_of(stream: &TcpStream) -> BorrowedFd<'_> {
    // SAFETY: `stream` owns this descriptor and closes it only when dropped, which the borrow
    // of `stream` rules out for the returned lifetime.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }
}

/// Reads into `buf`. `Ok(0)` means the peer closed its side.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the whole call, and the
    // kernel writes at most that many bytes into it.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads into the spare capacity of `buf` (reserving `want` bytes first) and extends it.
pub fn recv_into_vec(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is `spare.len()` bytes of allocated, writable memory owned by `buf`; the
    // kernel writes at most that many bytes into it.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity (`n` is what
    // recv returned, which is at most the length we passed).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes `buf`, returning how much was taken.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    sendv(fd, &[IoSlice::new(buf)])
}

/// Writes the slices in order with one `sendmsg`, returning how many bytes were taken.
pub fn sendv(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `msghdr` (null name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix; the kernel only reads them.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `msg` points at `msg_iovlen` valid iovecs borrowed for the whole call; MSG_NOSIGNAL
    // turns a write to a closed peer into EPIPE instead of SIGPIPE.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Shuts down our sending side (FIN), leaving the fd open for a lingering read.
pub fn shutdown_write(fd: BorrowedFd<'_>) {
    // SAFETY: shutdown takes no pointers, and `fd` is open for the call (it is borrowed).
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
}
