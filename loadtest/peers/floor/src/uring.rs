//! The floor's io_uring variant (`--io uring`): the same relay, with the kernel doing the IO.
//!
//! What changes against the epoll loop in `main.rs` (issue 13 asks whether partyring should
//! move to it, and the floor is where that shows without partyring's own work in the way):
//!
//! - **Reads:** one multishot `recv` per connection, armed once, selecting buffers from one
//!   provided-buffer ring shared by all connections ([`BUFS`] x [`BUF_SIZE`]). No readiness
//!   round trip and no `recv` syscall per read; an idle connection holds no buffer. A frame cut
//!   across two reads keeps its head in the connection's `inbuf`, as in the epoll loop.
//! - **Writes:** each dirty socket's pending frames go out as one `writev` SQE per loop pass
//!   (one write in flight per socket); all of a pass's SQEs enter the kernel with the next wait.
//! - **Accepts:** one multishot `accept`.
//! - **The ring:** `SINGLE_ISSUER | DEFER_TASKRUN` (COOP_TASKRUN if the kernel refuses), one
//!   `io_uring_enter` per loop pass.
//!
//! Closing a socket with a multishot `recv` armed: `shutdown(SHUT_RDWR)` first (which ends the
//! `recv` and sends the FIN even though the op still references the file), then the close.
//! Completions carry the connection's slot and a generation, so a late completion for a closed
//! slot is ignored; a write in flight owns its frames until its completion.

use std::{
    io,
    net::TcpListener,
    os::fd::{AsRawFd, FromRawFd},
};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::{Conn, Frame, Server, State, MAX_IOV};

/// Provided buffers: uWebSockets' io_uring backend uses 4,096 x 2 KiB; so do we.
const BUFS: u16 = 4096;
const BUF_SIZE: usize = 2048;
const BGID: u16 = 0;

const KIND_SHIFT: u32 = 62;
const ACCEPT: u64 = 1 << KIND_SHIFT;
const RECV: u64 = 2 << KIND_SHIFT;
const WRITE: u64 = 3 << KIND_SHIFT;

/// A `writev` in flight: its frames and iovecs live until the completion.
struct WriteOp {
    idx: usize,
    gen: u32,
    _frames: Vec<Frame>,
    iov: Vec<libc::iovec>,
}

struct BufRing {
    /// `BUFS` ring entries, page-aligned (mmap), registered with the ring.
    entries: *mut types::BufRingEntry,
    data: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let bytes = BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; no existing memory is touched; the result is
        // checked against MAP_FAILED below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let entries = map.cast::<types::BufRingEntry>();
        // SAFETY: `entries` is a page-aligned mapping of BUFS entries that lives as long as the
        // process (never unmapped: the floor runs until killed), as register_buf_ring requires.
        unsafe {
            ring.submitter()
                .register_buf_ring(entries as u64, BUFS, BGID)?
        };
        let mut br = BufRing {
            entries,
            data: vec![0u8; BUFS as usize * BUF_SIZE],
            tail: 0,
        };
        for bid in 0..BUFS {
            br.give_back(bid);
        }
        Ok(br)
    }

    fn buf(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let at = bid as usize * BUF_SIZE;
        &mut self.data[at..at + len]
    }

    /// Returns buffer `bid` to the kernel.
    fn give_back(&mut self, bid: u16) {
        let slot = (self.tail & (BUFS - 1)) as usize;
        let addr = self.data.as_ptr() as u64 + bid as u64 * BUF_SIZE as u64;
        // SAFETY: `slot` < BUFS, inside the mapping; the kernel reads an entry only once the
        // tail (published below with a release store) covers it.
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(addr);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `tail` points at the ring's tail field inside the mapping (BufRingEntry::tail
        // gives its address); an atomic release store publishes the entry written above.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

pub fn run(server: &mut Server, listener: TcpListener) -> io::Result<()> {
    let mut ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)
    {
        Ok(r) => r,
        Err(_) => IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(4096)?,
    };
    let mut bufs = BufRing::new(&ring)?;
    let mut writes: slab::Slab<WriteOp> = slab::Slab::new();
    let lfd = listener.as_raw_fd();
    arm_accept(&mut ring, lfd)?;
    println!(
        "floor listening on http://127.0.0.1:{} (io: uring)",
        listener.local_addr()?.port()
    );
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        cqes.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (ud, res, flags) in cqes.drain(..) {
            match ud & (3 << KIND_SHIFT) {
                ACCEPT => {
                    if res >= 0 {
                        // SAFETY: a successful accept CQE's result is a new socket fd that
                        // nothing else owns.
                        let stream = unsafe { std::net::TcpStream::from_raw_fd(res) };
                        let _ = stream.set_nodelay(true);
                        let idx = server.adopt(stream);
                        arm_recv(&mut ring, server, idx)?;
                    }
                    if !cqueue::more(flags) {
                        arm_accept(&mut ring, lfd)?;
                    }
                }
                RECV => {
                    let (idx, gen) = split(ud);
                    let bid = cqueue::buffer_select(flags);
                    let live = server.gen_of(idx) == Some(gen);
                    if res > 0 {
                        let bid = bid.expect("a multishot recv result names its buffer");
                        if live {
                            server.on_data(idx, bufs.buf(bid, res as usize));
                        }
                        bufs.give_back(bid);
                    } else if let Some(bid) = bid {
                        bufs.give_back(bid);
                    }
                    let live = server.gen_of(idx) == Some(gen);
                    if live && (res == 0 || (res < 0 && res != -libc::ENOBUFS)) {
                        server.close(idx);
                    } else if live && !cqueue::more(flags) {
                        arm_recv(&mut ring, server, idx)?;
                    }
                }
                WRITE => {
                    let op = writes.remove((ud & !(3 << KIND_SHIFT)) as usize);
                    if server.gen_of(op.idx) == Some(op.gen) {
                        server.wrote(op.idx, res);
                    }
                }
                _ => {}
            }
        }
        for idx in std::mem::take(&mut server.doomed) {
            server.close(idx);
        }
        flush_dirty(&mut ring, server, &mut writes)?;
        server.free.append(&mut server.freed);
    }
}

