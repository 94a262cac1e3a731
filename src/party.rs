//! Parties: the application behaviour of rooms — PartyKit's `Party.Server`, in Rust.
//!
//! A party reacts to a room's life: `on_start` (the room is loaded), `on_connect` /
//! `on_message` / `on_close` / `on_error` (its WebSockets), `on_request` (HTTP), `on_alarm`
//! (its one persisted timer). One instance per party per core serves every room of that party
//! on that core, with the room passed in (`&mut Room`: its connections, storage, alarm and
//! per-room `state`), so nothing here is shared between cores and nothing needs a lock.
//!
//! Two hooks run *before* the room is involved, on whichever core accepted the connection:
//! `on_before_connect` (WebSocket upgrades) and `on_before_request` (everything else). They
//! see the request head and either let it through, add or replace headers, or answer it
//! themselves (say, 401), exactly like PartyKit's static `onBeforeConnect`/`onBeforeRequest`.
//!
//! Handlers are synchronous (they hold the room). Work that must wait — a storage write to be
//! fsynced, a fetch to another party's room — is a future: `on_request` may return
//! [`Reply::later`], and any handler may `monoio::spawn` a task that comes back to the room
//! through a [`RoomRef`](crate::room::RoomRef).
//!
//! ```
//! use partyring::party::{Connection, ConnectContext, Party, Reply, Request};
//! use partyring::{http::Response, room::Room, ws::Message};
//!
//! /// Counts messages per room and tells everyone.
//! struct Counter;
//!
//! impl Party for Counter {
//!     fn on_connect(&self, room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
//!         conn.send_text(&format!("welcome {}", conn.id()));
//!     }
//!
//!     fn on_message(&self, room: &mut Room, _msg: Message<'_>, sender: &Connection) {
//!         let n = room.state_mut::<u64>().map_or(1, |n| { *n += 1; *n });
//!         if n == 1 {
//!             room.set_state(1u64);
//!         }
//!         room.broadcast_text(&format!("{} sent message {n}", sender.id()), &[]);
//!     }
//!
//!     fn on_request(&self, room: &mut Room, _req: &Request<'_>) -> Reply {
//!         let n = room.state_ref::<u64>().copied().unwrap_or(0);
//!         Response::text(200, n.to_string()).into()
//!     }
//! }
//! ```
//!
//! Built in:
//! - `main`: PartyKit's "Responding to HTTP requests" `MessageServer`: POST `{"message"}`
//!   appends to the room's history and, once that is durable (`OK` comes after the fsync),
//!   broadcasts it; GET answers the history as JSON; a message that cannot be stored is
//!   answered 507 (disk full) or 503 and shown nowhere;
//! - `echo`: sends every WebSocket message back to its sender (conformance and benchmarks);
//! - `yjs`: a Yjs document per room for y-partykit clients ([`crate::yjs`]).

use std::{
    future::Future,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    sync::Arc,
};

use crate::{
    http::{response::TEXT_PLAIN, Method, Response},
    room::{Context, FetchRequest, Room},
    router,
    runtime::cron::{CronEvent, CronJob},
    storage::StorageError,
    ws::{self, Message, OpCode},
};

pub use crate::room::connection::{Connection, WsConn};

/// Tags one connection may carry at most (PartyKit: 9, plus the id).
pub const MAX_TAGS: usize = 9;
/// Longest tag, in bytes (PartyKit's limit).
pub const MAX_TAG_BYTES: usize = 256;

/// What a party sees of an HTTP request (or of a WebSocket upgrade request).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The request target (path and query) as sent, e.g. `/parties/main/r1?x=1`.
    pub target: &'a str,
    /// The decoded body (empty if none; hooks see an empty body, it has not arrived yet).
    pub body: &'a [u8],
    headers: Headers<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Headers<'a> {
    /// A raw request head, parsed again only when a header is asked for (most handlers never
    /// look, and the hot paths should not pay for a header list).
    Raw(&'a [u8]),
    List(&'a [(String, String)]),
}

impl<'a> Request<'a> {
    /// A request built by code (tests, party-to-party fetches).
    pub fn new(
        method: Method,
        target: &'a str,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> Self {
        Request {
            method,
            target,
            body,
            headers: Headers::List(headers),
        }
    }

    /// A request whose headers are read from its raw head bytes on demand.
    pub(crate) fn from_head(
        method: Method,
        target: &'a str,
        head: &'a [u8],
        body: &'a [u8],
    ) -> Self {
        Request {
            method,
            target,
            body,
            headers: Headers::Raw(head),
        }
    }

    /// Every header field in order, names as sent.
    pub fn headers(&self) -> Vec<(&'a str, &'a str)> {
        match self.headers {
            Headers::Raw(head) => crate::http::parse::header_fields(head),
            Headers::List(list) => list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The path without the query.
    pub fn path(&self) -> &'a str {
        crate::router::find_byte(self.target, b'?').map_or(self.target, |i| &self.target[..i])
    }

    /// The query string without its `?` (empty if none).
    pub fn query(&self) -> &'a str {
        crate::router::find_byte(self.target, b'?').map_or("", |i| &self.target[i + 1..])
    }

    /// Query parameter `name`, form-decoded; the first occurrence wins.
    pub fn query_param(&self, name: &str) -> Option<String> {
        router::query_param(self.query(), name)
    }
}

/// An HTTP answer, now or once a future resolves (a storage write, a fetch to another room).
pub enum Reply {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response>>>),
}

