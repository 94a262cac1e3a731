//! Clocks, `/proc` readers and the results a worker hands back.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// CLOCK_MONOTONIC in ns: one clock for every process on the host, so a timestamp written into
/// a payload by one process can be subtracted from a receive time read by another.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC is always supported on Linux, so the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads) in seconds, from `/proc/<pid>/stat`.
pub fn proc_cpu_secs(pid: &str) -> Option<f64> {
    proc_user_sys_secs(pid).map(|(u, s)| u + s)
}

/// (utime, stime) of a process (all its threads) in seconds, from `/proc/<pid>/stat`: the
/// time it ran its own code and the time the kernel ran on its behalf (syscalls, and the
/// softirqs they ran inline, e.g. loopback delivery).
pub fn proc_user_sys_secs(pid: &str) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_user_sys(&s)
}

fn parse_user_sys(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces; fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime / clock_ticks(), stime / clock_ticks()))
}

/// VmRSS in KiB from `/proc/<pid>/status`.
pub fn proc_rss_kb(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server's address, for reading its `/metrics` (set once by `main`).
pub static SERVER: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();

/// The server's heap (`partyring_heap_bytes` from its `/metrics`), if it has one:
/// partyring does; the peers answer 404 and this is `None`. One blocking GET with a 2 s bound.
pub fn server_heap_bytes() -> Option<u64> {
    heap_bytes_from(SERVER.get()?)
}

fn heap_bytes_from(addr: &std::net::SocketAddr) -> Option<u64> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: loadtest\r\nConnection: close\r\n\r\n")
        .ok()?;
    // Read until the response is complete by its Content-Length: a server may keep the
    // connection open despite `Connection: close` (workerd under `partykit dev` does), and
    // waiting for EOF would stall the generator for the whole timeout at every snapshot.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let text = loop {
        let n = s.read(&mut chunk).ok()?;
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let complete = match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
                len.map_or(n == 0, |len: usize| buf.len() >= head + len)
            }
            Ok(httparse::Status::Partial) => false,
            Err(_) => return None,
        };
        if complete || n == 0 || buf.len() > 1 << 20 {
            break String::from_utf8_lossy(&buf).into_owned();
        }
    };
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("partyring_heap_bytes "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn proc_fds(pid: &str) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The kernel's TCP socket memory in pages (`TCP: ... mem N` in `/proc/net/sockstat`) and the
/// number of TCP sockets in use.
pub fn sockstat() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| -> Option<u64> {
        let i = f.iter().position(|x| *x == k)?;
        f.get(i + 1)?.parse().ok()
    };
    Some((get("mem")?, get("inuse")?))
}

/// Kernel slab memory in KiB (`Slab:` in `/proc/meminfo`): where socket structures live.
pub fn slab_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("Slab:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One row of `/proc/interrupts` (e.g. `RES`, the rescheduling IPIs) as (CPU number, count),
/// in the order of the header's `CPUn` columns.
pub fn irq_row(text: &str, name: &str) -> Option<Vec<(u32, u64)>> {
    let mut lines = text.lines();
    let cpus: Vec<u32> = lines
        .next()?
        .split_whitespace()
        .map(|w| w.strip_prefix("CPU")?.parse().ok())
        .collect::<Option<_>>()?;
    let key = format!("{name}:");
    let line = lines.find(|l| l.trim_start().starts_with(&key))?;
    let counts = line.trim_start()[key.len()..].split_whitespace();
    let row: Vec<(u32, u64)> = cpus
        .iter()
        .zip(counts)
        .map(|(&c, v)| Some((c, v.parse().ok()?)))
        .collect::<Option<_>>()?;
    (row.len() == cpus.len()).then_some(row)
}

/// The rescheduling interrupts (`RES` row of `/proc/interrupts`) per CPU.
pub fn res_interrupts() -> Option<Vec<(u32, u64)>> {
    irq_row(&std::fs::read_to_string("/proc/interrupts").ok()?, "RES")
}

/// Context switches of a process: `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches`
/// summed over its threads (`/proc/<pid>/task/*/status`). A thread that exits takes its count
/// with it, so compare two readings only while the threads live.
pub fn proc_ctx_switches(pid: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        total += ctx_switches_of(&status)?;
    }
    Some(total)
}

