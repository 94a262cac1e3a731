//! One HTTP/1.1 connection's IO: the driver around `http::session::Session`.
//!
//! Owns: the socket (readiness waits, `recv` into the session's buffer, one `send` of the
//! session's output per batch), the clock (the session's deadlines become timeouts here), and
//! doing what each [`Action`] says: awaiting a party's deferred reply (bounded by
//! `idle_timeout`, else 504), streaming a static file (`runtime::assets`), lingering after an
//! error, handing the socket and its unanswered bytes to another core (`runtime::handoff`), and
//! turning an upgraded connection into a WebSocket (`runtime::ws_conn`). Also the answer to a
//! connection accepted over the core's cap ([`refuse`]).
//!
//! Does not own: anything HTTP decides (framing, pipelining, limits, timeouts' meaning, hooks,
//! CORS, upgrade checks): that is the session's. [`Io`] is the session's [`Service`]: it routes
//! a target to a party and the core that owns its room (`router`, `shard`), runs the party's
//! hook, and answers a request (the party's `on_request` on this core, or `runtime::assets` for
//! a request outside the rooms), keeping a deferred reply's future or a file for the driver.

use std::{
    fs::File,
    future::Future,
    io,
    os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd},
    pin::Pin,
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use crate::{
    config::Config,
    http::{
        self,
        parse::{field_is_safe, header_value},
        response::write_response,
        session::{self, invalid_hook_header, Action, Answer, Hook, RequestView, Session},
        DateCache, Limits, Method, Response,
    },
    metrics::Metrics,
    net::sock,
    party::{Before, Reply, Request},
    router::{self, Route},
    shard, ws,
};

use super::{
    assets,
    core::{spawn_guarded, BusyGuard, ConnGuard, Core, CoreStats},
    handoff::Handoff,
    ws_conn,
};

/// Bytes reserved before each read.
const READ_CHUNK: usize = 4096;
/// How long an erroring connection is drained after its error response.
const LINGER: Duration = Duration::from_secs(1);

/// Serves a connection from its first byte, or from the bytes another core already read
/// (`hooked`: the first request in them already passed its party's `on_before_*` hook).
pub async fn serve(core: Rc<Core>, stream: TcpStream, bytes: Vec<u8>, hooked: bool) {
    let mut conn = HttpConn {
        held: core.conn_guard(),
        io: Io {
            core,
            busy: None,
            later: None,
            file: None,
        },
        stream,
        session: Session::new(bytes, hooked),
        timer: None,
    };
    match conn.run().await {
        Action::Linger => conn.linger().await,
        Action::Handoff { owner } => conn.handoff(owner),
        Action::Upgrade(u) => conn.upgrade(u).await,
        _ => {}
    }
}

/// A party's reply that is still being computed (a storage write, a party fetch).
type Later = Pin<Box<dyn Future<Output = Response>>>;

/// The session's [`session::Service`] on this core, and what an answer left for the driver.
struct Io {
    core: Rc<Core>,
    /// Held while a request is in progress, so a shutdown waits for its answer.
    busy: Option<BusyGuard>,
    /// The deferred reply of [`Answer::Later`], awaited by the driver.
    later: Option<Later>,
    /// The file of [`Answer::File`], streamed by the driver after its head.
    file: Option<File>,
}

struct HttpConn {
    /// Counts this connection against the core's cap until it closes, is handed to another
    /// core, or passes to its WebSocket task.
    held: ConnGuard,
    io: Io,
    stream: TcpStream,
    session: Session,
    /// The read deadline's timer, made at the connection's first wait for bytes (a fresh
    /// accept's first read; a handed-off connection may never wait) and kept: moved to each
    /// new deadline in place (monoio's `Sleep::reset` only records a later deadline), where a
    /// timeout per wait would read the clock and add and remove a timer-wheel entry for every
    /// request. Boxed: a `Sleep` is 640 bytes, kept out of every connection's task (a
    /// WebSocket upgrade frees it when its HTTP task ends).
    timer: Option<Pin<Box<monoio::time::Sleep>>>,
}

impl session::Service for Io {
    fn config(&self) -> &Config {
        &self.core.config
    }

    fn date(&self) -> &DateCache {
        &self.core.date
    }

    fn shutting_down(&self) -> bool {
        self.core.shutting_down()
    }

