//! partyring-load: a native, event-driven load generator for partyring (and any PartyKit-style
//! server on loopback). See README.md for the scenarios and what each number means.
//!
//! Layout: `net` is the epoll (mio) event loop and the WebSocket/HTTP client codecs; `stats`
//! reads clocks and `/proc`; each scenario (`fanout`, `echo`, `http`, `conns` = idle + churn) is
//! a worker that runs in this process or, with `--procs P`, in P re-executed child processes
//! (hidden `--child K`) that report JSON lines on stdout; `report` prints the table and JSON.
//! `exec` runs another program (wrk) as the load and only measures; `perf` keeps a `perf stat`
//! attached to the server for the measured windows.

mod conns;
mod deflate;
mod echo;
mod exec;
mod fanout;
mod http;
mod net;
mod payload;
mod perf;
mod phase;
mod report;
mod stats;
mod yjs;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::net::Net;
use crate::perf::{PerfCounts, PerfStat};
use crate::stats::{Part, Snap};

#[derive(Parser, Debug, Clone, Serialize)]
#[command(
    name = "partyring-load",
    version,
    about = "Load generator for partyring: fanout, echo, http, idle and churn scenarios over \
             loopback, epoll-driven, one pinned thread per process."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Server address (ws:// or http://host:port; loopback only).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:1999")]
    pub url: String,
    /// Server pid: its CPU time, RSS and fd count are read from /proc.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Measured phase in seconds (per rate with --sweep); at most 600.
    #[arg(long, global = true, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up before each measured phase, in seconds (not counted); at most 60.
    #[arg(long, global = true, default_value_t = 1.0)]
    pub warmup: f64,
    /// Write machine-readable results here.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// CPU to pin every generator process to (-1: do not pin).
    #[arg(
        long,
        global = true,
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub cpu: i32,
    /// Spread the connections over this many generator processes.
    #[arg(long, global = true, default_value_t = 1)]
    pub procs: usize,
    /// Source addresses to bind client sockets to, round-robin (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, global = true, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Connects in flight at once per process.
    #[arg(long, global = true, default_value_t = 500)]
    pub connect_batch: usize,
    /// Give up on connections not open after this many seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// After the measured phase, wait at most this long for outstanding messages.
    #[arg(long, global = true, default_value_t = 5.0)]
    pub drain: f64,
    /// The server's CPU, whose column of the RES (rescheduling interrupt) row of
    /// /proc/interrupts is counted; default: the CPU the server is pinned to, else all CPUs.
    #[arg(long, global = true)]
    pub server_cpu: Option<u32>,
    /// Count the server's cycles and context switches with `perf stat` over each measured
    /// window (`auto`: when perf is installed and may attach; `off`: never).
    #[arg(long, global = true, value_enum, default_value_t = PerfMode::Auto)]
    pub perf: PerfMode,
    /// Offer permessage-deflate on every WebSocket (`permessage-deflate;
    /// client_max_window_bits`); once accepted, every message sent is compressed and every
    /// compressed message received is inflated before it is checked (unless --inflate-sample
    /// says otherwise). A server that declines fails the connection.
    #[arg(long, global = true)]
    pub deflate: bool,
    /// With --deflate: a server that declines is counted, and the connection goes on
    /// uncompressed.
    #[arg(long, global = true)]
    pub deflate_optional: bool,
    /// With --deflate, fanout and echo: only one member in N (members whose index in the room,
    /// for echo connections whose index, is a multiple of N: index 0 always, so every room
    /// keeps a fully checked member) inflates and checks its compressed messages byte for byte
    /// (content, publisher, per-(receiver, publisher) order and loss, latency). The others
    /// count a compressed message as a delivery after checks that need no inflating: a
    /// complete frame with RSV1 set on a connection that negotiated the extension, the
    /// expected data opcode, a body of at least one byte. Their content, publisher, order and
    /// fanout latency are NOT checked (sequence number and send time are inside the compressed
    /// payload); only their totals are: each such member must receive as many messages as its
    /// room's other publishers sent (fewer: lost; more: duplicate). Their payload bytes count
    /// the size sent. Messages the server sends uncompressed are checked by every member
    /// (content and publisher; the order only by sampled ones). 1: every member inflates and
    /// checks everything.
    #[arg(long, global = true, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub inflate_sample: u32,
    /// With --deflate, fanout: how each sent message is compressed. `full` (default): the
    /// whole message through deflate at zlib's default level, as a browser does; that costs
    /// the one generator CPU about 7 µs per 512-byte message, so a server that relays cheaply
    /// cannot be saturated. `composed`: the fixed part of the message (everything after its
    /// 32-byte header) is deflated once at the start, at the same level, and each message is
    /// a stored block (its JSON head and header, ~54 bytes, uncompressed) followed by that
    /// precompressed part: a valid deflate stream of the same message, made with a memcpy,
    /// and ~20 bytes longer than `full`'s. The server still inflates every message, dynamic
    /// Huffman tables included.
    #[arg(long, global = true, value_enum, default_value_t = ClientDeflate::Full)]
    pub client_deflate: ClientDeflate,
    /// Internal: this process is child K of --procs.
    #[arg(long, global = true, hide = true)]
    pub child: Option<usize>,
}