fn ctx_switches_of(status: &str) -> Option<u64> {
    let field = |k: &str| -> Option<u64> {
        let l = status.lines().find(|l| l.starts_with(k))?;
        l[k.len()..].trim().parse().ok()
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// The pid of `ksoftirqd/<cpu>`, the kernel thread that runs the softirqs `cpu` could not run
/// where they were raised. On loopback a sender's CPU does the receive side's network work in
/// softirq; past the kernel's per-run budget it goes to this thread, whose time is the
/// server's cost but not in its `/proc/<pid>/stat` (PERF.md §1m).
pub fn ksoftirqd_pid(cpu: u32) -> Option<u32> {
    let want = format!("ksoftirqd/{cpu}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == want).then_some(pid)
    })
}

/// The CPU a process is pinned to, if its affinity (`Cpus_allowed_list` in
/// `/proc/<pid>/status`) is exactly one CPU.
pub fn proc_single_cpu(pid: &str) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("Cpus_allowed_list:"))?;
    l["Cpus_allowed_list:".len()..].trim().parse().ok()
}

/// A point-in-time view of the server (if its pid is known), the kernel and this process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snap {
    pub at_ns: u64,
    pub server_cpu_secs: Option<f64>,
    /// Of `server_cpu_secs`, the server's own code (utime); the rest is the kernel's.
    #[serde(default)]
    pub server_user_cpu_secs: Option<f64>,
    /// CPU seconds of `ksoftirqd/N` for the server's CPU (pinned servers only, see
    /// [`ksoftirqd_pid`]).
    #[serde(default)]
    pub softirqd_cpu_secs: Option<f64>,
    pub server_rss_kb: Option<u64>,
    /// `None` unless the server reports it (partyring's `/metrics`).
    #[serde(default)]
    pub server_heap_bytes: Option<u64>,
    pub server_fds: Option<u64>,
    pub tcp_mem_pages: Option<u64>,
    pub tcp_inuse: Option<u64>,
    pub slab_kb: Option<u64>,
    /// Rescheduling interrupts per CPU (`RES` in `/proc/interrupts`), as (CPU, count).
    #[serde(default)]
    pub res_irqs: Option<Vec<(u32, u64)>>,
    /// The server's context switches, summed over its threads.
    #[serde(default)]
    pub server_ctx_switches: Option<u64>,
}

impl Snap {
    /// `RES` interrupts on `cpu` (all CPUs when `None`).
    pub fn res_on(&self, cpu: Option<u32>) -> Option<u64> {
        let row = self.res_irqs.as_ref()?;
        match cpu {
            Some(c) => row.iter().find(|(n, _)| *n == c).map(|(_, v)| *v),
            None => Some(row.iter().map(|(_, v)| v).sum()),
        }
    }
}

impl Snap {
    /// The server `pid`'s figures, and the CPU time of `softirqd` (the pid of its CPU's
    /// `ksoftirqd`), if known.
    pub fn take(pid: Option<u32>, softirqd: Option<u32>) -> Snap {
        let pid = pid.map(|p| p.to_string());
        let ss = sockstat();
        let cpu = pid.as_deref().and_then(proc_user_sys_secs);
        Snap {
            at_ns: now_ns(),
            server_cpu_secs: cpu.map(|(u, s)| u + s),
            server_user_cpu_secs: cpu.map(|(u, _)| u),
            softirqd_cpu_secs: softirqd.and_then(|k| proc_cpu_secs(&k.to_string())),
            server_rss_kb: pid.as_deref().and_then(proc_rss_kb),
            server_heap_bytes: server_heap_bytes(),
            server_fds: pid.as_deref().and_then(proc_fds),
            tcp_mem_pages: ss.map(|s| s.0),
            tcp_inuse: ss.map(|s| s.1),
            slab_kb: slab_kb(),
            res_irqs: res_interrupts(),
            server_ctx_switches: pid.as_deref().and_then(proc_ctx_switches),
        }
    }
}

