//! `yjs`: R rooms x M members of a Yjs party (`/parties/yjs/<room>` by default), speaking the
//! y-websocket protocol as `YPartyKitProvider` does, with real Yjs updates made by yrs.
//!
//! Each member, once open, sends sync step 1 (its state vector) and answers the server's
//! step 1 with step 2; it is synced when the server's step 2 arrives. A room starts when all
//! of its members are synced. Closed loop, as `fanout`: a writer sends `--batch` updates
//! (`[0 sync, 2 update, var-uint length, update]`, each one insertion at the end of a
//! `Y.Text` made in the writer's own yrs document), and the room's next round starts when
//! every other member received all of them. With `--writers all` the writer rotates over the
//! members each round; with `one` it is always member 0.
//!
//! Deliveries are checked by content: each insertion starts with a tag `~WWWWWWWWSSSSSSSS~`
//! (writer id and sequence number in hex), which a v1 update carries verbatim as its string
//! content, so every receiver checks each writer's numbers arrive as 0, 1, 2, ... (as
//! `fanout` does). One member per room (the last) also applies every update it receives to a
//! yrs document of its own, which must end with exactly the text the other writers inserted:
//! updates that do not decode or do not integrate count as bad. A server that relays an
//! update back to its sender (y-partykit does, as y-websocket's server) is tolerated: those
//! copies are counted and reported, not counted as deliveries.

use clap::{Args, ValueEnum};
use serde::Serialize;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update};

use crate::net::{Handler, Out};
use crate::phase::{connect_all, drain, Counters, Measured, Opened};
use crate::stats::{now_ns, record, Part, SeqCheck};
use crate::Ctx;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Writers {
    /// Member 0 of each room writes every update.
    One,
    /// The writer rotates over the room's members, one round (batch) each.
    All,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct YjsArgs {
    /// Number of rooms (documents).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// WebSocket members per room (at least 2).
    #[arg(long, default_value_t = 16)]
    pub members: usize,
    /// Updates in flight per room: a round is this many updates from one writer.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Who writes.
    #[arg(long, value_enum, default_value_t = Writers::One)]
    pub writers: Writers,
    /// Characters inserted per update after the 18-character tag.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// The party's path; rooms are <party-path>/<prefix>-<index>.
    #[arg(long, default_value = "/parties/yjs")]
    pub party_path: String,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "yjs")]
    pub room_prefix: String,
    /// Do not apply the updates to a checking yrs document per room (content tags are still
    /// checked by every receiver).
    #[arg(long)]
    pub no_apply: bool,
}

/// y-protocols message type of sync messages (the first var-uint; 1 is awareness).
pub const MSG_SYNC: u64 = 0;
/// Sync sub-types.
pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// Length of `~WWWWWWWWSSSSSSSS~`.
pub const TAG_LEN: usize = 18;

/// lib0's var-uint: 7 bits a byte, least significant first, high bit = more.
pub fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a var-uint at `*pos`, advancing it; `None` when cut short or wider than 64 bits.
pub fn read_var_uint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Writes a sync message `[0, sub, var-uint len, body]` into `out` (cleared first).
pub fn encode_sync(out: &mut Vec<u8>, sub: u64, body: &[u8]) {
    out.clear();
    write_var_uint(out, MSG_SYNC);
    write_var_uint(out, sub);
    write_var_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A decoded server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Sync {
        sub: u64,
        body: &'a [u8],
    },
    /// Awareness, or any other type: not part of what is measured.
    Other(u64),
}

/// Decodes one binary message; `None` when cut short (or a sync body has bytes after it).
pub fn decode(b: &[u8]) -> Option<Msg<'_>> {
    let mut pos = 0;
    let tag = read_var_uint(b, &mut pos)?;
    if tag != MSG_SYNC {
        return Some(Msg::Other(tag));
    }
    let sub = read_var_uint(b, &mut pos)?;
    let len = usize::try_from(read_var_uint(b, &mut pos)?).ok()?;
    let body = b.get(pos..pos.checked_add(len)?)?;
    (pos + len == b.len()).then_some(Msg::Sync { sub, body })
}

