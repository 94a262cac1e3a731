//! The benchmark floor: "the physical limit of this machine" for partyring's scenarios.
//!
//! A minimal WebSocket relay the same load generator can drive, doing nothing but the work the
//! kernel makes unavoidable: one thread, level-triggered epoll, non-blocking sockets. It reads an
//! HTTP upgrade request just far enough to answer `101`, joins the socket to the room named by
//! the path, and for every complete client frame writes the unmasked server frame to every other
//! member (`/parties/main/<room>`, `/party/<room>`) or back to the sender
//! (`/parties/echo/<room>`). A frame is encoded once and shared by all its recipients; each
//! socket's pending output is written with one `writev` per event-loop iteration (sockets that
//! got output are collected during the iteration and flushed at its end).
//!
//! The one HTTP route is the floor of the `http` scenario: a `GET` of a room is answered with
//! the bytes partyring sends for an empty room's history (`[]`), keep-alive, no parsing beyond
//! finding the end of the head. Anything else but an upgrade gets `404`. No UTF-8 or protocol
//! validation beyond what it needs not to crash; fragments are relayed frame by frame as they
//! arrive. Caps: a frame of more than 16 MiB or an output backlog over `--max-outbound` (default
//! 4 MiB, partyring's default) closes the socket.
//!
//! `--io uring` runs the same relay on io_uring instead (multishot receive into a
//! provided-buffer ring, `writev` SQEs; see `uring.rs`), to measure what that IO model is worth.
//!
//! Usage: `partyring-floor [--port PORT] [--cpu N] [--max-outbound BYTES] [--io epoll|uring]`

mod uring;

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use base64::Engine as _;
use sha1::{Digest, Sha1};

const LISTENER: u64 = u64::MAX;
const READ_CHUNK: usize = 64 * 1024;
const MAX_HEAD: usize = 8 * 1024;
const MAX_FRAME: u64 = 16 * 1024 * 1024;
/// iovecs per `writev` (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 512;
const ACCEPTS_PER_ITERATION: usize = 256;
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

type Frame = Rc<Vec<u8>>;

enum State {
    /// Waiting for the end of the upgrade request head.
    Handshake,
    /// Relaying to the other members of a main room.
    Main {
        room: usize,
        pos: usize,
    },
    Echo,
    /// A reply (404, close frame) is queued; close once it is written.
    Closing,
}

struct Conn {
    stream: TcpStream,
    /// Which connection of this slot it is (`--io uring` completions carry it).
    gen: u32,
    /// A `writev` SQE is in flight (`--io uring`: one at a time per socket).
    writing: bool,
    state: State,
    /// Bytes read but not yet a complete head or frame.
    inbuf: Vec<u8>,
    out: VecDeque<Frame>,
    /// Bytes of `out.front()` already written.
    out_off: usize,
    out_bytes: usize,
    /// Listed in `Server::dirty` for the flush at the end of this iteration.
    dirty: bool,
    /// EPOLLOUT is registered (only while a backlog waits for the socket to drain).
    want_out: bool,
    /// Over the output cap: listed in `Server::doomed`, closed at the end of the iteration
    /// (not at once, so room member lists never change while a broadcast walks them).
    doomed: bool,
}

struct Room {
    name: Vec<u8>,
    members: Vec<usize>,
}

struct Server {
    epfd: i32,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots closed during this iteration; reusable only after it, so a stale event in the
    /// same `epoll_wait` batch can never reach a new connection.
    freed: Vec<usize>,
    rooms: Vec<Room>,
    room_ids: HashMap<Vec<u8>, usize>,
    free_rooms: Vec<usize>,
    dirty: Vec<usize>,
    doomed: Vec<usize>,
    max_outbound: usize,
    /// The answer to every `GET` of a room (see `handshake`).
    get_reply: Frame,
    /// `--io uring`: sockets are closed with a shutdown first (see `uring.rs`).
    uring: bool,
    next_gen: u32,
}

