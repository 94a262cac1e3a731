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
    cell::Cell,
    io,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    time::Instant,
};

use monoio::net::TcpStream;

use crate::{
    net::{
        sock,
        writer::{OutState, Outbox, SendStatus},
    },
    runtime::core::{ConnGuard, Core},
    ws::{self, close, Decoder, Message, OpCode},
};

/// Reads (of the core's 64 KiB buffer) per readiness wake-up at most.
const READS_PER_WAKE: usize = 4;

/// A room member: what the room (and anyone broadcasting) holds of a connection.
pub struct WsConn {
    /// The connection id: `_pk` from the upgrade URL, or a fresh UUID v4. Not unique.
    pub id: Box<str>,
    /// Per-core creation order; the newest of several same-id connections wins a lookup.
    pub serial: u64,
    /// This connection's slot in its room's slab (its identity there).
    pub slot: Cell<usize>,
    pub outbox: Rc<Outbox>,
}

impl WsConn {
    /// Queues a frame; over the bound, closes the connection with 1008.
    pub fn send_frame(&self, frame: Rc<[u8]>) {
        if self.outbox.push(frame) == SendStatus::Backpressure {
            tracing::warn!(conn = %self.id, queued = self.outbox.queued_bytes(),
                "outbound queue over its bound: closing with 1008");
            self.close(close::POLICY, "Outbound queue full", true);
        }
    }

    /// Sends a message as one frame.
    pub fn send(&self, opcode: OpCode, payload: &[u8]) {
        self.send_frame(ws::encode_frame(opcode, payload).into());
    }

    /// Starts a server-side close with `code`. With `discard_pending`, queued frames the peer
    /// has not started receiving are dropped so the close frame is next.
    pub fn close(&self, code: u16, reason: &str, discard_pending: bool) {
        self.outbox
            .close_with(ws::encode_close(code, reason).into(), discard_pending);
    }
}

/// Where an upgraded connection goes.
pub struct Joined {
    pub party: usize,
    pub room: Box<str>,
    pub id: Box<str>,
}

/// Runs an upgraded connection until it closes. `leftover` holds bytes the client sent right
/// after its handshake (partysocket flushes its queued messages immediately).
///
/// `held` counts the connection against the core's cap until this returns.
pub async fn serve(
    core: Rc<Core>,
    stream: TcpStream,
    mut leftover: Vec<u8>,
    joined: Joined,
    held: ConnGuard,
) {
    let _held = held;
    // A shutdown waits for this connection's closing handshake.
    let _busy = core.busy_guard();
    let fd = stream.as_raw_fd();
    let stream = Rc::new(stream);
    let conn = Rc::new(WsConn {
        id: joined.id,
        serial: core.next_serial(),
        slot: Cell::new(usize::MAX),
        outbox: Outbox::attached(
            core.config.max_outbound_bytes,
            core.flusher.clone(),
            stream.clone(),
            fd,
        ),
    });
    {
        let mut rooms = core.rooms.borrow_mut();
        let room = rooms.get_or_create(joined.party, &joined.room);
        conn.slot.set(room.conns.insert(conn.clone()));
        core.parties.connect(joined.party, room, &conn);
    }

    let mut reader = Reader {
        core: &core,
        conn: &conn,
        party: joined.party,
        room: &joined.room,
        decoder: Decoder::new(core.config.max_message_bytes),
        peer_closed: false,
        failed: false,
    };
    if !leftover.is_empty() {
        reader.feed(&mut leftover);
    }
    drop(leftover);
    reader.read_until_closed(&stream, fd).await;

    // Leave the room (by slot: another connection may have the same id), then release the
    // socket from the outbox (the last holder closes it).
    {
        let mut rooms = core.rooms.borrow_mut();
        if let Some(room) = rooms.get_mut(joined.party, &joined.room) {
            room.conns.try_remove(conn.slot.get());
            core.parties.close(joined.party, room, &conn);
        }
        rooms.remove_if_empty(joined.party, &joined.room);
    }
    conn.outbox.shut();
}

struct Reader<'a> {
    core: &'a Core,
    conn: &'a Rc<WsConn>,
    party: usize,
    room: &'a str,
    decoder: Decoder,
    /// The peer's close frame has arrived, or the connection failed: flush and close TCP.
    peer_closed: bool,
    /// The connection failed (protocol error): the peer may still be sending.
    failed: bool,
}

impl Reader<'_> {
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
                                    tracing::info!(conn = %self.conn.id, "no answer to ping: closing dead connection");
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
                    tracing::debug!(conn = %self.conn.id, error = %e, "websocket read failed");
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
                Ok(_) => continue,
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
        let core = self.core;
        let mut buf = core.read_buf.borrow_mut();
        // A full buffer means more is waiting; read on, but at most READS_PER_WAKE times, so one
        // busy sender cannot keep its core from everyone else.
        for _ in 0..READS_PER_WAKE {
            let n = sock::recv(fd, &mut buf)?;
            if n == 0 {
                return Ok(false);
            }
            self.feed(&mut buf[..n]);
            if n < buf.len() || self.peer_closed {
                break;
            }
        }
        Ok(true)
    }

    /// Decodes `data` and acts on every message in it.
    fn feed(&mut self, data: &mut [u8]) {
        let core = self.core;
        let conn = self.conn;
        let (party_idx, room_id) = (self.party, self.room);
        let mut peer_closed = false;
        let result = self.decoder.feed(data, &mut |msg| match msg {
            Message::Text(_) | Message::Binary(_) => {
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
            Message::Close { code, .. } => {
                peer_closed = true;
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
        if let Err(e) = result {
            if conn.outbox.state() == OutState::Open {
                tracing::info!(conn = %conn.id, error = %e, code = e.close_code(), "websocket protocol error: closing");
                conn.close(e.close_code(), e.reason(), false);
            }
            // "Fail the WebSocket Connection" (RFC 6455 §7.1.7): send our close frame and close
            // TCP without waiting for the peer's; nothing after the error can be trusted.
            self.peer_closed = true;
            self.failed = true;
        }
    }
}