fn put_hex(out: &mut String, v: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..8).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xF) as usize] as char);
    }
}

fn get_hex(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// The text one update inserts: the tag, then `pad` characters.
pub fn make_text(out: &mut String, writer: u32, seq: u32, pad: usize) {
    out.clear();
    out.push('~');
    put_hex(out, writer);
    put_hex(out, seq);
    out.push('~');
    out.extend(std::iter::repeat_n('.', pad));
}

/// (writer, seq) from the last tag found in an update's bytes (the string content is stored
/// verbatim in a v1 update; the delete set after it is short).
pub fn find_tag(update: &[u8]) -> Option<(u32, u32)> {
    if update.len() < TAG_LEN {
        return None;
    }
    (0..=update.len() - TAG_LEN).rev().find_map(|i| {
        let t = &update[i..i + TAG_LEN];
        if t[0] != b'~' || t[TAG_LEN - 1] != b'~' {
            return None;
        }
        Some((get_hex(&t[1..9])?, get_hex(&t[9..17])?))
    })
}

/// A writer: its own document, where each update is one insertion at the end of its text.
pub struct Writer {
    doc: Doc,
    text: TextRef,
    len: u32,
}

impl Writer {
    /// `client` must be unique among the room's writers (it is the yrs client id).
    pub fn new(client: u64) -> Writer {
        let doc = Doc::with_client_id(client);
        let text = doc.get_or_insert_text("text");
        Writer { doc, text, len: 0 }
    }

    /// Inserts `s` at the end and returns the transaction's update (v1).
    pub fn insert(&mut self, s: &str) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        self.text.insert(&mut txn, self.len, s);
        self.len += s.chars().count() as u32;
        txn.encode_update_v1()
    }
}

struct Room {
    global: usize,
    first: usize,
    synced: usize,
    next_writer: usize,
    outstanding: u64,
    /// Updates sent per writer slot.
    sent: Vec<u32>,
    writers: Vec<Option<Writer>>,
    started: bool,
    dead: bool,
    round_t0: u64,
    /// The checking member's document and its text length once synced.
    check: Option<(Doc, TextRef)>,
    check_base: usize,
}

struct Member {
    room: usize,
    slot: usize,
    conn: usize,
    synced: bool,
    next: Vec<u32>,
}

struct Yjs<'a> {
    a: &'a YjsArgs,
    rooms: Vec<Room>,
    members: Vec<Member>,
    conn_member: Vec<u32>,
    c: Counters,
    seq: SeqCheck,
    part: Part,
    expected: u64,
    received: u64,
    echoed: u64,
    running: bool,
    step1: Vec<u8>,
    step2: Vec<u8>,
    buf: Vec<u8>,
    text: String,
}

