//! Yjs documents in rooms: y-partykit's `onConnect(conn, room, options)`, in Rust, on yrs.
//!
//! A room's document is a [`SharedDoc`] kept in the room's state slot, on the room's owner
//! core; so are its awareness table and its members. A party hands its connections over with
//! [`on_connect`], [`on_message`] and [`on_close`] (the built-in [`YjsParty`] does exactly
//! that at `/parties/yjs/:room`), and the clients speak the y-websocket protocol
//! ([`protocol`]), as `y-partykit/provider`'s `YPartyKitProvider` does:
//!
//! ```text
//! connect        server -> client   sync step 1 (server's state vector), awareness states
//! sync step 1    client -> server   answered with step 2: what the client lacks
//! step 2/update  client -> server   applied once (one yrs transaction); what it added is
//!                                   encoded once as an update frame, broadcast to the others,
//!                                   and appended to storage (history) or marked for the next
//!                                   snapshot
//! awareness      client -> server   applied to the table; the changed entries are encoded
//!                                   once and broadcast to the others
//! query aware.   client -> server   answered with every awareness state
//! close                             the client's awareness entries are removed (broadcast as
//!                                   null); the last member leaving writes the snapshot,
//!                                   runs a pending change callback, and unloads the document
//! ```
//!
//! Bad input never touches the document: a message that does not decode, an update yrs cannot
//! read, a malformed state vector or awareness update closes the sender with 1007 and a
//! reason, a text frame that is not y-partykit's chunk marker with 1003; the document, the
//! awareness table and the other members are left as they were. A read-only member's updates
//! are dropped (as y-partykit does), its awareness still goes through.
//!
//! Persistence ([`Persistence`]) goes through room storage (`persist.rs`). Timers — the
//! periodic snapshot and the debounced change callback — are one monoio sleep task per document
//! while a deadline is pending, coming back through a [`RoomRef`]; not the room's alarm: a room
//! has one alarm, which belongs to the party author, and every alarm is a storage write, which a
//! debounce that moves on every edit should not cost. A timer that outlives its document (the
//! document was unloaded) sees its flag cleared and ends without touching the room.
//!
//! The room's state slot is the document's: a party that uses this module keeps its own
//! per-room data in room storage or in its own maps, not in `room.set_state`.

mod awareness;
mod party;
mod persist;
pub mod protocol;

use std::{
    cell::Cell,
    collections::HashMap,
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    time::{Duration, Instant},
};

pub use party::YjsParty;
pub use persist::MAX_ENTRY_BYTES;
/// The yrs version this module uses, for building documents and reading them.
pub use yrs;
use yrs::{
    updates::{decoder::Decode, encoder::Encode},
    Doc, ReadTxn, StateVector, Transact, Update,
};

use self::{
    awareness::Awareness,
    persist::UpdateLog,
    protocol::{BatchKind, BatchMarker, Incoming},
};
use crate::{
    party::Connection,
    room::{Room, RoomRef},
    ws::{self, close, Message, OpCode},
};

/// Builds a new document's first content when it has none stored (y-partykit's `load`).
pub type LoadHook = Rc<dyn Fn(&Room) -> Option<Doc>>;
/// Called with the document after edits (y-partykit's `callback.handler`).
pub type ChangeHandler = Rc<dyn Fn(&Room, &Doc)>;

/// How a document is kept in room storage (y-partykit's `persist`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Not stored: the document lives while it has members (y-partykit's default).
    #[default]
    None,
    /// The merged state is written when the last member leaves and every `interval` while
    /// edits continue; edits since the last write are lost in a crash (not in a graceful
    /// shutdown, which closes every member first).
    Snapshot { interval: Duration },
    /// Every update is appended as it is applied; past `max_updates` entries or `max_bytes`,
    /// the log is compacted into one merged entry.
    History {
        max_updates: usize,
        max_bytes: usize,
    },
}

impl Persistence {
    /// Snapshot every 10 s while edits continue.
    pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(10);
    /// y-partykit's `maxBytes` default (and its ceiling): 10 MB.
    pub const DEFAULT_HISTORY_MAX_BYTES: usize = 10_000_000;

