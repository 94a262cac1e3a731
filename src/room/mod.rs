//! Rooms: the per-core state of one `party/room`.
//!
//! A room lives on its owner core only (`shard`), so it is plain data behind the core's
//! `RefCell`: no locks, no atomics. It is the handle a party gets (`&mut Room`): the room's
//! WebSocket connections (a slab, so a connection's slot is stable while others come and go),
//! broadcast, its durable storage ([`RoomStorage`], this core's log), its alarm, the party's
//! per-room `state`, and other parties' rooms ([`RoomStub::fetch`]).
//!
//! What a room reaches outside itself (its core's alarm timer, a way back in later, other
//! rooms) goes through [`RoomHost`], which the runtime implements: `room` does not depend on
//! the runtime.
//!
//! A room is in memory while it has something to keep: connections or party state (the `main`
//! party keeps its history there, `party::main`). The table drops it when both are empty, so a
//! stream of GETs for random room names costs nothing; storage outlives it, and `on_start` runs
//! again when the room comes back.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use partyring::{
//!     party::{storage_unavailable, Party, Reply, Request},
//!     room::{FetchRequest, Room},
//!     Response,
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

pub mod host;
pub mod storage;
pub mod table;

use std::{
    any::Any,
    future::Future,
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use slab::Slab;

use crate::{
    http::Response,
    storage::{Durable, Storage},
    ws,
};

pub use host::{Host, Reach, RoomHost};

pub mod connection;

pub use connection::{Connection, WsConn};
pub use storage::RoomStorage;
pub use table::RoomTable;

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
    /// The core's side: alarms, coming back later, other rooms.
    host: Host,
}

impl Room {
    pub fn new(party: usize, party_name: Rc<str>, id: &str, storage: Storage, host: Host) -> Self {
        Room {
            party,
            party_name,
            id: id.into(),
            conns: Slab::new(),
            state: None,
            started: false,
            storage,
            host,
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

    /// Nothing to keep in memory: no connections, no party state.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.state.is_none()
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

    /// Runs `f` with the party's per-room value (if it is a `T`) and the room beside it, for
    /// work that needs both (say, broadcasting from the state). `None` if there is no `T`.
    ///
    /// While `f` runs the value is out of the room: the room's own `state_ref`/`state_mut`
    /// see none, a `clear_state` is undone when `f` returns, and a `set_state` replaces the
    /// value `f` was given. If `f` panics the value goes back into the room.
    pub fn with_state<T: Any, R>(&mut self, f: impl FnOnce(&mut T, &mut Room) -> R) -> Option<R> {
        /// Puts the value back when dropped, also on unwind, unless `f` set a new one.
        struct Back<'r> {
            room: &'r mut Room,
            boxed: Option<Box<dyn Any>>,
        }
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                if self.room.state.is_none() {
                    self.room.state = self.boxed.take();
                }
            }
        }
        let boxed = self.state.take()?;
        if !boxed.is::<T>() {
            self.state = Some(boxed);
            return None;
        }
        let mut back = Back {
            room: self,
            boxed: Some(boxed),
        };
        let value = back
            .boxed
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .expect("checked above");
        Some(f(value, back.room))
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
        self.broadcast_relaying(opcode, payload, compress, None, to);
    }

    /// [`Room::broadcast_to`] of a message whose sender's compressed payload is `relay`
    /// (`ws::deflate::inbound_payload`, kept from its delivery): members that compress get
    /// those bytes where their window allows, and deflate does not run.
    fn broadcast_relaying(
        &self,
        opcode: ws::OpCode,
        payload: &[u8],
        compress: bool,
        relay: Option<Rc<[u8]>>,
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
        let mut frames = ws::deflate::OutFrames::new(opcode, payload, window).relaying(relay);
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

    /// Changes whenever the core's storage discarded writes after a failure (a full disk, a
    /// failed write or fsync: the writes not yet on disk are dropped). A party that keeps a copy
    /// of what it stored (the `main` party's history) reads it again when this changes.
    pub fn storage_epoch(&self) -> u64 {
        self.storage.failures()
    }

    /// Whether this room's storage writes go to a log on disk (`false`: `persist: false`).
    pub fn storage_is_persistent(&self) -> bool {
        self.storage.is_persistent()
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
        self.host.arm_alarm(self.party, &self.id, at_ms);
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
        Context::new(self.host.clone())
    }

    /// Another room of any party (party-to-party): `room.party_room("counter", "r1").fetch(..)`,
    /// the same as `room.context().party("counter").room("r1")`.
    pub fn party_room(&self, party: &str, room: &str) -> RoomStub {
        self.context().party_room(party, room)
    }

    /// A handle to come back to this room later, from a task or a deferred reply.
    pub fn handle(&self) -> RoomRef {
        RoomRef {
            party: self.party,
            id: self.id.clone(),
            host: self.host.clone(),
        }
    }

    /// Sends to every connection but `except`, compared by identity (the gate releases a
    /// message after its write is durable, when the sender may have left and its slot been
    /// reused); each frame encoded once, compressed for the members that negotiated it.
    pub fn broadcast_except_conn(
        &self,
        opcode: ws::OpCode,
        payload: &[u8],
        except: Option<&Connection>,
    ) {
        self.broadcast_relay_except_conn(opcode, payload, None, except);
    }

    /// [`Room::broadcast_except_conn`] of a message that a member sent compressed, with its
    /// compressed payload as sent (`ws::deflate::inbound_payload`, taken while it was
    /// delivered): passed on instead of deflating again where the members' windows allow.
    pub fn broadcast_relay_except_conn(
        &self,
        opcode: ws::OpCode,
        payload: &[u8],
        relay: Option<Rc<[u8]>>,
        except: Option<&Connection>,
    ) {
        self.broadcast_relaying(opcode, payload, true, relay, |_, c| {
            !except.is_some_and(|e| Rc::ptr_eq(e, c))
        });
    }
}

