//! The event loop shared by every scenario: non-blocking client sockets on one `mio::Poll`
//! (epoll), WebSocket handshakes and client frames, HTTP/1.1 responses, and writes batched per
//! socket per turn.
//!
//! A scenario implements [`Handler`]; it queues bytes with [`Out`], and how they leave depends on
//! the [`SendMode`]. `Batch` (the default): nothing is written at once, and [`Net::turn`] ends by
//! writing each socket's queue with one `write` call, so the answers to everything read in a turn
//! leave together. `Immediate`: what a callback queued (for its own connection, or in fan-out
//! for the publisher whose round a delivery completed) is written the moment the callback returns, before the next response or frame is parsed: the closed-loop
//! pattern of wrk, where each connection's next request follows its own response rather than a
//! turn's worth of them (wrk marks the socket writable when the response completes and writes
//! on its next poll pass, which returns at once). The server then sees a steady trickle of
//! single requests instead of bursts, and pays for every wake-up. Reads go through one shared
//! scratch buffer; only a partial frame or response is copied to the connection.
//!
//! With [`Net::set_deflate`] every upgrade offers permessage-deflate (`deflate.rs`); a
//! connection whose 101 accepts it gets its data frames compressed by [`Out::ws_frame`] and
//! has every RSV1 frame it receives inflated before its handler sees it, unless
//! [`Net::set_inflate`] turned that off for it: then [`uninflated_check`] is all a compressed
//! frame gets before [`Handler::on_compressed`] (`--inflate-sample`). The loop counts the
//! bytes read from and written to its sockets ([`NetStats`]), the wire cost of a message.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

use flate2::Decompress;

use crate::deflate::{self, Agreed, Composed, Deflater};
use crate::stats::now_ns;

/// When queued bytes leave (see the module note).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, clap::ValueEnum, serde::Serialize)]
pub enum SendMode {
    /// Every socket's queue is written once, at the end of the loop turn.
    #[default]
    Batch,
    /// A response's (or frame's) answer is written as soon as its callback returns.
    Immediate,
}

/// How far a connection has come.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Waiting for a connect slot (at most `max_inflight` connects at once).
    Queued,
    /// `connect` issued, not yet writable.
    Connecting,
    /// Upgrade request sent, waiting for `101`.
    Handshake,
    /// Open: frames (WebSocket) or responses (HTTP) flow.
    Open,
    /// A close frame was sent or received; waiting for the server to close TCP.
    Closing,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ws,
    Http,
}

pub struct Conn {
    stream: Option<TcpStream>,
    pub state: State,
    kind: Kind,
    /// WebSocket: the request target of the upgrade.
    path: String,
    /// Bytes of an incomplete frame or response left from the last read.
    rbuf: Vec<u8>,
    pub close_sent: bool,
    close_received: bool,
    /// The scenario's own index for this connection.
    pub user: u32,
    /// permessage-deflate as the server's 101 agreed to it.
    pub deflate: Option<Agreed>,
    /// An inflater of its own, for a server that keeps its context between messages.
    inflater: Option<Box<Decompress>>,
    /// Whether its compressed frames are inflated (false: [`Handler::on_compressed`] after
    /// [`uninflated_check`], see `--inflate-sample`).
    inflate: bool,
}

/// Whether upgrades offer permessage-deflate, and what a decline means.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Deflate {
    /// No offer.
    #[default]
    Off,
    /// Offer; a server that declines fails the connection.
    Require,
    /// Offer; a decline is counted and the connection goes on uncompressed.
    Optional,
}

/// Callbacks from [`Net::turn`]. `now` is the monotonic clock in ns, read once per read batch.
pub trait Handler {
    fn on_open(&mut self, out: &mut Out, id: usize, now: u64);
    /// The connection failed before it opened, or broke later (`opened` tells which).
    fn on_fail(&mut self, id: usize, opened: bool, err: &str);
    fn on_frame(&mut self, _out: &mut Out, _id: usize, _opcode: u8, _payload: &[u8], _now: u64) {}
    fn on_http(&mut self, _out: &mut Out, _id: usize, _status: u16, _body: &[u8], _now: u64) {}
    /// A compressed data message on a connection set not to inflate ([`Net::set_inflate`]):
    /// it passed [`uninflated_check`]; `len` is its compressed size. Only a scenario that turns
    /// inflating off needs this.
    fn on_compressed(&mut self, _out: &mut Out, _id: usize, _opcode: u8, _len: usize, _now: u64) {}
    /// The server closed TCP; `clean` when a close frame had been received before.
    fn on_closed(&mut self, _id: usize, _clean: bool) {}
}

/// Outgoing bytes, queued per connection and written at the end of the turn.
pub struct Out {
    wbufs: Vec<Vec<u8>>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    to_close: Vec<usize>,
    closing: Vec<usize>,
    /// Per connection: our compressor's window bits, 0 to send plain.
    compress_bits: Vec<u8>,
    deflater: Deflater,
    /// `--client-deflate composed`: messages whose bytes from `split` on are `tail_src` are
    /// sent as a stored block of their first `split` bytes and then `tail` (module
    /// `deflate`'s [`Composed`]).
    composed: Option<Composed>,
    /// `Immediate` mode: the connections a callback queued bytes for, written when it returns.
    touched: Option<Vec<usize>>,
}