    pub const fn snapshot() -> Self {
        Persistence::Snapshot {
            interval: Self::DEFAULT_SNAPSHOT_INTERVAL,
        }
    }

    /// History bounded by bytes only (y-partykit's defaults).
    pub const fn history() -> Self {
        Persistence::History {
            max_updates: usize::MAX,
            max_bytes: Self::DEFAULT_HISTORY_MAX_BYTES,
        }
    }
}

/// A debounced callback on change (y-partykit's `callback`): runs `debounce_wait` after the
/// last edit of a burst, and at least every `debounce_max_wait` while edits continue; also
/// when the last member leaves with a call pending.
#[derive(Clone)]
pub struct Callback {
    pub handler: ChangeHandler,
    /// Default 2 s.
    pub debounce_wait: Duration,
    /// Default 10 s.
    pub debounce_max_wait: Duration,
}

impl Callback {
    pub fn new(handler: impl Fn(&Room, &Doc) + 'static) -> Self {
        Callback {
            handler: Rc::new(handler),
            debounce_wait: Duration::from_secs(2),
            debounce_max_wait: Duration::from_secs(10),
        }
    }
}

/// y-partykit's `YPartyKitOptions`. `persist`, `gc`, `load` and `callback` are read when the
/// document is loaded (later connections' values are ignored, as in y-partykit); `read_only`
/// is per connection.
#[derive(Clone, Default)]
pub struct Options {
    pub persist: Persistence,
    /// Garbage-collect deleted content. Default: on without persistence, off with it (as
    /// y-partykit).
    pub gc: Option<bool>,
    /// This connection's updates are dropped; it still receives everything.
    pub read_only: bool,
    /// Seeds a document that has nothing in storage (or every time, without persistence).
    pub load: Option<LoadHook>,
    pub callback: Option<Callback>,
}

/// Largest update accepted in y-partykit's chunked form (its own persistence ceiling).
pub const MAX_BATCH_BYTES: usize = 10_000_000;

/// The empty update (no structs, no deletions) in the v1 encoding.
const EMPTY_UPDATE: [u8; 2] = [0, 0];

// Why raw relays: yrs keeps an embedded JSON object (`Any::Map`) in a hash map, so its own
// encoding of a `{k, i}` value lists the keys in hash order. Relaying and appending the bytes
// the author sent keeps a live client's view key-for-key identical to the author's; what
// yrs encodes itself (sync step 2 to a joining client, a snapshot, a compaction) carries the
// same values with object keys possibly reordered (docs/yjs.md).

/// A room's document, its awareness and its members (the room's state while it is loaded).
pub struct SharedDoc {
    doc: Doc,
    awareness: Awareness,
    /// By the member's slot in the room's connection slab.
    members: HashMap<usize, Member>,
    persist: Persistence,
    /// Present with persistence.
    log: Option<UpdateLog>,
    /// Edits since the last snapshot (snapshot mode).
    dirty: bool,
    snapshot_due: Option<Instant>,
    callback: Option<Callback>,
    /// First and last edit since the callback last ran.
    callback_first: Option<Instant>,
    callback_last: Option<Instant>,
    /// The running timer task's flag and wake-up time; cleared flag = the task ends.
    timer: Option<(Rc<Cell<bool>>, Instant)>,
    room: RoomRef,
}

struct Member {
    read_only: bool,
    /// Awareness clients this connection announced (removed when it closes).
    clients: Vec<u64>,
    /// A chunked update being received.
    batch: Option<Batch>,
    /// Closed by us: further messages are ignored.
    refused: bool,
}

struct Batch {
    id: String,
    size: usize,
    count: usize,
    buf: Vec<u8>,
    received: usize,
}

impl Drop for SharedDoc {
    fn drop(&mut self) {
        if let Some((alive, _)) = &self.timer {
            alive.set(false);
        }
    }
}

