//! `fanout`: R rooms x M members of `/parties/main/<room>`, one publisher per room per round.
//!
//! Payload (`--size` bytes, `--payload` picks the body, `payload.rs`): a header of publisher
//! id, sequence number and send time inside a fixed template. The publisher id is
//! `room * (M + 1) + slot`: slot `0..M` is a member publishing over WebSocket, slot `M` the
//! room's HTTP publisher. Every receiver expects each publisher's numbers as 0, 1, 2, ...
//!
//! With `--inflate-sample N` (and `--deflate`) only members whose slot is a multiple of N
//! inflate their compressed messages and run those checks; the others count a compressed
//! message after `net::uninflated_check` and the opcode, and at the end must have received, in
//! total, as many messages as the room's other publishers sent.

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::net::{Handler, Out, SendMode};
use crate::payload::{self, Payload};
use crate::phase::{connect_all, drain, Counters, Measured, Opened};
use crate::stats::{now_ns, record, Part, SeqCheck};
use crate::{deflate, Ctx};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Publish {
    /// A member of the room sends a text message; the other M-1 members receive it.
    Ws,
    /// A keep-alive HTTP connection per room POSTs {"message": ...}; all M members receive it.
    Http,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct FanoutArgs {
    /// Number of rooms.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// WebSocket members per room.
    #[arg(long, default_value_t = 16)]
    pub members: usize,
    /// Message size in bytes (at least 32: the header).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// The message body: dots (default), chat json, random (binary, incompressible), zeros.
    #[arg(long, value_enum, default_value_t = payload::Kind::Dots)]
    pub payload: payload::Kind,
    /// Closed loop: messages per room per round.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Who publishes.
    #[arg(long, value_enum, default_value_t = Publish::Ws)]
    pub publish: Publish,
    /// Open loop: total publishes per second, paced by a timer (latency is measured).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: several rates in sequence, one result row each (e.g. 1000,5000,20000).
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// Open loop: wake at most this often (µs); publishes due meanwhile leave together, their
    /// timestamps still the intended send times.
    #[arg(long, default_value_t = 100)]
    pub tick_us: u64,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "fanout")]
    pub room_prefix: String,
    /// Closed loop: when a room's next round leaves once its last delivery arrived: `batch`
    /// (with everything else queued in the loop turn) or `immediate` (at once, its own write).
    #[arg(long, value_enum, default_value_t = SendMode::Batch)]
    pub send: SendMode,
}

const HTTP_BIT: u32 = 1 << 31;

struct Room {
    global: usize,
    members: std::ops::Range<usize>,
    http: Option<usize>,
    next_pub: usize,
    outstanding: u64,
    sent: Vec<u32>,
    dead: bool,
    post_head: String,
}

struct Member {
    room: usize,
    slot: usize,
    conn: usize,
    next: Vec<u32>,
    /// Inflates and checks its compressed messages (`--inflate-sample`). When not, `counted`
    /// counts every message it receives instead of `next` ordering them (the sequence number
    /// of a compressed one is not read), so a mix of plain and compressed ones adds up.
    sampled: bool,
    counted: u64,
}

struct Fanout<'a> {
    a: &'a FanoutArgs,
    rooms: Vec<Room>,
    members: Vec<Member>,
    conn_member: Vec<u32>,
    c: Counters,
    seq: SeqCheck,
    part: Part,
    expected: u64,
    received: u64,
    closed_loop_running: bool,
    buf: Vec<u8>,
    body: Vec<u8>,
    http_inflight: u64,
    payload: Payload,
}