/// How the generator compresses what it sends (`--client-deflate`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientDeflate {
    #[default]
    Full,
    Composed,
}

impl Common {
    /// What `--deflate` and `--deflate-optional` ask of the upgrades.
    pub fn deflate_mode(&self) -> net::Deflate {
        match (self.deflate, self.deflate_optional) {
            (_, true) => net::Deflate::Optional,
            (true, false) => net::Deflate::Require,
            (false, false) => net::Deflate::Off,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
pub enum PerfMode {
    Auto,
    Off,
}

#[derive(Subcommand, Debug, Clone, Serialize)]
pub enum Cmd {
    /// R rooms x M members; a publisher per room; deliveries checked per (receiver, publisher).
    Fanout(fanout::FanoutArgs),
    /// N connections to /parties/echo/<room>, one message in flight each.
    Echo(echo::EchoArgs),
    /// Keep-alive HTTP GET (or POST) to /parties/main/<room>, optionally pipelined.
    Http(http::HttpArgs),
    /// Open N WebSockets, hold them, report server RSS and kernel socket memory per connection.
    Idle(conns::IdleArgs),
    /// Connect K WebSockets, exchange a message, close cleanly; repeat; check fds return.
    Churn(conns::ChurnArgs),
    /// Run another load program (e.g. wrk, after `--`) and measure the server around it.
    Exec(exec::ExecArgs),
    /// R rooms x M members of a Yjs party; real yrs updates; deliveries checked by content.
    Yjs(yjs::YjsArgs),
}

impl Cmd {
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Fanout(_) => "fanout",
            Cmd::Echo(_) => "echo",
            Cmd::Http(_) => "http",
            Cmd::Idle(_) => "idle",
            Cmd::Churn(_) => "churn",
            Cmd::Exec(_) => "exec",
            Cmd::Yjs(_) => "yjs",
        }
    }
}

/// The points where a worker hands control to whoever measures the server.
pub trait Coord {
    /// Every connection is open (or failed); returns when the worker may go on.
    fn ready(&mut self);
    /// Measured window `step` starts now.
    fn start(&mut self, step: usize);
    /// Measured window `step` ends now.
    fn end(&mut self, step: usize);
}

/// Measures the server around the workers' phases.
pub struct Driver {
    pid: Option<u32>,
    /// Seconds to hold after every connection is open before the "ready" snapshot (idle).
    hold: f64,
    /// The CPU whose rescheduling interrupts count (`None`: all).
    pub server_cpu: Option<u32>,
    /// `ksoftirqd` of `server_cpu`: its time counts as the server's (`stats::ksoftirqd_pid`).
    softirqd: Option<u32>,
    pub before: Snap,
    pub ready: Option<Snap>,
    pub starts: Vec<Snap>,
    pub ends: Vec<Snap>,
    /// Attach perf ahead of each window.
    use_perf: bool,
    /// perf, attached and waiting for the next window.
    perf: Option<PerfStat>,
    /// What perf counted in each window (`None`: no perf, or it did not answer).
    pub perf_counts: Vec<Option<PerfCounts>>,
}

impl Driver {
    fn all_ready(&mut self) {
        if self.hold > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(self.hold));
        }
        self.ready = Some(Snap::take(self.pid, self.softirqd));
    }

    /// Starts perf (counters off) for the next window, when wanted and not running yet.
    fn arm_perf(&mut self) {
        if let (true, None, Some(pid)) = (self.use_perf, &self.perf, self.pid) {
            self.perf = PerfStat::spawn(pid);
        }
    }

    fn window_start(&mut self) {
        if let Some(p) = self.perf.as_mut() {
            if !p.enable() {
                eprintln!("warning: perf stat did not start counting; no cycle figures");
                self.perf = None;
                self.use_perf = false;
            }
        }
        self.starts.push(Snap::take(self.pid, self.softirqd));
    }

    fn window_end(&mut self) {
        self.ends.push(Snap::take(self.pid, self.softirqd));
        let counts = self
            .perf
            .take()
            .and_then(|mut p| p.disable().then(|| p.finish()));
        self.perf_counts.push(counts);
        self.arm_perf();
    }

    /// Ends perf (called before exiting: `process::exit` runs no destructors).
    fn stop_perf(&mut self) {
        self.perf = None;
    }
}