impl Yjs<'_> {
    fn m(&self) -> usize {
        self.a.members
    }

    /// One round in room `r`: `--batch` updates from the room's current writer.
    fn round(&mut self, out: &mut Out, r: usize) {
        let m = self.m();
        let room = &mut self.rooms[r];
        if room.dead {
            return;
        }
        let slot = room.next_writer;
        let conn = self.members[room.first + slot].conn;
        let id = (room.global * m + slot) as u32;
        let w = room.writers[slot].get_or_insert_with(|| Writer::new(u64::from(id) + 1));
        for _ in 0..self.a.batch {
            make_text(&mut self.text, id, room.sent[slot], self.a.pad);
            room.sent[slot] += 1;
            let update = w.insert(&self.text);
            encode_sync(&mut self.buf, SYNC_UPDATE, &update);
            out.ws_frame(conn, 2, &self.buf);
            self.c.total_ops += 1;
            if self.c.on {
                self.c.ops += 1;
            }
        }
        let recv = (m as u64 - 1) * self.a.batch as u64;
        room.outstanding += recv;
        room.round_t0 = now_ns();
        self.expected += recv;
        if self.a.writers == Writers::All {
            room.next_writer = (slot + 1) % m;
        }
    }

    fn bad(&mut self, what: String) {
        self.part.bad += 1;
        self.part.note(what);
    }

    fn on_update(&mut self, out: &mut Out, mi: usize, body: &[u8], now: u64) {
        let m = self.m();
        let (r, slot) = (self.members[mi].room, self.members[mi].slot);
        let global = self.rooms[r].global;
        let Some((id, seq)) = find_tag(body) else {
            return self.bad(format!("update without a tag in room {global}"));
        };
        let (wr, wslot) = (id as usize / m, id as usize % m);
        if wr != global {
            return self.bad(format!("update of writer {id} arrived in room {global}"));
        }
        if wslot == slot {
            self.echoed += 1;
            return;
        }
        self.seq.check(&mut self.members[mi].next[wslot], seq);
        if slot == m - 1 {
            if let Some((doc, _)) = &self.rooms[r].check {
                if let Err(e) = apply(doc, body) {
                    self.bad(format!("room {global}: {e}"));
                }
            }
        }
        self.received += 1;
        self.part.checked += 1;
        self.c.total_delivered += 1;
        if self.c.on {
            self.c.delivered += 1;
            self.c.bytes += body.len() as u64;
            // Yjs updates carry no send time: latency is from the start of the round.
            record(&mut self.c.hist, now.saturating_sub(self.rooms[r].round_t0));
        }
        let room = &mut self.rooms[r];
        room.outstanding = room.outstanding.saturating_sub(1);
        if room.outstanding == 0 && self.running {
            self.round(out, r);
        }
    }

    fn on_synced(&mut self, out: &mut Out, r: usize) {
        let room = &mut self.rooms[r];
        room.synced += 1;
        if room.synced == self.a.members && self.running && !room.started {
            room.started = true;
            self.round(out, r);
        }
    }
}

fn apply(doc: &Doc, update: &[u8]) -> Result<(), String> {
    let u = Update::decode_v1(update).map_err(|e| format!("update does not decode: {e}"))?;
    doc.transact_mut()
        .apply_update(u)
        .map_err(|e| format!("update does not apply: {e}"))
}

impl Handler for Yjs<'_> {
    fn on_open(&mut self, out: &mut Out, id: usize, _now: u64) {
        self.part.conns_ok += 1;
        out.ws_frame(id, 2, &self.step1);
    }

    fn on_fail(&mut self, id: usize, opened: bool, err: &str) {
        if opened {
            self.part.conns_broken += 1;
        } else {
            self.part.conns_failed += 1;
        }
        self.part.note(format!("conn {id}: {err}"));
        if let Some(&mi) = self.conn_member.get(id) {
            if let Some(mem) = self.members.get(mi as usize) {
                self.rooms[mem.room].dead = true;
            }
        }
    }

    fn on_frame(&mut self, out: &mut Out, id: usize, opcode: u8, payload: &[u8], now: u64) {
        let mi = self.conn_member[id] as usize;
        if opcode != 2 {
            return self.bad(format!("conn {id}: a frame with opcode {opcode}"));
        }
        match decode(payload) {
            None => self.bad(format!("conn {id}: undecodable message")),
            Some(Msg::Other(_)) => {}
            Some(Msg::Sync {
                sub: SYNC_STEP1, ..
            }) => {
                // Members write only after the room is synced, so their state is empty here.
                out.ws_frame(id, 2, &self.step2);
            }
            Some(Msg::Sync {
                sub: SYNC_STEP2,
                body,
            }) => {
                let mem = &mut self.members[mi];
                let (r, slot) = (mem.room, mem.slot);
                if std::mem::replace(&mut mem.synced, true) {
                    return;
                }
                if slot == self.a.members - 1 {
                    let room = &mut self.rooms[r];
                    if let Some((doc, text)) = &room.check {
                        if let Err(e) = apply(doc, body) {
                            return self.bad(format!("sync step 2: {e}"));
                        }
                        room.check_base = text.get_string(&doc.transact()).len();
                    }
                }
                self.on_synced(out, r);
            }
            Some(Msg::Sync {
                sub: SYNC_UPDATE,
                body,
            }) => self.on_update(out, mi, body, now),
            Some(Msg::Sync { sub, .. }) => self.bad(format!("unknown sync message type {sub}")),
        }
    }
}