fn split(ud: u64) -> (usize, u32) {
    (
        (ud & 0xffff_ffff) as usize,
        ((ud >> 32) & 0x3fff_ffff) as u32,
    )
}

fn push(ring: &mut IoUring, sqe: squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every SQE pushed here points only at memory that outlives its op: the
        // listener and sockets (closed only after shutdown ends their ops), the buffer ring
        // (never freed), and a write's iovecs and frames (owned by its WriteOp until the CQE).
        if unsafe { ring.submission().push(&sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

fn arm_accept(ring: &mut IoUring, lfd: std::os::fd::RawFd) -> io::Result<()> {
    push(
        ring,
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    )
}

fn arm_recv(ring: &mut IoUring, server: &Server, idx: usize) -> io::Result<()> {
    let Some(conn) = server.conns[idx].as_ref() else {
        return Ok(());
    };
    let ud = RECV | (u64::from(conn.gen & 0x3fff_ffff) << 32) | idx as u64;
    let fd = types::Fd(conn.stream.as_raw_fd());
    push(ring, opcode::RecvMulti::new(fd, BGID).build().user_data(ud))
}

/// One `writev` SQE per dirty socket that has none in flight.
fn flush_dirty(
    ring: &mut IoUring,
    server: &mut Server,
    writes: &mut slab::Slab<WriteOp>,
) -> io::Result<()> {
    for idx in std::mem::take(&mut server.dirty) {
        let Some(conn) = server.conns.get_mut(idx).and_then(|c| c.as_mut()) else {
            continue;
        };
        conn.dirty = false;
        if conn.doomed || conn.writing || conn.out.is_empty() {
            continue;
        }
        let frames: Vec<Frame> = conn.out.iter().take(MAX_IOV).cloned().collect();
        let iov: Vec<libc::iovec> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let bytes = if i == 0 { &f[conn.out_off..] } else { &f[..] };
                libc::iovec {
                    iov_base: bytes.as_ptr() as *mut _,
                    iov_len: bytes.len(),
                }
            })
            .collect();
        conn.writing = true;
        let (fd, gen) = (conn.stream.as_raw_fd(), conn.gen);
        let entry = writes.vacant_entry();
        let key = entry.key() as u64;
        let op = entry.insert(WriteOp {
            idx,
            gen,
            _frames: frames,
            iov,
        });
        let sqe = opcode::Writev::new(types::Fd(fd), op.iov.as_ptr(), op.iov.len() as u32)
            .build()
            .user_data(WRITE | key);
        push(ring, sqe)?;
    }
    Ok(())
}

impl Server {
    fn gen_of(&self, idx: usize) -> Option<u32> {
        self.conns.get(idx)?.as_ref().map(|c| c.gen & 0x3fff_ffff)
    }

    /// A new connection in a free slot; returns the slot.
    fn adopt(&mut self, stream: std::net::TcpStream) -> usize {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.next_gen = self.next_gen.wrapping_add(1);
        self.conns[idx] = Some(Conn::new(stream, self.next_gen));
        idx
    }

    /// Bytes from a completed read, in a provided buffer (returned to the ring after this).
    fn on_data(&mut self, idx: usize, data: &mut [u8]) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if matches!(conn.state, State::Closing) {
            return;
        }
        self.consume(idx, data);
    }

    /// A `writev` completed with `res` (bytes, or -errno).
    fn wrote(&mut self, idx: usize, res: i32) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        conn.writing = false;
        if res < 0 {
            return self.close(idx);
        }
        conn.advance(res as usize);
        if conn.out.is_empty() {
            if matches!(conn.state, State::Closing) {
                self.close(idx);
            }
        } else {
            self.mark_dirty(idx);
        }
    }
}
