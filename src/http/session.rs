//! One HTTP/1.1 connection as a state machine without IO: bytes and events in, actions out.
//!
//! Owns: the connection's read buffer and output buffer; finding each request head in the
//! bytes (`parse`), judging an incomplete head against the limits without re-parsing it per
//! byte, reading its body (`body`), `Expect: 100-continue`; pipelining (every complete request
//! in the buffer is answered in order, and all their responses wait in one output buffer, so
//! the driver sends a batch with one `send`); keep-alive and close; the header and idle
//! deadlines (the driver passes the time in); CORS (`cors`); the decisions to run a party's
//! `on_before_*` hook (and rewriting the head with the headers it sets), to hand the
//! connection to another core, and to accept or refuse a WebSocket upgrade (`ws::upgrade`);
//! and the error response for any of it.
//!
//! Does not own: sockets, time itself, Core, rooms or parties. What it needs to know about
//! them it asks a [`Service`] the driver passes in (a generic parameter: no dynamic dispatch
//! per request): which party and core a target names, what a hook decides, what a request is
//! answered with. A deferred answer or a file body is kept by the driver; the session only
//! learns that one is owed ([`Answer::Later`], [`Answer::File`]) and waits for
//! [`Session::complete`] or [`Session::file_sent`].
//!
//! The driver's loop (`runtime/http_conn.rs`): call [`Session::advance`]; send
//! [`Session::output`] (then [`Session::sent`]); then do what the [`Action`] says. For
//! [`Action::Read`], read into [`Session::read_buf`] with [`Session::deadline`] as the
//! deadline, and on the deadline call [`Session::timed_out`].

use std::time::Instant;

use crate::{config::Config, ws};

use super::{
    cors::{self, CorsHeaders},
    parse::{head_end, rewrite_head, Framing, MAX_HEADERS},
    response::{write_response, write_response_head},
    BodyDecoder, DateCache, Head, HttpError, Limits, Method, Response,
};

/// What the session needs from the server around it. The runtime implements it over its core;
/// the tests, over a table.
pub trait Service {
    /// The limits, timeouts and CORS policy.
    fn config(&self) -> &Config;
    /// The `Date` of every response.
    fn date(&self) -> &DateCache;
    /// The server is stopping: every answer is the connection's last, and upgrades get 503.
    fn shutting_down(&self) -> bool;
    /// Which room, if any, a request target names.
    fn route(&mut self, target: &str) -> Route;
    /// The party's `on_before_connect` (`upgrade`) or `on_before_request` hook.
    fn before(&mut self, party: usize, upgrade: bool, req: &RequestView<'_>) -> Hook;
    /// The answer to a complete request (a room's `on_request`, or a request for no room).
    fn respond(&mut self, req: &RequestView<'_>) -> Answer;
    /// The session refused a request itself (bad framing, a limit, a timeout, a bad
    /// upgrade): for logs and metrics. `reason` is the response's text.
    fn refused(&mut self, status: u16, reason: &str);
    /// A request is in progress (`true`, from its first byte) or none is (`false`): a
    /// shutdown waits for the answers in progress.
    fn busy(&mut self, busy: bool);
}

/// What a request target names, as the [`Service`] sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A room of `party` (the service's own index). `owner`: the core that owns the room, if
    /// not this one.
    Room { party: usize, owner: Option<usize> },
    /// No room (a known party's, at least): answered by [`Service::respond`] on this core.
    Other,
}

/// A request as the [`Service`] sees it: slices of the session's buffers, never copies.
#[derive(Copy, Clone, Debug)]
pub struct RequestView<'a> {
    pub method: Method,
    pub target: &'a str,
    /// The whole head, request line to blank line.
    pub head: &'a [u8],
    /// The decoded body (empty for a hook: it runs before the body is read).
    pub body: &'a [u8],
}

/// A hook's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Continue,
    /// Set these headers (replacing any of the same name) and go on.
    SetHeaders(Vec<(String, String)>),
    /// Answer with this; the request goes no further.
    Respond(Response),
}

/// The answer to a request.
#[derive(Debug)]
pub enum Answer {
    Now(Response),
    /// The service keeps a future of the response: the session yields [`Action::Await`] and
    /// waits for [`Session::complete`].
    Later,
    /// The service keeps a file of `len` bytes: the session writes `head` (its status and
    /// headers) and yields [`Action::SendFile`].
    File {
        head: Response,
        len: u64,
    },
}