impl Out {
    fn mark(&mut self, id: usize) {
        if let Some(t) = &mut self.touched {
            if t.last() != Some(&id) {
                t.push(id);
            }
        }
        if !self.is_dirty[id] {
            self.is_dirty[id] = true;
            self.dirty.push(id);
        }
    }

    /// Queues one masked, final client frame. The key varies per connection; masking is a
    /// 4-byte XOR, as the RFC requires of clients. A data frame to a connection that
    /// negotiated permessage-deflate goes compressed, with RSV1 set, whatever its size.
    pub fn ws_frame(&mut self, id: usize, opcode: u8, payload: &[u8]) {
        let bits = self.compress_bits[id];
        if bits != 0 && (opcode == 1 || opcode == 2) {
            if let Some(body) = self
                .composed
                .as_ref()
                .and_then(|c| c.message(payload, bits))
            {
                self.put_frame(id, 0xC0 | opcode, &body);
                return;
            }
            let mut d = std::mem::take(&mut self.deflater);
            if d.compress(payload, bits).is_ok() {
                self.put_frame(id, 0xC0 | opcode, &d.out);
                self.deflater = d;
                return;
            }
            self.deflater = d;
        }
        self.put_frame(id, 0x80 | opcode, payload);
    }

    /// Queues a masked frame whose first byte is `b0`.
    fn put_frame(&mut self, id: usize, b0: u8, payload: &[u8]) {
        let key = (id as u32)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(0x7F4A_7C15)
            .to_be_bytes();
        let b = &mut self.wbufs[id];
        b.push(b0);
        let len = payload.len();
        if len <= 125 {
            b.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            b.push(0x80 | 126);
            b.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            b.push(0x80 | 127);
            b.extend_from_slice(&(len as u64).to_be_bytes());
        }
        b.extend_from_slice(&key);
        let start = b.len();
        b.extend_from_slice(payload);
        for (i, x) in b[start..].iter_mut().enumerate() {
            *x ^= key[i & 3];
        }
        self.mark(id);
    }

    /// `--client-deflate composed`: messages that end in `tail_src` are compressed by
    /// composition from now on (see [`Composed`]).
    pub fn set_composed(&mut self, split: usize, tail_src: &[u8]) -> Result<(), String> {
        self.composed = Some(Composed::new(split, tail_src)?);
        Ok(())
    }

    pub fn raw(&mut self, id: usize, bytes: &[u8]) {
        self.wbufs[id].extend_from_slice(bytes);
        self.mark(id);
    }

    /// Queues a close frame with `code` and remembers that this side started the close.
    pub fn ws_close(&mut self, id: usize, code: u16) {
        self.ws_frame(id, 0x8, &code.to_be_bytes());
        self.closing.push(id);
    }

    /// Bytes queued and not yet accepted by the kernel.
    pub fn pending(&self, id: usize) -> usize {
        self.wbufs[id].len()
    }

    /// Closes the socket at the end of this turn (after writing what is queued, if it can).
    pub fn close(&mut self, id: usize) {
        self.mark(id);
        self.to_close.push(id);
    }
}

/// Counters kept by the loop itself.
#[derive(Default, Clone, Copy)]
pub struct NetStats {
    pub opened: u64,
    pub failed: u64,
    /// Server frames the client could not handle (fragments, bad opcodes) or bad responses.
    pub protocol_errors: u64,
    /// `write` calls that sent bytes (the send pattern the server sees).
    pub writes: u64,
    /// Bytes read from and written to the sockets (TCP payload: frames, HTTP, handshakes).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Upgrades whose 101 accepted (or declined) the permessage-deflate offer.
    pub deflate_accepted: u64,
    pub deflate_declined: u64,
}

pub struct Net {
    poll: Poll,
    events: Events,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    pub out: Out,
    scratch: Vec<u8>,
    server: SocketAddr,
    host: String,
    sources: Vec<IpAddr>,
    next_source: usize,
    queue: VecDeque<usize>,
    inflight: usize,
    max_inflight: usize,
    more: Vec<usize>,
    ready: Vec<(usize, bool, bool, bool, bool)>,
    pub stats: NetStats,
    /// A timerfd on the poll, for pacing finer than epoll's 1 ms timeout.
    timer: File,
    send: SendMode,
    deflate: Deflate,
    /// The inflater of every server that keeps no context, reset per message, and its output.
    inflater: Decompress,
    inflated: Vec<u8>,
}

const TIMER: Token = Token(usize::MAX);

const READS_PER_TURN: usize = 8;
const SCRATCH: usize = 256 * 1024;

