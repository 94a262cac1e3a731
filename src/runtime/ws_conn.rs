//! One WebSocket connection on its room's owner core: the reader task (this file) and the
//! core's flusher (`writer`), which sends its queue.
//!
//! After the `101`, the connection is a member of its room ([`WsConn`] in the room's slab). The
//! reader waits for readiness, reads into the core's shared buffer, and feeds the bytes to the
//! connection's sans-IO [`ws::Decoder`], which keeps only partial frames; complete messages go to
//! the party (`on_message`), pings are answered with pongs, and a close is echoed. Anything the
//! connection sends goes through its [`Outbox`], drained by the core's flusher.
//!
//! Closing (RFC 6455 §7): when the peer closes, its code is echoed, the echo is flushed and the
//! TCP connection is closed. When we close (protocol error, message too big, outbound queue over
//! its bound), our close frame is queued and the reader keeps reading (and ignoring data) until
//! the peer's close frame, EOF, or `close_timeout`, whichever is first.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    time::Instant,
};

use monoio::net::TcpStream;

use crate::{
    http::Method,
    net::{
        sock,
        writer::{OutState, Outbox},
    },
    party::{ConnectContext, Request},
    room::connection::WsConn,
    runtime::core::{BusyGuard, ConnGuard, Core},
    ws::{self, close, Decoder, Message, OpCode},
};

/// Reads (of the core's 64 KiB buffer) per readiness wake-up at most.
const READS_PER_WAKE: usize = 4;

/// Where an upgraded connection goes.
pub struct Joined {
    pub party: usize,
    pub room: Box<str>,
    pub id: Box<str>,
    pub uri: Box<str>,
    /// The upgrade request's target and raw head (with any headers a hook set), for
    /// `connection_tags` and `on_connect`; dropped after them.
    pub target: Box<str>,
    pub head: Vec<u8>,
    /// permessage-deflate as agreed in the 101 (`None`: not negotiated).
    pub deflate: Option<ws::deflate::Agreed>,
}

/// Joins the room (the party's `connection_tags` and `on_connect` run now, before this
/// returns) and decodes `leftover` (bytes the client sent right after its handshake:
/// partysocket flushes its queued messages immediately). Then the connection waits for its
/// peer in the core's poller ([`WsPoller`](super::ws_poll::WsPoller)), which costs no task;
/// only when that is not possible (it is already closing, or the poller is missing) is the
/// connection's task returned, which reads until the connection closes and then leaves the
/// room.
///
/// The setup is synchronous on purpose: an `async fn` keeps its arguments *and* the locals
/// moved out of them in its state for its whole life (rustc does not overlap them), which
/// doubled the size of every connection's task (`-Zprint-type-sizes`: 992 bytes as an
/// `async fn`, see PERF.md §2).
///
/// `held` counts the connection against the core's cap until the reader is dropped.
pub fn serve(
    core: Rc<Core>,
    stream: TcpStream,
    mut leftover: Vec<u8>,
    joined: Joined,
    held: ConnGuard,
) -> Option<impl std::future::Future<Output = ()>> {
    // A shutdown waits for this connection's closing handshake.
    let busy = core.busy_guard();
    // Counted down when the reader drops (`impl Drop for Reader`), a panic included.
    core.metrics.websockets_open.inc();
    let fd = stream.as_raw_fd();
    let stream = Rc::new(stream);
    let Joined {
        party,
        room: room_id,
        id,
        uri,
        target,
        head,
        deflate,
    } = joined;
    if deflate.is_some() {
        ws::deflate::set_threshold(core.config.compression_threshold);
    }
    let window = deflate.map_or(0, |a| a.window_bits());
    let conn = Rc::new(
        WsConn::new(
            id,
            core.next_serial(),
            uri,
            Outbox::attached(
                core.config.max_outbound_bytes,
                core.flusher.clone(),
                stream.clone(),
                fd,
            ),
        )
        .with_deflate(window),
    );
    core.with_room(party, &room_id, |room| {
        conn.slot.set(room.conns.insert(conn.clone()));
        let ctx = ConnectContext {
            request: Request::from_head(Method::Get, &target, &head, &[]),
        };
        core.parties.connect(party, room, &conn, &ctx);
    });
    drop((target, head));

    let mut reader = Reader {
        decoder: Decoder::with_deflate(core.config.max_message_bytes, deflate.is_some()),
        core,
        conn,
        party,
        room: room_id,
        stream,
        fd,
        peer_closed: false,
        failed: false,
        heard: false,
        pinged: false,
        peer_close: None,
        error: None,
        _guards: (held, busy),
    };
    if !leftover.is_empty() {
        reader.heard = true;
        reader.feed(&mut leftover);
    }
    drop(leftover);
    // An upgrade that finished after the shutdown closed every WebSocket (a handoff still in
    // an inbox, say) is closed here, or nothing would close it.
    if reader.core.shutting_down() && reader.is_open() {
        reader
            .conn
            .close_with(close::GOING_AWAY, "Server shutting down", false);
    }
    if reader.is_open() {
        let core = reader.core.clone();
        if let Some(poller) = &core.ws_poller {
            match poller.park(reader) {
                None => return None,
                Some(r) => reader = r,
            }
        }
    }
    Some(reader.run())
}

