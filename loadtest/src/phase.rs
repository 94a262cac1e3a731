//! The phases every scenario goes through: connecting (`connect_all`, with `Opened` for the
//! connections that never open), warm-up / measured-window scheduling, the counters of a
//! window, the progress line, and the closed loop that echo and http share. Scenario modules
//! (`fanout`, `echo`, `http`, `conns`) build on this file; it names none of them.

use std::{io, time::Duration};

use hdrhistogram::Histogram;

use crate::net::{Handler, Net, NetStats};
use crate::stats::{hist_to_pairs, new_hist, now_ns, self_cpu_secs, Part, StepPart};
use crate::{Coord, Ctx};

/// Runs the loop until every queued connection opened or failed (bounded by
/// `--connect-timeout`), with a progress line a second.
pub fn connect_all<H: Handler + Opened>(net: &mut Net, h: &mut H, ctx: &Ctx) -> io::Result<()> {
    let t0 = now_ns();
    let until = t0 + (ctx.common.connect_timeout.clamp(0.1, 600.0) * 1e9) as u64;
    let mut last = t0;
    while net.connecting() > 0 {
        let now = now_ns();
        if now > until {
            let n = net.connecting();
            h.timed_out(n as u64);
            break;
        }
        if now > last + 1_000_000_000 {
            last = now;
            eprintln!(
                "{}connecting: open={} failed={} pending={}",
                ctx.tag,
                net.stats.opened,
                net.stats.failed,
                net.connecting()
            );
        }
        net.turn(h, Duration::from_millis(10))?;
    }
    Ok(())
}

/// Lets `connect_all` record connections that never opened.
pub trait Opened {
    fn timed_out(&mut self, n: u64);
}

/// What changed at a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    Nothing,
    /// Measured window `n` starts: reset the counters.
    Start(usize),
    /// Measured window `n` ended: collect the counters.
    End(usize),
}

/// Steps of (warm-up, measured window), one after another.
pub struct Schedule {
    warmup: u64,
    duration: u64,
    steps: usize,
    pub step: usize,
    pub measuring: bool,
    deadline: u64,
    started_ns: u64,
    started_cpu: f64,
    done: bool,
}

impl Schedule {
    pub fn new(now: u64, warmup_s: f64, duration_s: f64, steps: usize) -> Schedule {
        let warmup = (warmup_s.clamp(0.0, 60.0) * 1e9) as u64;
        Schedule {
            warmup,
            duration: (duration_s.clamp(0.05, 600.0) * 1e9) as u64,
            steps: steps.max(1),
            step: 0,
            measuring: false,
            deadline: now + warmup,
            started_ns: now,
            started_cpu: 0.0,
            done: false,
        }
    }

    /// Nanoseconds until the next change (for the poll timeout).
    pub fn until_next(&self, now: u64) -> u64 {
        self.deadline.saturating_sub(now)
    }