struct Local<'a>(&'a mut Driver);

impl Coord for Local<'_> {
    fn ready(&mut self) {
        self.0.all_ready();
    }
    fn start(&mut self, _step: usize) {
        self.0.window_start();
    }
    fn end(&mut self, _step: usize) {
        self.0.window_end();
    }
}

/// A child's messages to the parent, one JSON object per stdout line.
#[derive(Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
enum ChildMsg {
    Ready,
    Start { step: usize },
    End { step: usize },
    Result { part: Box<Part> },
}

struct ChildCoord;

impl ChildCoord {
    fn send(msg: &ChildMsg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(msg).expect("serialisable"));
        let _ = out.flush();
    }
}

impl Coord for ChildCoord {
    fn ready(&mut self) {
        Self::send(&ChildMsg::Ready);
        // Block until the parent says go (or goes away).
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    fn start(&mut self, step: usize) {
        Self::send(&ChildMsg::Start { step });
    }
    fn end(&mut self, step: usize) {
        Self::send(&ChildMsg::End { step });
    }
}

/// What a worker gets: the flags, the server address, its share of the work and a coordinator.
pub struct Ctx<'a> {
    pub common: &'a Common,
    pub server: SocketAddr,
    pub index: usize,
    pub procs: usize,
    pub coord: &'a mut dyn Coord,
    /// Prefix for progress lines.
    pub tag: String,
}

impl Ctx<'_> {
    /// This process's share of `n` items.
    pub fn slice(&self, n: usize) -> Range<usize> {
        let (k, p) = (self.index, self.procs);
        n * k / p..n * (k + 1) / p
    }

    /// An event loop whose source addresses continue the global round-robin at `first`.
    pub fn net(&self, first: usize) -> std::io::Result<Net> {
        let mut net = Net::new(
            self.server,
            self.common.source_ips.clone(),
            first,
            self.common.connect_batch,
        )?;
        net.set_deflate(self.common.deflate_mode());
        Ok(net)
    }

    /// Bounded duration in seconds from a flag.
    pub fn secs(v: f64, max: f64) -> Duration {
        Duration::from_secs_f64(v.clamp(0.0, max))
    }
}