impl SharedDoc {
    fn load(room: &Room, opts: &Options) -> SharedDoc {
        let gc = opts.gc.unwrap_or(opts.persist == Persistence::None);
        let doc = Doc::with_options(yrs::Options {
            skip_gc: !gc,
            ..yrs::Options::default()
        });
        let mut log = None;
        let mut stored = false;
        if opts.persist != Persistence::None {
            let loaded = UpdateLog::load(room.storage());
            persist::apply_stored(&doc, &loaded.updates);
            stored = !loaded.updates.is_empty();
            log = Some(loaded.log);
        }
        let mut d = SharedDoc {
            doc,
            awareness: Awareness::default(),
            members: HashMap::new(),
            persist: opts.persist,
            log,
            dirty: false,
            snapshot_due: None,
            callback: opts.callback.clone(),
            callback_first: None,
            callback_last: None,
            timer: None,
            room: room.handle(),
        };
        if !stored {
            if let Some(seed) = opts.load.as_ref().and_then(|load| load(room)) {
                let state = seed
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default());
                if let Ok(true) = d.apply(&state) {
                    // A seed is content like any other: stored at once (it has no client to
                    // send it again).
                    d.persist_change(&state);
                    if let Some(log) = &mut d.log {
                        if matches!(d.persist, Persistence::Snapshot { .. }) {
                            drop(log.compact(&d.doc));
                            d.dirty = false;
                            d.snapshot_due = None;
                        }
                    }
                }
            }
        }
        d
    }

    /// The yrs document (clone it to keep it; it is a shared handle).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// Connections that are members.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The JSON awareness state of `client`, if it has one.
    pub fn awareness_state(&self, client: u64) -> Option<&str> {
        self.awareness.state(client)
    }

    /// Applies an update in one transaction; whether it added anything (insertions or
    /// deletions the document did not have).
    fn apply(&mut self, update: &[u8]) -> Result<bool, &'static str> {
        let update = decode_guarded(|| Update::decode_v1(update)).ok_or("yjs: malformed update")?;
        let mut txn = self.doc.transact_mut();
        txn.apply_update(update)
            .map_err(|_| "yjs: update does not apply")?;
        Ok(!txn.insert_set().is_empty() || !txn.delete_set().is_empty())
    }

    /// Storage and the callback's clock, after `diff` was applied.
    fn persist_change(&mut self, diff: &[u8]) {
        let now = Instant::now();
        match self.persist {
            Persistence::None => {}
            Persistence::Snapshot { interval } => {
                self.dirty = true;
                self.snapshot_due.get_or_insert(now + interval);
            }
            Persistence::History {
                max_updates,
                max_bytes,
            } => {
                if let Some(log) = &mut self.log {
                    match log.append(diff) {
                        Ok(durable) => drop(durable),
                        Err(e) => {
                            tracing::error!(error = %e, bytes = diff.len(), "yjs: update not stored")
                        }
                    }
                    if log.entries > max_updates || (log.bytes > max_bytes && log.entries > 1) {
                        if let Err(e) = log.compact(&self.doc) {
                            tracing::error!(error = %e, "yjs: history not compacted");
                        }
                    }
                }
            }
        }
        if self.callback.is_some() {
            self.callback_first.get_or_insert(now);
            self.callback_last = Some(now);
        }
    }

    /// Writes the merged state if there are unsaved edits (snapshot mode).
    fn snapshot(&mut self) {
        self.snapshot_due = None;
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some(log) = &mut self.log {
            match log.compact(&self.doc) {
                Ok(durable) => drop(durable),
                Err(e) => tracing::error!(error = %e, "yjs: snapshot not stored"),
            }
        }
    }

    fn callback_due(&self) -> Option<Instant> {
        let cb = self.callback.as_ref()?;
        let first = self.callback_first?;
        let last = self.callback_last.unwrap_or(first);
        Some((last + cb.debounce_wait).min(first + cb.debounce_max_wait))
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.snapshot_due, self.callback_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure a timer task wakes up by the next deadline.
    fn arm_timer(&mut self) {
        let Some(at) = self.next_deadline() else {
            return;
        };
        if let Some((alive, planned)) = &self.timer {
            if *planned <= at {
                return;
            }
            // An earlier deadline than the running task's: replace it.
            alive.set(false);
        }
        let alive = Rc::new(Cell::new(true));
        self.timer = Some((alive.clone(), at));
        let room = self.room.clone();
        monoio::spawn(async move {
            let mut at = at;
            loop {
                monoio::time::sleep(at.saturating_duration_since(Instant::now())).await;
                if !alive.get() {
                    return;
                }
                match room.with(fire_due).flatten() {
                    Some(next) => at = next,
                    None => return,
                }
            }
        });
    }

    /// Takes the pending callback, if any, as `(handler, doc)`.
    fn take_callback(&mut self) -> Option<(ChangeHandler, Doc)> {
        self.callback_first.take()?;
        self.callback_last = None;
        let cb = self.callback.as_ref()?;
        Some((cb.handler.clone(), self.doc.clone()))
    }
}