    pub fn tick(&mut self, now: u64, coord: &mut dyn Coord) -> Tick {
        if self.done || now < self.deadline {
            return Tick::Nothing;
        }
        if !self.measuring {
            self.measuring = true;
            self.deadline = now + self.duration;
            self.started_ns = now;
            self.started_cpu = self_cpu_secs();
            coord.start(self.step);
            Tick::Start(self.step)
        } else {
            self.measuring = false;
            coord.end(self.step);
            let ended = self.step;
            self.step += 1;
            if self.step == self.steps {
                self.done = true;
            } else {
                self.deadline = now + self.warmup;
            }
            Tick::End(ended)
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Wall and CPU seconds of the window that just ended.
    pub fn window(&self, now: u64) -> (f64, f64) {
        (
            (now - self.started_ns) as f64 / 1e9,
            self_cpu_secs() - self.started_cpu,
        )
    }
}

/// Counters of the current window (only counted while `on`), plus running totals for progress.
pub struct Counters {
    pub on: bool,
    pub ops: u64,
    pub delivered: u64,
    pub bytes: u64,
    pub hist: Histogram<u64>,
    pub total_ops: u64,
    pub total_delivered: u64,
    /// The loop's socket byte counts when the window started.
    wire0: (u64, u64),
}

impl Counters {
    pub fn new() -> Counters {
        Counters {
            on: false,
            ops: 0,
            delivered: 0,
            bytes: 0,
            hist: new_hist(),
            total_ops: 0,
            total_delivered: 0,
            wire0: (0, 0),
        }
    }

    /// Opens a window; `net`: the loop's counters now.
    pub fn start(&mut self, net: &NetStats) {
        self.on = true;
        self.wire0 = (net.bytes_in, net.bytes_out);
        self.ops = 0;
        self.delivered = 0;
        self.bytes = 0;
        self.hist.reset();
    }

    /// Closes the window; `net`: the loop's counters now.
    pub fn finish(&mut self, label: String, wall: f64, cpu: f64, net: &NetStats) -> StepPart {
        self.on = false;
        StepPart {
            wire_in: net.bytes_in - self.wire0.0,
            wire_out: net.bytes_out - self.wire0.1,
            label,
            wall_secs: wall,
            ops: self.ops,
            delivered: self.delivered,
            bytes: self.bytes,
            hist: hist_to_pairs(&self.hist),
            gen_cpu_secs: cpu,
            latency_us: None,
        }
    }
}

/// Prints one line a second on stderr.
pub struct Progress {
    tag: String,
    started: u64,
    last: u64,
    last_ops: u64,
    last_delivered: u64,
    last_cpu: f64,
}

impl Progress {
    pub fn new(tag: &str, now: u64) -> Progress {
        Progress {
            tag: tag.to_string(),
            started: now,
            last: now,
            last_ops: 0,
            last_delivered: 0,
            last_cpu: self_cpu_secs(),
        }
    }

    /// A second has passed since the last line.
    fn due(&self, now: u64) -> bool {
        now >= self.last + 1_000_000_000
    }

    /// `what`: e.g. "warmup"/"measure"; `extra`: scenario-specific text.
    pub fn tick(&mut self, now: u64, c: &Counters, what: &str, extra: &str) {
        if !self.due(now) {
            return;
        }
        let dt = (now - self.last) as f64 / 1e9;
        let cpu = self_cpu_secs();
        eprintln!(
            "{}t={:>5.1}s {:<8} ops/s={:>10.0} delivered/s={:>10.0} gen-cpu={:>3.0}% {}",
            self.tag,
            (now - self.started) as f64 / 1e9,
            what,
            (c.total_ops - self.last_ops) as f64 / dt,
            (c.total_delivered - self.last_delivered) as f64 / dt,
            (cpu - self.last_cpu) / dt * 100.0,
            extra
        );
        self.last = now;
        self.last_ops = c.total_ops;
        self.last_delivered = c.total_delivered;
        self.last_cpu = cpu;
    }
}

/// A measured run's clock: the schedule of warm-ups and windows, and the progress line. Each
/// scenario's loop calls [`Measured::turn`] once per pass, then waits at most
/// [`Measured::wait`] for its sockets.
pub struct Measured {
    pub sched: Schedule,
    progress: Progress,
}

impl Measured {
    /// `steps` measured windows (each after its warm-up), from `now`.
    pub fn new(ctx: &Ctx, now: u64, steps: usize) -> Measured {
        Measured {
            sched: Schedule::new(now, ctx.common.warmup, ctx.common.duration, steps),
            progress: Progress::new(&ctx.tag, now),
        }
    }

    /// Starts the window's counters, or ends the window and records its step in `part`
    /// (labelled `label(step)`), as the schedule says; then, once a second, the progress line
    /// with `extra()`. Returns true once the last window has ended.
    #[allow(clippy::too_many_arguments)]
    pub fn turn(
        &mut self,
        now: u64,
        coord: &mut dyn Coord,
        c: &mut Counters,
        part: &mut Part,
        net: &NetStats,
        label: impl FnOnce(usize) -> String,
        extra: impl FnOnce() -> String,
    ) -> bool {
        match self.sched.tick(now, coord) {
            Tick::Start(_) => c.start(net),
            Tick::End(step) => {
                let (wall, cpu) = self.sched.window(now);
                part.steps.push(c.finish(label(step), wall, cpu, net));
            }
            Tick::Nothing => {}
        }
        if self.sched.is_done() {
            return true;
        }
        if self.progress.due(now) {
            let what = if self.sched.measuring {
                "measure"
            } else {
                "warmup"
            };
            self.progress.tick(now, c, what, &extra());
        }
        false
    }

    /// How long a pass may wait for its sockets: until the schedule's next change, 1-100 ms.
    pub fn wait(&self, now: u64) -> Duration {
        Duration::from_nanos(self.sched.until_next(now).clamp(1_000_000, 100_000_000))
    }
}

/// After the measured windows: turns the loop (no new work is started by then) until nothing
/// is `pending` or `--drain` seconds have passed.
pub fn drain<H: Handler>(
    ctx: &Ctx,
    net: &mut Net,
    h: &mut H,
    pending: impl Fn(&H) -> bool,
) -> io::Result<()> {
    let until = now_ns() + (ctx.common.drain.clamp(0.0, 60.0) * 1e9) as u64;
    while pending(h) && now_ns() < until {
        net.turn(h, Duration::from_millis(10))?;
    }
    Ok(())
}

/// What a closed-loop scenario keeps besides its connections.
pub struct LoopState {
    /// Send the next request when an answer comes (false once the run is over).
    pub running: bool,
    /// Requests sent and not answered yet.
    pub inflight: u64,
    pub c: Counters,
    pub part: Part,
}

impl LoopState {
    pub fn new() -> Self {
        LoopState {
            running: false,
            inflight: 0,
            c: Counters::new(),
            part: Part::default(),
        }
    }
}

/// A closed-loop scenario (echo, http): every connection keeps requests in flight and sends the
/// next one when an answer comes, while `running`.
pub trait ClosedLoop: Handler {
    fn state(&self) -> &LoopState;
    fn state_mut(&mut self) -> &mut LoopState;
}

impl<T: ClosedLoop> Opened for T {
    fn timed_out(&mut self, n: u64) {
        let part = &mut self.state_mut().part;
        part.conns_failed += n;
        part.note(format!("{n} connections not open in time"));
    }
}

/// The rest of a closed-loop run once the first requests are out: warm-up, one measured window
/// (its step is labelled `label`), a progress line while it runs; then at most `--drain` for
/// the answers still in flight, and those that never come are counted lost (`unanswered`
/// describes them in the notes).
pub fn closed_loop<H: ClosedLoop>(
    ctx: &mut Ctx,
    net: &mut Net,
    h: &mut H,
    label: &str,
    unanswered: &str,
) -> io::Result<()> {
    let mut clock = Measured::new(ctx, now_ns(), 1);
    for _ in 0..(1u64 << 40) {
        let now = now_ns();
        let st = h.state_mut();
        let (c, part) = (&mut st.c, &mut st.part);
        if clock.turn(
            now,
            ctx.coord,
            c,
            part,
            &net.stats,
            |_| label.to_owned(),
            String::new,
        ) {
            break;
        }
        net.turn(h, clock.wait(now))?;
    }
    h.state_mut().running = false;
    drain(ctx, net, h, |h| h.state().inflight > 0)?;
    let errors = net.stats.protocol_errors;
    let st = h.state_mut();
    let (inflight, part) = (st.inflight, &mut st.part);
    if inflight > 0 {
        part.lost += inflight;
        part.note(format!("{inflight} {unanswered}"));
    }
    part.bad += errors;
    part.deflate_accepted += net.stats.deflate_accepted;
    part.deflate_declined += net.stats.deflate_declined;
    Ok(())
}