/// What a reader does after [`Reader::on_ready`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Still open: wait in the poller for more.
    Park,
    /// EOF or a read error: leave the room now.
    Leave,
    /// Closing: run the closing handshake in a task ([`Reader::run`]).
    Task,
}

/// What the poller's sweep does with a parked connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sweep {
    Alive,
    Ping,
    Dead,
}

/// The reading side of one connection, in the core's poller or in the connection's task.
pub(crate) struct Reader {
    core: Rc<Core>,
    conn: Rc<WsConn>,
    party: usize,
    room: Box<str>,
    decoder: Decoder,
    /// The socket (shared with the outbox; the last holder closes it) and its fd.
    stream: Rc<TcpStream>,
    fd: RawFd,
    /// The peer's close frame has arrived, or the connection failed: flush and close TCP.
    peer_closed: bool,
    /// The connection failed (protocol error): the peer may still be sending.
    failed: bool,
    /// While parked, with `ws_ping_interval`: something arrived since the poller's last sweep,
    /// and the sweep before sent a ping that nothing has answered yet (see `WsPoller::sweep`).
    heard: bool,
    pinged: bool,
    /// The peer's close frame: its code (1005 if it had none) and reason. Boxed: most
    /// connections never need it, and it would sit in every connection's reader.
    peer_close: Option<Box<(u16, String)>>,
    /// Why the connection failed, for `on_error`.
    error: Option<Box<str>>,
    /// The connection counts against the core's cap, and a shutdown waits for it.
    _guards: (ConnGuard, BusyGuard),
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.core.metrics.websockets_open.dec();
    }
}

impl Reader {
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn conn(&self) -> &WsConn {
        &self.conn
    }

    pub(crate) fn core_id(&self) -> usize {
        self.core.id
    }

    /// The poller's periodic check (with `ws_ping_interval`): silence since the last check
    /// gets a ping; more silence after a ping means the peer is gone.
    pub(crate) fn sweep(&mut self) -> Sweep {
        if std::mem::take(&mut self.heard) {
            self.pinged = false;
            Sweep::Alive
        } else if self.pinged {
            tracing::info!(conn = %self.conn.id(), "no answer to ping: closing dead connection");
            Sweep::Dead
        } else {
            self.pinged = true;
            Sweep::Ping
        }
    }

    pub(crate) fn conn_rc(&self) -> Rc<WsConn> {
        self.conn.clone()
    }

    /// Neither side has started to close.
    fn is_open(&self) -> bool {
        !self.peer_closed && self.conn.outbox.state() == OutState::Open
    }