impl Net {
    /// `sources`: source addresses used round-robin, starting at `source_offset` (so the
    /// processes of one run spread evenly); empty means the kernel's choice.
    pub fn new(
        server: SocketAddr,
        sources: Vec<IpAddr>,
        source_offset: usize,
        max_inflight: usize,
    ) -> io::Result<Net> {
        let poll = Poll::new()?;
        // SAFETY: timerfd_create takes no pointers; it returns a new fd or -1.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create, is open, and nothing else owns it.
        let timer = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        poll.registry()
            .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
        Ok(Net {
            timer,
            poll,
            events: Events::with_capacity(1024),
            conns: Vec::new(),
            free: Vec::new(),
            out: Out {
                wbufs: Vec::new(),
                dirty: Vec::new(),
                is_dirty: Vec::new(),
                to_close: Vec::new(),
                closing: Vec::new(),
                compress_bits: Vec::new(),
                deflater: Deflater::default(),
                composed: None,
                touched: None,
            },
            scratch: vec![0; SCRATCH],
            server,
            host: server.to_string(),
            sources,
            next_source: source_offset,
            queue: VecDeque::new(),
            inflight: 0,
            max_inflight: max_inflight.max(1),
            more: Vec::new(),
            ready: Vec::new(),
            stats: NetStats::default(),
            send: SendMode::Batch,
            deflate: Deflate::Off,
            inflater: Decompress::new(false),
            inflated: Vec::new(),
        })
    }

    /// Whether WebSocket upgrades offer permessage-deflate (see the module note).
    pub fn set_deflate(&mut self, deflate: Deflate) {
        self.deflate = deflate;
    }

    /// Chooses when queued bytes leave (see the module note); `Batch` until called.
    pub fn set_send(&mut self, send: SendMode) {
        self.send = send;
        self.out.touched = (send == SendMode::Immediate).then(Vec::new);
    }

