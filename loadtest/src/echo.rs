//! `echo`: N connections to `/parties/echo/<room>`, each with exactly one message in flight
//! (send, wait for the echo, send again), as uWebSockets' load_test. Each echo must equal what
//! was sent.

use clap::Args;
use serde::Serialize;

use crate::fanout::{connect_all, make_payload, parse_payload, Opened};
use crate::net::{Handler, Out};
use crate::phase::{closed_loop, ClosedLoop, Counters};
use crate::stats::{now_ns, record, Part};
use crate::Ctx;

#[derive(Args, Debug, Clone, Serialize)]
pub struct EchoArgs {
    /// Connections (each in its own room).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Message size in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "echo")]
    pub room_prefix: String,
}

struct Echo<'a> {
    a: &'a EchoArgs,
    /// Per connection: global index, next sequence number, the payload in flight.
    conns: Vec<(u32, u32, Vec<u8>)>,
    conn_of: Vec<usize>,
    running: bool,
    inflight: u64,
    c: Counters,
    part: Part,
}

impl Echo<'_> {
    fn send(&mut self, out: &mut Out, id: usize, now: u64) {
        let i = self.conn_of[id];
        let (g, seq, buf) = &mut self.conns[i];
        make_payload(buf, *g, *seq, now, self.a.size);
        *seq += 1;
        out.ws_frame(id, 1, buf);
        self.inflight += 1;
    }
}

impl Handler for Echo<'_> {
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
    }

    fn on_frame(&mut self, out: &mut Out, id: usize, op: u8, payload: &[u8], now: u64) {
        self.inflight = self.inflight.saturating_sub(1);
        let i = self.conn_of[id];
        if op != 1 || payload != self.conns[i].2.as_slice() {
            self.part.bad += 1;
            self.part
                .note(format!("conn {id}: echo differs from what was sent"));
        } else {
            self.part.checked += 1;
        }
        self.c.total_ops += 1;
        if self.c.on {
            self.c.ops += 1;
            self.c.bytes += payload.len() as u64;
            if let Some((_, _, ts)) = parse_payload(payload) {
                record(&mut self.c.hist, now.saturating_sub(ts));
            }
        }
        if self.running {
            self.send(out, id, now);
        }
    }
}

impl ClosedLoop for Echo<'_> {
    fn counters(&self) -> &Counters {
        &self.c
    }
    fn counters_mut(&mut self) -> &mut Counters {
        &mut self.c
    }
    fn part_mut(&mut self) -> &mut Part {
        &mut self.part
    }
    fn inflight(&self) -> u64 {
        self.inflight
    }
    fn set_running(&mut self, running: bool) {
        self.running = running;
    }
}

impl Opened for Echo<'_> {
    fn timed_out(&mut self, n: u64) {
        self.part.conns_failed += n;
        self.part.note(format!("{n} connections not open in time"));
    }
}

pub fn run(ctx: &mut Ctx, a: &EchoArgs) -> std::io::Result<Part> {
    let mine = ctx.slice(a.conns);
    let mut net = ctx.net(mine.start)?;
    let mut e = Echo {
        a,
        conns: Vec::new(),
        conn_of: Vec::new(),
        running: false,
        inflight: 0,
        c: Counters::new(),
        part: Part::default(),
    };
    for g in mine.clone() {
        let id = net.add_ws(format!("/parties/echo/{}-{g}", a.room_prefix), g as u32);
        if e.conn_of.len() <= id {
            e.conn_of.resize(id + 1, 0);
        }
        e.conn_of[id] = e.conns.len();
        e.conns.push((g as u32, 0, Vec::with_capacity(a.size)));
    }
    let t = now_ns();
    connect_all(&mut net, &mut e, ctx)?;
    e.part.connect_secs = (now_ns() - t) as f64 / 1e9;
    ctx.coord.ready();

    let now = now_ns();
    e.running = true;
    for id in 0..e.conn_of.len() {
        if net.conn(id).is_some() {
            e.send(&mut net.out, id, now);
        }
    }
    let label = format!("echo {} conns", a.conns);
    closed_loop(ctx, &mut net, &mut e, &label, "echoes never came back")?;
    Ok(e.part)
}