    fn route(&mut self, target: &str) -> session::Route {
        let Route::Room { party, room, .. } = router::route(target) else {
            return session::Route::Other;
        };
        let Some(idx) = self.core.party_index(party) else {
            return session::Route::Other;
        };
        let owner = shard::owner(party, room, self.core.cores());
        session::Route::Room {
            party: idx,
            owner: (owner != self.core.id).then_some(owner),
        }
    }

    fn before(&mut self, party: usize, upgrade: bool, req: &RequestView<'_>) -> Hook {
        let r = Request::from_head(req.method, req.target, req.head, req.body);
        match self.core.parties.before(party, upgrade, &r) {
            Before::Continue => Hook::Continue,
            Before::Respond(resp) => Hook::Respond(resp),
            Before::SetHeaders(set) => {
                if set.iter().any(|(k, v)| !field_is_safe(k, v)) {
                    tracing::error!(core = self.core.id, party = %self.core.parties.name(party), "hook set a header that is not valid HTTP: 500");
                    return Hook::Respond(invalid_hook_header());
                }
                Hook::SetHeaders(set)
            }
        }
    }

    fn respond(&mut self, req: &RequestView<'_>) -> Answer {
        match route_request(&self.core, req.method, req.target, req.head, req.body) {
            assets::Answer::Reply(Reply::Now(resp)) => Answer::Now(resp),
            assets::Answer::Reply(Reply::Later(fut)) => {
                self.later = Some(fut);
                Answer::Later
            }
            assets::Answer::File(f) => {
                self.file = Some(f.file);
                Answer::File {
                    head: f.head,
                    len: f.len,
                }
            }
        }
    }

    fn refused(&mut self, status: u16, reason: &str) {
        tracing::info!(core = self.core.id, status, reason, "request refused");
        self.core.metrics.http_error(status);
    }

    fn busy(&mut self, busy: bool) {
        if !busy {
            self.busy = None;
        } else if self.busy.is_none() {
            self.busy = Some(self.core.busy_guard());
        }
    }
}

impl HttpConn {
    /// Runs the session until the connection leaves it: returns the [`Action`] that ends it
    /// (`Close`, `Linger`, `Handoff` or `Upgrade`), with the output already sent.
    async fn run(&mut self) -> Action {
        loop {
            let mut now = Instant::now();
            let action = self.session.advance(now, &mut self.io);
            match self.flush().await {
                Ok(false) => {}
                // It waited for room: the next read's deadline counts from now.
                Ok(true) => now = Instant::now(),
                Err(_) => return Action::Close,
            }
            match action {
                Action::Read => {}
                Action::Await => {
                    let fut = self.io.later.take().expect("Answer::Later left it");
                    // A party future that never resolves must not hold the connection forever.
                    let wait = self.io.core.config.idle_timeout;
                    let resp = match monoio::time::timeout(wait, fut).await {
                        Ok(resp) => resp,
                        Err(_) => {
                            tracing::warn!(core = self.io.core.id, "deferred reply timed out: 504");
                            Response::text(504, "Gateway timeout: the room did not answer")
                        }
                    };
                    self.session.complete(resp, &mut self.io);
                    continue;
                }
                Action::SendFile { len } => {
                    let file = self.io.file.take().expect("Answer::File left it");
                    let core = &self.io.core;
                    // Boxed: a file transfer's state (a read op, a buffer, a socket wait) would
                    // otherwise sit in every HTTP connection's task.
                    let timeout = core.config.idle_timeout;
                    let sent = Box::pin(assets::send_file(
                        core,
                        &self.stream,
                        file,
                        len,
                        timeout,
                    ))
                    .await;
                    if let Err(e) = sent {
                        tracing::info!(core = core.id, error = %e, "static file send failed");
                        return Action::Close;
                    }
                    self.session.file_sent();
                    continue;
                }
                exit => return exit,
            }
            match self.read(now).await {
                Ok(0) => return self.session.eof(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let exit = self.session.timed_out(&mut self.io);
                    let _ = self.flush().await;
                    return exit;
                }
                Err(_) => return Action::Close,
            }
        }
    }