    /// Wakes the next [`Net::turn`] at `deadline_ns` (CLOCK_MONOTONIC), with the kernel's
    /// high-resolution timer rather than epoll's millisecond timeout.
    pub fn set_timer(&mut self, deadline_ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000).max(1) as libc::c_long,
            },
        };
        // SAFETY: the fd is our open timerfd; `spec` is a valid itimerspec for the call and the
        // old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        debug_assert_eq!(rc, 0, "timerfd_settime");
    }

    /// Connections not yet open or failed (queued, connecting or handshaking).
    pub fn connecting(&self) -> usize {
        self.queue.len() + self.inflight
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn add(&mut self, kind: Kind, path: String, user: u32) -> usize {
        let conn = Conn {
            stream: None,
            state: State::Queued,
            kind,
            path,
            rbuf: Vec::new(),
            close_sent: false,
            close_received: false,
            user,
            deflate: None,
            inflater: None,
            inflate: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.conns[id] = Some(conn);
                id
            }
            None => {
                self.conns.push(Some(conn));
                self.out.wbufs.push(Vec::new());
                self.out.is_dirty.push(false);
                self.out.compress_bits.push(0);
                self.conns.len() - 1
            }
        };
        self.out.wbufs[id].clear();
        self.out.compress_bits[id] = 0;
        self.queue.push_back(id);
        id
    }

    /// Queues a WebSocket connection to `path`; [`Handler::on_open`] runs after the `101`.
    pub fn add_ws(&mut self, path: String, user: u32) -> usize {
        self.add(Kind::Ws, path, user)
    }

    /// Queues a keep-alive HTTP connection; [`Handler::on_open`] runs once TCP is up.
    pub fn add_http(&mut self, user: u32) -> usize {
        self.add(Kind::Http, String::new(), user)
    }

    /// Whether connection `id` inflates the compressed messages it receives (the default) or
    /// hands them to [`Handler::on_compressed`] after the checks of [`uninflated_check`].
    pub fn set_inflate(&mut self, id: usize, inflate: bool) {
        if let Some(c) = self.conns[id].as_mut() {
            c.inflate = inflate;
        }
    }

    pub fn conn(&self, id: usize) -> Option<&Conn> {
        self.conns.get(id).and_then(|c| c.as_ref())
    }

    fn start_connect(&mut self, id: usize) -> io::Result<()> {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        if !self.sources.is_empty() {
            let ip = self.sources[self.next_source % self.sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            sock.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match sock.connect(&self.server.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(std::net::TcpStream::from(sock));
        self.poll.registry().register(
            &mut stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = self.conns[id].as_mut().expect("queued conn exists");
        c.stream = Some(stream);
        c.state = State::Connecting;
        Ok(())
    }

    /// Drops the socket and frees the slot.
    fn remove(&mut self, id: usize) {
        if let Some(mut c) = self.conns[id].take() {
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            if matches!(c.state, State::Connecting | State::Handshake) {
                self.inflight -= 1;
            }
            self.out.wbufs[id].clear();
            self.free.push(id);
        }
    }

    fn fail<H: Handler>(&mut self, h: &mut H, id: usize, err: &str) {
        let Some(c) = self.conns[id].as_ref() else {
            return;
        };
        let opened = matches!(c.state, State::Open | State::Closing);
        if !opened {
            self.stats.failed += 1;
        }
        self.remove(id);
        h.on_fail(id, opened, err);
    }

    /// One turn: start queued connects, wait for readiness (at most `timeout`), read and
    /// dispatch, then write every socket that has queued bytes.
    pub fn turn<H: Handler>(&mut self, h: &mut H, timeout: Duration) -> io::Result<()> {
        while self.inflight < self.max_inflight {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            self.inflight += 1;
            if let Err(e) = self.start_connect(id) {
                self.fail(h, id, &format!("connect: {e}"));
            }
        }

        let timeout = if self.more.is_empty() && self.out.dirty.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.ready.clear();
        for ev in self.events.iter() {
            if ev.token() == TIMER {
                let mut expirations = [0u8; 8];
                let _ = (&self.timer).read(&mut expirations);
                continue;
            }
            self.ready.push((
                ev.token().0,
                ev.is_readable() || ev.is_read_closed(),
                ev.is_read_closed(),
                ev.is_writable(),
                ev.is_error(),
            ));
        }
        let ready = std::mem::take(&mut self.ready);
        for &(id, readable, hup, writable, error) in &ready {
            let Some(c) = self.conns.get(id).and_then(|c| c.as_ref()) else {
                continue;
            };
            if c.state == State::Connecting {
                let s = c.stream.as_ref().expect("connecting has a stream");
                match s.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        self.fail(h, id, &format!("connect: {e}"));
                        continue;
                    }
                    Ok(None) => {}
                }
                if error {
                    self.fail(h, id, "connect: socket error");
                    continue;
                }
                if s.peer_addr().is_err() {
                    continue; // not connected yet
                }
                self.connected(h, id);
            }
            if readable {
                self.read(h, id, hup);
            }
            if writable && self.conns[id].is_some() && !self.out.wbufs[id].is_empty() {
                self.out.mark(id);
            }
        }
        self.ready = ready;

        let more = std::mem::take(&mut self.more);
        for id in more {
            if self.conns[id].is_some() {
                self.read(h, id, true);
            }
        }
        self.flush(h);
        Ok(())
    }

    fn connected<H: Handler>(&mut self, h: &mut H, id: usize) {
        let c = self.conns[id].as_mut().expect("conn exists");
        match c.kind {
            Kind::Ws => {
                c.state = State::Handshake;
                let ext = if self.deflate == Deflate::Off {
                    String::new()
                } else {
                    format!("Sec-WebSocket-Extensions: {}\r\n", deflate::OFFER)
                };
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
                    c.path, self.host
                );
                self.out.raw(id, req.as_bytes());
            }
            Kind::Http => {
                c.state = State::Open;
                self.inflight -= 1;
                self.stats.opened += 1;
                h.on_open(&mut self.out, id, now_ns());
            }
        }
    }

    /// Reads until the socket is drained (epoll is edge-triggered), at most `READS_PER_TURN`
    /// times; a short read ends it unless the peer has closed (`hup`): then read on to see EOF.
    fn read<H: Handler>(&mut self, h: &mut H, id: usize, hup: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns[id].as_mut() else {
                return;
            };
            let s = c.stream.as_mut().expect("open conn has a stream");
            match s.read(&mut self.scratch) {
                Ok(0) => {
                    let clean = c.close_received;
                    if matches!(c.state, State::Open | State::Closing) {
                        self.remove(id);
                        h.on_closed(id, clean);
                    } else {
                        self.fail(h, id, "closed by server before open");
                    }
                    return;
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    if !self.process(h, id, n) {
                        return;
                    }
                    if n < self.scratch.len() && !hup {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(h, id, &format!("read: {e}"));
                    return;
                }
            }
        }
        self.more.push(id);
    }

    /// Parses what was read; false when the connection was dropped.
    fn process<H: Handler>(&mut self, h: &mut H, id: usize, n: usize) -> bool {
        let now = now_ns();
        let conn = self.conns[id].as_mut().expect("conn exists");
        let mut rbuf = std::mem::take(&mut conn.rbuf);
        let scratch = std::mem::take(&mut self.scratch);
        let in_place = rbuf.is_empty();
        if !in_place {
            rbuf.extend_from_slice(&scratch[..n]);
        }
        let buf: &[u8] = if in_place { &scratch[..n] } else { &rbuf };
        let mut at = 0;
        let mut err: Option<String> = None;
        loop {
            let c = self.conns[id].as_mut().expect("conn exists");
            let rest = &buf[at..];
            match (c.kind, c.state) {
                (Kind::Ws, State::Handshake) => {
                    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if rest.len() > 16 * 1024 {
                            err = Some("handshake response too long".into());
                        }
                        break;
                    };
                    if !rest.starts_with(b"HTTP/1.1 101") {
                        let line = rest.split(|&b| b == b'\r').next().unwrap_or_default();
                        err = Some(format!("upgrade: {}", String::from_utf8_lossy(line)));
                        break;
                    }
                    match extensions(&rest[..end + 4]) {
                        Ok(Some(a)) if self.deflate != Deflate::Off => {
                            self.stats.deflate_accepted += 1;
                            c.deflate = Some(a);
                            self.out.compress_bits[id] = a.compress_bits().unwrap_or(0);
                        }
                        Ok(Some(_)) => {
                            err =
                                Some("upgrade: permessage-deflate accepted but not offered".into());
                            break;
                        }
                        Ok(None) if self.deflate == Deflate::Require => {
                            self.stats.deflate_declined += 1;
                            err = Some(
                                "upgrade: the server declined permessage-deflate \
                                 (--deflate-optional accepts that)"
                                    .into(),
                            );
                            break;
                        }
                        Ok(None) => {
                            if self.deflate == Deflate::Optional {
                                self.stats.deflate_declined += 1;
                            }
                        }
                        Err(e) => {
                            err = Some(format!("upgrade: Sec-WebSocket-Extensions: {e}"));
                            break;
                        }
                    }
                    at += end + 4;
                    c.state = State::Open;
                    self.inflight -= 1;
                    self.stats.opened += 1;
                    h.on_open(&mut self.out, id, now);
                }
                (Kind::Ws, _) => match parse_frame(rest) {
                    Frame::Partial => break,
                    Frame::Bad(e) => {
                        err = Some(e.into());
                        break;
                    }
                    Frame::Complete {
                        fin,
                        rsv1,
                        opcode,
                        start,
                        end,
                    } => {
                        at += end;
                        let mut payload = &rest[start..end];
                        if !fin || opcode == 0 {
                            self.stats.protocol_errors += 1;
                        }
                        if rsv1 && !c.inflate {
                            if let Err(e) = uninflated_check(c.deflate, opcode, end - start) {
                                err = Some(e.into());
                                break;
                            }
                            h.on_compressed(&mut self.out, id, opcode, end - start, now);
                            if let Err(e) = self.write_now(id) {
                                err = Some(e);
                                break;
                            }
                            continue;
                        }
                        let mut inflated = std::mem::take(&mut self.inflated);
                        if rsv1 {
                            let Some(agreed) = c.deflate.filter(|_| opcode == 1 || opcode == 2)
                            else {
                                err = Some("RSV1 on a frame that may not be compressed".into());
                                break;
                            };
                            let reset = agreed.server_no_context_takeover;
                            let d = if reset {
                                &mut self.inflater
                            } else {
                                c.inflater
                                    .get_or_insert_with(|| Box::new(Decompress::new(false)))
                            };
                            if let Err(e) = deflate::inflate(d, reset, payload, &mut inflated) {
                                err = Some(e);
                                break;
                            }
                            payload = &inflated;
                        }
                        match opcode {
                            0x8 => {
                                c.close_received = true;
                                if !c.close_sent {
                                    c.close_sent = true;
                                    c.state = State::Closing;
                                    let code = payload.get(..2).unwrap_or(&[0x03, 0xE8]).to_vec();
                                    self.out.ws_frame(id, 0x8, &code);
                                }
                            }
                            0x9 => self.out.ws_frame(id, 0xA, payload),
                            0xA => {}
                            _ => {
                                h.on_frame(&mut self.out, id, opcode, payload, now);
                                if let Err(e) = self.write_now(id) {
                                    err = Some(e);
                                }
                            }
                        }
                        if inflated.capacity() <= deflate::RETAINED {
                            self.inflated = inflated;
                        }
                        if err.is_some() {
                            break;
                        }
                    }
                },
                (Kind::Http, _) => {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(rest) {
                        Ok(httparse::Status::Partial) => break,
                        Err(e) => {
                            err = Some(format!("response: {e}"));
                            break;
                        }
                        Ok(httparse::Status::Complete(head)) => {
                            let mut len = None;
                            for hd in resp.headers.iter() {
                                if hd.name.eq_ignore_ascii_case("content-length") {
                                    len = std::str::from_utf8(hd.value)
                                        .ok()
                                        .and_then(|v| v.trim().parse::<usize>().ok());
                                } else if hd.name.eq_ignore_ascii_case("transfer-encoding") {
                                    err = Some("chunked responses are not supported".into());
                                }
                            }
                            if err.is_some() {
                                break;
                            }
                            let Some(len) = len else {
                                err = Some("response without Content-Length".into());
                                break;
                            };
                            if rest.len() < head + len {
                                break;
                            }
                            let status = resp.code.unwrap_or(0);
                            at += head + len;
                            h.on_http(&mut self.out, id, status, &rest[head..head + len], now);
                            if let Err(e) = self.write_now(id) {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                }
            }
            if at == buf.len() {
                break;
            }
        }
        // Keep the unparsed tail (a partial frame or response) for the next read.
        if in_place {
            rbuf.extend_from_slice(&scratch[at..n]);
        } else {
            rbuf.drain(..at);
        }
        self.scratch = scratch;
        if let Some(e) = err {
            self.stats.protocol_errors += 1;
            self.fail(h, id, &e);
            return false;
        }
        if let Some(c) = self.conns[id].as_mut() {
            c.rbuf = rbuf;
        }
        true
    }

    /// In `Immediate` mode, writes what the callback that just returned (on `id`, an open
    /// connection) queued, for `id` and for any other open connection (a fan-out member's
    /// delivery may start its room's next round on the publisher's connection): it leaves
    /// before anything else read in this turn is looked at. An error is `id`'s; another
    /// connection that fails is failed at the end of the turn, when its queue is written again.
    fn write_now(&mut self, id: usize) -> Result<(), String> {
        let Some(mut touched) = self.out.touched.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        for &t in &touched {
            if self.out.wbufs[t].is_empty() {
                continue;
            }
            let Some(c) = self.conns[t].as_mut() else {
                continue;
            };
            if !matches!(c.state, State::Open | State::Closing) {
                continue; // not open: left to `flush` (end of the turn, or once connected)
            }
            let Some(s) = c.stream.as_mut() else {
                continue;
            };
            if let Err(e) = write_queue(s, &mut self.out.wbufs[t], &mut self.stats) {
                if t == id {
                    result = Err(e);
                }
            }
        }
        touched.clear();
        self.out.touched = Some(touched);
        result
    }

    fn flush<H: Handler>(&mut self, h: &mut H) {
        // Everything queued is written below; what a callback touched is written by now.
        if let Some(t) = &mut self.out.touched {
            t.clear();
        }
        for id in std::mem::take(&mut self.out.closing) {
            if let Some(Some(c)) = self.conns.get_mut(id) {
                c.close_sent = true;
                c.state = State::Closing;
            }
        }
        let dirty = std::mem::take(&mut self.out.dirty);
        for &id in &dirty {
            self.out.is_dirty[id] = false;
            let Some(c) = self.conns[id].as_mut() else {
                continue;
            };
            if matches!(c.state, State::Queued | State::Connecting) {
                continue; // written once connected (the writable event marks it again)
            }
            let s = c.stream.as_mut().expect("conn has a stream");
            if let Err(e) = write_queue(s, &mut self.out.wbufs[id], &mut self.stats) {
                self.fail(h, id, &e);
            }
        }
        self.out.dirty = dirty;
        self.out.dirty.clear();
        let to_close = std::mem::take(&mut self.out.to_close);
        for &id in &to_close {
            if self.conns[id].is_some() {
                self.remove(id);
            }
        }
        self.out.to_close = to_close;
        self.out.to_close.clear();
    }
}

/// Writes as much of `buf` as the socket takes (the rest stays queued, and the writable event
/// marks it again); an error describes a broken connection.
fn write_queue(s: &mut TcpStream, buf: &mut Vec<u8>, stats: &mut NetStats) -> Result<(), String> {
    let mut done = 0;
    let mut failed = None;
    while done < buf.len() {
        match s.write(&buf[done..]) {
            Ok(0) => {
                failed = Some("write returned 0".to_string());
                break;
            }
            Ok(n) => {
                done += n;
                stats.writes += 1;
                stats.bytes_out += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failed = Some(format!("write: {e}"));
                break;
            }
        }
    }
    buf.drain(..done);
    failed.map_or(Ok(()), Err)
}

/// What a compressed frame (RSV1 set, complete: [`parse_frame`] found its whole length) must
/// be to count as a delivery without being inflated: on a connection that negotiated
/// permessage-deflate, a data opcode (text or binary), and a body of at least one byte (the
/// empty message compresses to one byte, RFC 7692 §7.2.3.6). Its content is not looked at.
fn uninflated_check(agreed: Option<Agreed>, opcode: u8, len: usize) -> Result<(), &'static str> {
    if agreed.is_none() {
        return Err("RSV1 on a connection without permessage-deflate");
    }
    if opcode != 1 && opcode != 2 {
        return Err("RSV1 on a frame that may not be compressed");
    }
    if len == 0 {
        return Err("a compressed message with an empty body");
    }
    Ok(())
}

enum Frame {
    Partial,
    Bad(&'static str),
    Complete {
        fin: bool,
        /// The permessage-deflate bit; whether it is allowed here is the caller's check.
        rsv1: bool,
        opcode: u8,
        start: usize,
        end: usize,
    },
}

/// Parses one server (unmasked) frame at the start of `b`.
fn parse_frame(b: &[u8]) -> Frame {
    if b.len() < 2 {
        return Frame::Partial;
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0F;
    if b[0] & 0x30 != 0 {
        return Frame::Bad("server frame with RSV2 or RSV3");
    }
    if b[1] & 0x80 != 0 {
        return Frame::Bad("masked server frame");
    }
    let (len, start) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Frame::Partial;
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Frame::Partial;
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(be), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > 64 << 20 {
        return Frame::Bad("server frame over 64 MiB");
    }
    let end = start + len as usize;
    if b.len() < end {
        return Frame::Partial;
    }
    Frame::Complete {
        fin,
        rsv1: b[0] & 0x40 != 0,
        opcode,
        start,
        end,
    }
}

/// The `Sec-WebSocket-Extensions` of a complete 101 response head, as [`deflate::parse_answer`]
/// reads them.
fn extensions(head: &[u8]) -> Result<Option<Agreed>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete response head".into()),
        Err(e) => return Err(format!("response head: {e}")),
    }
    let mut values = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            values.push(std::str::from_utf8(h.value).map_err(|_| "not ASCII")?);
        }
    }
    deflate::parse_answer(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_frames() {
        assert!(matches!(parse_frame(&[0x81]), Frame::Partial));
        assert!(matches!(parse_frame(&[0x81, 3, b'a']), Frame::Partial));
        match parse_frame(&[0x81, 2, b'h', b'i', 0x81]) {
            Frame::Complete {
                fin,
                rsv1,
                opcode,
                start,
                end,
            } => assert_eq!((fin, rsv1, opcode, start, end), (true, false, 1, 2, 4)),
            _ => panic!(),
        }
        let mut f = vec![0x82, 126, 0x01, 0x00];
        f.extend(std::iter::repeat_n(7u8, 256));
        assert!(matches!(
            parse_frame(&f),
            Frame::Complete {
                start: 4,
                end: 260,
                ..
            }
        ));
        assert!(matches!(parse_frame(&[0x81, 0x81]), Frame::Bad(_)));
        assert!(matches!(parse_frame(&[0xA1, 0]), Frame::Bad(_)));
        assert!(matches!(parse_frame(&[0x91, 0]), Frame::Bad(_)));
        assert!(matches!(
            parse_frame(&[0xC1, 0]),
            Frame::Complete { rsv1: true, .. }
        ));
    }

    fn out_for(n: usize) -> Out {
        Out {
            wbufs: vec![Vec::new(); n],
            dirty: Vec::new(),
            is_dirty: vec![false; n],
            to_close: Vec::new(),
            closing: Vec::new(),
            compress_bits: vec![0; n],
            deflater: Deflater::default(),
            composed: None,
            touched: None,
        }
    }

    /// The frame in `bytes` as the server's decoder sees it (deflate negotiated): its header
    /// and unmasked payload.
    fn server_view(bytes: &[u8]) -> (partyring::ws::frame::FrameHeader, Vec<u8>) {
        let (hdr, n) = partyring::ws::frame::FrameHeader::parse_ext(bytes, true)
            .unwrap()
            .unwrap();
        let mut p = bytes[n..].to_vec();
        assert_eq!(p.len() as u64, hdr.payload_len);
        for (i, x) in p.iter_mut().enumerate() {
            *x ^= hdr.mask[i & 3];
        }
        (hdr, p)
    }

    #[test]
    fn negotiated_data_frames_go_compressed_and_the_server_inflates_them() {
        let mut out = out_for(2);
        out.compress_bits[1] = 15;
        let msg = br#"{"type":"chat","text":"hello hello hello hello hello hello"}"#.repeat(20);
        for (id, op) in [(1, 1u8), (1, 2), (0, 1)] {
            out.wbufs[id].clear();
            out.ws_frame(id, op, &msg);
            let (hdr, p) = server_view(&out.wbufs[id]);
            assert_eq!(hdr.rsv1, id == 1, "RSV1 only where negotiated");
            let got = if hdr.rsv1 {
                assert!(p.len() < msg.len() / 4, "compressed to {}", p.len());
                partyring::ws::deflate::inflate(&p, 1 << 20, |m| m.to_vec()).unwrap()
            } else {
                p
            };
            assert_eq!(got, msg);
        }
        // Even a short message goes compressed, as browsers do; control frames never do.
        out.wbufs[1].clear();
        out.ws_frame(1, 1, b"hi");
        assert!(server_view(&out.wbufs[1]).0.rsv1);
        out.wbufs[1].clear();
        out.ws_close(1, 1000);
        let (hdr, p) = server_view(&out.wbufs[1]);
        assert!(!hdr.rsv1);
        assert_eq!(p, 1000u16.to_be_bytes());
    }

    #[test]
    fn a_compressed_frame_counts_uninflated_only_when_it_could_be_one_of_ours() {
        use partyring::ws::OpCode;
        let agreed = Some(Agreed::default());
        assert_eq!(uninflated_check(agreed, 1, 40), Ok(()));
        assert_eq!(uninflated_check(agreed, 2, 1), Ok(()));
        assert!(uninflated_check(None, 1, 40).is_err(), "not negotiated");
        for op in [0u8, 3, 8, 9, 0xA] {
            assert!(uninflated_check(agreed, op, 40).is_err(), "opcode {op}");
        }
        assert!(uninflated_check(agreed, 1, 0).is_err(), "empty body");
        // What the checks are applied to: a whole server frame with RSV1 and its length.
        let msg = br#"{"type":"message","text":"hello hello hello hello"}"#;
        let frame = partyring::ws::deflate::compressed_frame(OpCode::Text, msg, 15).unwrap();
        let Frame::Complete {
            rsv1,
            opcode,
            start,
            end,
            ..
        } = parse_frame(&frame)
        else {
            panic!("a complete frame");
        };
        assert!(rsv1);
        assert_eq!(uninflated_check(agreed, opcode, end - start), Ok(()));
        assert!(matches!(
            parse_frame(&frame[..frame.len() - 1]),
            Frame::Partial
        ));
    }

    #[test]
    fn server_compressed_frames_inflate_on_our_side() {
        use partyring::ws::OpCode;
        let msg = br#"{"user":"ada","text":"the quick brown fox, the quick brown fox"}"#.repeat(30);
        let frame = partyring::ws::deflate::compressed_frame(OpCode::Text, &msg, 15).unwrap();
        let Frame::Complete {
            fin,
            rsv1,
            opcode,
            start,
            end,
        } = parse_frame(&frame)
        else {
            panic!("one complete frame expected");
        };
        assert!(fin && rsv1 && opcode == 1 && end == frame.len());
        let mut d = Decompress::new(false);
        let mut got = Vec::new();
        deflate::inflate(&mut d, true, &frame[start..end], &mut got).unwrap();
        assert_eq!(got, msg);
    }

    #[test]
    fn the_101_extensions_header_is_read() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                     client_no_context_takeover\r\n\r\n";
        let a = extensions(head).unwrap().unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        let plain = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(extensions(plain), Ok(None));
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: foo\r\n\r\n";
        assert!(extensions(bad).is_err());
    }

    #[test]
    fn client_frames_round_trip_through_the_server_decoder() {
        let mut out = out_for(3);
        for len in [0usize, 5, 125, 126, 70_000] {
            out.wbufs[2].clear();
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            out.ws_frame(2, 1, &payload);
            let bytes = &out.wbufs[2];
            let (hdr, n) = partyring::ws::frame::FrameHeader::parse(bytes)
                .unwrap()
                .unwrap();
            assert_eq!(hdr.payload_len as usize, len);
            let mut p = bytes[n..].to_vec();
            for (i, x) in p.iter_mut().enumerate() {
                *x ^= hdr.mask[i & 3];
            }
            assert_eq!(p, payload);
        }
    }

    /// Answers every response with one request and counts the responses.
    struct Answer {
        responses: usize,
    }

    impl Handler for Answer {
        fn on_open(&mut self, out: &mut Out, id: usize, _now: u64) {
            out.raw(id, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        fn on_fail(&mut self, _id: usize, _opened: bool, err: &str) {
            panic!("connection failed: {err}");
        }
        fn on_http(&mut self, out: &mut Out, id: usize, status: u16, _body: &[u8], _now: u64) {
            assert_eq!(status, 200);
            self.responses += 1;
            out.raw(id, b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }

    /// Two responses arrive in one segment; returns the client's write calls. The server
    /// thread reads the first request, then sends both responses with one write.
    fn writes_for_two_responses(mode: SendMode) -> u64 {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before its first request");
                got.extend_from_slice(&buf[..n]);
            }
            let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            s.write_all(&[&one[..], &one[..]].concat()).unwrap();
            // Hold the socket until the client has answered both.
            let mut answers = Vec::new();
            while answers.windows(6).filter(|w| w == b"GET /b").count() < 2 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before answering");
                answers.extend_from_slice(&buf[..n]);
            }
        });
        let mut net = Net::new(addr, Vec::new(), 0, 4).unwrap();
        net.set_send(mode);
        net.add_http(0);
        let mut h = Answer { responses: 0 };
        for _ in 0..200 {
            if h.responses == 2 && net.out.dirty.is_empty() {
                break;
            }
            net.turn(&mut h, Duration::from_millis(50)).unwrap();
        }
        assert_eq!(h.responses, 2);
        server.join().unwrap();
        net.stats.writes
    }

    #[test]
    fn batch_mode_answers_a_turn_with_one_write() {
        // The first request, then both answers together.
        assert_eq!(writes_for_two_responses(SendMode::Batch), 2);
    }

    #[test]
    fn immediate_mode_answers_each_response_with_its_own_write() {
        // The first request, then one write per response.
        assert_eq!(writes_for_two_responses(SendMode::Immediate), 3);
    }

    /// Answers each response on the *other* connection, as a fan-out member's delivery starts
    /// its room's next round on the publisher's connection.
    struct Cross {
        responses: usize,
    }

    impl Handler for Cross {
        fn on_open(&mut self, out: &mut Out, id: usize, _now: u64) {
            out.raw(id, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        fn on_fail(&mut self, _id: usize, _opened: bool, err: &str) {
            panic!("connection failed: {err}");
        }
        fn on_http(&mut self, out: &mut Out, id: usize, status: u16, _body: &[u8], _now: u64) {
            assert_eq!(status, 200);
            self.responses += 1;
            out.raw(id ^ 1, b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }

    /// Two connections, two responses in one segment on each, each answered on the other
    /// connection; returns the client's write calls.
    fn writes_for_cross_answers(mode: SendMode) -> u64 {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut socks: Vec<std::net::TcpStream> =
                (0..2).map(|_| listener.accept().unwrap().0).collect();
            let mut buf = [0u8; 1024];
            for s in &mut socks {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed before its first request");
                    got.extend_from_slice(&buf[..n]);
                }
            }
            let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            for s in &mut socks {
                s.write_all(&[&one[..], &one[..]].concat()).unwrap();
            }
            for s in &mut socks {
                let mut answers = Vec::new();
                while answers.windows(6).filter(|w| w == b"GET /b").count() < 2 {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed before answering");
                    answers.extend_from_slice(&buf[..n]);
                }
            }
        });
        let mut net = Net::new(addr, Vec::new(), 0, 4).unwrap();
        net.set_send(mode);
        net.add_http(0);
        net.add_http(1);
        let mut h = Cross { responses: 0 };
        for _ in 0..200 {
            if h.responses == 4 && net.out.dirty.is_empty() {
                break;
            }
            net.turn(&mut h, Duration::from_millis(50)).unwrap();
        }
        assert_eq!(h.responses, 4);
        server.join().unwrap();
        net.stats.writes
    }

    #[test]
    fn immediate_mode_writes_an_answer_queued_for_another_connection_at_once() {
        // Two first requests; then batch: one write per connection for both its answers,
        // immediate: one write per answer.
        assert_eq!(writes_for_cross_answers(SendMode::Batch), 4);
        assert_eq!(writes_for_cross_answers(SendMode::Immediate), 6);
    }
}