/// What the driver does next. Whatever it is, [`Session::output`] is sent first.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Read more into [`Session::read_buf`] by [`Session::deadline`], then `advance` again.
    Read,
    /// Await the deferred answer the service keeps, then [`Session::complete`].
    Await,
    /// Send the file body the service keeps (`len` bytes), then [`Session::file_sent`].
    SendFile { len: u64 },
    /// Close the connection.
    Close,
    /// An error response went out: half-close and drain what the client still sends for a
    /// moment, so it reads the response instead of a reset.
    Linger,
    /// Move the connection to core `owner` with [`Session::unanswered`]; the first request
    /// there already passed its hook.
    Handoff { owner: usize },
    /// The 101 is in the output: the connection is a WebSocket from now on.
    Upgrade(Upgrade),
}

/// An accepted WebSocket upgrade; [`Session::upgrade_parts`] has its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The party of the room (the [`Service`]'s index).
    pub party: usize,
    pub head: Head,
    /// Where the head starts in the buffer.
    head_at: usize,
    pub deflate: Option<ws::deflate::Agreed>,
}

/// The bytes of an accepted upgrade.
pub struct UpgradeParts<'a> {
    pub head: &'a [u8],
    pub target: &'a str,
    /// What the client sent after the head: its first frames.
    pub leftover: &'a [u8],
}

/// What the session is waiting for.
#[derive(Debug)]
enum State {
    /// Bytes: every call to `advance` answers what is buffered.
    Ready,
    /// [`Session::complete`], then this response's settings.
    Awaiting(Deferred),
    /// [`Session::file_sent`]; `close`: the connection ends after the file.
    SendingFile { len: u64, close: bool },
    /// The last response is written: close.
    Closing,
}

#[derive(Debug)]
struct Deferred {
    cors: Option<CorsHeaders>,
    head_only: bool,
    close: bool,
}

/// A request whose body is still arriving.
#[derive(Debug)]
struct Pending {
    head: Head,
    /// Where the head starts in `buf` (the body's undecoded bytes follow it).
    head_at: usize,
    decoder: BodyDecoder,
}

/// A buffer that grew past this (a large body) is released once it is empty again.
const KEEP_BUF_CAPACITY: usize = 64 * 1024;

/// One connection's HTTP state. See the module note for the driver's loop.
#[derive(Debug)]
pub struct Session {
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
    /// When the first byte of the request in progress was seen.
    req_started: Option<Instant>,
    /// The next request dispatched already passed its hook (on the core that handed it here).
    hooked: bool,
    state: State,
}

impl Session {
    /// A session over `bytes` already read (empty for a new connection; what another core
    /// read, for a handed-off one, whose first request passed its hook there if `hooked`).
    pub fn new(bytes: Vec<u8>, hooked: bool) -> Self {
        Session {
            buf: bytes,
            pos: 0,
            scanned: 0,
            checked: 0,
            out: Vec::new(),
            body: Vec::new(),
            pending: None,
            req_started: None,
            hooked,
            state: State::Ready,
        }
    }

    /// Bytes to send before doing what the last [`Action`] says.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The output was sent.
    pub fn sent(&mut self) {
        self.out.clear();
        if self.out.capacity() > KEEP_BUF_CAPACITY {
            self.out = Vec::new();
        }
    }

    /// Where the driver appends the bytes it reads (consumed bytes are dropped first).
    pub fn read_buf(&mut self) -> &mut Vec<u8> {
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
        &mut self.buf
    }