/// Latency percentiles in µs, as an external driver reports them (`exec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    pub p50: f64,
    pub p99: f64,
    #[serde(default)]
    pub p999: f64,
    #[serde(default)]
    pub max: f64,
    #[serde(default)]
    pub mean: f64,
}

/// One measured window of one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepPart {
    pub label: String,
    pub wall_secs: f64,
    /// Publishes (fanout), echoes (echo), responses (http).
    pub ops: u64,
    /// Messages delivered to receivers (fanout only).
    pub delivered: u64,
    /// Payload bytes delivered (fanout) or echoed/received (others).
    pub bytes: u64,
    /// Latency samples in ns as (value, count), for merging across processes.
    pub hist: Vec<(u64, u64)>,
    /// This process's CPU seconds in the window.
    pub gen_cpu_secs: f64,
    /// Percentiles from an external driver (`exec`), which has no histogram to merge.
    #[serde(default)]
    pub latency_us: Option<LatencyUs>,
    /// Bytes read from / written to this process's sockets in the window (frames with their
    /// headers and masks, compressed where permessage-deflate was negotiated; HTTP heads).
    #[serde(default)]
    pub wire_in: u64,
    #[serde(default)]
    pub wire_out: u64,
}

/// Everything a worker (one process) reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Part {
    pub steps: Vec<StepPart>,
    pub conns_ok: u64,
    pub conns_failed: u64,
    pub connect_secs: f64,
    /// Connections that broke after opening (not counting the end of the run).
    pub conns_broken: u64,
    pub lost: u64,
    pub duplicate: u64,
    pub reordered: u64,
    /// Wrong statuses, echo mismatches, foreign messages, protocol errors.
    pub bad: u64,
    pub checked: u64,
    /// Compressed deliveries counted without being inflated (`--inflate-sample`), so not in
    /// `checked`.
    #[serde(default)]
    pub uninflated: u64,
    pub cycles: u64,
    pub unclean_closes: u64,
    /// WebSocket upgrades whose 101 accepted / declined the permessage-deflate offer.
    #[serde(default)]
    pub deflate_accepted: u64,
    #[serde(default)]
    pub deflate_declined: u64,
    pub first_errors: Vec<String>,
}

impl Part {
    pub fn note(&mut self, e: String) {
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }

    pub fn merge(&mut self, o: Part) {
        for (i, s) in o.steps.into_iter().enumerate() {
            if i >= self.steps.len() {
                self.steps.push(s);
                continue;
            }
            let d = &mut self.steps[i];
            d.wall_secs = d.wall_secs.max(s.wall_secs);
            d.ops += s.ops;
            d.delivered += s.delivered;
            d.bytes += s.bytes;
            d.hist.extend(s.hist);
            d.gen_cpu_secs += s.gen_cpu_secs;
            d.wire_in += s.wire_in;
            d.wire_out += s.wire_out;
        }
        self.conns_ok += o.conns_ok;
        self.conns_failed += o.conns_failed;
        self.connect_secs = self.connect_secs.max(o.connect_secs);
        self.conns_broken += o.conns_broken;
        self.lost += o.lost;
        self.duplicate += o.duplicate;
        self.reordered += o.reordered;
        self.bad += o.bad;
        self.checked += o.checked;
        self.uninflated += o.uninflated;
        self.cycles = self.cycles.max(o.cycles);
        self.unclean_closes += o.unclean_closes;
        self.deflate_accepted += o.deflate_accepted;
        self.deflate_declined += o.deflate_declined;
        for e in o.first_errors {
            self.note(e);
        }
    }
}

pub fn new_hist() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1_000));
}

pub fn hist_to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn pairs_to_hist(p: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = new_hist();
    for &(v, c) in p {
        let _ = h.record_n(v.clamp(1_000, 100_000_000_000), c);
    }
    h
}

/// This process's CPU seconds.
pub fn self_cpu_secs() -> f64 {
    proc_cpu_secs("self").unwrap_or(0.0)
}

/// Tracks per (receiver, publisher) that sequence numbers arrive as 0, 1, 2, ...
#[derive(Default)]
pub struct SeqCheck {
    pub duplicate: u64,
    pub reordered: u64,
    /// Sequence numbers skipped over when a later one arrived first.
    pub skipped: u64,
}