impl Fanout<'_> {
    fn m(&self) -> usize {
        self.a.members
    }

    fn receivers(&self) -> u64 {
        match self.a.publish {
            Publish::Ws => self.m() as u64 - 1,
            Publish::Http => self.m() as u64,
        }
    }

    /// One publish in room `r` at time `ts`.
    fn publish(&mut self, out: &mut Out, r: usize, ts: u64) {
        let m = self.m();
        let room = &mut self.rooms[r];
        if room.dead {
            return;
        }
        let (slot, conn) = match self.a.publish {
            Publish::Ws => {
                let slot = room.next_pub;
                (slot, self.members[room.members.start + slot].conn)
            }
            Publish::Http => (m, room.http.expect("http publisher")),
        };
        let pub_id = (room.global * (m + 1) + slot) as u32;
        let seq = room.sent[slot];
        room.sent[slot] += 1;
        self.payload.fill(&mut self.buf, pub_id, seq, ts);
        match self.a.publish {
            Publish::Ws => out.ws_frame(conn, self.payload.opcode, &self.buf),
            Publish::Http => {
                self.body.clear();
                self.body.extend_from_slice(b"{\"message\":");
                // The payload is UTF-8 text here (`run` refuses binary kinds with HTTP).
                let text = std::str::from_utf8(&self.buf).unwrap_or_default();
                serde_json::to_writer(&mut self.body, text).expect("a Vec takes any write");
                self.body.extend_from_slice(b"}");
                out.raw(conn, room.post_head.as_bytes());
                out.raw(conn, format!("{}\r\n\r\n", self.body.len()).as_bytes());
                out.raw(conn, &self.body);
                self.http_inflight += 1;
            }
        }
        self.expected += self.receivers();
        self.c.total_ops += 1;
        if self.c.on {
            self.c.ops += 1;
        }
    }

    /// Closed loop: a batch from the room's next publisher.
    fn round(&mut self, out: &mut Out, r: usize) {
        let now = now_ns();
        for _ in 0..self.a.batch {
            self.publish(out, r, now);
        }
        let recv = self.receivers() * self.a.batch as u64;
        let m = self.m();
        let room = &mut self.rooms[r];
        room.outstanding += recv;
        room.next_pub = (room.next_pub + 1) % m;
    }
}

impl Fanout<'_> {
    /// A delivered message: the room's count and the counters.
    fn delivered(&mut self, out: &mut Out, r: usize, bytes: usize) {
        self.received += 1;
        self.c.total_delivered += 1;
        if self.c.on {
            self.c.delivered += 1;
            self.c.bytes += bytes as u64;
        }
        let room = &mut self.rooms[r];
        room.outstanding = room.outstanding.saturating_sub(1);
        if room.outstanding == 0 && self.closed_loop_running {
            self.round(out, r);
        }
    }
}

impl Handler for Fanout<'_> {
    fn on_open(&mut self, _out: &mut Out, _id: usize, _now: u64) {
        self.part.conns_ok += 1;
    }

    fn on_fail(&mut self, id: usize, opened: bool, err: &str) {
        if opened {
            self.part.conns_broken += 1;
        } else {
            self.part.conns_failed += 1;
        }
        self.part.note(format!("conn {id}: {err}"));
        if let Some(&u) = self.conn_member.get(id) {
            let r = if u & HTTP_BIT != 0 {
                (u & !HTTP_BIT) as usize
            } else {
                self.members[u as usize].room
            };
            if let Some(room) = self.rooms.get_mut(r) {
                room.dead = true;
            }
        }
    }

    fn on_http(&mut self, _out: &mut Out, _id: usize, status: u16, body: &[u8], _now: u64) {
        self.http_inflight = self.http_inflight.saturating_sub(1);
        if status != 200 || body != b"OK" {
            self.part.bad += 1;
            self.part.note(format!(
                "POST answered {status}: {}",
                String::from_utf8_lossy(body)
            ));
        }
    }

    fn on_frame(&mut self, out: &mut Out, id: usize, op: u8, payload: &[u8], now: u64) {
        let mi = self.conn_member[id] as usize;
        let m = self.m();
        let member = &mut self.members[mi];
        let room_global = self.rooms[member.room].global;
        let Some((pub_id, seq, ts)) = self
            .payload
            .parse(payload)
            .filter(|_| op == self.payload.opcode)
        else {
            self.part.bad += 1;
            self.part.note(format!(
                "a message that is not one of ours ({} bytes)",
                payload.len()
            ));
            return;
        };
        let (pr, slot) = (pub_id as usize / (m + 1), pub_id as usize % (m + 1));
        if pr != room_global || slot == member.slot {
            self.part.bad += 1;
            self.part.note(format!(
                "foreign or malformed message (publisher {pub_id}) in room {room_global}"
            ));
            return;
        }
        if member.sampled {
            self.seq.check(&mut member.next[slot], seq);
        } else {
            member.counted += 1;
        }
        let r = member.room;
        self.part.checked += 1;
        if self.c.on {
            record(&mut self.c.hist, now.saturating_sub(ts));
        }
        self.delivered(out, r, payload.len());
    }

    fn on_compressed(&mut self, out: &mut Out, id: usize, op: u8, len: usize, _now: u64) {
        let mi = self.conn_member[id] as usize;
        if op != self.payload.opcode {
            self.part.bad += 1;
            self.part.note(format!(
                "a compressed message with opcode {op} ({len} bytes), not one of ours"
            ));
            return;
        }
        let member = &mut self.members[mi];
        member.counted += 1;
        let r = member.room;
        self.part.uninflated += 1;
        // Every message is `--size` bytes before compression.
        self.delivered(out, r, self.payload.len());
    }
}