/// Runs a yrs decoder on client bytes. yrs asserts on some malformed input (a client id past
/// 53 bits panics in `ClientID::new`, found by the mutation test in tests.rs) instead of
/// returning an error; decoding touches no document, so such a panic is just "malformed".
fn decode_guarded<T, E>(decode: impl FnOnce() -> Result<T, E>) -> Option<T> {
    panic::catch_unwind(AssertUnwindSafe(decode)).ok()?.ok()
}

/// The timer task's visit: runs what is due, returns the next wake-up (`None`: the task ends).
fn fire_due(room: &mut Room) -> Option<Instant> {
    let now = Instant::now();
    let d = room.state_mut::<SharedDoc>()?;
    if d.snapshot_due.is_some_and(|t| t <= now) {
        d.snapshot();
    }
    let call = if d.callback_due().is_some_and(|t| t <= now) {
        d.take_callback()
    } else {
        None
    };
    if let Some((handler, doc)) = call {
        run_callback(room, &handler, &doc);
    }
    let d = room.state_mut::<SharedDoc>()?;
    let next = d.next_deadline();
    match next {
        Some(at) => {
            if let Some(timer) = &mut d.timer {
                timer.1 = at;
            }
        }
        None => d.timer = None,
    }
    next
}

fn run_callback(room: &Room, handler: &ChangeHandler, doc: &Doc) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(room, doc))).is_err() {
        tracing::error!(room = %room.id(), "yjs: change callback panicked");
    }
}

/// The room's document, if loaded.
pub fn shared_doc(room: &Room) -> Option<&SharedDoc> {
    room.state_ref::<SharedDoc>()
}

/// y-partykit's `onConnect`: makes `conn` a member of the room's document (loading it with
/// `opts` if it is not in memory) and sends it sync step 1 and the awareness states. The party
/// then forwards the connection's messages to [`on_message`] and its close to [`on_close`].
pub fn on_connect(room: &mut Room, conn: &Connection, opts: &Options) {
    if room.state_ref::<SharedDoc>().is_none() {
        let d = SharedDoc::load(room, opts);
        room.set_state(d);
    }
    let Some(d) = room.state_mut::<SharedDoc>() else {
        return;
    };
    d.members.insert(
        conn.slot.get(),
        Member {
            read_only: opts.read_only,
            clients: Vec::new(),
            batch: None,
            refused: false,
        },
    );
    let sv = d.doc.transact().state_vector().encode_v1();
    conn.send_binary(&protocol::sync_step1(&sv));
    let present = d.awareness.present();
    if !present.is_empty() {
        conn.send_binary(&protocol::awareness(&d.awareness.encode(present)));
    }
    d.arm_timer();
}

