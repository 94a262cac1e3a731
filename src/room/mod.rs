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

use crate::{net::ws_conn::WsConn, ws};

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
            // The connection applies the backpressure policy (close with 1008, logged).
            conn.send_frame(frame.clone());
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::net::writer::Outbox;

    fn conn(id: &str, serial: u64) -> Rc<WsConn> {
        Rc::new(WsConn {
            id: id.into(),
            serial,
            slot: Cell::new(usize::MAX),
            outbox: Rc::new(Outbox::new(1 << 20)),
        })
    }

    fn join(room: &mut Room, c: &Rc<WsConn>) {
        c.slot.set(room.conns.insert(c.clone()));
    }

    #[test]
    fn duplicate_ids_live_side_by_side_and_leave_by_slot() {
        let mut room = Room::new(0, "r", 10);
        let (old, new, other) = (conn("dup", 1), conn("dup", 2), conn("x", 3));
        for c in [&old, &new, &other] {
            join(&mut room, c);
        }
        assert_eq!(room.get_connection("dup").unwrap().serial, 2, "newest wins");
        // A broadcast reaches both duplicates.
        room.broadcast_text("hi");
        assert!(old.outbox.queued_bytes() > 0 && new.outbox.queued_bytes() > 0);
        // The old one leaves by its own slot: the new one stays findable and reachable.
        room.conns.remove(old.slot.get());
        assert_eq!(room.get_connection("dup").unwrap().serial, 2);
        let before = new.outbox.queued_bytes();
        room.broadcast_text("again");
        assert!(new.outbox.queued_bytes() > before);
        assert!(room.get_connection("nobody").is_none());
    }

    #[test]
    fn broadcast_skips_the_sender_and_closes_the_overfull() {
        let mut room = Room::new(0, "r", 10);
        let small = Rc::new(WsConn {
            id: "small".into(),
            serial: 9,
            slot: Cell::new(usize::MAX),
            outbox: Rc::new(Outbox::new(16)),
        });
        let (a, b) = (conn("a", 1), conn("b", 2));
        for c in [&a, &b, &small] {
            join(&mut room, c);
        }
        let frame: Rc<[u8]> = ws::encode_frame(ws::OpCode::Text, b"0123456789").into();
        room.broadcast_frame(&frame, Some(a.slot.get()));
        assert_eq!(a.outbox.queued_bytes(), 0, "sender excluded");
        assert_eq!(b.outbox.queued_bytes(), 12);
        room.broadcast_frame(&frame, Some(a.slot.get()));
        assert_eq!(
            small.outbox.state(),
            crate::net::writer::OutState::Closing,
            "over its bound: closing with 1008"
        );
        assert_eq!(b.outbox.queued_bytes(), 24, "others unaffected");
    }
}