impl Conn {
    fn new(stream: TcpStream, gen: u32) -> Conn {
        Conn {
            stream,
            gen,
            writing: false,
            state: State::Handshake,
            inbuf: Vec::new(),
            out: VecDeque::new(),
            out_off: 0,
            out_bytes: 0,
            dirty: false,
            want_out: false,
            doomed: false,
        }
    }

    /// Drops `written` bytes from the front of the output queue.
    fn advance(&mut self, written: usize) {
        self.out_bytes -= written;
        let mut left = written;
        while left > 0 {
            let front = self.out.front().map_or(0, |f| f.len()) - self.out_off;
            if left >= front {
                left -= front;
                self.out.pop_front();
                self.out_off = 0;
            } else {
                self.out_off += left;
                left = 0;
            }
        }
    }
}

fn main() {
    let mut port: u16 = 1999;
    let mut cpu: Option<usize> = None;
    let mut max_outbound: usize = 4 * 1024 * 1024;
    let mut io_uring = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> String {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --port"))
            }
            "--cpu" => {
                cpu = Some(
                    value("--cpu")
                        .parse()
                        .unwrap_or_else(|_| usage("bad --cpu")),
                )
            }
            "--max-outbound" => {
                max_outbound = value("--max-outbound")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --max-outbound"))
            }
            "--io" => {
                io_uring = match value("--io").as_str() {
                    "epoll" => false,
                    "uring" => true,
                    _ => usage("--io is epoll or uring"),
                }
            }
            "-h" | "--help" => {
                println!("usage: partyring-floor [--port PORT] [--cpu N] [--max-outbound BYTES] [--io epoll|uring]");
                return;
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if let Some(cpu) = cpu {
        if let Err(e) = pin_to_cpu(cpu) {
            eprintln!("floor: cannot pin to CPU {cpu}: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = run(port, max_outbound, io_uring) {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "floor: {msg}\nusage: partyring-floor [--port PORT] [--cpu N] [--max-outbound BYTES] [--io epoll|uring]"
    );
    std::process::exit(2);
}

fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU number too large",
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed cpu_set_t and `cpu` < CPU_SETSIZE was
    // checked above, so CPU_SET writes inside it.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`, which lives
    // across the call and is only read by the kernel.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn run(port: u16, max_outbound: usize, io_uring: bool) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    // SAFETY: listen(2) on the listener's own open fd only changes its backlog (Linux allows
    // it on a listening socket); no memory is passed.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: epoll_create1 takes no pointers; the returned fd is checked below.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut server = Server {
        epfd,
        conns: Vec::new(),
        free: Vec::new(),
        freed: Vec::new(),
        rooms: Vec::new(),
        room_ids: HashMap::new(),
        free_rooms: Vec::new(),
        dirty: Vec::new(),
        doomed: Vec::new(),
        max_outbound,
        get_reply: Rc::new(
            b"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 10:21:55 GMT\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
                .to_vec(),
        ),
        uring: io_uring,
        next_gen: 0,
    };
    if io_uring {
        return uring::run(&mut server, listener);
    }
    server.ctl(
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        libc::EPOLLIN as u32,
        LISTENER,
    )?;
    println!(
        "floor listening on http://127.0.0.1:{}",
        listener.local_addr()?.port()
    );

    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        // Sockets left dirty by the last flush (more than MAX_IOV frames) need no wait.
        let timeout = if server.dirty.is_empty() { -1 } else { 0 };
        // SAFETY: `events` is a live, exclusively borrowed buffer of `events.len()` entries
        // and the kernel writes at most that many.
        let n =
            unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let (flags, token) = (ev.events, ev.u64);
            if token == LISTENER {
                server.accept(&listener);
                continue;
            }
            let idx = token as usize;
            if server.conns.get(idx).is_none_or(|c| c.is_none()) {
                continue;
            }
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0
            {
                server.on_readable(idx, &mut scratch);
            }
            if flags & libc::EPOLLOUT as u32 != 0 {
                server.mark_dirty(idx);
            }
        }
        for idx in std::mem::take(&mut server.doomed) {
            server.close(idx);
        }
        server.flush_dirty();
        server.free.append(&mut server.freed);
    }
}