/// Handles a member's message; `false` if `sender` is not a member of a document here (the
/// message is the party's own business then).
pub fn on_message(room: &mut Room, msg: Message<'_>, sender: &Connection) -> bool {
    let slot = sender.slot.get();
    let Some(d) = room.state_mut::<SharedDoc>() else {
        return false;
    };
    let Some(member) = d.members.get_mut(&slot) else {
        return false;
    };
    if member.refused {
        return true;
    }
    let assembled;
    let bytes: &[u8] = match msg {
        Message::Binary(bytes) => match &mut member.batch {
            Some(batch) => {
                batch.received += 1;
                if batch.buf.len() + bytes.len() > batch.size || batch.received > batch.count {
                    refuse(
                        room,
                        sender,
                        close::INVALID_PAYLOAD,
                        "yjs: chunk beyond its batch",
                    );
                } else {
                    batch.buf.extend_from_slice(bytes);
                }
                return true;
            }
            None => bytes,
        },
        Message::Text(text) => match BatchMarker::parse(text) {
            None => {
                refuse(
                    room,
                    sender,
                    close::UNSUPPORTED,
                    "yjs: text messages are not part of the y-websocket protocol",
                );
                return true;
            }
            Some(Err(_)) => {
                refuse(
                    room,
                    sender,
                    close::INVALID_PAYLOAD,
                    "yjs: malformed batch marker",
                );
                return true;
            }
            Some(Ok(marker)) => match (marker.kind, member.batch.take()) {
                (BatchKind::Start, None) if marker.size <= MAX_BATCH_BYTES => {
                    member.batch = Some(Batch {
                        id: marker.id,
                        size: marker.size,
                        count: marker.count,
                        buf: Vec::with_capacity(marker.size),
                        received: 0,
                    });
                    return true;
                }
                (BatchKind::End, Some(batch))
                    if batch.id == marker.id
                        && batch.count == marker.count
                        && batch.received == marker.count
                        && batch.size == marker.size
                        && batch.buf.len() == marker.size =>
                {
                    assembled = batch.buf;
                    &assembled
                }
                _ => {
                    refuse(
                        room,
                        sender,
                        close::INVALID_PAYLOAD,
                        "yjs: batch markers do not match",
                    );
                    return true;
                }
            },
        },
        _ => return true,
    };
    handle(room, sender, bytes);
    true
}

fn handle(room: &mut Room, sender: &Connection, bytes: &[u8]) {
    let slot = sender.slot.get();
    let incoming = match protocol::decode(bytes) {
        Ok(m) => m,
        Err(e) => return refuse(room, sender, close::INVALID_PAYLOAD, e.reason()),
    };
    let Some(d) = room.state_mut::<SharedDoc>() else {
        return;
    };
    let read_only = d.members.get(&slot).is_some_and(|m| m.read_only);
    let relay: Vec<u8> = match incoming {
        Incoming::SyncStep1(sv) => {
            let Some(sv) = decode_guarded(|| StateVector::decode_v1(sv)) else {
                return refuse(
                    room,
                    sender,
                    close::INVALID_PAYLOAD,
                    "yjs: malformed state vector",
                );
            };
            let diff = d.doc.transact().encode_state_as_update_v1(&sv);
            sender.send_binary(&protocol::sync_step2(&diff));
            return;
        }
        Incoming::SyncStep2(update) | Incoming::Update(update) => {
            if read_only {
                tracing::debug!(room = %room.id(), conn = %sender.id(), "yjs: update from a read-only connection dropped");
                return;
            }
            match d.apply(update) {
                Err(reason) => return refuse(room, sender, close::INVALID_PAYLOAD, reason),
                Ok(false) => return,
                // The others get the update as its author encoded it (yrs would re-encode
                // embedded JSON objects with their keys in hash order, and encoding again
                // costs CPU per edit).
                Ok(true) => {
                    d.persist_change(update);
                    d.arm_timer();
                    protocol::update(update)
                }
            }
        }
        Incoming::Awareness(encoded) => match d.awareness.apply(encoded) {
            Err(e) => return refuse(room, sender, close::INVALID_PAYLOAD, e.reason()),
            Ok(changes) if changes.is_empty() => return,
            Ok(changes) => {
                if let Some(member) = d.members.get_mut(&slot) {
                    member.clients.extend(&changes.added);
                    member.clients.retain(|c| !changes.removed.contains(c));
                }
                protocol::awareness(&d.awareness.encode(changes.all()))
            }
        },
        Incoming::QueryAwareness => {
            let present = d.awareness.present();
            sender.send_binary(&protocol::awareness(&d.awareness.encode(present)));
            return;
        }
        Incoming::Ignored(tag) => {
            tracing::debug!(room = %room.id(), tag, "yjs: message type ignored");
            return;
        }
    };
    if room.conns.len() > 1 {
        let frame: Rc<[u8]> = ws::encode_frame(OpCode::Binary, &relay).into();
        room.broadcast_frame(&frame, Some(slot));
    }
}