    /// The socket is readable (the poller's call): reads what is there and decodes it.
    pub(crate) fn on_ready(&mut self) -> Next {
        match self.read_some(self.fd) {
            Ok(true) => self.heard = true,
            Ok(false) => return Next::Leave, // EOF
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(conn = %self.conn.id(), error = %e, "websocket read failed");
                self.error = Some(format!("read failed: {e}").into());
                return Next::Leave;
            }
        }
        if self.is_open() {
            Next::Park
        } else {
            Next::Task
        }
    }

    /// The connection's task: reads until the connection closes, then leaves the room.
    pub(crate) async fn run(mut self) {
        let stream = self.stream.clone();
        self.read_until_closed(&stream, self.fd).await;
        self.leave();
    }

    /// Leaves the room (by slot: another connection may have the same id), runs `on_error` and
    /// `on_close`, then releases the socket from the outbox (the last holder closes it).
    pub(crate) fn leave(&mut self) {
        let (code, reason) = match self.peer_close.take() {
            Some(b) => *b,
            None => match self.conn.sent_close.get() {
                0 => (close::ABNORMAL, String::new()),
                code => (code, String::new()),
            },
        };
        let error = self.error.take();
        let (core, conn, party) = (&self.core, &self.conn, self.party);
        core.with_existing_room(party, &self.room, |room| {
            room.conns.try_remove(conn.slot.get());
            if let Some(error) = &error {
                core.parties.error(party, room, conn, error);
            }
            core.parties.close(party, room, conn, code, &reason);
        });
        conn.outbox.shut();
    }
    /// The timeouts here are boxed: monoio's `Sleep` is 640 bytes, and inline it would sit in
    /// the state of every idle connection's task, which waits on none of them.
    async fn read_until_closed(&mut self, stream: &TcpStream, fd: RawFd) {
        let outbox = self.conn.outbox.clone();
        let mut closing_since: Option<Instant> = None;
        // A ping was sent (ws_ping_interval) and nothing has arrived since.
        let mut ping_outstanding = false;
        loop {
            if self.peer_closed {
                // Our echo (or our own earlier close) is queued: let it out, then close TCP.
                let wait = self.core.config.close_timeout;
                let _ = Box::pin(monoio::time::timeout(wait, outbox.drained())).await;
                if self.failed {
                    Box::pin(self.linger(stream, fd)).await;
                }
                return;
            }
            match outbox.state() {
                OutState::Closed => return,
                OutState::Closing => {
                    let since = *closing_since.get_or_insert_with(Instant::now);
                    let left = (since + self.core.config.close_timeout)
                        .saturating_duration_since(Instant::now());
                    match Box::pin(monoio::time::timeout(left, stream.readable(false))).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                OutState::Open => {
                    let wait = async {
                        monoio::select! {
                            r = stream.readable(false) => r.is_ok(),
                            _ = outbox.closing() => true,
                        }
                    };
                    let alive = match self.core.config.ws_ping_interval {
                        None => wait.await,
                        Some(interval) => {
                            match Box::pin(monoio::time::timeout(interval, wait)).await {
                                Ok(alive) => alive,
                                // Silence for a whole interval: ping once; a second silent interval
                                // means the peer is gone.
                                Err(_) if ping_outstanding => {
                                    tracing::info!(conn = %self.conn.id(), "no answer to ping: closing dead connection");
                                    return;
                                }
                                Err(_) => {
                                    ping_outstanding = true;
                                    self.conn.send(OpCode::Ping, b"");
                                    continue;
                                }
                            }
                        }
                    };
                    if !alive {
                        return;
                    }
                    if outbox.state() != OutState::Open {
                        continue;
                    }
                    ping_outstanding = false;
                }
            }
            match self.read_some(fd) {
                Ok(true) => {}
                Ok(false) => return, // EOF
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(conn = %self.conn.id(), error = %e, "websocket read failed");
                    self.error = Some(format!("read failed: {e}").into());
                    return;
                }
            }
        }
    }

    /// After failing the connection: our close frame is out and our side is half-closed. The
    /// peer may still be sending (say, the rest of a message over the size limit); closing now,
    /// with its bytes unread, would make the kernel answer with a reset that can destroy our
    /// close frame before the peer reads it. So read and drop until the peer closes, at most
    /// `close_timeout`.
    async fn linger(&self, stream: &TcpStream, fd: RawFd) {
        let deadline = Instant::now() + self.core.config.close_timeout;
        loop {
            let read = sock::recv(fd, &mut self.core.read_buf.borrow_mut());
            match read {
                Ok(0) => return,
                Ok(n) => {
                    self.core.metrics.received_bytes.add(n as u64);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, stream.readable(false)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// Reads what is available into the core's buffer and decodes it. Ok(false) on EOF.
    fn read_some(&mut self, fd: RawFd) -> io::Result<bool> {
        let core = self.core.clone();
        let mut buf = core.read_buf.borrow_mut();
        // A full buffer means more is waiting; read on, but at most READS_PER_WAKE times, so one
        // busy sender cannot keep its core from everyone else.
        for i in 0..READS_PER_WAKE {
            let n = match sock::recv(fd, &mut buf) {
                Ok(n) => n,
                // The last read filled the buffer exactly and nothing more came: data was read.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && i > 0 => break,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(false);
            }
            core.metrics.received_bytes.add(n as u64);
            self.feed(&mut buf[..n]);
            if n < buf.len() || self.peer_closed {
                break;
            }
        }
        Ok(true)
    }

    /// Decodes `data` and acts on every message in it.
    fn feed(&mut self, data: &mut [u8]) {
        let core = &*self.core;
        let conn = &self.conn;
        let (party_idx, room_id) = (self.party, &*self.room);
        let mut peer_closed = false;
        let mut peer_close = None;
        let result = self.decoder.feed(data, &mut |msg| match msg {
            Message::Text(_) | Message::Binary(_) => {
                core.metrics.ws_messages_received.inc();
                if conn.outbox.state() != OutState::Open {
                    return; // closing: data is ignored until the peer's close frame
                }
                let mut rooms = core.rooms.borrow_mut();
                if let Some(room) = rooms.get_mut(party_idx, room_id) {
                    core.parties.message(party_idx, room, msg, conn);
                }
            }
            Message::Ping(payload) => {
                if conn.outbox.state() == OutState::Open {
                    conn.send(OpCode::Pong, payload);
                }
            }
            Message::Pong(_) => {}
            Message::Close { code, reason } => {
                peer_closed = true;
                peer_close = Some(Box::new((
                    code.unwrap_or(close::NO_STATUS),
                    reason.to_owned(),
                )));
                if conn.outbox.state() == OutState::Open {
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty one.
                    let echo: Rc<[u8]> = match code {
                        Some(code) => ws::encode_close(code, "").into(),
                        None => ws::encode_frame(OpCode::Close, &[]).into(),
                    };
                    conn.outbox.close_with(echo, false);
                }
            }
        });
        self.peer_closed |= peer_closed;
        if peer_close.is_some() {
            self.peer_close = peer_close;
        }
        if let Err(e) = result {
            if conn.outbox.state() == OutState::Open {
                tracing::info!(conn = %conn.id(), error = %e, code = e.close_code(), "websocket protocol error: closing");
                core.metrics.ws_protocol_close(e.close_code());
                conn.close_with(e.close_code(), e.reason(), false);
            }
            self.error = Some(e.to_string().into());
            // "Fail the WebSocket Connection" (RFC 6455 §7.1.7): send our close frame and close
            // TCP without waiting for the peer's; nothing after the error can be trusted.
            self.peer_closed = true;
            self.failed = true;
        }
    }
}