impl Reply {
    /// Answers with what `fut` resolves to. The connection waits for it (later pipelined
    /// requests are answered after it, in order).
    pub fn later(fut: impl Future<Output = Response> + 'static) -> Self {
        Reply::Later(Box::pin(fut))
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Now(r)
    }
}

/// What an `on_before_*` hook decides.
#[derive(Debug)]
pub enum Before {
    /// Let the request through as it is.
    Continue,
    /// Let it through with these headers set (replacing any of the same name, else added);
    /// the room sees the rewritten request (`ctx.request` in `on_connect`, `req` in
    /// `on_request`).
    SetHeaders(Vec<(String, String)>),
    /// Answer with this response instead; the room never sees the request.
    Respond(Response),
}

impl Before {
    /// `Respond` with 401 and `reason` as the text body (what PartyKit answers when a hook
    /// throws).
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Before::Respond(Response::text(401, reason))
    }
}

/// What `on_connect` and `connection_tags` get besides the connection.
#[derive(Debug)]
pub struct ConnectContext<'a> {
    /// The upgrade request, with any headers an `on_before_connect` hook set.
    pub request: Request<'a>,
}

/// Application behaviour for the rooms of one party. Every method has a default that does
/// nothing (or, for `on_request`, answers 404); room methods run on the room's owner core.
pub trait Party {
    /// Runs on the accepting core for a WebSocket upgrade to one of this party's rooms, before
    /// the room is involved (and before the connection moves to the room's core).
    fn on_before_connect(&self, _req: &Request<'_>) -> Before {
        Before::Continue
    }

    /// As `on_before_connect`, for every other HTTP request to one of this party's rooms. The
    /// body has not been read yet (`req.body` is empty). Party-to-party fetches skip it.
    fn on_before_request(&self, _req: &Request<'_>) -> Before {
        Before::Continue
    }

    /// The room was loaded: before its first connect, request or alarm, and again if it was
    /// dropped from memory (no connections and no `state`) and comes back.
    fn on_start(&self, _room: &mut Room) {}

    /// Tags for a new connection, for [`Room::get_connections`]: at most [`MAX_TAGS`], each
    /// non-empty and at most [`MAX_TAG_BYTES`]; breaking that closes the connection with 1011.
    fn connection_tags(&self, _conn: &Connection, _ctx: &ConnectContext<'_>) -> Vec<String> {
        Vec::new()
    }

