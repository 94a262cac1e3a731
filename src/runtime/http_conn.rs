//! One HTTP/1.1 connection: read, parse, route, answer; or hand off, or upgrade.
//!
//! The task reads into the connection's own buffer, answers every complete request in it
//! (pipelining), and sends all the responses of that batch with one `send`. The request parsers
//! are sans-IO (`http::parse`, `http::body`); this file is the only place HTTP touches a socket.
//!
//! For a request to a room, the first question is which core owns the room (`shard::owner`). If
//! it is another core, nothing is answered here: the socket and every unanswered byte move there
//! (`runtime::handoff`) and this task ends. Otherwise a WebSocket upgrade becomes a
//! `ws_conn`, and anything else goes to the party's `on_request`. A request that is for no room
//! is answered by `net::assets` (metrics, static files, `on_fetch`, the demo page, 404), which
//! also streams a static file's body here, after its head.
//!
//! Timeouts: a request must arrive completely (head and body) within `header_timeout` of its
//! first byte, else 408 and close; a connection with nothing in progress is closed after
//! `idle_timeout`. Any framing error is answered with its status and `Connection: close`, then
//! the socket is half-closed and drained briefly so the client reads the error instead of a
//! reset.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd},
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use crate::{
    config::Cors,
    http::{
        self,
        parse::{head_end, header_value, rewrite_head, Framing},
        response::{write_response, write_response_head},
        BodyDecoder, Head, HttpError, Limits, Method, Response,
    },
    metrics::Metrics,
    net::sock,
    party::{Before, Reply, Request},
    router::{self, Route},
    shard, ws,
};

use super::{
    assets::{self, Answer},
    core::{spawn_guarded, BusyGuard, ConnGuard, Core, CoreStats},
    handoff::Handoff,
    ws_conn,
};

/// Bytes reserved before each read.
const READ_CHUNK: usize = 4096;
/// A buffer that grew past this (a large body) is released once it is empty again.
const KEEP_BUF_CAPACITY: usize = 64 * 1024;
/// How long an erroring connection is drained after its error response.
const LINGER: Duration = Duration::from_secs(1);

/// Serves a connection from its first byte, or from the bytes another core already read
/// (`hooked`: the first request in them already passed its party's `on_before_*` hook).
pub async fn serve(core: Rc<Core>, stream: TcpStream, bytes: Vec<u8>, hooked: bool) {
    let fd = stream.as_raw_fd();
    let mut conn = HttpConn {
        held: core.conn_guard(),
        core,
        stream,
        fd,
        buf: bytes,
        pos: 0,
        scanned: 0,
        checked: 0,
        out: Vec::new(),
        body: Vec::new(),
        pending: None,
        req_started: None,
        busy: None,
        hooked,
        waiting: None,
        file: None,
    };
    match conn.run().await {
        Exit::Close => {}
        Exit::Linger => conn.linger().await,
        Exit::Handoff { owner, hooked } => conn.handoff(owner, hooked),
        Exit::Upgrade {
            head,
            head_at,
            deflate,
        } => conn.upgrade(head, head_at, deflate).await,
    }
}

/// Why the HTTP loop stopped.
enum Exit {
    /// Done; drop the socket.
    Close,
    /// An error response was sent; drain the socket briefly before closing.
    Linger,
    /// The request at `pos` is for a room on core `owner`; `hooked`: it passed its hook here.
    Handoff { owner: usize, hooked: bool },
    /// A valid WebSocket upgrade for a room on this core; `head` indexes `buf[head_at..]`.
    /// `deflate`: the permessage-deflate offer accepted, if any.
    Upgrade {
        head: Head,
        head_at: usize,
        deflate: Option<ws::deflate::Agreed>,
    },
}

enum Step {
    NeedMore,
    /// A party answered with a future (`HttpConn::waiting`): await it, then go on.
    Await,
    /// A static file's head is in `out`: send it, stream the file (`HttpConn::file`), go on.
    SendFile,
    Exit(Exit),
}

/// A response that is still being computed (a storage write, a party fetch).
struct Waiting {
    fut: std::pin::Pin<Box<dyn std::future::Future<Output = Response>>>,
    cors: Option<CorsHeaders>,
    head_only: bool,
    close: bool,
}