/// Closes a member that sent bad input; the document and the others are untouched.
fn refuse(room: &mut Room, conn: &Connection, code: u16, reason: &'static str) {
    tracing::warn!(room = %room.id(), conn = %conn.id(), code, reason, "yjs: closing a connection");
    if let Some(member) = room
        .state_mut::<SharedDoc>()
        .and_then(|d| d.members.get_mut(&conn.slot.get()))
    {
        member.refused = true;
        member.batch = None;
    }
    conn.close(code, reason);
}

/// A member left: its awareness states are removed (and the others told); the last member
/// leaving writes the snapshot, runs a pending callback and unloads the document.
pub fn on_close(room: &mut Room, conn: &Connection) {
    let Some(d) = room.state_mut::<SharedDoc>() else {
        return;
    };
    let Some(member) = d.members.remove(&conn.slot.get()) else {
        return;
    };
    let removed = d.awareness.remove(&member.clients);
    let gone = (!removed.is_empty()).then(|| protocol::awareness(&d.awareness.encode(removed)));
    let last = d.members.is_empty();
    let call = if last {
        d.snapshot();
        d.take_callback()
    } else {
        None
    };
    if let Some(msg) = gone {
        if !room.conns.is_empty() {
            let frame: Rc<[u8]> = ws::encode_frame(OpCode::Binary, &msg).into();
            room.broadcast_frame(&frame, None);
        }
    }
    if let Some((handler, doc)) = call {
        run_callback(room, &handler, &doc);
    }
    if last
        && room
            .state_ref::<SharedDoc>()
            .is_some_and(|d| d.members.is_empty())
    {
        room.clear_state();
    }
}

/// Applies an update made on the server (say, from `on_request`) as if a member had sent it:
/// stored, relayed to every member. Loads the document with `opts` if needed, and unloads it
/// again if it has no members. Returns whether it changed the document.
///
/// # Errors
/// The update does not decode or apply; the document is unchanged.
pub fn apply_update(room: &mut Room, opts: &Options, update: &[u8]) -> Result<bool, &'static str> {
    if room.state_ref::<SharedDoc>().is_none() {
        let d = SharedDoc::load(room, opts);
        room.set_state(d);
    }
    let Some(d) = room.state_mut::<SharedDoc>() else {
        return Ok(false);
    };
    let result = d.apply(update);
    let (mut frame, mut call) = (None, None);
    if let Ok(true) = result {
        d.persist_change(update);
        if d.members.is_empty() {
            d.snapshot();
            call = d.take_callback();
        } else {
            d.arm_timer();
            let f: Rc<[u8]> = ws::encode_frame(OpCode::Binary, &protocol::update(update)).into();
            frame = Some(f);
        }
    }
    if let Some(frame) = frame {
        room.broadcast_frame(&frame, None);
    }
    if let Some((handler, doc)) = call {
        run_callback(room, &handler, &doc);
    }
    if room
        .state_ref::<SharedDoc>()
        .is_some_and(|d| d.members.is_empty())
    {
        room.clear_state();
    }
    result
}

/// The document's whole state as one update (loading it with `opts` if needed; unloaded again
/// if it has no members): what y-partykit's `unstable_getYDoc` is mostly used for.
pub fn encode_state(room: &mut Room, opts: &Options) -> Vec<u8> {
    let loaded_here = room.state_ref::<SharedDoc>().is_none();
    if loaded_here {
        let d = SharedDoc::load(room, opts);
        room.set_state(d);
    }
    let state = room.state_ref::<SharedDoc>().map_or_else(
        || EMPTY_UPDATE.to_vec(),
        |d| {
            d.doc
                .transact()
                .encode_state_as_update_v1(&StateVector::default())
        },
    );
    if room
        .state_ref::<SharedDoc>()
        .is_some_and(|d| d.members.is_empty())
    {
        if let Some(d) = room.state_mut::<SharedDoc>() {
            d.snapshot();
        }
        room.clear_state();
    }
    state
}

#[cfg(test)]
mod tests;