    /// A WebSocket joined the room (it is already among the room's connections).
    fn on_connect(&self, _room: &mut Room, _conn: &Connection, _ctx: &ConnectContext<'_>) {}

    /// A complete text or binary message arrived from `sender`.
    fn on_message(&self, _room: &mut Room, _msg: Message<'_>, _sender: &Connection) {}

    /// A WebSocket left the room (it is no longer among its connections). `code` is the
    /// peer's close code, the server's if the server closed first, or 1006 if the connection
    /// ended without a close frame.
    fn on_close(&self, _room: &mut Room, _conn: &Connection, _code: u16, _reason: &str) {}

    /// The connection failed: a protocol violation by the peer (it is closed with the matching
    /// code) or a socket error. `on_close` follows.
    fn on_error(&self, _room: &mut Room, _conn: &Connection, _error: &str) {}

    /// Answers an HTTP request to one of the party's rooms.
    fn on_request(&self, _room: &mut Room, _req: &Request<'_>) -> Reply {
        Response::text(404, "No onRequest handler").into()
    }

    /// The room's alarm ([`Room::set_alarm`]) went off. It is cleared before this runs, so
    /// setting a new one here re-arms it.
    fn on_alarm(&self, _room: &mut Room) {}

    /// A named cron (`--cron NAME=EXPR`, [`Builder::named_cron`](crate::runtime::Builder::named_cron))
    /// is due: PartyKit's `static onCron(cron, lobby)`. Runs on core 0 with core 0's instance of
    /// every party, once per scheduled time; no room is involved, `cron.lobby()` reaches any
    /// room (`party_room(..).fetch(..)`, a future: `monoio::spawn` it). Each party sees every
    /// named cron and ignores the names it does not know.
    fn on_cron(&self, _cron: &CronEvent) {}
}

/// Makes one instance of a party; called once per core (a party instance is core-local and
/// need not be `Send`, but the recipe for it must be).
pub type PartyFactory = Arc<dyn Fn() -> Box<dyn Party> + Send + Sync>;

/// A server-level handler for requests that reach no room and no static file (PartyKit's
/// `static onFetch`): `Some(reply)` answers, `None` passes (to the SPA index, the demo page or
/// 404). Runs on the core that accepted the connection.
pub type FetchHandler = Arc<dyn Fn(&Request<'_>, &Context) -> Option<Reply> + Send + Sync>;

/// The parties a server serves, by name, as recipes shared by every core, and the server-level
/// handlers beside them (`on_fetch`, crons).
#[derive(Clone, Default)]
pub struct PartySet {
    entries: Vec<(Box<str>, PartyFactory)>,
    on_fetch: Option<FetchHandler>,
    crons: Vec<CronJob>,
}

impl PartySet {
    /// The binary's parties: `main`, `echo`, and `yjs` (Yjs documents with snapshot
    /// persistence, `crate::yjs`).
    pub fn builtin() -> Self {
        PartySet::default()
            .with("main", || MainParty)
            .with("echo", || EchoParty)
            .with("yjs", || {
                crate::yjs::YjsParty::new(crate::yjs::Persistence::snapshot())
            })
    }

    /// Adds (or replaces) the party `name`.
    #[must_use]
    pub fn with<P: Party + 'static>(
        mut self,
        name: &str,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        let factory: PartyFactory = Arc::new(move || Box::new(make()));
        match self.entries.iter_mut().find(|(n, _)| &**n == name) {
            Some(entry) => entry.1 = factory,
            None => self.entries.push((name.into(), factory)),
        }
        self
    }

    /// Sets the server-level `on_fetch` handler (replacing any earlier one).
    #[must_use]
    pub fn with_on_fetch(mut self, handler: FetchHandler) -> Self {
        self.on_fetch = Some(handler);
        self
    }

    /// Adds a cron.
    #[must_use]
    pub fn with_cron(mut self, job: CronJob) -> Self {
        self.crons.push(job);
        self
    }

    /// One core's instances.
    pub fn instantiate(&self) -> Parties {
        Parties {
            list: self
                .entries
                .iter()
                .map(|(name, make)| (Rc::from(&**name), make()))
                .collect(),
            on_fetch: self.on_fetch.clone(),
            crons: self.crons.clone(),
        }
    }
}

/// One core's party instances, and the one place where a party's panic is contained: a panic
/// fails only the request (500) or the connection (close 1011) that caused it, is logged, and
/// leaves the room, its other members and every other room working.
pub struct Parties {
    list: Vec<(Rc<str>, Box<dyn Party>)>,
    on_fetch: Option<FetchHandler>,
    /// Run by core 0 only (see `runtime/cron.rs`).
    crons: Vec<CronJob>,
}

impl Parties {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The index of the party called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|(n, _)| &**n == name)
    }

    pub fn name(&self, idx: usize) -> &Rc<str> {
        &self.list[idx].0
    }

