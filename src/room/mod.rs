//! Rooms: the per-core state of one `party/room`.
//!
//! A room lives on its owner core only (`shard`), so it is plain data behind the core's
//! `RefCell`: no locks, no atomics. It is the handle a party gets (`&mut Room`): the room's
//! WebSocket connections (a slab, so a connection's slot is stable while others come and go),
//! broadcast, its durable storage ([`RoomStorage`], this core's log), its alarm, the party's
//! per-room `state`, other parties' rooms ([`RoomStub::fetch`]), and the `main` party's message
//! history (cached here, kept in storage).
//!
//! # The output gate
//!
//! The `main` party's messages are stored before anyone sees them, as a Durable Object's
//! output gate holds its outputs until its writes are confirmed: [`Room::publish`] writes the
//! message and *holds* it; once the write is durable (under `--fsync always`: fsynced; under
//! `every`/`never`: written to the file) it joins the in-memory history (GET) and is
//! broadcast. A write that fails is never shown: it is dropped from the gate, the storage has
//! already discarded it, and a WebSocket sender is closed with 1013. Held messages leave in
//! the order they were published, and a binary relay ([`Room::relay`], not stored) waits
//! behind the held ones, so members see every message in one order. One task per room drains
//! the gate while it is non-empty; it wakes when the writer finishes a batch, so every message
//! of one batch is released after the batch's single fsync (group commit). Without a log
//! (`persist: false`) writes are done at once and nothing is held.
//!
//! A room is in memory while it has something to keep: connections, party state, history, or
//! messages in the gate.
//! The table drops it when all are empty, so a stream of GETs for random room names costs
//! nothing; storage outlives it, and `on_start` runs again when the room comes back.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use partyring::{
//!     http::Response,
//!     party::{storage_unavailable, Party, Reply, Request},
//!     room::{FetchRequest, Room},
//! };
//!
//! /// Counts visits durably, pings a `stats` room about each, and wakes up an hour later.
//! struct Visits;
//!
//! impl Party for Visits {
//!     fn on_request(&self, room: &mut Room, _req: &Request<'_>) -> Reply {
//!         let store = room.storage();
//!         let n = store.get_json::<u64>("visits").unwrap_or(0) + 1;
//!         let written = store.put_json("visits", &n); // visible at once, durable later
//!         drop(room.set_alarm(SystemTime::now() + Duration::from_secs(3600)));
//!         let told = room
//!             .context()
//!             .party("stats")
//!             .room("all")
//!             .fetch(FetchRequest::post(format!("{n}")));
//!         Reply::later(async move {
//!             let _ = told.await; // another room's answer (a Response)
//!             match written.await {
//!                 Ok(()) => Response::text(200, n.to_string()),
//!                 // 507 (disk full) or 503, with Retry-After.
//!                 Err(e) => storage_unavailable(&e),
//!             }
//!         })
//!     }
//!
//!     fn on_alarm(&self, room: &mut Room) {
//!         room.broadcast_text("an hour has passed", &[]);
//!     }
//! }
//! ```

pub mod storage;
pub mod table;