    /// Reads more bytes, waiting for readiness until the session's deadline (counted from
    /// `now`, the time the session last advanced: the requests before were answered since).
    async fn read(&mut self, now: Instant) -> io::Result<usize> {
        let deadline = self.session.deadline(now, &self.io.core.config);
        let at = monoio::time::Instant::from_std(deadline);
        loop {
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(monoio::time::sleep_until(at)));
            timer.as_mut().reset(at);
            let ready = until(timer.as_mut(), self.stream.readable(false)).await;
            match ready {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(io::ErrorKind::TimedOut.into()),
            }
            match sock::recv_into_vec(sock::fd_of(&self.stream), self.session.read_buf(), READ_CHUNK) {
                Ok(n) => {
                    self.io.core.metrics.received_bytes.add(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the session's output, if any; true if it had to wait for room in the socket.
    async fn flush(&mut self) -> io::Result<bool> {
        if self.session.output().is_empty() {
            return Ok(false);
        }
        let core = &self.io.core;
        let waited = flush_all(
            &self.stream,
            self.session.output(),
            core.config.idle_timeout,
            &core.metrics,
        )
        .await?;
        self.session.sent();
        Ok(waited)
    }

    /// After an error response: stop sending, and read (and drop) what the client is still
    /// sending for a moment, so our response is not destroyed by a reset.
    async fn linger(&mut self) {
        let core = &self.io.core;
        sock::shutdown_write(sock::fd_of(&self.stream));
        let deadline = Instant::now() + LINGER;
        loop {
            // Into the core's buffer: a scratch array here would sit in every connection's task
            // (an async fn's state is as large as its largest await point).
            let read = sock::recv(sock::fd_of(&self.stream), &mut core.read_buf.borrow_mut());
            match read {
                Ok(0) => return,
                Ok(n) => {
                    core.metrics.received_bytes.add(n as u64);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return;
            }
            match monoio::time::timeout(wait, self.stream.readable(false)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// Moves the connection and its unanswered bytes to core `owner`; the first request in
    /// them passed its hook here.
    fn handoff(self, owner: usize) {
        let core = self.io.core;
        let bytes = self.session.unanswered().to_vec();
        let raw = self.stream.into_raw_fd();
        // SAFETY: `into_raw_fd` released monoio's ownership of this open socket (no operation
        // was in flight: the last readiness wait completed), so we are its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let h = Handoff {
            fd,
            bytes,
            hooked: true,
            from: core.id,
        };
        match core.inboxes.send(owner, h) {
            Ok(()) => CoreStats::bump(&core.stats.handoffs_sent),
            Err(h) => {
                CoreStats::bump(&core.stats.handoffs_refused);
                tracing::warn!(
                    core = core.id,
                    owner,
                    "handoff refused (inbox full or closed): 503"
                );
                let mut out = Vec::new();
                let resp = Response::text(503, "Service unavailable: try again");
                write_response(&mut out, &resp, &core.date, false, true);
                // Best effort: a small response into an idle socket's empty send buffer.
                if let Ok(n) = sock::send(h.fd.as_fd(), &out) {
                    core.metrics.sent_bytes.add(n as u64);
                }
            }
        }
    }

    /// Turns this task into the WebSocket's reader (the session sent the 101).
    async fn upgrade(self, u: session::Upgrade) {
        let parts = self.session.upgrade_parts(&u);
        let target = parts.target.to_owned();
        let Route::Room { room, query, .. } = router::route(&target) else {
            return;
        };
        let id =
            router::query_param(query, "_pk").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let head = parts.head.to_vec();
        let host = header_value(&head, "host").unwrap_or("localhost");
        let uri = format!("http://{host}{target}");
        // The WebSocket does not carry this (much larger) HTTP task's state and buffers for
        // its lifetime: it waits in the core's poller (or, if it needs one, in a task of its
        // own); only the bytes after the head go along.
        let leftover = parts.leftover.to_vec();
        let HttpConn {
            held, io, stream, ..
        } = self;
        let core_id = io.core.id;
        let task = ws_conn::serve(
            io.core,
            stream,
            leftover,
            ws_conn::Joined {
                party: u.party,
                room: room.into(),
                id: id.into(),
                uri: uri.into(),
                target: target.as_str().into(),
                head,
                deflate: u.deflate,
            },
            held,
        );
        if let Some(task) = task {
            spawn_guarded(core_id, task);
        }
    }
}

/// How long a refused connection may take to send its request head.
const REFUSE_HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers a connection accepted while the core is at its connection cap: `503` with
/// `Retry-After`, or for a WebSocket upgrade `101` then close `1013` (try again later), which is
/// what partysocket understands (it retries with backoff either way). Then closes.
pub async fn refuse(core: Rc<Core>, stream: TcpStream) {
    core.refusing.set(core.refusing.get() + 1);
    let fd = sock::fd_of(&stream);
    let mut buf = Vec::new();
    let deadline = Instant::now() + REFUSE_HEAD_TIMEOUT;
    let limits = Limits {
        max_head_bytes: core.config.max_head_bytes,
        max_headers: core.config.max_headers,
        max_target_bytes: core.config.max_target_bytes,
    };
    let head = loop {
        match http::parse_head(&buf, &limits) {
            Ok(Some(head)) => break Some(head),
            Ok(None) => {}
            Err(_) => break None,
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, stream.readable(false)).await {
            Ok(Ok(())) => {}
            _ => break None,
        }
        match sock::recv_into_vec(fd, &mut buf, READ_CHUNK) {
            Ok(0) => break None,
            Ok(n) => core.metrics.received_bytes.add(n as u64),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break None,
        }
    };
    let mut out = Vec::new();
    let key = head.as_ref().and_then(|h| h.ws_key.clone());
    match (head, key) {
        (Some(h), Some(key)) if h.upgrade_websocket && ws::valid_key(&buf[key.clone()]) => {
            ws::upgrade::write_101(&mut out, &buf[key], None);
            out.extend_from_slice(&ws::encode_close(
                ws::close::TRY_AGAIN_LATER,
                "Server at capacity",
            ));
        }
        (Some(_), _) => {
            let resp =
                Response::text(503, "Server at capacity: try again").header("Retry-After", "1");
            write_response(&mut out, &resp, &core.date, false, true);
        }
        (None, _) => {}
    }
    if core
        .stats
        .refused_at_capacity
        .load(std::sync::atomic::Ordering::Relaxed)
        % 1000
        == 1
    {
        // One line per thousand refusals: a connection storm must not become a log storm.
        tracing::warn!(
            core = core.id,
            live = core.live_connections(),
            "at the connection cap: refusing connections (logged every 1000)"
        );
    }
    if !out.is_empty() {
        let _ = flush_all(&stream, &out, REFUSE_HEAD_TIMEOUT, &core.metrics).await;
        sock::shutdown_write(fd);
    }
    core.refusing.set(core.refusing.get() - 1);
}

/// Routes a complete request to its party on this core, or (not a room) to `runtime::assets`.
fn route_request(
    core: &Core,
    method: Method,
    target: &str,
    head: &[u8],
    body: &[u8],
) -> assets::Answer {
    let Route::Room { party, room, .. } = router::route(target) else {
        return assets::answer(core, method, target, head, body);
    };
    let Some(party_idx) = core.party_index(party) else {
        return assets::Answer::Reply(
            Response::text(404, format!("Party {party} not found")).into(),
        );
    };
    let req = Request::from_head(method, target, head, body);
    assets::Answer::Reply(core.with_room(party_idx, room, |r| {
        core.parties.request(party_idx, r, &req)
    }))
}

/// `fut`'s output, or `None` once `timer` fires first (readiness is polled first, as
/// `monoio::time::timeout` does).
async fn until<F: Future>(mut timer: Pin<&mut monoio::time::Sleep>, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Writes all of `bytes`, waiting for room in the socket at most `timeout` at a time; counts
/// what is sent in `metrics`. True if it had to wait.
pub async fn flush_all(
    stream: &TcpStream,
    bytes: &[u8],
    timeout: Duration,
    metrics: &Metrics,
) -> io::Result<bool> {
    let fd = sock::fd_of(stream);
    let mut sent = 0;
    let mut waited = false;
    while sent < bytes.len() {
        match sock::send(fd, &bytes[sent..]) {
            Ok(n) => {
                sent += n;
                metrics.sent_bytes.add(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                waited = true;
                // Boxed: monoio's `Sleep` is 640 bytes (128-aligned), and inline it would sit in
                // every HTTP connection's task for a wait that only a full socket needs.
                match Box::pin(monoio::time::timeout(timeout, stream.writable(false))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(waited)
}