    fn guarded<R>(&self, idx: usize, what: &str, f: impl FnOnce(&dyn Party) -> R) -> Option<R> {
        let party = &*self.list[idx].1;
        match panic::catch_unwind(AssertUnwindSafe(|| f(party))) {
            Ok(r) => Some(r),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                tracing::error!(party = %self.list[idx].0, handler = what, panic = %msg, "party handler panicked");
                None
            }
        }
    }

    /// `on_before_connect` (`upgrade`) or `on_before_request`; a panic answers 500.
    pub fn before(&self, idx: usize, upgrade: bool, req: &Request<'_>) -> Before {
        let (what, r) = if upgrade {
            (
                "on_before_connect",
                self.guarded(idx, "on_before_connect", |p| p.on_before_connect(req)),
            )
        } else {
            (
                "on_before_request",
                self.guarded(idx, "on_before_request", |p| p.on_before_request(req)),
            )
        };
        r.unwrap_or_else(|| {
            Before::Respond(Response::text(
                500,
                format!("Internal server error in {what}"),
            ))
        })
    }

    /// `on_start`; a panic is logged (the room is used anyway, as PartyKit retries nothing).
    pub fn start(&self, idx: usize, room: &mut Room) {
        self.guarded(idx, "on_start", |p| p.on_start(room));
    }

    /// `on_request`, or 500 if it panics. The output gate for HTTP: if the handler wrote to
    /// storage, its answer leaves only once those writes are durable, and if one of them fails
    /// the answer is replaced by [`storage_unavailable`] (a Durable Object's output gate does
    /// the same). A handler that wrote nothing is not delayed.
    pub fn request(&self, idx: usize, room: &mut Room, req: &Request<'_>) -> Reply {
        let mark = room.write_mark();
        let reply = self
            .guarded(idx, "on_request", |p| p.on_request(room, req))
            .unwrap_or_else(|| Response::text(500, "Internal server error").into());
        let Some(writes) = room.writes_since(mark) else {
            return reply;
        };
        Reply::later(async move {
            let response = match reply {
                Reply::Now(r) => r,
                Reply::Later(f) => f.await,
            };
            match writes.await {
                Ok(()) => response,
                Err(e) => storage_unavailable(&e),
            }
        })
    }

    /// `connection_tags` (checked) then `on_connect`; a panic or bad tags close the connection
    /// with 1011.
    pub fn connect(
        &self,
        idx: usize,
        room: &mut Room,
        conn: &Connection,
        ctx: &ConnectContext<'_>,
    ) {
        let Some(tags) = self.guarded(idx, "connection_tags", |p| p.connection_tags(conn, ctx))
        else {
            conn.close_with(ws::close::INTERNAL, "Internal server error", false);
            return;
        };
        if let Err(reason) = check_tags(&tags) {
            tracing::warn!(party = %self.list[idx].0, conn = %conn.id(), reason, "connection_tags broke the limits: closing with 1011");
            conn.close_with(ws::close::INTERNAL, reason, false);
            return;
        }
        conn.set_tags(tags);
        if self
            .guarded(idx, "on_connect", |p| p.on_connect(room, conn, ctx))
            .is_none()
        {
            conn.close_with(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_message`; a panic closes the sender with 1011.
    pub fn message(&self, idx: usize, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        if self
            .guarded(idx, "on_message", |p| p.on_message(room, msg, sender))
            .is_none()
        {
            sender.close_with(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_close`; a panic is logged.
    pub fn close(&self, idx: usize, room: &mut Room, conn: &Connection, code: u16, reason: &str) {
        self.guarded(idx, "on_close", |p| p.on_close(room, conn, code, reason));
    }

    /// `on_error`; a panic is logged.
    pub fn error(&self, idx: usize, room: &mut Room, conn: &Connection, error: &str) {
        self.guarded(idx, "on_error", |p| p.on_error(room, conn, error));
    }

    /// `on_alarm`; a panic is logged.
    pub fn alarm(&self, idx: usize, room: &mut Room) {
        self.guarded(idx, "on_alarm", |p| p.on_alarm(room));
    }

    /// `on_cron` of every party; a panic is logged and the other parties still run.
    pub fn cron(&self, cron: &CronEvent) {
        for idx in 0..self.list.len() {
            self.guarded(idx, "on_cron", |p| p.on_cron(cron));
        }
    }

    /// The server-level `on_fetch` handler's answer; `None` if there is none or it passed. A
    /// panic answers 500.
    pub fn fetch(&self, req: &Request<'_>) -> Option<Reply> {
        let handler = self.on_fetch.as_ref()?;
        match panic::catch_unwind(AssertUnwindSafe(|| handler(req, &Context::lobby()))) {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(target = req.target, "on_fetch panicked");
                Some(Response::text(500, "Internal server error").into())
            }
        }
    }

    /// The server's crons.
    pub fn crons(&self) -> &[CronJob] {
        &self.crons
    }
}

fn check_tags(tags: &[String]) -> Result<(), &'static str> {
    if tags.len() > MAX_TAGS {
        return Err("Too many connection tags (at most 9)");
    }
    if tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG_BYTES) {
        return Err("Connection tags must be 1 to 256 bytes");
    }
    Ok(())
}