fn f_note_composed(part: &mut Part, e: String) {
    part.bad += 1;
    part.note(format!("--client-deflate composed: {e}"));
}

pub fn run(ctx: &mut Ctx, a: &FanoutArgs) -> std::io::Result<Part> {
    let mut part = Part::default();
    if a.members < 1 || (a.members < 2 && a.publish == Publish::Ws) || a.rooms < 1 {
        part.bad += 1;
        part.note("need --rooms >= 1 and --members >= 2 (>= 1 with --publish http)".into());
        return Ok(part);
    }
    let payload = match Payload::new(a.payload, a.size) {
        Ok(p) if a.publish == Publish::Http && p.opcode != 1 => {
            part.bad += 1;
            part.note("--publish http sends text: --payload random is binary".into());
            return Ok(part);
        }
        Ok(p) => p,
        Err(e) => {
            part.bad += 1;
            part.note(e);
            return Ok(part);
        }
    };
    let open_loop = a.rate.is_some() || !a.sweep.is_empty();
    let rates: Vec<f64> = if !a.sweep.is_empty() {
        a.sweep.clone()
    } else {
        a.rate.into_iter().collect()
    };
    let my_rooms = ctx.slice(a.rooms);
    let share = my_rooms.len() as f64 / a.rooms as f64;
    let m = a.members;
    let mut net = ctx.net(my_rooms.start * (m + 1))?;
    net.set_send(a.send);
    if ctx.common.deflate && ctx.common.client_deflate == crate::ClientDeflate::Composed {
        let (split, tail) = payload.fixed_tail();
        if let Err(e) = net.out.set_composed(split, tail) {
            f_note_composed(&mut part, e);
            return Ok(part);
        }
    }
    let mut f = Fanout {
        a,
        rooms: Vec::new(),
        members: Vec::new(),
        conn_member: Vec::new(),
        c: Counters::new(),
        seq: SeqCheck::default(),
        part,
        expected: 0,
        received: 0,
        closed_loop_running: false,
        buf: Vec::with_capacity(payload.len()),
        body: Vec::new(),
        http_inflight: 0,
        payload,
    };
    for (r, global) in my_rooms.clone().enumerate() {
        let path = format!("/parties/main/{}-{global}", a.room_prefix);
        let first = f.members.len();
        for slot in 0..m {
            let conn = net.add_ws(path.clone(), f.members.len() as u32);
            set(&mut f.conn_member, conn, f.members.len() as u32);
            let sampled = deflate::sampled(slot, ctx.common.inflate_sample);
            net.set_inflate(conn, sampled);
            f.members.push(Member {
                room: r,
                slot,
                conn,
                next: vec![0; m + 1],
                sampled,
                counted: 0,
            });
        }
        let http = (a.publish == Publish::Http).then(|| {
            let id = net.add_http(HTTP_BIT | r as u32);
            set(&mut f.conn_member, id, HTTP_BIT | r as u32);
            id
        });
        f.rooms.push(Room {
            global,
            members: first..first + m,
            http,
            next_pub: 0,
            outstanding: 0,
            sent: vec![0; m + 1],
            dead: false,
            post_head: format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
                net.host()
            ),
        });
    }

    let t_connect = now_ns();
    connect_all(&mut net, &mut f, ctx)?;
    f.part.connect_secs = (now_ns() - t_connect) as f64 / 1e9;
    ctx.coord.ready();

    let now = now_ns();
    let mut clock = Measured::new(ctx, now, rates.len());
    // Open loop: publishes issued since `rate_t0` at this process's share of the rate.
    let mut rate_t0 = now;
    let mut issued: u64 = 0;
    let mut rate_step = 0;
    let mut next_room = 0usize;
    if !open_loop {
        f.closed_loop_running = true;
        for r in 0..f.rooms.len() {
            f.round(&mut net.out, r);
        }
    }
    let max_turns = 1u64 << 40;
    for _ in 0..max_turns {
        let now = now_ns();
        if open_loop && !clock.sched.is_done() {
            if clock.sched.step != rate_step {
                rate_step = clock.sched.step;
                rate_t0 = now;
                issued = 0;
            }
            let rate = rates[rate_step] * share;
            // Publish i is due at rate_t0 + i / rate: at `now`, every i <= elapsed * rate is.
            let due = ((now - rate_t0) as f64 * rate / 1e9) as u64 + 1;
            let mut budget = 100_000;
            while issued < due && budget > 0 {
                // The intended send time, so a late send counts as latency (no coordinated
                // omission).
                let ts = rate_t0 + (issued as f64 * 1e9 / rate) as u64;
                let r = next_room % f.rooms.len();
                next_room += 1;
                f.publish(&mut net.out, r, ts);
                if f.a.publish == Publish::Ws {
                    let room = &mut f.rooms[r];
                    room.next_pub = (room.next_pub + 1) % m;
                }
                issued += 1;
                budget -= 1;
            }
        }
        let label = |step: usize| {
            if open_loop {
                format!("rate {}", rates[step])
            } else {
                format!("closed batch {}", a.batch)
            }
        };
        let extra = || format!("outstanding={}", f.expected - f.received);
        if clock.turn(
            now,
            ctx.coord,
            &mut f.c,
            &mut f.part,
            &net.stats,
            label,
            extra,
        ) {
            break;
        }
        let wait = if open_loop {
            // Wake exactly when the next publish is due (timerfd), at the latest in 100 ms.
            let rate = rates[rate_step] * share;
            // The next publish not yet issued is number `issued`.
            let next_due = rate_t0 + (issued as f64 * 1e9 / rate) as u64;
            net.set_timer(next_due.max(now + a.tick_us.clamp(1, 1_000_000) * 1_000));
            Duration::from_millis(100)
        } else {
            clock.wait(now)
        };
        net.turn(&mut f, wait)?;
    }

    // Drain: no new publishes; wait (bounded) for what is in flight.
    f.closed_loop_running = false;
    drain(ctx, &mut net, &mut f, |f| {
        f.received < f.expected || f.http_inflight > 0
    })?;

    // Integrity: every receiver must have got every publisher's numbers 0..sent; one that did
    // not inflate (`--inflate-sample`) as many messages as they sent, in total.
    let mut lost = f.seq.skipped;
    let mut duplicate = f.seq.duplicate;
    for mem in &f.members {
        let room = &f.rooms[mem.room];
        let others = (0..=m).filter(|&slot| slot != mem.slot);
        if mem.sampled {
            for slot in others {
                lost += u64::from(room.sent[slot].saturating_sub(mem.next[slot]));
            }
        } else {
            let (l, d) = totals(
                others.map(|slot| u64::from(room.sent[slot])).sum(),
                mem.counted,
            );
            lost += l;
            duplicate += d;
        }
    }
    f.part.lost = lost;
    f.part.duplicate = duplicate;
    f.part.reordered = f.seq.reordered;
    f.part.bad += net.stats.protocol_errors;
    f.part.deflate_accepted += net.stats.deflate_accepted;
    f.part.deflate_declined += net.stats.deflate_declined;
    Ok(f.part)
}

/// Lost and duplicate messages of a member that counts only totals: `sent` to it, `got`.
fn totals(sent: u64, got: u64) -> (u64, u64) {
    (sent.saturating_sub(got), got.saturating_sub(sent))
}

fn set(v: &mut Vec<u32>, i: usize, x: u32) {
    if v.len() <= i {
        v.resize(i + 1, u32::MAX);
    }
    v[i] = x;
}

impl Opened for Fanout<'_> {
    fn timed_out(&mut self, n: u64) {
        self.part.conns_failed += n;
        self.part.note(format!("{n} connections not open in time"));
    }
}

#[cfg(test)]
mod tests {
    use super::totals;

    #[test]
    fn an_uninflating_member_is_held_to_its_totals() {
        assert_eq!(totals(45, 45), (0, 0));
        assert_eq!(totals(45, 40), (5, 0));
        assert_eq!(totals(45, 47), (0, 2));
        assert_eq!(totals(0, 0), (0, 0));
    }
}
