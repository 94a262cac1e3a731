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

use std::rc::Rc;

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
    /// The party name as it appears in `/parties/:party/:room`.
    fn name(&self) -> &'static str;

    /// Answers an HTTP request to one of this party's rooms.
    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Response;

    /// A WebSocket joined the room (it is already in `room.conns`).
    fn on_connect(&self, _room: &mut Room, _conn: &Rc<WsConn>) {}

    /// A complete text or binary message arrived from `sender`.
    fn on_message(&self, _room: &mut Room, _msg: Message<'_>, _sender: &Rc<WsConn>) {}

    /// A WebSocket left the room (it is no longer in `room.conns`).
    fn on_close(&self, _room: &mut Room, _conn: &Rc<WsConn>) {}
}

/// The built-in parties, in a fixed order (their index is their id inside a core).
pub fn builtin() -> Vec<Box<dyn Party>> {
    vec![Box::new(MainParty), Box::new(EchoParty)]
}

/// PartyKit's `MessageServer` (../shared/PARTYKIT.md §4).
pub struct MainParty;

#[derive(serde::Deserialize)]
struct PostBody {
    message: String,
}

impl Party for MainParty {
    fn name(&self) -> &'static str {
        "main"
    }

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
    fn name(&self) -> &'static str {
        "echo"
    }

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