    /// The bytes not answered here, for [`Action::Handoff`].
    pub fn unanswered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The bytes of an accepted upgrade, for [`Action::Upgrade`].
    pub fn upgrade_parts(&self, u: &Upgrade) -> UpgradeParts<'_> {
        let raw = &self.buf[u.head_at..];
        UpgradeParts {
            head: &raw[..u.head.len],
            // Checked when the head was routed.
            target: super::parse::text(&raw[u.head.target.clone()]).unwrap_or(""),
            leftover: &raw[u.head.len..],
        }
    }

    /// A request is in progress: some of it is buffered (or its body is being read).
    pub fn in_progress(&self) -> bool {
        self.pending.is_some() || self.pos < self.buf.len()
    }

    /// When [`Session::timed_out`] is due, if nothing arrives before: `header_timeout` after
    /// the first byte of a request in progress, else `idle_timeout` from `now`.
    pub fn deadline(&self, now: Instant, config: &Config) -> Instant {
        match self.req_started {
            Some(t) if self.in_progress() => t + config.header_timeout,
            _ => now + config.idle_timeout,
        }
    }

    /// The deadline passed with nothing read: a request in progress gets 408; then close.
    pub fn timed_out<S: Service>(&mut self, svc: &mut S) -> Action {
        if self.in_progress() {
            self.refuse(HttpError::Timeout, svc);
        }
        self.state = State::Closing;
        Action::Close
    }

    /// The peer closed its side: whatever was partly sent is dropped, nothing is owed.
    pub fn eof(&mut self) -> Action {
        self.state = State::Closing;
        Action::Close
    }

    /// The deferred answer of [`Action::Await`] arrived.
    pub fn complete<S: Service>(&mut self, resp: Response, svc: &mut S) {
        let State::Awaiting(d) = std::mem::replace(&mut self.state, State::Ready) else {
            debug_assert!(false, "complete() without an Action::Await");
            return;
        };
        self.write(resp, d.cors, d.head_only, d.close, svc);
        // The next request's clock starts now, not when the awaited one began.
        self.req_started = None;
        if d.close {
            self.state = State::Closing;
        }
    }

    /// The file body of [`Action::SendFile`] was sent.
    pub fn file_sent(&mut self) {
        if let State::SendingFile { close, .. } = self.state {
            // The next request's clock starts now, not when the file began.
            self.req_started = None;
            self.state = if close { State::Closing } else { State::Ready };
        }
    }

    /// Answers every complete request buffered, up to the first that needs the driver.
    /// `now` is when the bytes were seen (the start of a new request's header deadline).
    pub fn advance<S: Service>(&mut self, now: Instant, svc: &mut S) -> Action {
        match self.state {
            State::Ready => {}
            State::Awaiting(_) => return Action::Await,
            State::SendingFile { len, .. } => return Action::SendFile { len },
            State::Closing => return Action::Close,
        }
        let action = match self.process(now, svc) {
            Ok(action) => action,
            Err(e) => {
                self.refuse(e, svc);
                Action::Linger
            }
        };
        if !matches!(
            action,
            Action::Read | Action::Await | Action::SendFile { .. }
        ) {
            // The connection leaves this session (closed, or moved on): nothing more to do.
            self.state = State::Closing;
        }
        action
    }

    /// Writes the error response for `e` (with CORS headers for the request in progress).
    fn refuse<S: Service>(&mut self, e: HttpError, svc: &mut S) {
        svc.refused(e.status(), e.reason());
        let raw = match &self.pending {
            Some(p) => self.buf.get(p.head_at..p.head_at + p.head.len),
            None => self.buf.get(self.pos..),
        };
        let allowed = cors::headers_for(&svc.config().cors, raw);
        self.write(
            Response::text(e.status(), e.reason()),
            allowed,
            false,
            true,
            svc,
        );
    }

    fn process<S: Service>(&mut self, now: Instant, svc: &mut S) -> Result<Action, HttpError> {
        loop {
            if let Some(p) = &mut self.pending {
                let body_at = p.head_at + p.head.len;
                let max_body = svc.config().max_body_bytes;
                let progress = p
                    .decoder
                    .feed(&self.buf[body_at..], &mut self.body, max_body)?;
                self.buf.drain(body_at..body_at + progress.consumed);
                if !progress.done {
                    return Ok(Action::Read);
                }
                let p = self.pending.take().expect("checked above");
                self.pos = body_at;
                if let Some(action) = self.respond(&p.head, p.head_at, svc) {
                    return Ok(action);
                }
                continue;
            }
            let avail = &self.buf[self.pos..];
            if avail.is_empty() {
                self.req_started = None;
                svc.busy(false);
                // Shutting down and nothing in progress: this connection is done.
                if svc.shutting_down() {
                    return Ok(Action::Close);
                }
                return Ok(Action::Read);
            }
            if self.req_started.is_none() {
                self.req_started = Some(now);
                svc.busy(true);
            }
            let config = svc.config();
            let limits = Limits {
                max_head_bytes: config.max_head_bytes,
                max_headers: config.max_headers,
                max_target_bytes: config.max_target_bytes,
            };
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
                    super::parse_head(avail, &limits)?;
                    self.checked = avail.len();
                }
                self.scanned = avail.len();
                return Ok(Action::Read);
            }
            let Some(head) = super::parse_head(avail, &limits)? else {
                self.scanned = avail.len();
                return Ok(Action::Read);
            };
            self.scanned = 0;
            self.checked = 0;
            let head_at = self.pos;
            if let Some(action) = self.dispatch_head(head, head_at, svc)? {
                return Ok(action);
            }
        }
    }

    /// Decides what to do with a complete head: answer a CORS preflight, run the party's
    /// `on_before_*` hook, hand off, upgrade, or read its body. `None`: go on with the buffer.
    fn dispatch_head<S: Service>(
        &mut self,
        mut head: Head,
        head_at: usize,
        svc: &mut S,
    ) -> Result<Option<Action>, HttpError> {
        let cors = &svc.config().cors;
        if head.method == Method::Options && cors.is_on() {
            if let Some((resp, allowed)) = cors::preflight(cors, self.raw(&head, head_at)) {
                return Ok(self.answer_now(&head, head_at, resp, allowed, svc));
            }
        }
        let route = svc.route(target(&self.buf, &head, head_at)?);
        if let Route::Room { party, owner } = route {
            if !std::mem::take(&mut self.hooked) {
                match self.run_hook(party, &head, head_at, svc)? {
                    Ok(Some(new_head)) => head = new_head,
                    Ok(None) => {}
                    Err(resp) => {
                        let allowed =
                            cors::headers_for(&svc.config().cors, Some(self.raw(&head, head_at)));
                        return Ok(self.answer_now(&head, head_at, resp, allowed, svc));
                    }
                }
            }
            if let Some(owner) = owner {
                return Ok(Some(Action::Handoff { owner }));
            }
            if head.upgrade_websocket {
                return Ok(Some(self.upgrade(party, head, head_at, svc)));
            }
        }
        match head.framing {
            Framing::Length(n) if n > svc.config().max_body_bytes as u64 => {
                return Err(HttpError::BodyTooLarge)
            }
            Framing::None => {
                self.pos = head_at + head.len;
                return Ok(self.respond(&head, head_at, svc));
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

    fn raw(&self, head: &Head, head_at: usize) -> &[u8] {
        &self.buf[head_at..head_at + head.len]
    }

    /// Runs the party's hook on the request at `head_at`. `Ok(Some(head))`: it set headers,
    /// and the request in the buffer was rewritten (this is its new head); `Ok(None)`:
    /// unchanged; `Err(resp)`: answer this.
    fn run_hook<S: Service>(
        &mut self,
        party: usize,
        head: &Head,
        head_at: usize,
        svc: &mut S,
    ) -> Result<Result<Option<Head>, Response>, HttpError> {
        let head_range = head_at..head_at + head.len;
        let req = RequestView {
            method: head.method,
            target: target(&self.buf, head, head_at)?,
            head: &self.buf[head_range.clone()],
            body: &[],
        };
        let set = match svc.before(party, head.upgrade_websocket, &req) {
            Hook::Continue => return Ok(Ok(None)),
            Hook::Respond(resp) => return Ok(Err(resp)),
            Hook::SetHeaders(set) => set,
        };
        let Some(new) = rewrite_head(&self.buf[head_range.clone()], &set) else {
            tracing::error!("hook set a header that is not valid HTTP: 500");
            return Ok(Err(invalid_hook_header()));
        };
        self.buf.splice(head_range, new);
        // The client's limits were checked on what it sent; what the hook added is the
        // server's own doing and must not turn into a 431 for the client.
        let limits = Limits {
            max_head_bytes: usize::MAX,
            max_headers: MAX_HEADERS,
            max_target_bytes: usize::MAX,
        };
        match super::parse_head(&self.buf[head_at..], &limits)? {
            Some(new_head) => Ok(Ok(Some(new_head))),
            None => Err(HttpError::Malformed("rewritten request head is incomplete")),
        }
    }

    /// Answers the request at `head_at` with `resp` without running it (a hook's or the
    /// preflight's answer). A request with a body is answered and the connection closed, as
    /// its body is not read.
    fn answer_now<S: Service>(
        &mut self,
        head: &Head,
        head_at: usize,
        resp: Response,
        allowed: Option<CorsHeaders>,
        svc: &mut S,
    ) -> Option<Action> {
        let has_body = head.framing != Framing::None;
        let close = has_body || !head.keep_alive || svc.shutting_down();
        self.pos = head_at + head.len;
        self.write(resp, allowed, head.method == Method::Head, close, svc);
        if has_body {
            Some(Action::Linger)
        } else {
            close.then_some(Action::Close)
        }
    }

    /// Accepts (the 101 into the output) or refuses a WebSocket upgrade for a room here.
    fn upgrade<S: Service>(
        &mut self,
        party: usize,
        head: Head,
        head_at: usize,
        svc: &mut S,
    ) -> Action {
        // Disjoint borrows of the fields: the head stays in the read buffer, the 101 goes out.
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
        let refusal = if svc.shutting_down() {
            // The server's state, not the client's fault: not counted as refused.
            tracing::info!("websocket upgrade while shutting down: 503");
            Response::text(503, "Server shutting down")
        } else {
            match ws::upgrade::check(&offer, svc.config().compression) {
                Ok(deflate) => {
                    let key = offer.key.expect("checked");
                    ws::upgrade::write_101(&mut self.out, key, deflate);
                    return Action::Upgrade(Upgrade {
                        party,
                        head,
                        head_at,
                        deflate,
                    });
                }
                Err(refusal) => {
                    let mut resp = Response::text(refusal.status(), refusal.reason());
                    if let Some((name, value)) = refusal.header() {
                        resp = resp.header(name, value);
                    }
                    svc.refused(resp.status, &String::from_utf8_lossy(&resp.body));
                    resp
                }
            }
        };
        write_response(&mut self.out, &refusal, svc.date(), false, true);
        Action::Linger
    }

    /// Answers the request whose head is at `head_at` and whose body is in `self.body`.
    /// `Some`: what the driver must do first (await, send a file, close).
    fn respond<S: Service>(&mut self, head: &Head, head_at: usize, svc: &mut S) -> Option<Action> {
        let raw = &self.buf[head_at..head_at + head.len];
        let answer = match target(&self.buf, head, head_at) {
            Ok(target) => svc.respond(&RequestView {
                method: head.method,
                target,
                head: raw,
                body: &self.body,
            }),
            Err(e) => Answer::Now(Response::text(e.status(), e.reason())),
        };
        let allowed = cors::headers_for(&svc.config().cors, Some(raw));
        let head_only = head.method == Method::Head;
        // While shutting down, every answer is the connection's last.
        let close = !head.keep_alive || svc.shutting_down();
        self.body.clear();
        match answer {
            Answer::Now(resp) => {
                self.write(resp, allowed, head_only, close, svc);
                close.then(|| self.close())
            }
            Answer::File { mut head, len } => {
                cors::apply(&svc.config().cors, &mut head, allowed);
                write_response_head(&mut self.out, &head, svc.date(), len, close);
                if head_only {
                    return close.then(|| self.close());
                }
                self.state = State::SendingFile { len, close };
                Some(Action::SendFile { len })
            }
            Answer::Later => {
                self.state = State::Awaiting(Deferred {
                    cors: allowed,
                    head_only,
                    close,
                });
                Some(Action::Await)
            }
        }
    }

    fn close(&mut self) -> Action {
        self.state = State::Closing;
        Action::Close
    }

    /// Appends a response (with CORS headers, if any) to the output.
    fn write<S: Service>(
        &mut self,
        mut resp: Response,
        allowed: Option<CorsHeaders>,
        head_only: bool,
        close: bool,
        svc: &S,
    ) {
        cors::apply(&svc.config().cors, &mut resp, allowed);
        write_response(&mut self.out, &resp, svc.date(), head_only, close);
    }
}

/// The request target of the head at `head_at` in `buf`.
fn target<'b>(buf: &'b [u8], head: &Head, head_at: usize) -> Result<&'b str, HttpError> {
    let range = head_at + head.target.start..head_at + head.target.end;
    super::parse::text(&buf[range]).map_err(|_| HttpError::Malformed("Request target is not UTF-8"))
}

/// The answer when a hook sets a header that could break the request's framing.
pub fn invalid_hook_header() -> Response {
    Response::text(500, "Internal server error: a hook set an invalid header")
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