impl Opened for Yjs<'_> {
    fn timed_out(&mut self, n: u64) {
        self.part.conns_failed += n;
        self.part.note(format!("{n} connections not open in time"));
    }
}

pub fn run(ctx: &mut Ctx, a: &YjsArgs) -> std::io::Result<Part> {
    let mut part = Part::default();
    if a.members < 2 || a.rooms < 1 || a.batch < 1 {
        part.bad += 1;
        part.note("need --rooms >= 1, --members >= 2 and --batch >= 1".into());
        return Ok(part);
    }
    let m = a.members;
    let my_rooms = ctx.slice(a.rooms);
    let mut net = ctx.net(my_rooms.start * m)?;
    let empty = Doc::new();
    let mut step1 = Vec::new();
    encode_sync(&mut step1, SYNC_STEP1, &StateVector::default().encode_v1());
    let mut step2 = Vec::new();
    encode_sync(
        &mut step2,
        SYNC_STEP2,
        &empty
            .transact()
            .encode_state_as_update_v1(&StateVector::default()),
    );
    let mut y = Yjs {
        a,
        rooms: Vec::new(),
        members: Vec::new(),
        conn_member: Vec::new(),
        c: Counters::new(),
        seq: SeqCheck::default(),
        part,
        expected: 0,
        received: 0,
        echoed: 0,
        running: false,
        step1,
        step2,
        buf: Vec::new(),
        text: String::new(),
    };
    let base = a.party_path.trim_end_matches('/');
    for (r, global) in my_rooms.clone().enumerate() {
        let path = format!("{base}/{}-{global}", a.room_prefix);
        let first = y.members.len();
        for slot in 0..m {
            let conn = net.add_ws(path.clone(), y.members.len() as u32);
            if y.conn_member.len() <= conn {
                y.conn_member.resize(conn + 1, u32::MAX);
            }
            y.conn_member[conn] = y.members.len() as u32;
            y.members.push(Member {
                room: r,
                slot,
                conn,
                synced: false,
                next: vec![0; m],
            });
        }
        let check = (!a.no_apply).then(|| {
            let doc = Doc::new();
            let text = doc.get_or_insert_text("text");
            (doc, text)
        });
        y.rooms.push(Room {
            global,
            first,
            synced: 0,
            next_writer: 0,
            outstanding: 0,
            sent: vec![0; m],
            writers: (0..m).map(|_| None).collect(),
            started: false,
            dead: false,
            round_t0: 0,
            check,
            check_base: 0,
        });
    }

    let t_connect = now_ns();
    connect_all(&mut net, &mut y, ctx)?;
    y.part.connect_secs = (now_ns() - t_connect) as f64 / 1e9;
    ctx.coord.ready();

    let mut clock = Measured::new(ctx, now_ns(), 1);
    y.running = true;
    for r in 0..y.rooms.len() {
        let room = &mut y.rooms[r];
        if room.synced == m && !room.started {
            room.started = true;
            y.round(&mut net.out, r);
        }
    }
    let max_turns = 1u64 << 40;
    for _ in 0..max_turns {
        let now = now_ns();
        let label = |_| format!("closed batch {}", a.batch);
        let extra = || {
            let unstarted = y.rooms.iter().filter(|r| !r.started).count();
            format!(
                "outstanding={} unstarted_rooms={unstarted}",
                y.expected - y.received
            )
        };
        if clock.turn(
            now,
            ctx.coord,
            &mut y.c,
            &mut y.part,
            &net.stats,
            label,
            extra,
        ) {
            break;
        }
        let wait = clock.wait(now);
        net.turn(&mut y, wait)?;
    }

    // Drain: no new rounds; wait (bounded) for what is in flight.
    y.running = false;
    drain(ctx, &mut net, &mut y, |y| y.received < y.expected)?;

    // Integrity: every member got every other writer's numbers 0..sent; the checking
    // document holds exactly what the other writers inserted.
    let mut lost = y.seq.skipped;
    let per_update = TAG_LEN + a.pad;
    for mem in &y.members {
        let room = &y.rooms[mem.room];
        for (w, &sent) in room.sent.iter().enumerate() {
            if w != mem.slot {
                lost += u64::from(sent.saturating_sub(mem.next[w]));
            }
        }
    }
    let mut unstarted = 0;
    for room in &y.rooms {
        if !room.started {
            unstarted += 1;
        }
        let Some((doc, text)) = &room.check else {
            continue;
        };
        let others: usize = room.sent[..m - 1].iter().map(|&s| s as usize).sum();
        let want = room.check_base + others * per_update;
        let got = text.get_string(&doc.transact()).len();
        if got != want && !room.dead {
            y.part.bad += 1;
            y.part.note(format!(
                "room {}: checking document has {got} characters, expected {want}",
                room.global
            ));
        }
    }
    if unstarted > 0 {
        y.part.bad += 1;
        y.part.note(format!(
            "{unstarted} rooms never finished the sync handshake"
        ));
    }
    if y.echoed > 0 {
        eprintln!(
            "{}yjs: {} updates came back to their sender (not counted as deliveries)",
            ctx.tag, y.echoed
        );
    }
    y.part.lost = lost;
    y.part.duplicate = y.seq.duplicate;
    y.part.reordered = y.seq.reordered;
    y.part.bad += net.stats.protocol_errors;
    Ok(y.part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_uint_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            write_var_uint(&mut b, v);
            let mut pos = 0;
            assert_eq!(read_var_uint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        let mut b = Vec::new();
        write_var_uint(&mut b, 300);
        assert_eq!(b, [0xAC, 0x02]);
        let mut pos = 0;
        assert_eq!(read_var_uint(&b[..1], &mut pos), None);
    }

    #[test]
    fn sync_messages_encode_and_decode() {
        let mut b = Vec::new();
        encode_sync(&mut b, SYNC_UPDATE, &[9; 200]);
        assert_eq!(&b[..4], &[0, 2, 0xC8, 0x01]);
        assert_eq!(
            decode(&b),
            Some(Msg::Sync {
                sub: SYNC_UPDATE,
                body: &[9; 200]
            })
        );
        // Cut short, or with bytes after the body: refused.
        assert_eq!(decode(&b[..b.len() - 1]), None);
        b.push(0);
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&[1, 5, 5]), Some(Msg::Other(1)));
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn tags_survive_a_yrs_update() {
        let mut w = Writer::new(7);
        let mut s = String::new();
        make_text(&mut s, 0x1234, 0, 3);
        assert_eq!(s, "~0000123400000000~...");
        let u0 = w.insert(&s);
        make_text(&mut s, 0x1234, 0xABCDEF, 0);
        let u1 = w.insert(&s);
        assert_eq!(find_tag(&u0), Some((0x1234, 0)));
        assert_eq!(find_tag(&u1), Some((0x1234, 0xABCDEF)));
        assert_eq!(find_tag(b"~00001234zz000000~"), None);
        // The updates are real: another document applies them and holds both insertions.
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        apply(&doc, &u0).unwrap();
        apply(&doc, &u1).unwrap();
        assert_eq!(
            text.get_string(&doc.transact()),
            "~0000123400000000~...~0000123400abcdef~"
        );
        assert!(apply(&doc, &[0xFF, 0xFF]).is_err());
    }

    #[test]
    fn handshake_messages_are_what_y_protocols_sends() {
        // Sync step 1 of an empty document: [0, 0, len 1, state vector with 0 clients].
        let mut b = Vec::new();
        encode_sync(&mut b, SYNC_STEP1, &StateVector::default().encode_v1());
        assert_eq!(b, [0, 0, 1, 0]);
        // Step 2 of an empty document: an update with no structs and an empty delete set.
        let empty = Doc::new()
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        encode_sync(&mut b, SYNC_STEP2, &empty);
        assert_eq!(b, [0, 1, 2, 0, 0]);
    }
}