/// A way back into a room from a task or a deferred reply (which cannot hold `&mut Room`).
#[derive(Clone)]
pub struct RoomRef {
    party: usize,
    id: Rc<str>,
    host: Host,
}

impl std::fmt::Debug for RoomRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRef")
            .field("party", &self.party)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RoomRef {
    /// Runs `f` on the room (loading it, and running `on_start`, if it was dropped). `None` if
    /// called outside a core, or from inside another room handler (rooms are borrowed then:
    /// await something first).
    pub fn with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> Option<R> {
        self.try_with(f).ok()
    }

    /// [`RoomRef::with`], saying why `f` did not run: [`Reach::Busy`] (inside a room handler:
    /// try again after an await) or [`Reach::Gone`] (no core runs the room).
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Room) -> R) -> Result<R, Reach> {
        let mut f = Some(f);
        let mut out = None;
        let reach = self.host.with_room(self.party, &self.id, &mut |room| {
            if let Some(f) = f.take() {
                out = Some(f(room));
            }
        });
        out.ok_or(if reach == Reach::Done {
            Reach::Gone
        } else {
            reach
        })
    }
}

/// What a room can reach besides itself (PartyKit's `room.context`).
#[derive(Clone)]
pub struct Context {
    host: Host,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// The context of everything `host` runs: a room's, and the one server-level handlers get
    /// (`on_fetch`, crons: PartyKit's lobby), with the same reach.
    pub(crate) fn new(host: Host) -> Self {
        Context { host }
    }

    /// A room of any party: `ctx.party_room("counter", "r1")` is
    /// `ctx.party("counter").room("r1")`.
    pub fn party_room(&self, party: &str, room: &str) -> RoomStub {
        self.party(party).room(room)
    }

    /// Party `name` (PartyKit's `context.parties.<name>`). Whether it exists is known when a
    /// fetch is made (404 `Party <name> not found`).
    pub fn party(&self, name: &str) -> PartyStub {
        PartyStub {
            party: name.into(),
            host: self.host.clone(),
        }
    }
}

/// A party, reached from inside a room.
#[derive(Clone)]
pub struct PartyStub {
    party: Box<str>,
    host: Host,
}

impl std::fmt::Debug for PartyStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyStub")
            .field("party", &self.party)
            .finish_non_exhaustive()
    }
}

impl PartyStub {
    /// One of its rooms (PartyKit's `.get(id)`).
    pub fn room(&self, id: &str) -> RoomStub {
        RoomStub {
            party: self.party.clone(),
            room: id.into(),
            host: self.host.clone(),
        }
    }
}

/// Another party's room, reached from inside a room (PartyKit's `context.parties`).
#[derive(Clone)]
pub struct RoomStub {
    party: Box<str>,
    room: Box<str>,
    host: Host,
}

impl std::fmt::Debug for RoomStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomStub")
            .field("party", &self.party)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
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
        self.host.fetch(self.party.clone(), self.room.clone(), req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::writer::Outbox;

    fn conn(id: &str, serial: u64) -> Rc<WsConn> {
        Rc::new(WsConn::new(
            id.into(),
            serial,
            "http://x/".into(),
            Rc::new(Outbox::new(1 << 20)),
        ))
    }

    fn room() -> Room {
        Room::new(
            0,
            "main".into(),
            "r",
            Storage::memory(),
            host::Detached::host(),
        )
    }

    fn join(room: &mut Room, c: &Rc<WsConn>) {
        c.slot.set(room.conns.insert(c.clone()));
    }

    #[test]
    fn with_state_lends_the_value_and_keeps_it_through_a_panic() {
        let mut room = room();
        assert_eq!(room.with_state(|n: &mut u32, _| *n), None, "no state yet");
        room.set_state(5u32);
        assert_eq!(
            room.with_state(|n: &mut String, _| n.len()),
            None,
            "another type"
        );
        assert_eq!(
            room.with_state(|n: &mut u32, r| {
                assert!(r.state_ref::<u32>().is_none(), "lent out");
                *n += 1;
                *n
            }),
            Some(6)
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            room.with_state(|_: &mut u32, _| panic!("a handler bug"));
        }));
        assert!(panicked.is_err());
        assert_eq!(room.state_ref::<u32>(), Some(&6), "back in the room");
        room.with_state(|_: &mut u32, r| r.set_state("replaced"));
        assert_eq!(room.state_ref::<&str>(), Some(&"replaced"));
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