fn resolve(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("--url {url}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("--url {url}: no IPv4 address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--url {url}: {} is not a loopback address; this tool only targets 127.0.0.0/8",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn pin(cpu: i32) {
    if cpu < 0 {
        return;
    }
    // SAFETY: cpu_set_t is a plain bitmask for which all-zero bytes is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`, which we own; it bounds-checks the index
    // against the set's size.
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`, valid for the call.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        eprintln!(
            "warning: could not pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn run_worker(cli: &Cli, server: SocketAddr, index: usize, coord: &mut dyn Coord) -> Part {
    let procs = cli.common.procs.max(1);
    let tag = if procs > 1 {
        format!("[{}/{}] ", index + 1, procs)
    } else {
        String::new()
    };
    let mut ctx = Ctx {
        common: &cli.common,
        server,
        index,
        procs,
        coord,
        tag,
    };
    let r = match &cli.cmd {
        Cmd::Fanout(a) => fanout::run(&mut ctx, a),
        Cmd::Echo(a) => echo::run(&mut ctx, a),
        Cmd::Http(a) => http::run(&mut ctx, a),
        Cmd::Idle(a) => conns::idle(&mut ctx, a),
        Cmd::Churn(a) => conns::churn(&mut ctx, a),
        Cmd::Exec(a) => exec::run(&mut ctx, a),
        Cmd::Yjs(a) => yjs::run(&mut ctx, a),
    };
    r.unwrap_or_else(|e| {
        let mut p = Part::default();
        p.bad += 1;
        p.note(format!("worker error: {e}"));
        p
    })
}

/// Upper bound on a whole run, for the parent's waits.
fn run_bound(cli: &Cli) -> Duration {
    let c = &cli.common;
    let steps = match &cli.cmd {
        Cmd::Fanout(a) => a.sweep.len().max(1) as f64,
        _ => 1.0,
    };
    let extra = match &cli.cmd {
        Cmd::Idle(a) => a.hold,
        Cmd::Churn(a) => a.cycles as f64 * a.cycle_timeout,
        Cmd::Exec(a) => a.timeout.min(660.0),
        _ => 0.0,
    };
    Duration::from_secs_f64(
        c.connect_timeout.min(600.0)
            + steps * (c.warmup.min(60.0) + c.duration.min(600.0))
            + c.drain.min(60.0)
            + extra
            + 60.0,
    )
}

fn run_children(cli: &Cli, driver: &mut Driver) -> Result<Part, String> {
    let procs = cli.common.procs;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    for k in 0..procs {
        let mut child = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .arg("--child")
            .arg(k.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((k, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((k, None));
        });
        children.push(child);
    }
    drop(tx);
    let deadline = Instant::now() + run_bound(cli);
    let mut ready = 0;
    let mut starts: Vec<usize> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut results = 0;
    let mut gone = 0;
    let mut total = Part::default();
    while results < procs && gone < procs {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((k, line)) = rx.recv_timeout(left) else {
            total.bad += 1;
            total.note("children did not finish in time".into());
            break;
        };
        let Some(line) = line else {
            gone += 1;
            continue;
        };
        match serde_json::from_str::<ChildMsg>(&line) {
            Ok(ChildMsg::Ready) => {
                ready += 1;
                if ready == procs {
                    driver.all_ready();
                    for c in &mut children {
                        if let Some(stdin) = c.stdin.as_mut() {
                            let _ = writeln!(stdin, "go");
                            let _ = stdin.flush();
                        }
                    }
                }
            }
            Ok(ChildMsg::Start { step }) => {
                bump(&mut starts, step);
                if starts[step] == procs {
                    driver.window_start();
                }
            }
            Ok(ChildMsg::End { step }) => {
                bump(&mut ends, step);
                if ends[step] == procs {
                    driver.window_end();
                }
            }
            Ok(ChildMsg::Result { part }) => {
                results += 1;
                total.merge(*part);
            }
            Err(e) => eprintln!("child {k}: unparsable line ({e}): {line}"),
        }
    }
    if results < procs {
        total.bad += 1;
        total.note(format!(
            "{} of {procs} children sent no result",
            procs - results
        ));
    }
    // Every child exits after its result; bound the wait, then end only our own children.
    let until = Instant::now() + Duration::from_secs(10);
    for c in &mut children {
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    Ok(total)
}

fn bump(v: &mut Vec<usize>, i: usize) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

fn main() {
    let cli = Cli::parse();
    pin(cli.common.cpu);
    let server = match resolve(&cli.common.url) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let _ = stats::SERVER.set(server);
    if let Some(ip) = cli.common.source_ips.iter().find(|ip| !ip.is_loopback()) {
        eprintln!("error: --source-ips: {ip} is not a loopback address");
        std::process::exit(2);
    }

    if let Cmd::Exec(a) = &cli.cmd {
        if cli.common.procs > 1 {
            eprintln!("error: exec runs one command; --procs does not apply");
            std::process::exit(2);
        }
        // The command's targets must be loopback too.
        for arg in a.cmd.iter().filter(|x| x.contains("://")) {
            if let Err(e) = resolve(arg) {
                eprintln!("error: exec: {e}");
                std::process::exit(2);
            }
        }
    }

    if let Some(k) = cli.common.child {
        let part = run_worker(&cli, server, k, &mut ChildCoord);
        ChildCoord::send(&ChildMsg::Result {
            part: Box::new(part),
        });
        return;
    }

    let hold = match &cli.cmd {
        Cmd::Idle(a) => a.hold.clamp(0.0, 600.0),
        _ => 0.0,
    };
    let pid = cli.common.server_pid;
    let windows = !matches!(cli.cmd, Cmd::Idle(_));
    let server_cpu = cli
        .common
        .server_cpu
        .or_else(|| pid.and_then(|p| stats::proc_single_cpu(&p.to_string())));
    // Only for a server pinned to that one CPU: with several, their softirq threads also serve
    // others, and an unpinned server's softirq work is not all on the CPU `--server-cpu` names.
    let pinned = pid.and_then(|p| stats::proc_single_cpu(&p.to_string()));
    let softirqd = server_cpu
        .filter(|c| windows && pinned == Some(*c))
        .and_then(stats::ksoftirqd_pid);
    let mut driver = Driver {
        pid,
        hold,
        server_cpu,
        softirqd,
        before: Snap::take(pid, softirqd),
        ready: None,
        starts: Vec::new(),
        ends: Vec::new(),
        use_perf: windows && cli.common.perf == PerfMode::Auto,
        perf: None,
        perf_counts: Vec::new(),
    };
    driver.arm_perf();
    let self_cpu0 = stats::self_cpu_secs();
    let t0 = Instant::now();
    let part = if cli.common.procs > 1 {
        match run_children(&cli, &mut driver) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                driver.stop_perf();
                std::process::exit(2);
            }
        }
    } else {
        run_worker(&cli, server, 0, &mut Local(&mut driver))
    };
    driver.stop_perf();
    let ok = report::finish(&cli, part, &driver, t0.elapsed(), self_cpu0);
    if !ok {
        std::process::exit(1);
    }
}
