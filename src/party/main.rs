//! The built-in `main` party: PartyKit's "Responding to HTTP requests" `MessageServer`
//! (docs/partykit-protocol.md), with its history in room storage and an output gate.
//!
//! Owns the history of each of its rooms: the durable messages in arrival order, at most
//! `history_limit` (the oldest are dropped and deleted), kept in the room's party state
//! ([`Room::with_state`]) while there are any, stored under `history/<seq, 20 digits>` so key
//! order is arrival order, and replayed by `on_start`. Does not own the room's connections,
//! broadcast or storage (it uses them through [`Room`]).
//!
//! # The output gate
//!
//! Messages are stored before anyone sees them, as a Durable Object's output gate holds its
//! outputs until its writes are confirmed: [`publish`] writes the message and *holds* it; once
//! the write is durable (under `--fsync always`: fsynced; under `every`/`never`: written to the
//! file) it joins the in-memory history (GET) and is broadcast. A write that fails is never
//! shown: it is dropped from the gate, the storage has already discarded it, and a WebSocket
//! sender is closed with 1013. Held messages leave in the order they were published, and a
//! binary relay ([`relay`], not stored) waits behind the held ones, so members see every
//! message in one order. One task per room drains the gate while it is non-empty; it wakes when
//! the writer finishes a batch, so every message of one batch is released after the batch's
//! single fsync (group commit). Without a log (`persist: false`) writes are done at once and
//! nothing is held; a POST whose write is already done is answered at once, the others when
//! their write is (a deferred reply). A held message that arrived compressed keeps its
//! sender's compressed payload (`ws::deflate::inbound_payload`), so its broadcast after the
//! write sends those bytes to the members that compress instead of deflating it again.
//!
//! A room of this party stays in memory while it has history or held messages (its party
//! state is set exactly then), so a stream of GETs for random room names costs nothing.
//!
//! After a storage failure the history is read again from storage ([`Room::storage_epoch`]
//! changed): under `--fsync every=<ms>` or `never` a message is shown once written, before it
//! is fsynced, and a failed fsync then discards it; GET must not keep answering it. (Members
//! that already received it over their WebSocket keep it: the weaker guarantee the README
//! states for those policies.)

use std::{collections::VecDeque, rc::Rc};

use super::{method_not_allowed, storage_unavailable, Party, Reply, Request};
use crate::{
    http::{Method, Response},
    party::cron::CronEvent,
    room::{Connection, FetchRequest, Reach, Room},
    storage::{Durable, ListOptions, StorageError},
    ws::{self, Message, OpCode},
};

/// Keys of the history in room storage: `history/<seq, 20 digits>`.
const HISTORY_PREFIX: &str = "history/";

/// The close reason sent with 1013 to a member whose message could not be stored.
pub const STORAGE_FAILED_REASON: &str = "Message not stored (storage unavailable); try again later";

/// PartyKit's `MessageServer`: POST `{"message"}` appends to the history and, once that is
/// durable (`OK` comes after the fsync), broadcasts it; GET answers the history as JSON; a
/// message that cannot be stored is answered 507 (disk full) or 503 and shown nowhere.
pub struct MainParty {
    history_limit: usize,
}

impl MainParty {
    /// Keeps the newest `history_limit` messages per room (0: none are stored; messages are
    /// only relayed).
    pub fn new(history_limit: usize) -> Self {
        MainParty { history_limit }
    }
}

#[derive(Debug, serde::Deserialize)]
struct PostBody {
    message: String,
}

/// A POST's body: as text when it is ASCII (`http::parse::ascii`), so serde_json does not
/// validate its strings as UTF-8 (checked word by word already); else as bytes, with the
/// same result and errors.
fn parse_post(body: &[u8]) -> serde_json::Result<PostBody> {
    match crate::http::parse::ascii(body) {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_slice(body),
    }
}