/// CORS response headers for one request.
struct CorsHeaders {
    allow_origin: String,
    vary: bool,
}

/// A request whose body is still arriving.
struct Pending {
    head: Head,
    /// Where the head starts in `buf` (the body's undecoded bytes follow it).
    head_at: usize,
    decoder: BodyDecoder,
}

struct HttpConn {
    /// Counts this connection against the core's cap until it closes, is handed to another
    /// core, or passes to its WebSocket task.
    held: ConnGuard,
    core: Rc<Core>,
    stream: TcpStream,
    fd: RawFd,
    /// Bytes read and not yet consumed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for the end of a head.
    scanned: usize,
    /// Length of the incomplete head when the parser last judged it (see `process`).
    checked: usize,
    /// Responses waiting to be sent, in request order.
    out: Vec<u8>,
    /// The decoded body of the request in progress (reused between requests).
    body: Vec<u8>,
    pending: Option<Pending>,
    /// When the first byte of the request in progress arrived.
    req_started: Option<Instant>,
    /// Held while a request is in progress, so a shutdown waits for its answer.
    busy: Option<BusyGuard>,
    /// The next request dispatched already passed its hook (on the core that handed it here).
    hooked: bool,
    /// The answer being awaited (requests after it wait their turn).
    waiting: Option<Waiting>,
    /// A static file to send after the head already in `out` (see `net::assets`).
    file: Option<SendingFile>,
}

/// A file body owed to the client after its head.
struct SendingFile {
    file: std::fs::File,
    len: u64,
    /// The connection closes after it.
    close: bool,
}

impl HttpConn {
    fn limits(&self) -> Limits {
        let c = &self.core.config;
        Limits {
            max_head_bytes: c.max_head_bytes,
            max_headers: c.max_headers,
            max_target_bytes: c.max_target_bytes,
        }
    }

