//! `echo`: N connections to `/parties/echo/<room>`, each with exactly one message in flight
//! (send, wait for the echo, send again), as uWebSockets' load_test. Each echo must equal what
//! was sent. `--send` as in `http`: the next message leaves at the end of the loop turn
//! (`batch`) or as soon as its echo is complete (`immediate`). With `--inflate-sample N` only
//! connections whose index is a multiple of N inflate and compare their compressed echoes;
//! the others count one as an echo after the checks of `net::uninflated_check` and the opcode.

use clap::Args;
use serde::Serialize;

use crate::net::{Handler, Out, SendMode};
use crate::payload::{self, Payload};
use crate::phase::{closed_loop, connect_all, ClosedLoop, LoopState};
use crate::stats::{now_ns, record, Part};
use crate::{deflate, Ctx};

#[derive(Args, Debug, Clone, Serialize)]
pub struct EchoArgs {
    /// Connections (each in its own room).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Message size in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// The message body: dots (default), chat json, random (binary, incompressible), zeros.
    #[arg(long, value_enum, default_value_t = payload::Kind::Dots)]
    pub payload: payload::Kind,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "echo")]
    pub room_prefix: String,
    /// When the next message leaves: `batch` (end of the loop turn) or `immediate`.
    #[arg(long, value_enum, default_value_t = SendMode::Batch)]
    pub send: SendMode,
}

struct Echo {
    payload: Payload,
    /// Per connection: global index, next sequence number, the payload in flight.
    conns: Vec<(u32, u32, Vec<u8>)>,
    conn_of: Vec<usize>,
    /// Running flag, requests in flight, counters and result (`phase::ClosedLoop`).
    st: LoopState,
}

impl Echo {
    fn send(&mut self, out: &mut Out, id: usize, now: u64) {
        let i = self.conn_of[id];
        let (g, seq, buf) = &mut self.conns[i];
        self.payload.fill(buf, *g, *seq, now);
        *seq += 1;
        out.ws_frame(id, self.payload.opcode, buf);
        self.st.inflight += 1;
    }
}

impl Handler for Echo {
    fn on_open(&mut self, _out: &mut Out, _id: usize, _now: u64) {
        self.st.part.conns_ok += 1;
    }

    fn on_fail(&mut self, id: usize, opened: bool, err: &str) {
        if opened {
            self.st.part.conns_broken += 1;
        } else {
            self.st.part.conns_failed += 1;
        }
        self.st.part.note(format!("conn {id}: {err}"));
    }

    fn on_frame(&mut self, out: &mut Out, id: usize, op: u8, payload: &[u8], now: u64) {
        self.st.inflight = self.st.inflight.saturating_sub(1);
        let i = self.conn_of[id];
        if op != self.payload.opcode || payload != self.conns[i].2.as_slice() {
            self.st.part.bad += 1;
            self.st
                .part
                .note(format!("conn {id}: echo differs from what was sent"));
        } else {
            self.st.part.checked += 1;
        }
        self.st.c.total_ops += 1;
        if self.st.c.on {
            self.st.c.ops += 1;
            self.st.c.bytes += payload.len() as u64;
            if let Some((_, _, ts)) = self.payload.parse(payload) {
                record(&mut self.st.c.hist, now.saturating_sub(ts));
            }
        }
        if self.st.running {
            self.send(out, id, now);
        }
    }

    fn on_compressed(&mut self, out: &mut Out, id: usize, op: u8, len: usize, now: u64) {
        self.st.inflight = self.st.inflight.saturating_sub(1);
        let i = self.conn_of[id];
        if op != self.payload.opcode {
            self.st.part.bad += 1;
            self.st.part.note(format!(
                "conn {id}: a compressed echo with opcode {op} ({len} bytes)"
            ));
        } else {
            self.st.part.uninflated += 1;
        }
        self.st.c.total_ops += 1;
        if self.st.c.on {
            self.st.c.ops += 1;
            // The echo is not inflated: its size and send time are those of what was sent
            // (one message in flight per connection).
            let sent = &self.conns[i].2;
            self.st.c.bytes += sent.len() as u64;
            if let Some((_, _, ts)) = self.payload.parse(sent) {
                record(&mut self.st.c.hist, now.saturating_sub(ts));
            }
        }
        if self.st.running {
            self.send(out, id, now);
        }
    }
}

impl ClosedLoop for Echo {
    fn state(&self) -> &LoopState {
        &self.st
    }
    fn state_mut(&mut self) -> &mut LoopState {
        &mut self.st
    }
}

pub fn run(ctx: &mut Ctx, a: &EchoArgs) -> std::io::Result<Part> {
    let mine = ctx.slice(a.conns);
    let mut net = ctx.net(mine.start)?;
    net.set_send(a.send);
    let payload = match Payload::new(a.payload, a.size) {
        Ok(p) => p,
        Err(e) => {
            let mut part = Part::default();
            part.bad += 1;
            part.note(e);
            return Ok(part);
        }
    };
    let mut e = Echo {
        payload,
        conns: Vec::new(),
        conn_of: Vec::new(),
        st: LoopState::new(),
    };
    for g in mine.clone() {
        let id = net.add_ws(format!("/parties/echo/{}-{g}", a.room_prefix), g as u32);
        net.set_inflate(id, deflate::sampled(g, ctx.common.inflate_sample));
        if e.conn_of.len() <= id {
            e.conn_of.resize(id + 1, 0);
        }
        e.conn_of[id] = e.conns.len();
        e.conns.push((g as u32, 0, Vec::with_capacity(a.size)));
    }
    let t = now_ns();
    connect_all(&mut net, &mut e, ctx)?;
    e.st.part.connect_secs = (now_ns() - t) as f64 / 1e9;
    ctx.coord.ready();

    let now = now_ns();
    e.st.running = true;
    for id in 0..e.conn_of.len() {
        if net.conn(id).is_some() {
            e.send(&mut net.out, id, now);
        }
    }
    let label = format!("echo {} conns {:?}", a.conns, a.send);
    closed_loop(ctx, &mut net, &mut e, &label, "echoes never came back")?;
    Ok(e.st.part)
}