impl Server {
    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event that outlives the call; `fd` is an open socket
        // owned by this server (the listener or a connection still in `conns`).
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn accept(&mut self, listener: &TcpListener) {
        for _ in 0..ACCEPTS_PER_ITERATION {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: drop this round, the level-triggered listener
                    // reports the backlog again.
                    eprintln!("floor: accept: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let fd = stream.as_raw_fd();
            self.next_gen = self.next_gen.wrapping_add(1);
            self.conns[idx] = Some(Conn::new(stream, self.next_gen));
            let flags = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if self
                .ctl(libc::EPOLL_CTL_ADD, fd, flags, idx as u64)
                .is_err()
            {
                self.close(idx);
            }
        }
    }

    /// One read per readable event (level-triggered: the rest comes next iteration).
    fn on_readable(&mut self, idx: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        let n = match conn.stream.read(scratch) {
            Ok(0) => return self.close(idx),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => return self.close(idx),
        };
        if matches!(conn.state, State::Closing) {
            return; // discard input while the last reply drains
        }
        self.consume(idx, &mut scratch[..n]);
    }

    /// Processes freshly read bytes behind whatever partial head or frame `inbuf` holds, and
    /// keeps the new tail there.
    fn consume(&mut self, idx: usize, data: &mut [u8]) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        let n = data.len();
        if conn.inbuf.is_empty() {
            // The common case: process straight from the read buffer, keep only a tail.
            let used = self.process(idx, data);
            if let Some(conn) = self.conns[idx].as_mut() {
                if used < n && !matches!(conn.state, State::Closing) {
                    conn.inbuf.extend_from_slice(&data[used..n]);
                }
            }
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(data);
            let used = self.process(idx, &mut buf);
            if let Some(conn) = self.conns[idx].as_mut() {
                if !matches!(conn.state, State::Closing) {
                    buf.drain(..used);
                    conn.inbuf = buf;
                }
            }
        }
    }

    /// Consumes complete heads and frames from `data`; returns how many bytes were used.
    fn process(&mut self, idx: usize, data: &mut [u8]) -> usize {
        let mut used = 0;
        loop {
            let Some(conn) = self.conns[idx].as_ref() else {
                return used;
            };
            let rest = &mut data[used..];
            match conn.state {
                State::Closing => return used,
                State::Handshake => match self.handshake(idx, rest) {
                    Some(n) => used += n,
                    None => return used,
                },
                State::Main { .. } | State::Echo => match self.frame(idx, rest) {
                    Some(n) => used += n,
                    None => return used,
                },
            }
        }
    }