use std::{
    any::Any,
    collections::VecDeque,
    future::Future,
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use slab::Slab;

use crate::{
    http::Response,
    party::Request,
    storage::{Durable, ListOptions, Storage, StorageError},
    ws,
};

pub mod connection;

pub use connection::{Connection, WsConn};
pub use storage::RoomStorage;
pub use table::RoomTable;

/// Keys of the `main` party's history in room storage: `history/<seq, 20 digits>`, so key
/// order is arrival order.
const HISTORY_PREFIX: &str = "history/";

pub struct Room {
    /// The party's index in the core's party list.
    pub party: usize,
    party_name: Rc<str>,
    /// The raw (undecoded) room id from the URL.
    pub id: Rc<str>,
    /// Live WebSocket connections. A connection knows its own slot (`WsConn::slot`) and is
    /// removed by that slot, never by id: two sockets may share an id (partysocket reuses `_pk`).
    pub conns: Slab<Connection>,
    /// The party's own per-room data (see [`Room::set_state`]). A room with state stays in
    /// memory while it has no connections; one without is dropped and started again later.
    state: Option<Box<dyn Any>>,
    /// `on_start` has run.
    pub(crate) started: bool,
    storage: Storage,
    /// The `main` party's durable messages in arrival order, at most `history_limit` (the
    /// oldest are dropped), each with the number it is stored under.
    history: VecDeque<(u64, String)>,
    /// The number the next published message is stored under. Only grows: a number whose
    /// write failed is skipped, not reused.
    next_seq: u64,
    history_limit: usize,
    /// Messages published but not yet durable, in order (the output gate; module note).
    gate: VecDeque<Held>,
    /// A task is draining `gate`.
    gate_task: bool,
    /// `history` serialised as a JSON array, kept until the history changes: GET is the hot
    /// HTTP path, and re-serialising 10,000 messages per request would dominate it.
    history_json: Option<Rc<[u8]>>,
}

impl Room {
    pub fn new(
        party: usize,
        party_name: Rc<str>,
        id: &str,
        history_limit: usize,
        storage: Storage,
    ) -> Self {
        Room {
            party,
            party_name,
            id: id.into(),
            conns: Slab::new(),
            state: None,
            started: false,
            storage,
            history: VecDeque::new(),
            next_seq: 0,
            history_limit,
            gate: VecDeque::new(),
            gate_task: false,
            history_json: None,
        }
    }

    /// The room id: the raw path segment from the URL.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The party's name.
    pub fn party(&self) -> &str {
        &self.party_name
    }

    /// Nothing to keep in memory: no connections, no state, no history, nothing in the gate.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
            && self.state.is_none()
            && self.history.is_empty()
            && self.gate.is_empty()
    }

    // ---- per-room state of the party ----

    /// Sets the party's per-room value (any type). While it is set the room stays in memory
    /// without connections; [`Room::clear_state`] lets it go (it is started again later).
    pub fn set_state<T: Any>(&mut self, value: T) {
        self.state = Some(Box::new(value));
    }

    pub fn state_ref<T: Any>(&self) -> Option<&T> {
        self.state.as_ref()?.downcast_ref()
    }

    pub fn state_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.state.as_mut()?.downcast_mut()
    }

    pub fn clear_state(&mut self) {
        self.state = None;
    }

    // ---- connections ----

    /// Every live connection (PartyKit's `getConnections()`).
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.conns.iter().map(|(_, c)| c)
    }

    /// The connections carrying `tag` (from the party's `connection_tags`); the connection id
    /// counts as a tag too, as in PartyKit.
    pub fn get_connections<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Connection> {
        self.connections()
            .filter(move |c| c.id() == tag || c.has_tag(tag))
    }

    /// The newest live connection with this id (two sockets may share one).
    pub fn get_connection(&self, id: &str) -> Option<&Connection> {
        self.conns
            .iter()
            .filter(|(_, c)| c.id() == id)
            .max_by_key(|(_, c)| c.serial)
            .map(|(_, c)| c)
    }

    /// Sends `frame` (already encoded, so never compressed) to every connection except the one
    /// in slot `except`. A connection whose queue is over its bound is closed with 1008; the
    /// others are not affected.
    pub fn broadcast_frame(&self, frame: &Rc<[u8]>, except: Option<usize>) {
        for (slot, conn) in &self.conns {
            if Some(slot) == except {
                continue;
            }
            // The connection applies the backpressure policy (close with 1008, logged).
            conn.send_frame(frame.clone());
        }
    }

    /// Sends a message to every connection whose id is not in `without`.
    ///
    /// Each frame is encoded once and shared: members that negotiated permessage-deflate get
    /// one compressed frame (deflate runs at most once per broadcast), the others one plain
    /// frame. Messages below `--compression-threshold`, and those deflate does not shrink, go
    /// plain to everyone.
    pub fn broadcast(&self, opcode: ws::OpCode, payload: &[u8], without: &[&str]) {
        self.broadcast_to(opcode, payload, true, |_, c| !without.contains(&c.id()));
    }

    /// [`Room::broadcast`] to every connection except the one in slot `except` (the sender,
    /// say: `sender.slot.get()`).
    pub fn broadcast_except(&self, opcode: ws::OpCode, payload: &[u8], except: Option<usize>) {
        self.broadcast_to(opcode, payload, true, |slot, _| Some(slot) != except);
    }

    /// [`Room::broadcast`] without compression, to anyone (for bytes that are compressed
    /// already, where deflate would spend CPU for nothing).
    pub fn broadcast_uncompressed(&self, opcode: ws::OpCode, payload: &[u8], without: &[&str]) {
        self.broadcast_to(opcode, payload, false, |_, c| !without.contains(&c.id()));
    }

    fn broadcast_to(
        &self,
        opcode: ws::OpCode,
        payload: &[u8],
        compress: bool,
        to: impl Fn(usize, &Connection) -> bool,
    ) {
        // The compressed frame must be readable by every member it goes to and use no more
        // window than any of them allowed: the smallest agreed window among the recipients
        // (in practice all 15, the RFC's default; Autobahn asks for less). Members that agreed
        // to 8 bits are left out: the codec cannot compress for them, they get the plain frame.
        let window = if compress {
            self.conns
                .iter()
                .filter(|&(slot, c)| {
                    c.deflate_window() >= ws::deflate::codec::MIN_COMPRESS_BITS && to(slot, c)
                })
                .map(|(_, c)| c.deflate_window())
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        let mut frames = ws::deflate::OutFrames::new(opcode, payload, window);
        for (slot, conn) in &self.conns {
            if to(slot, conn) {
                conn.send_frame(frames.frame_for(conn.deflate_window()));
            }
        }
    }

    /// [`Room::broadcast`] of a text message.
    pub fn broadcast_text(&self, text: &str, without: &[&str]) {
        self.broadcast(ws::OpCode::Text, text.as_bytes(), without);
    }

    /// [`Room::broadcast`] of a binary message.
    pub fn broadcast_binary(&self, bytes: &[u8], without: &[&str]) {
        self.broadcast(ws::OpCode::Binary, bytes, without);
    }

    // ---- storage, alarm, other rooms ----

    /// This room's durable key-value storage (Durable Objects' API).
    pub fn storage(&self) -> RoomStorage {
        RoomStorage::new(
            self.storage.clone(),
            self.party_name.clone(),
            self.id.clone(),
        )
    }

    /// A mark of the core's storage writes so far, for [`Room::writes_since`].
    pub(crate) fn write_mark(&self) -> crate::storage::WriteMark {
        self.storage.write_mark()
    }

    /// The core's storage writes issued since `mark`, as one future (`None`: there were none).
    pub(crate) fn writes_since(&self, mark: crate::storage::WriteMark) -> Option<Durable<()>> {
        self.storage.barrier_since(mark)
    }

    /// Sets the room's one alarm (replacing any): `on_alarm` runs at `at` on this core, also
    /// after a restart. A time in the past fires at once. Resolves when the alarm is durable.
    pub fn set_alarm(&self, at: SystemTime) -> Durable<()> {
        let at_ms = u64::try_from(
            at.duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let durable = self
            .storage
            .set_alarm(&self.party_name, &self.id, Some(at_ms));
        crate::runtime::alarms::arm(self.party, &self.id, at_ms);
        durable
    }

    /// Deletes the room's alarm.
    pub fn delete_alarm(&self) -> Durable<()> {
        self.storage.set_alarm(&self.party_name, &self.id, None)
    }

    /// When the alarm will go off, if one is set.
    pub fn alarm(&self) -> Option<SystemTime> {
        self.storage
            .alarm(&self.party_name, &self.id)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// The room's context (PartyKit's `room.context`): `room.context().party("counter")
    /// .room("r1").fetch(FetchRequest::get())` reaches another party's room.
    pub fn context(&self) -> Context {
        Context { _private: () }
    }

    /// Another room of any party (party-to-party): `room.party_room("counter", "r1").fetch(..)`,
    /// the same as `room.context().party("counter").room("r1")`.
    pub fn party_room(&self, party: &str, room: &str) -> RoomStub {
        RoomStub {
            party: party.into(),
            room: room.into(),
        }
    }

    /// A handle to come back to this room later, from a task or a deferred reply.
    pub fn handle(&self) -> RoomRef {
        RoomRef {
            party: self.party,
            id: self.id.clone(),
        }
    }

    // ---- the `main` party's history ----

    /// Replays the history from storage (the `main` party's `on_start`). Keeps the newest
    /// `history_limit` messages; older ones left by a crash between a put and its delete are
    /// deleted now.
    pub fn load_history(&mut self) {
        let opts = ListOptions {
            prefix: Some(HISTORY_PREFIX),
            ..ListOptions::default()
        };
        let entries = self
            .storage
            .list(&self.party_name, &self.id, &opts)
            .unwrap_or_default();
        let extra = entries.len().saturating_sub(self.history_limit);
        if extra > 0 {
            let stale: Vec<String> = entries[..extra].iter().map(|(k, _)| k.clone()).collect();
            for chunk in stale.chunks(crate::storage::MAX_KEYS_PER_OP) {
                drop(
                    self.storage
                        .delete(&self.party_name, &self.id, chunk.to_vec()),
                );
            }
        }
        self.history.clear();
        self.history_json = None;
        for (key, value) in &entries[extra..] {
            let Some(seq) = key[HISTORY_PREFIX.len()..].parse::<u64>().ok() else {
                continue;
            };
            self.history
                .push_back((seq, String::from_utf8_lossy(value).into_owned()));
            self.next_seq = self.next_seq.max(seq + 1);
        }
    }

    /// Publishes a `main` party message through the output gate (module note): stores it in
    /// the history and, once that is durable, adds it to the in-memory history (GET) and
    /// broadcasts it as text to every connection but `sender`. If the write fails the message
    /// is shown nowhere and `sender` is closed with 1013. Resolves when the write is durable,
    /// or to why it failed. The oldest messages beyond `history_limit` are deleted as new ones
    /// are shown. With `history_limit` 0 nothing is stored and the broadcast goes out at once.
    pub fn publish(&mut self, message: String, sender: Option<&Connection>) -> Durable<()> {
        if self.history_limit == 0 {
            self.relay(ws::OpCode::Text, message.as_bytes(), sender);
            return Durable::ready(Ok(()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        // Without a log (`persist: false`) the room itself is the only copy: it stays in memory
        // while it has history, so a second copy in the storage index would only cost a key,
        // a clone and a tree insert per message on the fan-out path.
        let durable = if self.storage.is_persistent() {
            self.storage.put_one(
                &self.party_name,
                &self.id,
                &history_key(seq),
                message.clone().into_bytes(),
            )
        } else {
            Durable::ready(Ok(()))
        };
        let held = Held {
            durable: Some(durable.clone()),
            seq,
            message: HeldMessage::Text(message),
            sender: sender.cloned(),
        };
        match durable.status() {
            Some(result) if self.gate.is_empty() => self.settle(held, result),
            _ => {
                self.gate.push_back(held);
                self.start_gate();
            }
        }
        durable
    }

    /// Sends a message that is not stored to every connection but `sender`: at once, or, if
    /// published messages are held in the gate, after them (so every member sees one order).
    pub fn relay(&mut self, opcode: ws::OpCode, payload: &[u8], sender: Option<&Connection>) {
        if self.gate.is_empty() {
            self.broadcast_except_conn(opcode, payload, sender);
            return;
        }
        self.gate.push_back(Held {
            durable: None,
            seq: 0,
            message: HeldMessage::Relay(opcode, payload.to_vec()),
            sender: sender.cloned(),
        });
    }

    /// Releases every message at the front of the gate whose write has an outcome: shown if
    /// durable, dropped (sender closed with 1013) if not. Stops at the first one still waiting.
    pub fn release_gate(&mut self) {
        while let Some(front) = self.gate.front() {
            let result = match &front.durable {
                None => Ok(()),
                Some(d) => match d.status() {
                    Some(r) => r,
                    None => break,
                },
            };
            let held = self.gate.pop_front().expect("front exists");
            self.settle(held, result);
        }
    }

    /// Spawns the task that drains the gate, unless it runs: it waits for the first held write,
    /// releases what is ready, and repeats until the gate is empty.
    fn start_gate(&mut self) {
        if self.gate_task {
            return;
        }
        self.gate_task = true;
        let room = self.handle();
        monoio::spawn(async move {
            loop {
                match room.with(Room::gate_next) {
                    // Either outcome releases it; `gate_next` reads which.
                    Some(Some(next)) => drop(next.await),
                    Some(None) => return,
                    // Outside a core (unit tests release the gate by hand), or at shutdown.
                    None if crate::runtime::core::current().is_none() => return,
                    // The room table is borrowed (it never is across an await, but a gate
                    // that stopped here would hold its messages forever): try again shortly.
                    None => monoio::time::sleep(std::time::Duration::from_millis(1)).await,
                }
            }
        });
    }

    /// For the gate task: releases what is ready and returns the write to wait for next, or
    /// `None` (and the task ends) when the gate is empty.
    fn gate_next(&mut self) -> Option<Durable<()>> {
        self.release_gate();
        let next = self.gate.iter().find_map(|h| h.durable.clone());
        if next.is_none() {
            self.gate_task = false;
        }
        next
    }

    /// A held message's write has its outcome: show it, or drop it.
    fn settle(&mut self, held: Held, result: Result<(), StorageError>) {
        match (held.message, result) {
            (HeldMessage::Relay(opcode, payload), _) => {
                self.broadcast_except_conn(opcode, &payload, held.sender.as_ref());
            }
            (HeldMessage::Text(message), Ok(())) => {
                self.broadcast_except_conn(
                    ws::OpCode::Text,
                    message.as_bytes(),
                    held.sender.as_ref(),
                );
                self.push_history(held.seq, message);
            }
            (HeldMessage::Text(_), Err(e)) => {
                // The storage logs the failure (once per episode) and counts it.
                if let Some(sender) = &held.sender {
                    tracing::debug!(conn = %sender.id(), error = %e, "message not stored: closing its sender with 1013");
                    sender.close_with(ws::close::TRY_AGAIN_LATER, STORAGE_FAILED_REASON, false);
                }
            }
        }
    }

    /// Adds a durable message to the in-memory history, dropping (and deleting) the oldest
    /// beyond `history_limit`.
    fn push_history(&mut self, seq: u64, message: String) {
        self.history.push_back((seq, message));
        while self.history.len() > self.history_limit {
            let (old, _) = self.history.pop_front().expect("over the limit");
            if self.storage.is_persistent() {
                drop(
                    self.storage
                        .delete(&self.party_name, &self.id, vec![history_key(old)]),
                );
            }
        }
        self.history_json = None;
    }

    /// Sends to every connection but `except`, compared by identity (the gate releases a
    /// message after its write is durable, when the sender may have left and its slot been
    /// reused); each frame encoded once, compressed for the members that negotiated it.
    fn broadcast_except_conn(
        &self,
        opcode: ws::OpCode,
        payload: &[u8],
        except: Option<&Connection>,
    ) {
        self.broadcast_to(opcode, payload, true, |_, c| {
            !except.is_some_and(|e| Rc::ptr_eq(e, c))
        });
    }

    /// The durable messages, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(|(_, m)| m.as_str())
    }

    /// The history as a JSON array of strings.
    pub fn history_json(&mut self) -> Rc<[u8]> {
        if let Some(json) = &self.history_json {
            return json.clone();
        }
        let messages: Vec<&str> = self.history().collect();
        let json: Rc<[u8]> = serde_json::to_vec(&messages)
            .expect("a list of strings always serialises")
            .into();
        self.history_json = Some(json.clone());
        json
    }
}

fn history_key(seq: u64) -> String {
    format!("{HISTORY_PREFIX}{seq:020}")
}

/// The close reason sent with 1013 to a member whose message could not be stored.
pub const STORAGE_FAILED_REASON: &str = "Message not stored (storage unavailable); try again later";

/// A message in the output gate.
struct Held {
    /// Its history write; `None` for a relay, which is not stored and only keeps its place.
    durable: Option<Durable<()>>,
    /// The number it is stored under (text only).
    seq: u64,
    message: HeldMessage,
    /// Who sent it: not sent back to them, and closed with 1013 if the write fails.
    sender: Option<Connection>,
}

enum HeldMessage {
    /// A history message.
    Text(String),
    /// A message that is only relayed, with its opcode.
    Relay(ws::OpCode, Vec<u8>),
}

/// A way back into a room from a task or a deferred reply (which cannot hold `&mut Room`).
#[derive(Clone, Debug)]
pub struct RoomRef {
    party: usize,
    id: Rc<str>,
}

impl RoomRef {
    /// Runs `f` on the room (loading it, and running `on_start`, if it was dropped). `None` if
    /// called outside a core, or from inside another room handler (rooms are borrowed then:
    /// await something first).
    pub fn with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> Option<R> {
        let core = crate::runtime::core::current()?;
        core.try_with_room(self.party, &self.id, f)
    }
}

/// What a room can reach besides itself (PartyKit's `room.context`).
#[derive(Clone, Debug)]
pub struct Context {
    _private: (),
}

impl Context {
    /// The context server-level handlers get (`on_fetch`, crons: PartyKit's lobby); the same
    /// reach as a room's.
    pub(crate) fn lobby() -> Self {
        Context { _private: () }
    }

    /// A room of any party: `ctx.party_room("counter", "r1")` is
    /// `ctx.party("counter").room("r1")`.
    pub fn party_room(&self, party: &str, room: &str) -> RoomStub {
        self.party(party).room(room)
    }

    /// Party `name` (PartyKit's `context.parties.<name>`). Whether it exists is known when a
    /// fetch is made (404 `Party <name> not found`).
    pub fn party(&self, name: &str) -> PartyStub {
        PartyStub { party: name.into() }
    }
}

/// A party, reached from inside a room.
#[derive(Clone, Debug)]
pub struct PartyStub {
    party: Box<str>,
}

impl PartyStub {
    /// One of its rooms (PartyKit's `.get(id)`).
    pub fn room(&self, id: &str) -> RoomStub {
        RoomStub {
            party: self.party.clone(),
            room: id.into(),
        }
    }
}

/// Another party's room, reached from inside a room (PartyKit's `context.parties`).
#[derive(Clone, Debug)]
pub struct RoomStub {
    party: Box<str>,
    room: Box<str>,
}

/// A request for [`RoomStub::fetch`].
#[derive(Clone, Debug)]
pub struct FetchRequest {
    pub method: crate::http::Method,
    /// After the room: `""`, `"/path"`, `"?query"`, or `"/path?query"`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FetchRequest {
    pub fn get() -> Self {
        FetchRequest {
            method: crate::http::Method::Get,
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(body: impl Into<Vec<u8>>) -> Self {
        FetchRequest {
            method: crate::http::Method::Post,
            body: body.into(),
            ..FetchRequest::get()
        }
    }

    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl RoomStub {
    /// Sends `req` to the room's `on_request` on its owner core (a direct call when that is this
    /// core, a message to the owner otherwise) and resolves to its response. Skips
    /// `on_before_request`, as PartyKit's does. An unknown party is 404; a path that does not
    /// start with `/` or `?` is 400; a busy owner is 503.
    pub fn fetch(&self, req: FetchRequest) -> impl Future<Output = Response> + 'static {
        crate::runtime::fetch::fetch(self.party.clone(), self.room.clone(), req)
    }
}

/// Builds the request a fetched room sees.
pub(crate) fn fetch_target(party: &str, room: &str, path: &str) -> String {
    format!("/parties/{party}/{room}{path}")
}

/// A [`FetchRequest`] as an `on_request` argument.
pub(crate) fn fetch_request<'a>(req: &'a FetchRequest, target: &'a str) -> Request<'a> {
    Request::new(req.method, target, &req.headers, &req.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{net::writer::Outbox, party::WsConn};

    fn conn(id: &str, serial: u64) -> Rc<WsConn> {
        Rc::new(WsConn::new(
            id.into(),
            serial,
            "http://x/".into(),
            Rc::new(Outbox::new(1 << 20)),
        ))
    }

    fn room() -> Room {
        Room::new(0, "main".into(), "r", 10, Storage::memory())
    }

    fn join(room: &mut Room, c: &Rc<WsConn>) {
        c.slot.set(room.conns.insert(c.clone()));
    }

    #[test]
    fn duplicate_ids_live_side_by_side_and_leave_by_slot() {
        let mut room = room();
        let (old, new, other) = (conn("dup", 1), conn("dup", 2), conn("x", 3));
        for c in [&old, &new, &other] {
            join(&mut room, c);
        }
        assert_eq!(room.get_connection("dup").unwrap().serial, 2, "newest wins");
        // A broadcast reaches both duplicates.
        room.broadcast_text("hi", &[]);
        assert!(old.outbox.queued_bytes() > 0 && new.outbox.queued_bytes() > 0);
        // The old one leaves by its own slot: the new one stays findable and reachable.
        room.conns.remove(old.slot.get());
        assert_eq!(room.get_connection("dup").unwrap().serial, 2);
        let before = new.outbox.queued_bytes();
        room.broadcast_text("again", &[]);
        assert!(new.outbox.queued_bytes() > before);
        assert!(room.get_connection("nobody").is_none());
    }

    #[test]
    fn broadcast_skips_the_sender_and_closes_the_overfull() {
        let mut room = room();
        let small = Rc::new(WsConn::new(
            "small".into(),
            9,
            "http://x/".into(),
            Rc::new(Outbox::new(16)),
        ));
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

    #[test]
    fn broadcast_compresses_once_and_shares_each_frame() {
        let mut room = room();
        let zipped = |id: &str, bits| {
            Rc::new(
                WsConn::new(
                    id.into(),
                    1,
                    "http://x/".into(),
                    Rc::new(Outbox::new(1 << 20)),
                )
                .with_deflate(bits),
            )
        };
        let (z1, z2, p1, p2) = (
            zipped("z1", 15),
            zipped("z2", 15),
            conn("p1", 3),
            conn("p2", 4),
        );
        let eight = zipped("eight", 8);
        for c in [&z1, &z2, &p1, &p2, &eight] {
            join(&mut room, c);
        }
        let msg = "{\"type\":\"chat\",\"text\":\"hello hello hello\"},".repeat(20);
        let last = |c: &Rc<WsConn>| c.outbox.queued_frames().pop().expect("a frame");
        room.broadcast_text(&msg, &[]);
        let (fz1, fz2, fp1, fp2, f8) = (last(&z1), last(&z2), last(&p1), last(&p2), last(&eight));
        assert!(Rc::ptr_eq(&fz1, &fz2), "one compressed frame for both");
        assert!(
            Rc::ptr_eq(&fp1, &fp2) && Rc::ptr_eq(&fp1, &f8),
            "one plain frame"
        );
        assert_eq!((fz1[0], fp1[0]), (0xC1, 0x81));
        assert!(fz1.len() < fp1.len() / 3);
        // A member with a smaller window: one frame, made with the smallest window, for all
        // the compressing members.
        let z10 = zipped("z10", 10);
        join(&mut room, &z10);
        room.broadcast_except(ws::OpCode::Text, msg.as_bytes(), Some(p1.slot.get()));
        let (fz1, fz10) = (last(&z1), last(&z10));
        assert!(Rc::ptr_eq(&fz1, &fz10) && fz1[0] == 0xC1);
        // Uncompressed on request, and below the threshold.
        room.broadcast_uncompressed(ws::OpCode::Text, msg.as_bytes(), &[]);
        assert_eq!(last(&z1)[0], 0x81);
        room.broadcast_text("short", &[]);
        assert_eq!(
            &last(&z1)[..],
            &ws::encode_frame(ws::OpCode::Text, b"short")[..]
        );
    }
}
