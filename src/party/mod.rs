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

use std::{future::Future, pin::Pin, sync::Arc};

use crate::{
    config::Config,
    http::{response::TEXT_PLAIN, Method, Response},
    room::{Context, Room},
    router,
    storage::StorageError,
    ws::Message,
};

pub mod cron;
mod echo;
pub mod main;
mod set;

pub use crate::room::connection::{Connection, WsConn};
pub use cron::{CronEvent, CronJob};
pub use echo::EchoParty;
pub use main::MainParty;
pub use set::{Parties, PartySet};

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

/// Makes one instance of a party from the server's config; called once per core (a party
/// instance is core-local and need not be `Send`, but the recipe for it must be).
pub type PartyFactory = Arc<dyn Fn(&Config) -> Box<dyn Party> + Send + Sync>;

/// A server-level handler for requests that reach no room and no static file (PartyKit's
/// `static onFetch`): `Some(reply)` answers, `None` passes (to the SPA index, the demo page or
/// 404). Runs on the core that accepted the connection.
pub type FetchHandler = Arc<dyn Fn(&Request<'_>, &Context) -> Option<Reply> + Send + Sync>;

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

/// 405 `Method not allowed` with the `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        status: 405,
        content_type: TEXT_PLAIN,
        headers: vec![("Allow".into(), allow.to_owned())],
        body: b"Method not allowed".to_vec(),
    }
}