    /// Answers the upgrade (or a GET of a room, the HTTP floor) once the head is complete;
    /// returns the head's length. The GET route assumes what the http scenario sends: no body
    /// and keep-alive (`Connection: close` is not honoured).
    fn handshake(&mut self, idx: usize, data: &[u8]) -> Option<usize> {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            if data.len() > MAX_HEAD {
                self.close(idx);
            }
            return None;
        };
        let head = &data[..end];
        let path = head
            .split(|&b| b == b' ')
            .nth(1)
            .map(|p| p.split(|&b| b == b'?').next().unwrap_or(p))
            .unwrap_or(b"");
        let key = head.split(|&b| b == b'\n').skip(1).find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            name.eq_ignore_ascii_case(b"sec-websocket-key")
                .then(|| value[1..].trim_ascii())
        });
        let route = route(path);
        if key.is_none() && route.is_some() && head.starts_with(b"GET ") {
            // The HTTP floor: a keep-alive GET of a room gets partyring's answer for an empty
            // room, byte for byte in length (a fixed Date), from one shared buffer; the
            // connection stays in this state for the next request.
            let reply = self.get_reply.clone();
            self.queue(idx, reply);
            return Some(end + 4);
        }
        let (Some(key), Some((echo, room))) = (key, route) else {
            let reply = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain;charset=UTF-8\r\n\
                          content-length: 9\r\nconnection: close\r\n\r\nNot found";
            self.queue(idx, Rc::new(reply.to_vec()));
            self.enter_closing(idx);
            return Some(end + 4);
        };
        let mut sha = Sha1::new();
        sha.update(key);
        sha.update(WS_GUID);
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let state = if echo {
            State::Echo
        } else {
            let room = match self.room_ids.get(room) {
                Some(&r) => r,
                None => {
                    let r = self.free_rooms.pop().unwrap_or_else(|| {
                        self.rooms.push(Room {
                            name: Vec::new(),
                            members: Vec::new(),
                        });
                        self.rooms.len() - 1
                    });
                    self.rooms[r].name = room.to_vec();
                    self.room_ids.insert(room.to_vec(), r);
                    r
                }
            };
            let members = &mut self.rooms[room].members;
            members.push(idx);
            State::Main {
                room,
                pos: members.len() - 1,
            }
        };
        self.conns[idx].as_mut()?.state = state;
        self.queue(idx, Rc::new(reply.into_bytes()));
        Some(end + 4)
    }

    /// Relays one complete client frame; returns its length on the wire.
    fn frame(&mut self, idx: usize, data: &mut [u8]) -> Option<usize> {
        if data.len() < 2 {
            return None;
        }
        let (b0, b1) = (data[0], data[1]);
        let (len, mut at) = match b1 & 0x7f {
            126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as u64, 4),
            127 if data.len() >= 10 => (u64::from_be_bytes(data[2..10].try_into().ok()?), 10),
            126 | 127 => return None,
            n => (n as u64, 2),
        };
        if len > MAX_FRAME {
            self.close(idx);
            return None;
        }
        let len = len as usize;
        let masked = b1 & 0x80 != 0;
        let mask: [u8; 4] = if masked {
            let m = data.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            m
        } else {
            [0; 4]
        };
        let total = at + len;
        if data.len() < total {
            return None;
        }
        let payload = &mut data[at..total];
        if masked {
            unmask(payload, mask);
        }
        let opcode = b0 & 0x0f;
        // The server frame: same FIN/RSV/opcode, no mask, encoded once for all recipients.
        let mut out = Vec::with_capacity(10 + len);
        out.push(b0);
        if len < 126 {
            out.push(len as u8);
        } else if len <= u16::MAX as usize {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        let frame = Rc::new(out);

        match opcode {
            0x8 => {
                // Close: answer with the same status, then close once it is written.
                self.queue(idx, frame);
                self.enter_closing(idx);
            }
            0x9 => {
                let mut pong = (*frame).clone();
                pong[0] = (b0 & 0xf0) | 0xA;
                self.queue(idx, Rc::new(pong));
            }
            0xA => {}
            _ => match self.conns[idx].as_ref().map(|c| &c.state) {
                Some(State::Echo) => self.queue(idx, frame),
                Some(&State::Main { room, .. }) => {
                    // `queue` never closes a socket, so the member list is stable here.
                    for i in 0..self.rooms[room].members.len() {
                        let m = self.rooms[room].members[i];
                        if m != idx {
                            self.queue(m, frame.clone());
                        }
                    }
                }
                _ => {}
            },
        }
        Some(total)
    }

    fn queue(&mut self, idx: usize, frame: Frame) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if conn.doomed {
            return;
        }
        conn.out_bytes += frame.len();
        conn.out.push_back(frame);
        if conn.out_bytes > self.max_outbound {
            // A reader this far behind is dropped, as partyring does (it sends 1008 first).
            conn.doomed = true;
            self.doomed.push(idx);
            return;
        }
        self.mark_dirty(idx);
    }

    fn mark_dirty(&mut self, idx: usize) {
        if let Some(conn) = self.conns[idx].as_mut() {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// One `writev` per dirty socket.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &idx in &dirty {
            let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) else {
                continue;
            };
            if !conn.dirty || conn.doomed {
                continue;
            }
            conn.dirty = false;
            if conn.out.is_empty() {
                continue;
            }
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut offered = 0;
            for (i, f) in conn.out.iter().take(MAX_IOV).enumerate() {
                let bytes = if i == 0 { &f[conn.out_off..] } else { &f[..] };
                iov[i] = IoSlice::new(bytes);
                offered += bytes.len();
                n_iov += 1;
            }
            let result = conn.stream.write_vectored(&iov[..n_iov]);
            let (written, blocked) = match result {
                Ok(w) => (w, w < offered),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => (0, false),
                Err(_) => {
                    self.close(idx);
                    continue;
                }
            };
            conn.advance(written);
            let fd = conn.stream.as_raw_fd();
            if conn.out.is_empty() {
                if matches!(conn.state, State::Closing) {
                    self.close(idx);
                    continue;
                }
                if conn.want_out {
                    conn.want_out = false;
                    let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, READ_FLAGS, idx as u64);
                }
            } else if blocked {
                // The socket is full: wait for EPOLLOUT instead of spinning.
                if !conn.want_out {
                    conn.want_out = true;
                    let flags = READ_FLAGS | libc::EPOLLOUT as u32;
                    let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, flags, idx as u64);
                }
            } else {
                // More than MAX_IOV frames were pending: continue next iteration.
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    fn close(&mut self, idx: usize) {
        self.enter_closing(idx);
        if self.uring {
            if let Some(conn) = &self.conns[idx] {
                // SAFETY: shutdown takes no pointers; the fd is the open socket this slot owns.
                // It ends the armed multishot recv (which keeps the file open past `close`)
                // and sends the FIN now.
                unsafe { libc::shutdown(conn.stream.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        if self.conns[idx].take().is_some() {
            // Dropping the stream closed the fd, which also removed it from the epoll set.
            self.freed.push(idx);
        }
    }

    /// Leaves the room (if any); the socket only drains its last output from now on.
    fn enter_closing(&mut self, idx: usize) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        let State::Main { room, pos } = std::mem::replace(&mut conn.state, State::Closing) else {
            return;
        };
        let members = &mut self.rooms[room].members;
        members.swap_remove(pos);
        if let Some(&moved) = members.get(pos) {
            if let Some(Some(Conn {
                state: State::Main { pos: p, .. },
                ..
            })) = self.conns.get_mut(moved)
            {
                *p = pos;
            }
        }
        if members.is_empty() {
            let name = std::mem::take(&mut self.rooms[room].name);
            self.room_ids.remove(&name);
            self.free_rooms.push(room);
        }
    }
}

const READ_FLAGS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

/// `/parties/main/<room>[/...]`, `/party/<room>[/...]` -> (false, room);
/// `/parties/echo/<room>[/...]` -> (true, room).
fn route(path: &[u8]) -> Option<(bool, &[u8])> {
    let mut seg = path.strip_prefix(b"/")?.split(|&b| b == b'/');
    let (echo, room) = match seg.next()? {
        b"parties" => match seg.next()? {
            b"main" => (false, seg.next()?),
            b"echo" => (true, seg.next()?),
            _ => return None,
        },
        b"party" => (false, seg.next()?),
        _ => return None,
    };
    (!room.is_empty()).then_some((echo, room))
}

/// XORs the payload with the repeating 4-byte mask, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap_or([0; 8])) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_6455() {
        let mut sha = Sha1::new();
        sha.update(b"dGhlIHNhbXBsZSBub25jZQ==");
        sha.update(WS_GUID);
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn routes() {
        assert_eq!(route(b"/parties/main/r1"), Some((false, &b"r1"[..])));
        assert_eq!(route(b"/parties/main/r1/x/y"), Some((false, &b"r1"[..])));
        assert_eq!(route(b"/parties/echo/r2"), Some((true, &b"r2"[..])));
        assert_eq!(route(b"/party/r3"), Some((false, &b"r3"[..])));
        assert_eq!(route(b"/parties/other/r"), None);
        assert_eq!(route(b"/parties/main/"), None);
        assert_eq!(route(b"/"), None);
        assert_eq!(route(b""), None);
    }

    #[test]
    fn unmask_matches_bytewise() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut fast = orig.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }
}
