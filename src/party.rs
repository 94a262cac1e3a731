//! Parties: the application behaviour of rooms.
//!
//! A party is PartyKit's server class: it reacts to HTTP requests (`on_request`) and, for
//! WebSocket connections, to connects, messages and closes. One instance per party per core
//! serves every room of that party on that core, with the room's state passed in, so nothing
//! here is shared between cores.
//!
//! Built in:
//! - `main`: PartyKit's "Responding to HTTP requests" `MessageServer` — POST `{"message"}`
//!   appends to the room's history and broadcasts it, GET answers the history as JSON;
//! - `echo`: sends every WebSocket message back to its sender (conformance and benchmarks).

use std::{
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    sync::Arc,
};

use crate::{
    http::{response::TEXT_PLAIN, Method, Response},
    net::ws_conn::WsConn,
    room::Room,
    ws::{self, Message, OpCode},
};

/// What a party sees of an HTTP request.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The full request target (path and query) as sent.
    pub target: &'a str,
    /// The decoded body (empty if none).
    pub body: &'a [u8],
}

/// Application behaviour for the rooms of one party. Methods run on the room's owner core.
pub trait Party {
    /// Answers an HTTP request to one of this party's rooms.
    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Response;

    /// A WebSocket joined the room (it is already in `room.conns`).
    fn on_connect(&self, _room: &mut Room, _conn: &Rc<WsConn>) {}

    /// A complete text or binary message arrived from `sender`.
    fn on_message(&self, _room: &mut Room, _msg: Message<'_>, _sender: &Rc<WsConn>) {}

    /// A WebSocket left the room (it is no longer in `room.conns`).
    fn on_close(&self, _room: &mut Room, _conn: &Rc<WsConn>) {}
}

/// Makes one instance of a party; called once per core (a party instance is core-local and
/// need not be `Send`, but the recipe for it must be).
pub type PartyFactory = Arc<dyn Fn() -> Box<dyn Party> + Send + Sync>;

/// The parties a server serves, by name, as recipes shared by every core.
#[derive(Clone, Default)]
pub struct PartySet {
    entries: Vec<(Box<str>, PartyFactory)>,
}

impl PartySet {
    /// The binary's parties: `main` and `echo`.
    pub fn builtin() -> Self {
        PartySet::default()
            .with("main", || MainParty)
            .with("echo", || EchoParty)
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

    /// One core's instances.
    pub fn instantiate(&self) -> Parties {
        Parties {
            list: self
                .entries
                .iter()
                .map(|(name, make)| (name.clone(), make()))
                .collect(),
        }
    }
}

/// One core's party instances, and the one place where a party's panic is contained: a panic
/// fails only the request (500) or the connection (close 1011) that caused it, is logged, and
/// leaves the room, its other members and every other room working.
pub struct Parties {
    list: Vec<(Box<str>, Box<dyn Party>)>,
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

    pub fn name(&self, idx: usize) -> &str {
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

    /// `on_request`, or 500 if it panics.
    pub fn request(&self, idx: usize, room: &mut Room, req: &Request<'_>) -> Response {
        self.guarded(idx, "on_request", |p| p.on_request(room, req))
            .unwrap_or_else(|| Response::text(500, "Internal server error"))
    }

    /// `on_connect`; a panic closes the connection with 1011.
    pub fn connect(&self, idx: usize, room: &mut Room, conn: &Rc<WsConn>) {
        if self
            .guarded(idx, "on_connect", |p| p.on_connect(room, conn))
            .is_none()
        {
            conn.close(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_message`; a panic closes the sender with 1011.
    pub fn message(&self, idx: usize, room: &mut Room, msg: Message<'_>, sender: &Rc<WsConn>) {
        if self
            .guarded(idx, "on_message", |p| p.on_message(room, msg, sender))
            .is_none()
        {
            sender.close(ws::close::INTERNAL, "Internal server error", false);
        }
    }

    /// `on_close`; a panic is logged.
    pub fn close(&self, idx: usize, room: &mut Room, conn: &Rc<WsConn>) {
        self.guarded(idx, "on_close", |p| p.on_close(room, conn));
    }
}

/// PartyKit's `MessageServer` (../shared/PARTYKIT.md §4).
pub struct MainParty;

#[derive(serde::Deserialize)]
struct PostBody {
    message: String,
}

impl Party for MainParty {
    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Response {
        match req.method {
            Method::Get => Response::json(200, room.history_json().to_vec()),
            Method::Post => match serde_json::from_slice::<PostBody>(req.body) {
                Ok(post) => {
                    room.broadcast_text(&post.message);
                    room.push_history(post.message);
                    Response::text(200, "OK")
                }
                Err(e) => Response::text(
                    400,
                    format!("Body must be JSON {{\"message\": \"<string>\"}}: {e}"),
                ),
            },
            _ => method_not_allowed("GET, POST"),
        }
    }

    /// Text is stored and broadcast to the others (PartyKit's starter template excludes the
    /// sender); binary is broadcast as binary and not stored.
    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Rc<WsConn>) {
        let (opcode, payload) = match msg {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
            _ => return,
        };
        if room.conns.len() > 1 {
            let frame: Rc<[u8]> = ws::encode_frame(opcode, payload).into();
            room.broadcast_frame(&frame, Some(sender.slot.get()));
        }
        if let Message::Text(text) = msg {
            room.push_history(text.to_owned());
        }
    }
}

/// Echoes WebSocket messages; over HTTP it only says what it is.
pub struct EchoParty;

impl Party for EchoParty {
    fn on_request(&self, _room: &mut Room, req: &Request<'_>) -> Response {
        match req.method {
            Method::Get => Response::text(200, "echo: connect with a WebSocket"),
            _ => method_not_allowed("GET"),
        }
    }

    fn on_message(&self, _room: &mut Room, msg: Message<'_>, sender: &Rc<WsConn>) {
        match msg {
            Message::Text(text) => sender.send(OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => sender.send(OpCode::Binary, bytes),
            _ => {}
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        status: 405,
        content_type: TEXT_PLAIN,
        headers: vec![("Allow", allow.to_owned())],
        body: b"Method not allowed".to_vec(),
    }
}
