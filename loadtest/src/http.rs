//! `http`: keep-alive connections doing `GET` (or `POST`) `/parties/main/<room>`, `--pipeline D`
//! requests in flight per connection. Every response must be 200. `--send immediate` writes the
//! next request the moment a response is complete (wrk's pattern); `--send batch` (the default)
//! writes every connection's next request together at the end of the loop turn (`net`).

use std::collections::VecDeque;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::net::{Handler, Out, SendMode};
use crate::phase::{closed_loop, connect_all, ClosedLoop, LoopState};
use crate::stats::{now_ns, record, Part};
use crate::Ctx;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Method {
    /// GET the room's history (JSON).
    Get,
    /// POST {"message": ...} (appends to the room's history and broadcasts).
    Post,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct HttpArgs {
    /// Keep-alive connections.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Requests in flight per connection (1 = no pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    #[arg(long, value_enum, default_value_t = Method::Get)]
    pub method: Method,
    /// Rooms used, round-robin over connections.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// POST message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Room names are <prefix>-<index>.
    #[arg(long, default_value = "http")]
    pub room_prefix: String,
    /// When the next request leaves: `batch` (all of a loop turn's requests together) or
    /// `immediate` (as soon as its response is complete: wrk's pattern).
    #[arg(long, value_enum, default_value_t = SendMode::Batch)]
    pub send: SendMode,
}

struct Http {
    /// Per connection id: the request bytes and the send times of requests in flight.
    req: Vec<Vec<u8>>,
    sent: Vec<VecDeque<u64>>,
    /// Running flag, requests in flight, counters and result (`phase::ClosedLoop`).
    st: LoopState,
}

impl Http {
    fn send(&mut self, out: &mut Out, id: usize, now: u64) {
        out.raw(id, &self.req[id]);
        self.sent[id].push_back(now);
        self.st.inflight += 1;
    }
}

impl Handler for Http {
    fn on_open(&mut self, _out: &mut Out, _id: usize, _now: u64) {
        self.st.part.conns_ok += 1;
    }

    fn on_fail(&mut self, id: usize, opened: bool, err: &str) {
        if opened {
            self.st.part.conns_broken += 1;
        } else {
            self.st.part.conns_failed += 1;
        }
        self.st.inflight -= self.sent[id].len() as u64;
        self.st.part.lost += self.sent[id].len() as u64;
        self.sent[id].clear();
        self.st.part.note(format!("conn {id}: {err}"));
    }

    fn on_http(&mut self, out: &mut Out, id: usize, status: u16, body: &[u8], now: u64) {
        let Some(t) = self.sent[id].pop_front() else {
            self.st.part.bad += 1;
            self.st
                .part
                .note(format!("conn {id}: response without a request"));
            return;
        };
        self.st.inflight -= 1;
        if status == 200 {
            self.st.part.checked += 1;
        } else {
            self.st.part.bad += 1;
            self.st.part.note(format!("status {status}"));
        }
        self.st.c.total_ops += 1;
        if self.st.c.on {
            self.st.c.ops += 1;
            self.st.c.bytes += body.len() as u64;
            record(&mut self.st.c.hist, now - t);
        }
        if self.st.running {
            self.send(out, id, now);
        }
    }
}

impl ClosedLoop for Http {
    fn state(&self) -> &LoopState {
        &self.st
    }
    fn state_mut(&mut self) -> &mut LoopState {
        &mut self.st
    }
}

pub fn run(ctx: &mut Ctx, a: &HttpArgs) -> std::io::Result<Part> {
    let mine = ctx.slice(a.conns);
    let mut net = ctx.net(mine.start)?;
    net.set_send(a.send);
    let mut h = Http {
        req: Vec::new(),
        sent: Vec::new(),
        st: LoopState::new(),
    };
    let host = net.host().to_string();
    for g in mine.clone() {
        let id = net.add_http(g as u32);
        let path = format!("/parties/main/{}-{}", a.room_prefix, g % a.rooms.max(1));
        let req = match a.method {
            Method::Get => format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            Method::Post => {
                let body = format!("{{\"message\":\"{}\"}}", "x".repeat(a.size));
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if h.req.len() <= id {
            h.req.resize(id + 1, Vec::new());
            h.sent.resize(id + 1, VecDeque::new());
        }
        h.req[id] = req.into_bytes();
    }
    let t = now_ns();
    connect_all(&mut net, &mut h, ctx)?;
    h.st.part.connect_secs = (now_ns() - t) as f64 / 1e9;
    ctx.coord.ready();

    let now = now_ns();
    h.st.running = true;
    for id in 0..h.req.len() {
        if net.conn(id).is_some() {
            for _ in 0..a.pipeline.clamp(1, 1024) {
                h.send(&mut net.out, id, now);
            }
        }
    }
    let label = format!(
        "{:?} x{} pipeline {} {:?}",
        a.method, a.conns, a.pipeline, a.send
    );
    closed_loop(ctx, &mut net, &mut h, &label, "requests never answered")?;
    Ok(h.st.part)
}
