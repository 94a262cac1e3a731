//! Rooms: the per-core state of one `party/room`.
//!
//! A room lives on its owner core only (`runtime::shard`), so it is plain data behind the core's
//! `RefCell`: no locks, no atomics. It holds the room's WebSocket connections (a slab, so a
//! connection's slot is stable while others come and go) and the `main` party's message history.
//!
//! A room exists while it has something to keep: connections or history. The table drops it
//! when both are empty, so a stream of GETs for random room names costs nothing.

pub mod table;

use std::{collections::VecDeque, rc::Rc};

use slab::Slab;

use crate::{net::writer::SendStatus, net::ws_conn::WsConn, ws};

pub use table::RoomTable;

pub struct Room {
    /// The party's index in the core's party list.
    pub party: usize,
    /// The raw (undecoded) room id from the URL.
    pub id: Box<str>,
    /// Live WebSocket connections. A connection knows its own slot (`WsConn::slot`) and is
    /// removed by that slot, never by id: two sockets may share an id (partysocket reuses `_pk`).
    pub conns: Slab<Rc<WsConn>>,
    /// Messages in arrival order, at most `history_limit` (the oldest are dropped).
    history: VecDeque<String>,
    history_limit: usize,
    /// `history` serialised as a JSON array, kept until the history changes: GET is the hot
    /// HTTP path, and re-serialising 10,000 messages per request would dominate it.
    history_json: Option<Rc<[u8]>>,
}

impl Room {
    pub fn new(party: usize, id: &str, history_limit: usize) -> Self {
        Room {
            party,
            id: id.into(),
            conns: Slab::new(),
            history: VecDeque::new(),
            history_limit,
            history_json: None,
        }
    }

    /// Nothing to keep: no connections and no history.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.history.is_empty()
    }

    pub fn push_history(&mut self, message: String) {
        if self.history_limit == 0 {
            return;
        }
        while self.history.len() >= self.history_limit {
            self.history.pop_front();
        }
        self.history.push_back(message);
        self.history_json = None;
    }

    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// The history as a JSON array of strings.
    pub fn history_json(&mut self) -> Rc<[u8]> {
        if let Some(json) = &self.history_json {
            return json.clone();
        }
        let json: Rc<[u8]> = serde_json::to_vec(&self.history)
            .expect("a list of strings always serialises")
            .into();
        self.history_json = Some(json.clone());
        json
    }

    /// Sends `frame` (already encoded) to every connection except the one in slot `except`.
    /// A connection whose queue is over its bound is closed with 1008; the others are not
    /// affected.
    pub fn broadcast_frame(&self, frame: &Rc<[u8]>, except: Option<usize>) {
        for (slot, conn) in &self.conns {
            if Some(slot) == except {
                continue;
            }
            if conn.outbox.push(frame.clone()) == SendStatus::Backpressure {
                tracing::warn!(room = %self.id, conn = %conn.id, queued = conn.outbox.queued_bytes(),
                    "outbound queue over its bound: closing with 1008");
                conn.close(ws::close::POLICY, "Outbound queue full", true);
            }
        }
    }

    /// Broadcasts a text message to every connection (encoded once, shared).
    pub fn broadcast_text(&self, text: &str) {
        if self.conns.is_empty() {
            return;
        }
        let frame: Rc<[u8]> = ws::encode_frame(ws::OpCode::Text, text.as_bytes()).into();
        self.broadcast_frame(&frame, None);
    }

    /// The newest live connection with this id (two sockets may share one).
    pub fn get_connection(&self, id: &str) -> Option<&Rc<WsConn>> {
        self.conns
            .iter()
            .filter(|(_, c)| &*c.id == id)
            .max_by_key(|(_, c)| c.serial)
            .map(|(_, c)| c)
    }
}
