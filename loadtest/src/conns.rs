//! `idle` (hold many WebSockets, measure memory per connection) and `churn` (connect, exchange
//! one message, close cleanly, repeat; check the server's fds come back).

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::net::{Handler, Out};
use crate::phase::{connect_all, Opened};
use crate::stats::{now_ns, Part, StepPart};
use crate::Ctx;

#[derive(Args, Debug, Clone, Serialize)]
pub struct IdleArgs {
    /// WebSocket connections to open (in total, over --procs).
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Seconds to hold them open before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Party to join (main: rooms with history; echo).
    #[arg(long, default_value = "main")]
    pub party: String,
    /// Connections are spread over this many rooms.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "idle")]
    pub room_prefix: String,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ChurnArgs {
    /// WebSockets per cycle (in total, over --procs).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Cycles of connect / exchange / close.
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// A cycle that has not finished after this many seconds is abandoned.
    #[arg(long, default_value_t = 10.0)]
    pub cycle_timeout: f64,
    /// After the last cycle, wait at most this long for the server's fd count to return.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Room names are <prefix>-<index> (party echo).
    #[arg(long, default_value = "churn")]
    pub room_prefix: String,
}

struct Counting {
    part: Part,
    /// Churn: the message each connection sends, and connections finished this cycle.
    msg: Vec<u8>,
    finished: usize,
}

impl Handler for Counting {
    fn on_open(&mut self, out: &mut Out, id: usize, _now: u64) {
        self.part.conns_ok += 1;
        if !self.msg.is_empty() {
            out.ws_frame(id, 1, &self.msg);
        }
    }

    fn on_fail(&mut self, id: usize, opened: bool, err: &str) {
        if opened {
            self.part.conns_broken += 1;
        } else {
            self.part.conns_failed += 1;
        }
        self.finished += 1;
        self.part.note(format!("conn {id}: {err}"));
    }

    fn on_frame(&mut self, out: &mut Out, id: usize, op: u8, payload: &[u8], _now: u64) {
        if op == 1 && payload == self.msg.as_slice() {
            self.part.checked += 1;
        } else {
            self.part.bad += 1;
            self.part.note(format!("conn {id}: echo differs"));
        }
        out.ws_close(id, 1000);
    }

    fn on_closed(&mut self, _id: usize, clean: bool) {
        self.finished += 1;
        if !clean {
            self.part.unclean_closes += 1;
        }
    }
}

impl Opened for Counting {
    fn timed_out(&mut self, n: u64) {
        self.part.conns_failed += n;
        self.part.note(format!("{n} connections not open in time"));
    }
}

pub fn idle(ctx: &mut Ctx, a: &IdleArgs) -> std::io::Result<Part> {
    let mine = ctx.slice(a.conns);
    let mut net = ctx.net(mine.start)?;
    let mut h = Counting {
        part: Part::default(),
        msg: Vec::new(),
        finished: 0,
    };
    for g in mine {
        let room = g % a.rooms.max(1);
        net.add_ws(
            format!("/parties/{}/{}-{room}", a.party, a.room_prefix),
            g as u32,
        );
    }
    let t = now_ns();
    connect_all(&mut net, &mut h, ctx)?;
    h.part.connect_secs = (now_ns() - t) as f64 / 1e9;
    eprintln!(
        "{}open={} failed={} in {:.2}s; holding",
        ctx.tag, h.part.conns_ok, h.part.conns_failed, h.part.connect_secs
    );
    // Held here (sockets stay open) while the server is measured.
    ctx.coord.ready();
    // Turn once so anything the server sent meanwhile (a ping) is handled, then close all.
    net.turn(&mut h, Duration::ZERO)?;
    h.part.bad += net.stats.protocol_errors;
    h.part.deflate_accepted += net.stats.deflate_accepted;
    h.part.deflate_declined += net.stats.deflate_declined;
    drop(net);
    Ok(h.part)
}

pub fn churn(ctx: &mut Ctx, a: &ChurnArgs) -> std::io::Result<Part> {
    let mine = ctx.slice(a.conns);
    let mut net = ctx.net(mine.start)?;
    let mut msg = vec![b'c'; a.size.max(1)];
    let k = 5.min(msg.len());
    msg[..k].copy_from_slice(&b"churn"[..k]);
    let mut h = Counting {
        part: Part::default(),
        msg,
        finished: 0,
    };
    ctx.coord.ready();
    ctx.coord.start(0);
    let t0 = now_ns();
    let cpu0 = crate::stats::self_cpu_secs();
    for cycle in 0..a.cycles.min(1_000_000) {
        h.finished = 0;
        for g in mine.clone() {
            net.add_ws(format!("/parties/echo/{}-{g}", a.room_prefix), g as u32);
        }
        let until = now_ns() + (a.cycle_timeout.clamp(0.1, 600.0) * 1e9) as u64;
        while h.finished < mine.len() && now_ns() < until {
            net.turn(&mut h, Duration::from_millis(10))?;
        }
        if h.finished < mine.len() {
            let n = mine.len() - h.finished;
            h.part.unclean_closes += n as u64;
            h.part.note(format!(
                "cycle {cycle}: {n} connections did not finish in time"
            ));
            // Start the next cycle on a fresh loop; the stuck sockets close with it.
            net = ctx.net(mine.start)?;
        }
        h.part.cycles += 1;
        eprintln!(
            "{}cycle {}/{}: ok={} failed={} unclean={}",
            ctx.tag,
            cycle + 1,
            a.cycles,
            h.part.conns_ok,
            h.part.conns_failed,
            h.part.unclean_closes
        );
    }
    let wall = (now_ns() - t0) as f64 / 1e9;
    ctx.coord.end(0);
    h.part.steps.push(StepPart {
        label: format!("churn {} x {} cycles", a.conns, a.cycles),
        wall_secs: wall,
        ops: h.part.checked,
        gen_cpu_secs: crate::stats::self_cpu_secs() - cpu0,
        ..StepPart::default()
    });
    h.part.bad += net.stats.protocol_errors;
    h.part.deflate_accepted += net.stats.deflate_accepted;
    h.part.deflate_declined += net.stats.deflate_declined;
    Ok(h.part)
}