impl SeqCheck {
    /// `next` is the receiver's expected next number from this publisher. Returns true when
    /// `seq` is exactly the expected one.
    pub fn check(&mut self, next: &mut u32, seq: u32) -> bool {
        if seq == *next {
            *next += 1;
            true
        } else if seq < *next {
            self.duplicate += 1;
            false
        } else {
            self.reordered += 1;
            self.skipped += u64::from(seq - *next);
            *next = seq + 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_from_a_server_that_keeps_the_connection_open() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let _ = s.read(&mut req).unwrap();
            let body = "x_other 1\npartyring_heap_bytes 4096\n";
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            // Keeps the socket open until the client has gone (as workerd does).
            let _ = s.read(&mut req);
        });
        assert_eq!(heap_bytes_from(&addr), Some(4096));
        server.join().unwrap();
    }

    #[test]
    fn seq_check_counts() {
        let mut c = SeqCheck::default();
        let mut next = 0;
        for s in [0, 1, 2] {
            assert!(c.check(&mut next, s));
        }
        assert!(!c.check(&mut next, 2));
        assert!(!c.check(&mut next, 5));
        assert_eq!((c.duplicate, c.reordered, c.skipped, next), (1, 1, 2, 6));
    }

    #[test]
    fn proc_readers_work_on_self() {
        assert!(proc_cpu_secs("self").is_some());
        assert!(proc_rss_kb("self").unwrap() > 0);
        assert!(proc_fds("self").unwrap() > 0);
        let a = now_ns();
        assert!(now_ns() >= a);
    }

    #[test]
    fn irq_rows_are_read_per_cpu() {
        let text = "           CPU0       CPU1       \n  \
                    24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
                    RES:       8516       7276   Rescheduling interrupts\n\
                    CAL:        900        800   Function call interrupts\n";
        assert_eq!(irq_row(text, "RES"), Some(vec![(0, 8516), (1, 7276)]));
        assert_eq!(irq_row(text, "CAL"), Some(vec![(0, 900), (1, 800)]));
        assert_eq!(irq_row(text, "TLB"), None);
        let snap = Snap {
            res_irqs: irq_row(text, "RES"),
            ..Snap::default()
        };
        assert_eq!(snap.res_on(Some(1)), Some(7276));
        assert_eq!(snap.res_on(None), Some(8516 + 7276));
        assert_eq!(snap.res_on(Some(5)), None);
    }

    #[test]
    fn user_and_system_time_are_fields_14_and_15() {
        // A command name with spaces and a ')' in it; utime 250 and stime 750 ticks.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 750 0 0 20 0 2 0 5 0 0";
        let (u, s) = parse_user_sys(stat).unwrap();
        assert_eq!(u, 250.0 / clock_ticks());
        assert_eq!(s, 750.0 / clock_ticks());
        assert_eq!(parse_user_sys("42 (x) S 1"), None);
        let me = std::process::id().to_string();
        let (u, s) = proc_user_sys_secs(&me).unwrap();
        assert_eq!(proc_cpu_secs(&me).map(|t| t >= u + s), Some(true));
    }

    #[test]
    fn ksoftirqd_is_found_by_name_only() {
        // Where /proc shows kernel threads (not in every container), ksoftirqd/0 exists.
        if let Some(pid) = ksoftirqd_pid(0) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
            assert_eq!(comm.trim_end(), "ksoftirqd/0");
        }
        assert_eq!(ksoftirqd_pid(u32::MAX), None);
    }

    #[test]
    fn context_switches_sum_voluntary_and_not() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(ctx_switches_of(status), Some(15));
        assert_eq!(ctx_switches_of("Name:\tx\n"), None);
        // This process has at least the test thread, which has been scheduled.
        assert!(proc_ctx_switches("self").is_some());
    }

    #[test]
    fn histograms_merge_through_pairs() {
        let mut h = new_hist();
        for v in [5_000u64, 10_000, 10_000, 2_000_000] {
            record(&mut h, v);
        }
        let back = pairs_to_hist(&hist_to_pairs(&h));
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
    }
}
