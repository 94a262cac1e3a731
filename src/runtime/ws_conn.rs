//! One WebSocket connection on its room's owner core: the reader task (this file) and the
//! core's flusher (`writer`), which sends its queue.
//!
//! After the `101`, the connection is a member of its room ([`WsConn`] in the room's slab). The
//! reader waits for readiness, reads into the core's shared buffer, and feeds the bytes to the
//! connection's sans-IO [`Session`] (the decoder, the closing handshake, ping liveness), and
//! performs what the session asks: complete messages go to the party (`on_message`), pongs and
//! close frames go on the connection's [`Outbox`], drained by the core's flusher. This file is
//! only the IO around the session: readiness, reads, timers, and where the connection waits.
//!
//! Closing (RFC 6455 §7, decided by the session): when the peer closes, its code is echoed, the
//! echo is flushed and the TCP connection is closed. When we close (protocol error, message too
//! big, outbound queue over its bound, the party), our close frame is queued and the reader keeps
//! reading until the peer's close frame, EOF, or `close_timeout`, whichever is first.
//!
//! Ping liveness (`ws_ping_interval`) is the session's one rule on both paths: a parked
//! connection is ticked by the poller's sweep, a connection in its task by its own timer.

use std::{
    io,
    os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd},
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use crate::{
    http::Method,
    net::{
        poller::{Next, Parked, Poller, Tick},
        sock,
        writer::{OutState, Outbox},
    },
    party::{ConnectContext, Request},
    room::connection::WsConn,
    runtime::core::{spawn_guarded, ConnGuard, Core, WsGuard},
    ws::{
        self, close,
        session::{Action, Leave, Liveness, Outbound, Session, Step},
        Decoder, OpCode,
    },
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
/// peer in the core's poller ([`WsPoller`]), which costs no task;
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
    // A shutdown waits for this connection's closing handshake; counted down when the reader
    // drops, a panic included.
    let guard = held.into_ws();
    core.trim_after_burst();
    let raw = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` released monoio's ownership of this open socket (no operation was
    // in flight: the HTTP task's last readiness wait completed before the upgrade was read and
    // answered), so we are its only owner.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
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
                socket,
            ),
        )
        .with_deflate(window),
    );
    let room = core.with_room(party, &room_id, |room| {
        conn.slot.set(room.conns.insert(conn.clone()));
        let ctx = ConnectContext {
            request: Request::from_head(Method::Get, &target, &head, &[]),
        };
        core.parties.connect(party, room, &conn, &ctx);
        room.id.clone()
    });
    drop((target, head, room_id));

    let mut reader = Reader {
        session: Session::new(Decoder::with_deflate(
            core.config.max_message_bytes,
            deflate.is_some(),
        )),
        conn,
        party,
        room,
        guard,
    };
    if !leftover.is_empty() {
        reader.feed(&mut leftover);
    }
    drop(leftover);
    // An upgrade that finished after the shutdown closed every WebSocket (a handoff still in
    // an inbox, say) is closed here, or nothing would close it.
    if reader.core().shutting_down() && reader.is_open() {
        reader
            .conn
            .close_with(close::GOING_AWAY, "Server shutting down", false);
    }
    if reader.is_open() {
        let core = reader.core().clone();
        if let Some(poller) = &core.ws_poller {
            match poller.park(reader) {
                None => return None,
                Some(r) => reader = r,
            }
        }
    }
    Some(reader.run())
}

/// The core's poller, where open connections wait (see `net::poller`).
pub(crate) type WsPoller = Poller<Reader>;

thread_local! {
    /// The core's ping frame (empty payload), shared by every ping it sends.
    static PING: Rc<[u8]> = ws::encode_frame(OpCode::Ping, b"").into();
}

/// The reading side of one connection, in the core's poller or in the connection's task.
pub(crate) struct Reader {
    /// The connection; its outbox owns the socket, which the reader reads through it.
    conn: Rc<WsConn>,
    party: usize,
    /// The room's id, shared with the room.
    room: Rc<str>,
    /// The protocol state: decoder, closing handshake, liveness.
    session: Session,
    /// The core; the connection counts against its cap, and a shutdown waits for it. Last, so
    /// that it is let go after the socket.
    guard: WsGuard,
}

// One per open WebSocket, most of them idle (parked in the poller, whose table slot is this
// size too): keep it from growing (80 bytes on 64-bit Linux, the session's 40 included).
const _: () = assert!(std::mem::size_of::<Reader>() <= 80);

impl Drop for Reader {
    fn drop(&mut self) {
        self.conn.outbox.release_reader();
    }
}

impl Reader {
    fn core(&self) -> &Rc<Core> {
        self.guard.core()
    }

    /// One liveness tick (the poller's sweep, or the task's timer, once per
    /// `ws_ping_interval`): the session decides; a ping is sent by the caller (the sweep sends
    /// them after its walk).
    fn liveness(&mut self) -> Liveness {
        let live = self.session.tick();
        if live == Liveness::Dead {
            tracing::info!(conn = %self.conn.id(), "no answer to ping: closing dead connection");
        }
        live
    }

    /// Queues a ping (after a [`Liveness::Ping`] tick).
    fn send_ping(&self) {
        self.conn.send_frame(PING.with(Rc::clone));
    }

    /// Where our sending side stands, for the session.
    fn outbound(&self) -> Outbound {
        outbound(&self.conn)
    }

    /// Tells the session if our side closed since it last heard (the party, a full queue, a
    /// shutdown: anything that closed the outbox from outside this reader).
    fn sync_outbound(&mut self) {
        if let Outbound::Closed(code) = self.outbound() {
            self.session.on_local_close(code);
        }
    }

    /// Neither side has started to close.
    fn is_open(&mut self) -> bool {
        self.sync_outbound();
        self.session.is_open()
    }

    /// Where a reader that is still going goes: back to the poller while open, to a task of
    /// its own for the closing handshake.
    fn next(&mut self) -> Next {
        if self.is_open() {
            Next::Park
        } else {
            Next::Detach
        }
    }

    /// The connection's task: reads until the connection closes, then leaves the room.
    async fn run(mut self) {
        match self.conn.outbox.stream() {
            Some(stream) => self.read_until_closed(&stream).await,
            None => {
                self.session.on_eof();
            }
        }
        self.leave();
    }

    /// Leaves the room (by slot: another connection may have the same id), runs `on_error` and
    /// `on_close`, then releases the socket from the outbox (the last holder closes it).
    fn leave(&mut self) {
        self.sync_outbound();
        let Leave {
            code,
            reason,
            error,
        } = self.session.leave();
        let (core, conn, party) = (self.guard.core(), &self.conn, self.party);
        core.with_existing_room(party, &self.room, |room| {
            room.conns.try_remove(conn.slot.get());
            if let Some(error) = &error {
                core.parties.error(party, room, conn, &error.to_string());
            }
            core.parties.close(party, room, conn, code, &reason);
        });
        conn.outbox.shut();
    }

    /// The task path: waits for readability (or our close, or a liveness tick), reads, and
    /// does what the session says, until it says leave.
    ///
    /// The timeouts here are boxed: monoio's `Sleep` is 640 bytes, and inline it would sit in
    /// the state of every idle connection's task, which waits on none of them.
    async fn read_until_closed(&mut self, stream: &TcpStream) {
        let outbox = self.conn.outbox.clone();
        let close_timeout = self.core().config.close_timeout;
        let interval = self.core().config.ws_ping_interval;
        // The next liveness tick, on the same period as the poller's sweep.
        let mut next_tick = interval.map(|i| Instant::now() + i);
        let mut closing_since: Option<Instant> = None;
        loop {
            self.sync_outbound();
            if outbox.state() == OutState::Closed && self.session.step().reads() {
                // The socket is gone (a write failed, or the outbox was shut): nothing more
                // will come that matters.
                self.session.on_eof();
            }
            match self.session.step() {
                Step::Leave => return,
                step @ (Step::Flush | Step::FlushAndLinger) => {
                    // Our echo (or our own earlier close) is queued: let it out, then close TCP.
                    let _ = Box::pin(monoio::time::timeout(close_timeout, outbox.drained())).await;
                    if step == Step::FlushAndLinger {
                        Box::pin(self.linger(stream)).await;
                    }
                    return;
                }
                Step::AwaitClose => {
                    let since = *closing_since.get_or_insert_with(Instant::now);
                    let left = (since + close_timeout).saturating_duration_since(Instant::now());
                    match Box::pin(monoio::time::timeout(left, stream.readable(false))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            self.session.on_close_timeout();
                            continue;
                        }
                    }
                }
                Step::Read => {
                    let wait = async {
                        monoio::select! {
                            r = stream.readable(false) => r.is_ok(),
                            _ = outbox.closing() => true,
                        }
                    };
                    let alive = match (next_tick, interval) {
                        (Some(at), Some(interval)) => {
                            let left = at.saturating_duration_since(Instant::now());
                            match Box::pin(monoio::time::timeout(left, wait)).await {
                                Ok(alive) => alive,
                                Err(_) => {
                                    next_tick = Some(tick_after(at, interval));
                                    match self.liveness() {
                                        Liveness::Alive => {}
                                        Liveness::Ping => self.send_ping(),
                                        Liveness::Dead => return,
                                    }
                                    continue;
                                }
                            }
                        }
                        _ => wait.await,
                    };
                    if !alive {
                        return;
                    }
                    if outbox.state() != OutState::Open {
                        continue;
                    }
                }
            }
            if self.read_some().is_err() {
                return;
            }
        }
    }

    /// After failing the connection: our close frame is out and our side is half-closed. The
    /// peer may still be sending (say, the rest of a message over the size limit); closing now,
    /// with its bytes unread, would make the kernel answer with a reset that can destroy our
    /// close frame before the peer reads it. So read and drop until the peer closes, at most
    /// `close_timeout`.
    async fn linger(&self, stream: &TcpStream) {
        let fd = sock::fd_of(stream);
        let core = self.core();
        let deadline = Instant::now() + core.config.close_timeout;
        loop {
            let read = sock::recv(fd, &mut core.read_buf.borrow_mut());
            match read {
                Ok(0) => return,
                Ok(n) => {
                    core.metrics.received_bytes.add(n as u64);
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

    /// Reads what is available into the core's buffer and feeds it to the session.
    /// `Err(Step::Leave)` on EOF or a read error (the session knows which).
    fn read_some(&mut self) -> Result<(), Step> {
        let core = self.core().clone();
        let conn = self.conn.clone();
        let mut buf = core.read_buf.borrow_mut();
        // A full buffer means more is waiting; read on, but at most READS_PER_WAKE times, so one
        // busy sender cannot keep its core from everyone else.
        for _ in 0..READS_PER_WAKE {
            let n = match conn.outbox.recv(&mut buf) {
                Ok(0) => return Err(self.session.on_eof()),
                Ok(n) => n,
                // Nothing (more) to read now: a spurious wake-up, or the last read filled the
                // buffer exactly.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(conn = %self.conn.id(), error = %e, "websocket read failed");
                    return Err(self.session.on_read_error(e));
                }
            };
            core.metrics.received_bytes.add(n as u64);
            let step = self.feed(&mut buf[..n]);
            if n < buf.len() || !step.reads() {
                break;
            }
        }
        Ok(())
    }

    /// Feeds `data` to the session and performs what it asks.
    fn feed(&mut self, data: &mut [u8]) -> Step {
        // Our side may have closed since the last read (a party's `close` in `on_connect` or
        // from another connection's handler): nothing read after that reaches the party.
        self.sync_outbound();
        let core = &**self.guard.core();
        let conn = &self.conn;
        let (party_idx, room_id) = (self.party, &*self.room);
        self.session.feed(data, |action| {
            match action {
                Action::Deliver(msg) => {
                    core.metrics.ws_messages_received.inc();
                    let mut rooms = core.rooms.borrow_mut();
                    if let Some(room) = rooms.get_mut(party_idx, room_id) {
                        core.parties.message(party_idx, room, msg, conn);
                    }
                }
                // Closing: data is counted, not delivered, until the peer's close frame.
                Action::Dropped => core.metrics.ws_messages_received.inc(),
                Action::Pong(payload) => conn.send(OpCode::Pong, payload),
                Action::EchoClose(code) => {
                    let echo: Rc<[u8]> = match code {
                        Some(code) => ws::encode_close(code, "").into(),
                        None => ws::encode_frame(OpCode::Close, &[]).into(),
                    };
                    conn.outbox.close_with(echo, false);
                }
                Action::Fail(e) => {
                    tracing::info!(conn = %conn.id(), error = %e, code = e.close_code(), "websocket protocol error: closing");
                    core.metrics.ws_protocol_close(e.close_code());
                    conn.close_with(e.close_code(), e.reason(), false);
                }
            }
            outbound(conn)
        })
    }
}

/// A reader waiting in the core's poller: the poller's calls map onto the session's events.
impl Parked for Reader {
    fn fd(&self) -> RawFd {
        self.conn.outbox.raw_fd()
    }

    fn set_slot(&self, slot: u32) {
        self.conn.outbox.set_parked(slot);
    }

    /// The socket is readable: reads what is there and feeds it to the session.
    fn on_ready(&mut self) -> Next {
        if let Err(step) = self.read_some() {
            debug_assert_eq!(step, Step::Leave);
            return Next::Finish;
        }
        self.next()
    }

    fn tick(&mut self) -> Tick {
        match self.liveness() {
            Liveness::Alive => Tick::Alive,
            Liveness::Ping => Tick::Ping,
            Liveness::Dead => Tick::Dead,
        }
    }

    fn ping(&mut self) -> Next {
        self.send_ping();
        self.next()
    }

    fn finish(mut self) {
        self.leave();
    }

    fn detach(mut self, mut unread: Vec<u8>) {
        let id = self.core().id;
        spawn_guarded(id, async move {
            // Bytes the receive ring had already taken from the socket come first.
            if !unread.is_empty() {
                self.core().metrics.received_bytes.add(unread.len() as u64);
                self.feed(&mut unread);
            }
            drop(unread);
            self.run().await
        });
    }

    /// The receive ring read these for it: the same as a read of them (`read_some`).
    fn on_data(&mut self, data: &mut [u8]) -> Next {
        self.core().metrics.received_bytes.add(data.len() as u64);
        self.feed(data);
        self.next()
    }

    fn on_read_end(&mut self, error: Option<io::Error>) -> Next {
        let step = match error {
            None => self.session.on_eof(),
            Some(e) => {
                tracing::debug!(conn = %self.conn.id(), error = %e, "websocket read failed");
                self.session.on_read_error(e)
            }
        };
        debug_assert_eq!(step, Step::Leave);
        Next::Finish
    }
}

/// Where `conn`'s sending side stands: open, or closed with the code it sent (if any).
fn outbound(conn: &WsConn) -> Outbound {
    match conn.outbox.state() {
        OutState::Open => Outbound::Open,
        _ => Outbound::Closed(match conn.sent_close.get() {
            0 => None,
            code => Some(code),
        }),
    }
}

/// The tick after the one due `at`: one period on, or one period from now if the task fell
/// further behind than that (a tick is a period of silence, never a burst of catch-up ticks).
fn tick_after(at: Instant, interval: Duration) -> Instant {
    let next = at + interval;
    let now = Instant::now();
    if next <= now {
        now + interval
    } else {
        next
    }
}