    async fn run(&mut self) -> Exit {
        loop {
            let exit = match self.process() {
                Ok(Step::NeedMore) => None,
                Ok(Step::Await) => {
                    if !self.out.is_empty() && self.flush().await.is_err() {
                        return Exit::Close;
                    }
                    let w = self.waiting.take().expect("Step::Await sets it");
                    // A party future that never resolves must not hold the connection forever.
                    let wait = self.core.config.idle_timeout;
                    let resp = match monoio::time::timeout(wait, w.fut).await {
                        Ok(resp) => resp,
                        Err(_) => {
                            tracing::warn!(core = self.core.id, "deferred reply timed out: 504");
                            Response::text(504, "Gateway timeout: the room did not answer")
                        }
                    };
                    self.write(resp, w.cors, w.head_only, w.close);
                    // The next request's clock starts now, not when the awaited one began.
                    self.req_started = None;
                    if w.close {
                        let _ = self.flush().await;
                        return Exit::Close;
                    }
                    continue;
                }
                Ok(Step::SendFile) => {
                    let f = self.file.take().expect("Step::SendFile sets it");
                    if self.flush().await.is_err() {
                        return Exit::Close;
                    }
                    let timeout = self.core.config.idle_timeout;
                    // Boxed: a file transfer's state (a read op, a buffer, a socket wait) would
                    // otherwise sit in every HTTP connection's task.
                    let sent = Box::pin(assets::send_file(
                        &self.core,
                        &self.stream,
                        self.fd,
                        f.file,
                        f.len,
                        timeout,
                    ))
                    .await;
                    if let Err(e) = sent {
                        tracing::info!(core = self.core.id, error = %e, "static file send failed");
                        return Exit::Close;
                    }
                    // The next request's clock starts now, not when the file began.
                    self.req_started = None;
                    if f.close {
                        return Exit::Close;
                    }
                    continue;
                }
                Ok(Step::Exit(exit)) => Some(exit),
                Err(e) => {
                    tracing::info!(core = self.core.id, error = %e, "bad request");
                    self.core.metrics.http_error(e.status());
                    let cors = self.error_cors();
                    self.write(Response::text(e.status(), e.reason()), cors, false, true);
                    Some(Exit::Linger)
                }
            };
            if !self.out.is_empty() && self.flush().await.is_err() {
                return Exit::Close;
            }
            if let Some(exit) = exit {
                return exit;
            }
            self.compact();
            match self.read().await {
                Ok(0) => return Exit::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    if self.in_progress() {
                        tracing::info!(core = self.core.id, "request timeout");
                        let e = HttpError::Timeout;
                        self.core.metrics.http_error(e.status());
                        let cors = self.error_cors();
                        self.write(Response::text(e.status(), e.reason()), cors, false, true);
                        let _ = self.flush().await;
                    }
                    return Exit::Close;
                }
                Err(_) => return Exit::Close,
            }
        }
    }

    fn in_progress(&self) -> bool {
        self.pending.is_some() || self.pos < self.buf.len()
    }

    /// Answers every complete request in the buffer. Never waits.
    fn process(&mut self) -> Result<Step, HttpError> {
        loop {
            if let Some(p) = &mut self.pending {
                let body_at = p.head_at + p.head.len;
                let progress = p.decoder.feed(
                    &self.buf[body_at..],
                    &mut self.body,
                    self.core.config.max_body_bytes,
                )?;
                self.buf.drain(body_at..body_at + progress.consumed);
                if !progress.done {
                    return Ok(Step::NeedMore);
                }
                let p = self.pending.take().expect("checked above");
                self.pos = body_at;
                if let Some(exit) = self.respond(&p.head, p.head_at) {
                    return Ok(Step::Exit(exit));
                }
                if self.waiting.is_some() {
                    return Ok(Step::Await);
                }
                if self.file.is_some() {
                    return Ok(Step::SendFile);
                }
                continue;
            }
            let avail = &self.buf[self.pos..];
            if avail.is_empty() {
                self.req_started = None;
                self.busy = None;
                // Shutting down and nothing in progress: this connection is done.
                if self.core.shutting_down() {
                    return Ok(Step::Exit(Exit::Close));
                }
                return Ok(Step::NeedMore);
            }
            if self.req_started.is_none() {
                self.req_started = Some(Instant::now());
                self.busy = Some(self.core.busy_guard());
            }
            let limits = self.limits();
            if !head_end(avail, self.scanned) {
                // Not complete, but possibly garbage or already over a limit: let the parser
                // judge the first bytes at once, then again only each time the head has
                // doubled, so a byte-at-a-time sender cannot make us re-parse per byte.
                // Crossing a limit is judged at once too (a client that stops right after
                // crossing it must get its 431/414, not a 408 later).
                let line_budget = limits.max_target_bytes + 32;
                let crossed = |n: usize| {
                    usize::from(n > line_budget) + usize::from(n > limits.max_head_bytes)
                };
                if self.checked == 0
                    || avail.len() >= 2 * self.checked
                    || crossed(avail.len()) != crossed(self.checked)
                {
                    http::parse_head(avail, &limits)?;
                    self.checked = avail.len();
                }
                self.scanned = avail.len();
                return Ok(Step::NeedMore);
            }
            let Some(head) = http::parse_head(avail, &limits)? else {
                self.scanned = avail.len();
                return Ok(Step::NeedMore);
            };
            self.scanned = 0;
            self.checked = 0;
            let head_at = self.pos;
            if let Some(exit) = self.dispatch_head(head, head_at)? {
                return Ok(Step::Exit(exit));
            }
            if self.waiting.is_some() {
                return Ok(Step::Await);
            }
            if self.file.is_some() {
                return Ok(Step::SendFile);
            }
        }
    }

    /// Decides what to do with a complete head: answer a CORS preflight, run the party's
    /// `on_before_*` hook, hand off, upgrade, or read its body.
    fn dispatch_head(&mut self, mut head: Head, head_at: usize) -> Result<Option<Exit>, HttpError> {
        if head.method == Method::Options && self.core.config.cors.is_on() {
            if let Some((resp, cors)) = self.preflight(&head, head_at) {
                return Ok(self.answer_now(&head, head_at, resp, cors));
            }
        }
        let (party_idx, owner) = {
            let target = self.target(&head, head_at)?;
            match router::route(target) {
                Route::Room { party, room, .. } => match self.core.party_index(party) {
                    Some(idx) => (Some(idx), shard::owner(party, room, self.core.cores())),
                    None => (None, self.core.id),
                },
                Route::NotFound => (None, self.core.id),
            }
        };
        if let Some(idx) = party_idx {
            if !std::mem::take(&mut self.hooked) {
                match self.run_hook(idx, &head, head_at)? {
                    Ok(Some(new_head)) => head = new_head,
                    Ok(None) => {}
                    Err(resp) => {
                        let cors = self.cors_headers(&head, head_at);
                        return Ok(self.answer_now(&head, head_at, resp, cors));
                    }
                }
            }
            if owner != self.core.id {
                return Ok(Some(Exit::Handoff {
                    owner,
                    hooked: true,
                }));
            }
            if head.upgrade_websocket {
                return Ok(Some(self.check_upgrade(head, head_at)));
            }
        }
        match head.framing {
            Framing::Length(n) if n > self.core.config.max_body_bytes as u64 => {
                return Err(HttpError::BodyTooLarge)
            }
            Framing::None => {
                self.pos = head_at + head.len;
                return Ok(self.respond(&head, head_at));
            }
            Framing::Length(_) | Framing::Chunked => {}
        }
        let decoder = match head.framing {
            Framing::Length(n) => BodyDecoder::length(n),
            _ => BodyDecoder::chunked(),
        };
        if head.expect_continue && self.buf.len() == head_at + head.len {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.body.clear();
        self.pending = Some(Pending {
            head,
            head_at,
            decoder,
        });
        Ok(None)
    }

    /// Runs the party's `on_before_connect` (upgrades) or `on_before_request` hook on the
    /// request at `head_at`. `Ok(Some(head))`: it set headers, and the request in the buffer
    /// was rewritten (this is its new head); `Ok(None)`: unchanged; `Err(resp)`: answer this.
    fn run_hook(
        &mut self,
        idx: usize,
        head: &Head,
        head_at: usize,
    ) -> Result<Result<Option<Head>, Response>, HttpError> {
        let head_range = head_at..head_at + head.len;
        let decision = {
            let target = self.target(head, head_at)?;
            let req = Request::from_head(head.method, target, &self.buf[head_range.clone()], &[]);
            self.core.parties.before(idx, head.upgrade_websocket, &req)
        };
        let set = match decision {
            Before::Continue => return Ok(Ok(None)),
            Before::Respond(resp) => return Ok(Err(resp)),
            Before::SetHeaders(set) => set,
        };
        let Some(new) = rewrite_head(&self.buf[head_range.clone()], &set) else {
            tracing::error!(core = self.core.id, party = %self.core.parties.name(idx), "hook set a header that is not valid HTTP: 500");
            return Ok(Err(Response::text(
                500,
                "Internal server error: a hook set an invalid header",
            )));
        };
        self.buf.splice(head_range, new);
        // The client's limits were checked on what it sent; what the hook added is the
        // server's own doing and must not turn into a 431 for the client.
        let limits = Limits {
            max_head_bytes: usize::MAX,
            max_headers: http::parse::MAX_HEADERS,
            max_target_bytes: usize::MAX,
        };
        match http::parse_head(&self.buf[head_at..], &limits)? {
            Some(new_head) => Ok(Ok(Some(new_head))),
            None => Err(HttpError::Malformed("rewritten request head is incomplete")),
        }
    }

    /// Answers the request at `head_at` with `resp` without running it (a hook's or the
    /// preflight's answer). A request with a body is answered and the connection closed, as
    /// its body is not read.
    fn answer_now(
        &mut self,
        head: &Head,
        head_at: usize,
        resp: Response,
        cors: Option<CorsHeaders>,
    ) -> Option<Exit> {
        let has_body = head.framing != Framing::None;
        let close = has_body || !head.keep_alive || self.core.shutting_down();
        self.pos = head_at + head.len;
        self.write(resp, cors, head.method == Method::Head, close);
        if has_body {
            Some(Exit::Linger)
        } else {
            close.then_some(Exit::Close)
        }
    }

    /// The CORS headers for a response to the request at `head_at`, if CORS is on and its
    /// origin allowed.
    fn cors_headers(&self, head: &Head, head_at: usize) -> Option<CorsHeaders> {
        let cors = &self.core.config.cors;
        if !cors.is_on() {
            return None;
        }
        let origin = header_value(&self.buf[head_at..head_at + head.len], "origin");
        cors.allow_origin(origin).map(|o| CorsHeaders {
            allow_origin: o.to_owned(),
            vary: matches!(cors, Cors::Origins(_)),
        })
    }

    /// CORS headers for an error the server itself answers (400, 408, 413, ...) to the request
    /// in progress, so that a browser can read why its request failed. The origin comes from
    /// the request's head if it got far enough to parse; with `--cors *` none is needed.
    fn error_cors(&self) -> Option<CorsHeaders> {
        let cors = &self.core.config.cors;
        if !cors.is_on() {
            return None;
        }
        let raw = match &self.pending {
            Some(p) => self.buf.get(p.head_at..p.head_at + p.head.len),
            None => self.buf.get(self.pos..),
        };
        let origin = raw.and_then(|raw| header_value(raw, "origin"));
        cors.allow_origin(origin).map(|o| CorsHeaders {
            allow_origin: o.to_owned(),
            vary: matches!(cors, Cors::Origins(_)),
        })
    }

    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 with the allowed
    /// methods and headers, or 403 for an origin not on the list. `None`: not a preflight.
    /// `write` adds the origin (and `Vary`) from the returned CORS headers.
    fn preflight(&self, head: &Head, head_at: usize) -> Option<(Response, Option<CorsHeaders>)> {
        let raw = &self.buf[head_at..head_at + head.len];
        header_value(raw, "access-control-request-method")?;
        let Some(cors) = self.cors_headers(head, head_at) else {
            tracing::info!(core = self.core.id, origin = ?header_value(raw, "origin"), "CORS preflight from an origin not allowed: 403");
            return Some((Response::text(403, "CORS: origin not allowed"), None));
        };
        let mut resp = Response {
            status: 204,
            content_type: "",
            headers: Vec::new(),
            body: Vec::new(),
        }
        .header(
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
        )
        .header("Access-Control-Max-Age", "86400");
        if let Some(h) = header_value(raw, "access-control-request-headers") {
            resp = resp.header("Access-Control-Allow-Headers", h);
        }
        Some((resp, Some(cors)))
    }

    /// Appends a response (with CORS headers, if any) to the output.
    fn write(
        &mut self,
        mut resp: Response,
        cors: Option<CorsHeaders>,
        head_only: bool,
        close: bool,
    ) {
        self.add_cors(&mut resp, cors);
        write_response(&mut self.out, &resp, &self.core.date, head_only, close);
    }

    /// Sets a response's CORS headers by the server's policy.
    fn add_cors(&self, resp: &mut Response, cors: Option<CorsHeaders>) {
        if self.core.config.cors.is_on() {
            // The server's policy decides the origin: a party's own value (say, a response
            // fetched from another room and passed on as it came) is replaced, not doubled,
            // and for an origin the policy refuses it is dropped, not passed on.
            resp.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("access-control-allow-origin"));
        }
        if let Some(c) = cors {
            resp.headers
                .push(("Access-Control-Allow-Origin".into(), c.allow_origin));
            let varies_by_origin = resp.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("vary")
                    && v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
            });
            if c.vary && !varies_by_origin {
                resp.headers.push(("Vary".into(), "Origin".to_owned()));
            }
        }
    }

    fn target(&self, head: &Head, head_at: usize) -> Result<&str, HttpError> {
        let range = head_at + head.target.start..head_at + head.target.end;
        std::str::from_utf8(&self.buf[range])
            .map_err(|_| HttpError::Malformed("Request target is not UTF-8"))
    }

    /// Validates a WebSocket upgrade (RFC 6455 4.2.1) for a room on this core.
    fn check_upgrade(&mut self, head: Head, head_at: usize) -> Exit {
        let raw = &self.buf[head_at..head_at + head.len];
        let field = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| &raw[r]);
        let offer = ws::upgrade::Offer {
            is_get: head.method == Method::Get,
            connection_upgrade: head.connection_upgrade,
            version: field(&head.ws_version),
            key: field(&head.ws_key),
            has_body: head.framing != Framing::None,
            head: raw,
        };
        let reject = if self.core.shutting_down() {
            Response::text(503, "Server shutting down")
        } else {
            match ws::upgrade::check(&offer, self.core.config.compression) {
                Ok(deflate) => {
                    return Exit::Upgrade {
                        head,
                        head_at,
                        deflate,
                    }
                }
                Err(refusal) => {
                    let mut resp = Response::text(refusal.status(), refusal.reason());
                    if let Some((name, value)) = refusal.header() {
                        resp = resp.header(name, value);
                    }
                    resp
                }
            }
        };
        tracing::info!(core = self.core.id, status = reject.status, reason = %String::from_utf8_lossy(&reject.body), "bad websocket upgrade");
        // 503 (shutting down) is the server's state, not the client's fault.
        if reject.status != 503 {
            self.core.metrics.http_error(reject.status);
        }
        write_response(&mut self.out, &reject, &self.core.date, false, true);
        Exit::Linger
    }

    /// Answers the request whose head is at `head_at` and whose body is in `self.body`.
    /// Returns `Some(Exit::Close)` if the connection ends after it; a deferred answer is left
    /// in `self.waiting`.
    fn respond(&mut self, head: &Head, head_at: usize) -> Option<Exit> {
        let range = head_at + head.target.start..head_at + head.target.end;
        let raw = &self.buf[head_at..head_at + head.len];
        // Disjoint borrows of the fields: the target stays in the read buffer (no copy).
        let reply = match std::str::from_utf8(&self.buf[range]) {
            Ok(target) => route_request(&self.core, head.method, target, raw, &self.body),
            Err(_) => {
                let e = HttpError::Malformed("Request target is not UTF-8");
                Answer::Reply(Response::text(e.status(), e.reason()).into())
            }
        };
        let cors = self.cors_headers(head, head_at);
        let head_only = head.method == Method::Head;
        // While shutting down, every answer is the connection's last.
        let close = !head.keep_alive || self.core.shutting_down();
        self.body.clear();
        match reply {
            Answer::Reply(Reply::Now(resp)) => {
                self.write(resp, cors, head_only, close);
                close.then_some(Exit::Close)
            }
            Answer::File(f) => {
                let mut head = f.head;
                self.add_cors(&mut head, cors);
                write_response_head(&mut self.out, &head, &self.core.date, f.len, close);
                if head_only {
                    return close.then_some(Exit::Close);
                }
                self.file = Some(SendingFile {
                    file: f.file,
                    len: f.len,
                    close,
                });
                None
            }
            Answer::Reply(Reply::Later(fut)) => {
                self.waiting = Some(Waiting {
                    fut,
                    cors,
                    head_only,
                    close,
                });
                None
            }
        }
    }

    /// Drops consumed bytes from the front of the buffer.
    fn compact(&mut self) {
        let keep_from = match &self.pending {
            Some(p) => p.head_at,
            None => self.pos,
        };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.pos -= keep_from;
            if let Some(p) = &mut self.pending {
                p.head_at -= keep_from;
            }
        }
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUF_CAPACITY {
            self.buf = Vec::new();
        }
        if self.out.capacity() > KEEP_BUF_CAPACITY {
            self.out = Vec::new();
        }
    }

    /// Reads more bytes, waiting for readiness within the applicable timeout.
    async fn read(&mut self) -> io::Result<usize> {
        loop {
            let now = Instant::now();
            let deadline = match self.req_started {
                Some(t) if self.in_progress() => t + self.core.config.header_timeout,
                _ => now + self.core.config.idle_timeout,
            };
            let wait = deadline.saturating_duration_since(now);
            match monoio::time::timeout(wait, self.stream.readable(false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
            match sock::recv_into_vec(self.fd, &mut self.buf, READ_CHUNK) {
                Ok(n) => {
                    self.core.metrics.received_bytes.add(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends everything in `out`.
    async fn flush(&mut self) -> io::Result<()> {
        flush_all(
            &self.stream,
            self.fd,
            &self.out,
            self.core.config.idle_timeout,
            &self.core.metrics,
        )
        .await?;
        self.out.clear();
        Ok(())
    }

    /// After an error response: stop sending, and read (and drop) what the client is still
    /// sending for a moment, so our response is not destroyed by a reset.
    async fn linger(&mut self) {
        sock::shutdown_write(self.fd);
        let deadline = Instant::now() + LINGER;
        loop {
            // Into the core's buffer: a scratch array here would sit in every connection's task
            // (an async fn's state is as large as its largest await point).
            let read = sock::recv(self.fd, &mut self.core.read_buf.borrow_mut());
            match read {
                Ok(0) => return,
                Ok(n) => {
                    self.core.metrics.received_bytes.add(n as u64);
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

    /// Moves the connection and its unanswered bytes to core `owner`.
    fn handoff(self, owner: usize, hooked: bool) {
        let core = self.core;
        let bytes = self.buf[self.pos..].to_vec();
        let raw = self.stream.into_raw_fd();
        // SAFETY: `into_raw_fd` released monoio's ownership of this open socket (no operation
        // was in flight: the last readiness wait completed), so we are its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let h = Handoff {
            fd,
            bytes,
            hooked,
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
                if let Ok(n) = sock::send(h.fd.as_raw_fd(), &out) {
                    core.metrics.sent_bytes.add(n as u64);
                }
            }
        }
    }

    /// Completes a validated upgrade and turns this task into the WebSocket's reader.
    async fn upgrade(mut self, head: Head, head_at: usize, deflate: Option<ws::deflate::Agreed>) {
        let target = match self.target(&head, head_at) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        };
        let Route::Room {
            party, room, query, ..
        } = router::route(&target)
        else {
            return;
        };
        let party_idx = self
            .core
            .party_index(party)
            .expect("checked by dispatch_head");
        let id =
            router::query_param(query, "_pk").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let head_bytes = self.buf[head_at..head_at + head.len].to_vec();
        let host = header_value(&head_bytes, "host").unwrap_or("localhost");
        let uri = format!("http://{host}{target}");
        let key = head.ws_key.clone().expect("checked by check_upgrade");
        ws::upgrade::write_101(&mut self.out, &head_bytes[key], deflate);
        if self.flush().await.is_err() {
            return;
        }
        // The WebSocket does not carry this (much larger) HTTP task's state and buffers for
        // its lifetime: it waits in the core's poller (or, if it needs one, in a task of its
        // own); only the bytes after the head go along.
        let leftover = self.buf[head_at + head.len..].to_vec();
        let HttpConn {
            held, core, stream, ..
        } = self;
        let core_id = core.id;
        let task = ws_conn::serve(
            core,
            stream,
            leftover,
            ws_conn::Joined {
                party: party_idx,
                room: room.into(),
                id: id.into(),
                uri: uri.into(),
                target: target.as_str().into(),
                head: head_bytes,
                deflate,
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
    let fd = stream.as_raw_fd();
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
        let _ = flush_all(&stream, fd, &out, REFUSE_HEAD_TIMEOUT, &core.metrics).await;
        sock::shutdown_write(fd);
    }
    core.refusing.set(core.refusing.get() - 1);
}

/// Routes a complete request to its party on this core, or (not a room) to `net::assets`.
fn route_request(core: &Core, method: Method, target: &str, head: &[u8], body: &[u8]) -> Answer {
    let Route::Room { party, room, .. } = router::route(target) else {
        return assets::answer(core, method, target, head, body);
    };
    let Some(party_idx) = core.party_index(party) else {
        return Answer::Reply(Response::text(404, format!("Party {party} not found")).into());
    };
    let req = Request::from_head(method, target, head, body);
    Answer::Reply(core.with_room(party_idx, room, |r| {
        core.parties.request(party_idx, r, &req)
    }))
}

/// Writes all of `bytes`, waiting for room in the socket at most `timeout` at a time; counts
/// what is sent in `metrics`.
pub async fn flush_all(
    stream: &TcpStream,
    fd: RawFd,
    bytes: &[u8],
    timeout: Duration,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        match sock::send(fd, &bytes[sent..]) {
            Ok(n) => {
                sent += n;
                metrics.sent_bytes.add(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
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
    Ok(())
}