impl Party for MainParty {
    fn on_start(&self, room: &mut Room) {
        load_history(room, self.history_limit);
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        match req.method {
            Method::Get => Response::json(200, history_json(room).to_vec()).into(),
            Method::Post => match parse_post(req.body) {
                Ok(post) => {
                    let durable = publish(room, self.history_limit, post.message, None);
                    match durable.status() {
                        Some(Err(e)) => return storage_unavailable(&e).into(),
                        // Stored already (`persist: false`, or a write that completed at
                        // once): shown now and answered without a deferred reply, which
                        // would cost a boxed future and a timer per request.
                        Some(Ok(())) => {
                            release_gate(room);
                            return Response::text(200, "OK").into();
                        }
                        None => {}
                    }
                    let handle = room.handle();
                    Reply::later(async move {
                        let result = durable.await;
                        // Show it before answering, so a GET after the OK finds it.
                        handle.with(release_gate);
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
    /// the sender), through the output gate: a message that cannot be stored is not relayed
    /// and its sender is closed with 1013. Binary is relayed, not stored.
    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        match msg {
            Message::Text(text) => {
                drop(publish(
                    room,
                    self.history_limit,
                    text.to_owned(),
                    Some(sender),
                ));
            }
            Message::Binary(bytes) => relay(room, OpCode::Binary, bytes, Some(sender)),
            _ => {}
        }
    }
}

/// One room's history and output gate: the `main` party's state of that room.
#[derive(Default)]
struct History {
    /// The durable messages in arrival order, each with the number it is stored under.
    messages: VecDeque<(u64, String)>,
    /// The number the next published message is stored under. Only grows: a number whose
    /// write failed is skipped, not reused.
    next_seq: u64,
    /// Messages published but not yet durable, in order (the output gate).
    gate: VecDeque<Held>,
    /// A task is draining `gate`.
    gate_task: bool,
    /// `messages` serialised as a JSON array, kept until they change: GET is the hot HTTP
    /// path, and re-serialising 10,000 messages per request would dominate it.
    json: Option<Rc<[u8]>>,
    limit: usize,
    /// [`Room::storage_epoch`] when `messages` was last read from storage.
    epoch: u64,
}

/// A message in the output gate.
struct Held {
    /// Its history write; `None` for a relay, which is not stored and only keeps its place.
    durable: Option<Durable<()>>,
    /// The number it is stored under (text only).
    seq: u64,
    message: HeldMessage,
    /// Who sent it: not sent back to them, and closed with 1013 if the write fails.
    sender: Option<Connection>,
    /// The sender's compressed payload of it, if it came compressed
    /// (`ws::deflate::inbound_payload`): sent on as it is, instead of deflating it again.
    relay: Option<Rc<[u8]>>,
}

enum HeldMessage {
    /// A history message.
    Text(String),
    /// A message that is only relayed, with its opcode.
    Relay(ws::OpCode, Vec<u8>),
}

fn history_key(seq: u64) -> String {
    format!("{HISTORY_PREFIX}{seq:020}")
}

/// Replays the history from storage. Keeps the newest `limit` messages; older ones left by a
/// crash between a put and its delete are deleted now. The room keeps it only if there is any.
fn load_history(room: &mut Room, limit: usize) {
    let mut history = read_history(room, limit, true);
    if history.messages.is_empty() {
        room.clear_state();
    } else {
        history.limit = limit;
        room.set_state(history);
    }
}

/// The history as storage has it now, its newest `limit` messages; with `delete_stale`, older
/// ones left by a crash between a put and its delete are deleted (only on start: a GET must not
/// write, or wait for a write).
fn read_history(room: &mut Room, limit: usize, delete_stale: bool) -> History {
    let epoch = room.storage_epoch();
    let store = room.storage();
    let opts = ListOptions {
        prefix: Some(HISTORY_PREFIX),
        ..ListOptions::default()
    };
    let entries = store.list(&opts).unwrap_or_default();
    let extra = entries.len().saturating_sub(limit);
    if extra > 0 && delete_stale {
        let stale: Vec<String> = entries[..extra].iter().map(|(k, _)| k.clone()).collect();
        for chunk in stale.chunks(crate::storage::MAX_KEYS_PER_OP) {
            drop(store.delete_many(chunk.to_vec()));
        }
    }
    let mut history = History {
        limit,
        epoch,
        ..History::default()
    };
    for (key, value) in &entries[extra..] {
        let Some(seq) = key[HISTORY_PREFIX.len()..].parse::<u64>().ok() else {
            continue;
        };
        history
            .messages
            .push_back((seq, String::from_utf8_lossy(value).into_owned()));
        history.next_seq = history.next_seq.max(seq + 1);
    }
    history
}

/// Reads the history again if the storage discarded writes since it was read (module note).
/// Held messages stay held (their writes' outcomes settle them), and numbers are never reused.
fn refresh(room: &mut Room) {
    let epoch = room.storage_epoch();
    let Some(limit) = room
        .state_ref::<History>()
        .filter(|h| h.epoch != epoch)
        .map(|h| h.limit)
    else {
        return;
    };
    let fresh = read_history(room, limit, false);
    if let Some(h) = room.state_mut::<History>() {
        h.messages = fresh.messages;
        h.next_seq = h.next_seq.max(fresh.next_seq);
        h.epoch = fresh.epoch;
        h.json = None;
    }
    tidy(room);
}

/// The durable messages of `room`, oldest first.
#[cfg(test)]
fn history(room: &Room) -> Vec<&str> {
    room.state_ref::<History>()
        .map(|h| h.messages.iter().map(|(_, m)| m.as_str()).collect())
        .unwrap_or_default()
}

/// The history as a JSON array of strings.
fn history_json(room: &mut Room) -> Rc<[u8]> {
    refresh(room);
    let Some(h) = room.state_mut::<History>() else {
        return Rc::from(&b"[]"[..]);
    };
    if let Some(json) = &h.json {
        return json.clone();
    }
    let messages: Vec<&str> = h.messages.iter().map(|(_, m)| m.as_str()).collect();
    let json: Rc<[u8]> = serde_json::to_vec(&messages)
        .expect("a list of strings always serialises")
        .into();
    h.json = Some(json.clone());
    json
}

/// Publishes a message through the output gate (module note): stores it in the history and,
/// once that is durable, adds it to the in-memory history (GET) and broadcasts it as text to
/// every connection but `sender`. If the write fails the message is shown nowhere and `sender`
/// is closed with 1013. Resolves when the write is durable, or to why it failed. The oldest
/// messages beyond `limit` are deleted as new ones are shown. With `limit` 0 nothing is stored
/// and the broadcast goes out at once.
pub(crate) fn publish(
    room: &mut Room,
    limit: usize,
    message: String,
    sender: Option<&Connection>,
) -> Durable<()> {
    if limit == 0 {
        relay(room, ws::OpCode::Text, message.as_bytes(), sender);
        return Durable::ready(Ok(()));
    }
    // The common case (a loaded, current history) costs one downcast here.
    let epoch = room.storage_epoch();
    if room.state_ref::<History>().is_none_or(|h| h.epoch != epoch) {
        refresh(room);
        if room.state_ref::<History>().is_none() {
            // Numbering goes on from what storage has (the state may have been lost to a
            // panic in a handler, or never loaded): a stored number is never written over.
            let history = read_history(room, limit, false);
            room.set_state(history);
        }
    }
    let persistent = room.storage_is_persistent();
    let durable = room.with_state(|h: &mut History, room| {
        let seq = h.next_seq;
        h.next_seq += 1;
        // Without a log (`persist: false`) the room itself is the only copy: it stays in
        // memory while it has history, so a second copy in the storage index would only cost
        // a key, a clone and a tree insert per message on the fan-out path.
        let durable = if persistent {
            room.storage()
                .put(&history_key(seq), message.clone().into_bytes())
        } else {
            Durable::ready(Ok(()))
        };
        // Shown now, inside the delivery, where the codec relays the sender's payload itself;
        // or later, outside it: then the sender's payload is kept to relay.
        let now = durable.status().filter(|_| h.gate.is_empty());
        let relay = match now {
            Some(_) => None,
            None => ws::deflate::inbound_payload(message.as_bytes()),
        };
        let held = Held {
            durable: Some(durable.clone()),
            seq,
            relay,
            message: HeldMessage::Text(message),
            sender: sender.cloned(),
        };
        match now {
            Some(result) => h.settle(room, held, result),
            None => {
                h.gate.push_back(held);
                h.start_gate(room);
            }
        }
        durable
    });
    let durable = durable.expect("the history was just set");
    if matches!(durable.status(), Some(Err(_))) {
        tidy(room); // the message was dropped: the history may be empty
    }
    durable
}

/// Sends a message that is not stored to every connection but `sender`: at once, or, if
/// published messages are held in the gate, after them (so every member sees one order).
pub(crate) fn relay(
    room: &mut Room,
    opcode: ws::OpCode,
    payload: &[u8],
    sender: Option<&Connection>,
) {
    match room.state_mut::<History>() {
        Some(h) if !h.gate.is_empty() => h.gate.push_back(Held {
            durable: None,
            seq: 0,
            message: HeldMessage::Relay(opcode, payload.to_vec()),
            sender: sender.cloned(),
            relay: ws::deflate::inbound_payload(payload),
        }),
        _ => room.broadcast_except_conn(opcode, payload, sender),
    }
}

/// Releases every message at the front of the gate whose write has an outcome: shown if
/// durable, dropped (sender closed with 1013) if not. Stops at the first one still waiting.
pub(crate) fn release_gate(room: &mut Room) {
    room.with_state(|h: &mut History, room| h.release(room));
    tidy(room);
}

/// Lets the room go from memory once it has neither history nor held messages.
fn tidy(room: &mut Room) {
    if room
        .state_ref::<History>()
        .is_some_and(|h| h.messages.is_empty() && h.gate.is_empty() && !h.gate_task)
    {
        room.clear_state();
    }
}

impl History {
    fn release(&mut self, room: &Room) {
        while let Some(front) = self.gate.front() {
            let result = match &front.durable {
                None => Ok(()),
                Some(d) => match d.status() {
                    Some(r) => r,
                    None => break,
                },
            };
            let held = self.gate.pop_front().expect("front exists");
            self.settle(room, held, result);
        }
    }

    /// Spawns the task that drains the gate, unless it runs: it waits for the first held
    /// write, releases what is ready, and repeats until the gate is empty.
    fn start_gate(&mut self, room: &Room) {
        if self.gate_task {
            return;
        }
        self.gate_task = true;
        let handle = room.handle();
        monoio::spawn(async move {
            loop {
                match handle.try_with(gate_next) {
                    // Either outcome releases it; `gate_next` reads which.
                    Ok(Some(next)) => drop(next.await),
                    Ok(None) => return,
                    // Outside a core (unit tests release the gate by hand), or at shutdown.
                    Err(Reach::Gone) => return,
                    // The room table is borrowed (it never is across an await, but a gate
                    // that stopped here would hold its messages forever): try again shortly.
                    Err(_) => monoio::time::sleep(std::time::Duration::from_millis(1)).await,
                }
            }
        });
    }

    /// A held message's write has its outcome: show it, or drop it.
    fn settle(&mut self, room: &Room, held: Held, result: Result<(), StorageError>) {
        match (held.message, result) {
            (HeldMessage::Relay(opcode, payload), _) => {
                room.broadcast_relay_except_conn(
                    opcode,
                    &payload,
                    held.relay,
                    held.sender.as_ref(),
                );
            }
            (HeldMessage::Text(message), Ok(())) => {
                room.broadcast_relay_except_conn(
                    ws::OpCode::Text,
                    message.as_bytes(),
                    held.relay,
                    held.sender.as_ref(),
                );
                self.push(room, held.seq, message);
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
    /// beyond the limit.
    fn push(&mut self, room: &Room, seq: u64, message: String) {
        self.messages.push_back((seq, message));
        while self.messages.len() > self.limit {
            let (old, _) = self.messages.pop_front().expect("over the limit");
            let store = room.storage();
            if store.is_persistent() {
                drop(store.delete_many(vec![history_key(old)]));
            }
        }
        self.json = None;
    }
}

/// For the gate task: releases what is ready and returns the write to wait for next, or
/// `None` (and the task ends) when the gate is empty.
fn gate_next(room: &mut Room) -> Option<Durable<()>> {
    let next = room
        .with_state(|h: &mut History, room| {
            h.release(room);
            let next = h.gate.iter().find_map(|h| h.durable.clone());
            if next.is_none() {
                h.gate_task = false;
            }
            next
        })
        .flatten();
    tidy(room);
    next
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
