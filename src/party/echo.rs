//! The built-in `echo` party: every WebSocket message goes back to its sender (conformance
//! suites and benchmarks).

use super::{method_not_allowed, Connection, Party, Reply, Request};
use crate::{
    http::{Method, Response},
    room::Room,
    ws::{Message, OpCode},
};

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