/// PartyKit's `MessageServer` (docs/partykit-protocol.md), with its history in room storage:
/// it is replayed on start and a POST is answered `OK` only once its message is durable.
pub struct MainParty;

#[derive(serde::Deserialize)]
struct PostBody {
    message: String,
}

impl Party for MainParty {
    fn on_start(&self, room: &mut Room) {
        room.load_history();
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        match req.method {
            Method::Get => Response::json(200, room.history_json().to_vec()).into(),
            Method::Post => match serde_json::from_slice::<PostBody>(req.body) {
                Ok(post) => {
                    let durable = room.publish(post.message, None);
                    if let Some(Err(e)) = durable.status() {
                        return storage_unavailable(&e).into();
                    }
                    let handle = room.handle();
                    Reply::later(async move {
                        let result = durable.await;
                        // Show it before answering, so a GET after the OK finds it.
                        handle.with(Room::release_gate);
                        match result {
                            Ok(()) => Response::text(200, "OK"),
                            Err(e) => storage_unavailable(&e),
                        }
                    })
                }
                Err(e) => Response::text(
                    400,
                    format!("Body must be JSON {{\"message\": \"<string>\"}}: {e}"),
                )
                .into(),
            },
            _ => method_not_allowed("GET, POST").into(),
        }
    }

    /// A named cron (`--cron NAME=EXPR`) posts a JSON text, `{"cron":NAME,"definition":EXPR,
    /// "scheduledTime":<ms>}` (PartyKit's cron object), to this party's room `NAME`, as a POST
    /// through the party-to-party fetch: it lands on the room's owner core, is stored in the
    /// room's history (durably) and broadcast to its connections. So `--cron tick='0 * * * *'`
    /// gives room `tick` an hourly beat that clients see live and in `GET`.
    fn on_cron(&self, cron: &CronEvent) {
        let line = serde_json::json!({
            "cron": &*cron.name,
            "definition": &*cron.definition,
            "scheduledTime": cron.scheduled_ms(),
        })
        .to_string();
        let body = serde_json::json!({ "message": line }).to_string();
        let post = cron
            .party_room("main", &cron.name)
            .fetch(FetchRequest::post(body));
        let name = cron.name.clone();
        monoio::spawn(async move {
            let resp = post.await;
            if resp.status != 200 {
                tracing::warn!(cron = %name, status = resp.status, body = %String::from_utf8_lossy(&resp.body), "cron post to party main failed");
            }
        });
    }

    /// Text is stored and then broadcast to the others (PartyKit's starter template excludes
    /// the sender), through the room's output gate: a message that cannot be stored is not
    /// relayed and its sender is closed with 1013. Binary is relayed, not stored.
    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        match msg {
            Message::Text(text) => drop(room.publish(text.to_owned(), Some(sender))),
            Message::Binary(bytes) => room.relay(OpCode::Binary, bytes, Some(sender)),
            _ => {}
        }
    }
}

/// The answer to a write that could not be made durable: `507 Insufficient Storage` for a full
/// disk, `503 Service Unavailable` with `Retry-After` for any other storage failure; a one-line
/// body. Nothing of the request was stored or shown.
pub fn storage_unavailable(e: &StorageError) -> Response {
    let status = if *e == StorageError::NoSpace {
        507
    } else {
        503
    };
    Response {
        status,
        content_type: TEXT_PLAIN,
        headers: vec![("Retry-After".into(), STORAGE_RETRY_AFTER_SECS.to_string())],
        body: format!("Not stored: {e}; try again later\n").into_bytes(),
    }
}

/// What `Retry-After` suggests after a storage failure, in seconds.
pub const STORAGE_RETRY_AFTER_SECS: u32 = 1;

/// Echoes WebSocket messages; over HTTP it only says what it is.
pub struct EchoParty;

impl Party for EchoParty {
    fn on_request(&self, _room: &mut Room, req: &Request<'_>) -> Reply {
        match req.method {
            Method::Get => Response::text(200, "echo: connect with a WebSocket").into(),
            _ => method_not_allowed("GET").into(),
        }
    }

    fn on_message(&self, _room: &mut Room, msg: Message<'_>, sender: &Connection) {
        match msg {
            Message::Text(text) => sender.send(OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => sender.send(OpCode::Binary, bytes),
            _ => {}
        }
    }
}

/// 405 `Method not allowed` with the `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        status: 405,
        content_type: TEXT_PLAIN,
        headers: vec![("Allow".into(), allow.to_owned())],
        body: b"Method not allowed".to_vec(),
    }
}
