//! The final table (stdout), the JSON file, and the pass/fail verdict.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{pairs_to_hist, self_cpu_secs, Part, Snap};
use crate::{Cli, Cmd, Driver};

#[derive(Serialize)]
struct StepReport {
    label: String,
    wall_secs: f64,
    ops: u64,
    ops_per_sec: f64,
    delivered: u64,
    delivered_per_sec: f64,
    bytes_per_sec: f64,
    /// Server CPU seconds (utime + stime) used during the window, if --server-pid was given,
    /// with those of `ksoftirqd` on the server's CPU when it is pinned to one.
    server_cpu_secs: Option<f64>,
    server_cpu_pct: Option<f64>,
    /// Of `server_cpu_pct`, the share `ksoftirqd` on the server's CPU ran (`None`: not known).
    softirqd_cpu_pct: Option<f64>,
    ops_per_server_cpu_sec: Option<f64>,
    delivered_per_server_cpu_sec: Option<f64>,
    /// Generator CPU (all processes) as % of one core over the window.
    gen_cpu_pct: f64,
    latency_us: Option<Latency>,
    /// Kernel events on the server's side in the window, and per counted unit (delivery for
    /// fanout, operation otherwise).
    kernel: Kernel,
    /// The generator's socket bytes per counted unit: read (what the server sent) and written
    /// (what it received), and the message payload per unit, for the compression ratio.
    wire: Wire,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Wire {
    bytes_in: u64,
    bytes_out: u64,
    in_per_op: Option<f64>,
    out_per_op: Option<f64>,
    payload_per_op: Option<f64>,
}

/// The per-operation kernel counters: what a rate on a shared machine hides.
#[derive(Serialize, Default)]
struct Kernel {
    /// The CPU whose `RES` column is counted; `None` when the server is not pinned to one CPU
    /// and no `--server-cpu` was given (then every CPU's column is summed).
    res_cpu: Option<u32>,
    /// Rescheduling IPIs (`RES` in `/proc/interrupts`).
    res_irqs: Option<u64>,
    res_per_op: Option<f64>,
    /// voluntary + nonvoluntary context switches of the server's threads (`/proc`).
    ctx_switches: Option<u64>,
    ctx_switches_per_op: Option<f64>,
    /// `perf stat` of the server over the window, when perf ran; cycles need a PMU (often
    /// absent in VMs).
    perf_context_switches: Option<u64>,
    cycles: Option<u64>,
    cycles_per_op: Option<f64>,
    /// Syscalls the server entered (`perf stat -e raw_syscalls:sys_enter`), when perf ran.
    syscalls: Option<u64>,
    syscalls_per_op: Option<f64>,
    /// The server's CPU time per counted unit, µs, split into its own code (utime) and the
    /// kernel's (stime, and its CPU's `ksoftirqd` when counted): two servers that make the
    /// same syscalls per op pay about the same kernel time, so the user part is what one
    /// can win over the other (PERF.md §1p).
    user_us_per_op: Option<f64>,
    kernel_us_per_op: Option<f64>,
}

#[derive(Serialize)]
struct Latency {
    samples: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

#[derive(Serialize)]
struct Memory {
    conns: u64,
    server_rss_kb_before: Option<u64>,
    server_rss_kb_after: Option<u64>,
    server_rss_bytes_per_conn: Option<f64>,
    server_heap_bytes_before: Option<u64>,
    server_heap_bytes_after: Option<u64>,
    server_heap_bytes_per_conn: Option<f64>,
    tcp_mem_pages_before: Option<u64>,
    tcp_mem_pages_after: Option<u64>,
    tcp_mem_bytes_per_conn: Option<f64>,
    tcp_inuse_before: Option<u64>,
    tcp_inuse_after: Option<u64>,
    /// Whole-machine kernel slab (both ends of every loopback connection, and anything else
    /// running): an upper bound on kernel memory per connection.
    slab_kb_before: Option<u64>,
    slab_kb_after: Option<u64>,
    slab_bytes_per_conn: Option<f64>,
    server_fds_before: Option<u64>,
    server_fds_after: Option<u64>,
}

#[derive(Serialize)]
struct Integrity {
    ok: bool,
    checked: u64,
    /// Compressed deliveries counted without inflating (`--inflate-sample` above 1).
    uninflated: u64,
    /// `--inflate-sample`: 1 when every delivery was inflated and checked.
    inflate_sample: u32,
    lost: u64,
    duplicate: u64,
    reordered: u64,
    bad: u64,
}

#[derive(Serialize)]
struct Report<'a> {
    scenario: &'static str,
    /// Server CPU share of the last step's window, % of one CPU (compare's saturation check),
    /// `ksoftirqd` of its CPU included.
    server_cpu_pct: Option<f64>,
    /// Of that, `ksoftirqd`'s share.
    softirqd_cpu_pct: Option<f64>,
    /// The last step's kernel counters per counted unit (see `Kernel`).
    res_per_op: Option<f64>,
    ctx_switches_per_op: Option<f64>,
    cycles_per_op: Option<f64>,
    syscalls_per_op: Option<f64>,
    user_us_per_op: Option<f64>,
    kernel_us_per_op: Option<f64>,
    /// The scenario's main rate of the last step, per second of server CPU time (what
    /// `loadtest/compare` tabulates): deliveries for fanout, operations otherwise.
    per_server_cpu_sec: Option<f64>,
    /// The same per wall-clock second.
    rate: Option<f64>,
    /// What `rate` counts.
    unit: &'static str,
    /// The last step's bytes on the wire per counted unit: received by the generator (sent by
    /// the server) and sent by it; and the payload (inflated) per unit.
    wire_in_per_op: Option<f64>,
    wire_out_per_op: Option<f64>,
    payload_bytes_per_op: Option<f64>,
    /// The permessage-deflate offer and the servers' answers.
    deflate: Deflate,
    /// `--inflate-sample`: one member in N inflated and checked its messages in full (1: all).
    inflate_sample: u32,
    args: &'a Cli,
    steps: Vec<StepReport>,
    conns_ok: u64,
    conns_failed: u64,
    conns_broken: u64,
    connect_secs: f64,
    integrity: Integrity,
    memory: Option<Memory>,
    cycles: u64,
    unclean_closes: u64,
    fds_returned: Option<bool>,
    first_errors: &'a [String],
    /// The parent process's own CPU over the whole run (with --procs, children are per step).
    parent_cpu_secs: f64,
    total_wall_secs: f64,
}

#[derive(Serialize)]
struct Deflate {
    offered: bool,
    accepted: u64,
    declined: u64,
}

/// The server's CPU seconds between two snapshots: its own threads' and, when known, those of
/// its CPU's `ksoftirqd` (the loopback work its sends leave there; PERF.md §1m).
fn diff(a: &Snap, b: &Snap) -> Option<f64> {
    Some(b.server_cpu_secs? - a.server_cpu_secs? + softirqd_diff(a, b).unwrap_or(0.0))
}

/// The server's own CPU seconds (utime) between two snapshots: the rest of [`diff`] is the
/// kernel's.
fn user_diff(a: &Snap, b: &Snap) -> Option<f64> {
    Some(b.server_user_cpu_secs? - a.server_user_cpu_secs?)
}

fn softirqd_diff(a: &Snap, b: &Snap) -> Option<f64> {
    Some(b.softirqd_cpu_secs? - a.softirqd_cpu_secs?)
}

fn per_conn(before: Option<u64>, after: Option<u64>, unit: f64, n: u64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    Some((after? as f64 - before? as f64) * unit / n as f64)
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.prec$}"))
}

fn memory(n: u64, a: &Snap, b: &Snap) -> Memory {
    Memory {
        conns: n,
        server_rss_kb_before: a.server_rss_kb,
        server_rss_kb_after: b.server_rss_kb,
        server_rss_bytes_per_conn: per_conn(a.server_rss_kb, b.server_rss_kb, 1024.0, n),
        server_heap_bytes_before: a.server_heap_bytes,
        server_heap_bytes_after: b.server_heap_bytes,
        server_heap_bytes_per_conn: per_conn(a.server_heap_bytes, b.server_heap_bytes, 1.0, n),
        tcp_mem_pages_before: a.tcp_mem_pages,
        tcp_mem_pages_after: b.tcp_mem_pages,
        tcp_mem_bytes_per_conn: per_conn(a.tcp_mem_pages, b.tcp_mem_pages, 4096.0, n),
        tcp_inuse_before: a.tcp_inuse,
        tcp_inuse_after: b.tcp_inuse,
        slab_kb_before: a.slab_kb,
        slab_kb_after: b.slab_kb,
        slab_bytes_per_conn: per_conn(a.slab_kb, b.slab_kb, 1024.0, n),
        server_fds_before: a.server_fds,
        server_fds_after: b.server_fds,
    }
}

/// Prints the results, writes `--json`, and returns whether the run passed.
pub fn finish(cli: &Cli, part: Part, d: &Driver, elapsed: Duration, cpu0: f64) -> bool {
    let mut steps = Vec::new();
    for (i, s) in part.steps.iter().enumerate() {
        let (server_cpu, softirqd, window) = match (d.starts.get(i), d.ends.get(i)) {
            (Some(a), Some(b)) => (
                diff(a, b),
                softirqd_diff(a, b),
                (b.at_ns - a.at_ns) as f64 / 1e9,
            ),
            _ => (None, None, s.wall_secs),
        };
        let wall = s.wall_secs.max(1e-9);
        let h = pairs_to_hist(&s.hist);
        let latency = match s.latency_us {
            Some(l) => Some(Latency {
                samples: s.ops,
                p50: l.p50,
                p99: l.p99,
                p999: l.p999,
                max: l.max,
                mean: l.mean,
            }),
            None => (!h.is_empty()).then(|| Latency {
                samples: h.len(),
                p50: h.value_at_quantile(0.5) as f64 / 1e3,
                p99: h.value_at_quantile(0.99) as f64 / 1e3,
                p999: h.value_at_quantile(0.999) as f64 / 1e3,
                max: h.max() as f64 / 1e3,
                mean: h.mean() / 1e3,
            }),
        };
        let per = |n: u64| server_cpu.filter(|c| *c > 0.0).map(|c| n as f64 / c);
        let unit_count = if matches!(cli.cmd.name(), "fanout" | "yjs") {
            s.delivered
        } else {
            s.ops
        };
        let per_op = |v: Option<u64>| {
            v.filter(|_| unit_count > 0)
                .map(|v| v as f64 / unit_count as f64)
        };
        let (a, b) = (d.starts.get(i), d.ends.get(i));
        let delta = |f: &dyn Fn(&Snap) -> Option<u64>| f(b?)?.checked_sub(f(a?)?);
        let res = delta(&|x: &Snap| x.res_on(d.server_cpu));
        let ctx = delta(&|x: &Snap| x.server_ctx_switches);
        let pc = d.perf_counts.get(i).copied().flatten().unwrap_or_default();
        let user = a.zip(b).and_then(|(a, b)| user_diff(a, b));
        let us_per_op = |secs: Option<f64>| {
            secs.filter(|_| unit_count > 0)
                .map(|t| t * 1e6 / unit_count as f64)
        };
        let kernel = Kernel {
            res_cpu: d.server_cpu,
            res_irqs: res,
            res_per_op: per_op(res),
            ctx_switches: ctx,
            ctx_switches_per_op: per_op(ctx),
            perf_context_switches: pc.context_switches,
            cycles: pc.cycles,
            cycles_per_op: per_op(pc.cycles),
            syscalls: pc.syscalls,
            syscalls_per_op: per_op(pc.syscalls),
            user_us_per_op: us_per_op(user),
            kernel_us_per_op: us_per_op(user.and_then(|u| Some(server_cpu? - u))),
        };
        let per_unit = |n: u64| (unit_count > 0).then(|| n as f64 / unit_count as f64);
        let wire = Wire {
            bytes_in: s.wire_in,
            bytes_out: s.wire_out,
            in_per_op: per_unit(s.wire_in).filter(|_| s.wire_in > 0),
            out_per_op: per_unit(s.wire_out).filter(|_| s.wire_out > 0),
            payload_per_op: per_unit(s.bytes),
        };
        steps.push(StepReport {
            wire,
            label: s.label.clone(),
            wall_secs: s.wall_secs,
            ops: s.ops,
            ops_per_sec: s.ops as f64 / wall,
            delivered: s.delivered,
            delivered_per_sec: s.delivered as f64 / wall,
            bytes_per_sec: s.bytes as f64 / wall,
            server_cpu_secs: server_cpu,
            server_cpu_pct: server_cpu.map(|c| c / window.max(1e-9) * 100.0),
            softirqd_cpu_pct: softirqd.map(|c| c / window.max(1e-9) * 100.0),
            ops_per_server_cpu_sec: per(s.ops),
            delivered_per_server_cpu_sec: per(s.delivered),
            gen_cpu_pct: s.gen_cpu_secs / wall * 100.0,
            latency_us: latency,
            kernel,
        });
    }

    let mut memory_report = None;
    let mut fds_returned = None;
    match &cli.cmd {
        Cmd::Idle(_) => {
            if let Some(r) = &d.ready {
                memory_report = Some(memory(part.conns_ok, &d.before, r));
            }
        }
        Cmd::Churn(a) => {
            // Let the server finish closing, bounded by --settle.
            let until = Instant::now() + Duration::from_secs_f64(a.settle.clamp(0.0, 120.0));
            let mut after = Snap::take(cli.common.server_pid, None);
            while let (Some(b), Some(n)) = (d.before.server_fds, after.server_fds) {
                if n <= b || Instant::now() >= until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                after = Snap::take(cli.common.server_pid, None);
            }
            if let (Some(b), Some(n)) = (d.before.server_fds, after.server_fds) {
                fds_returned = Some(n <= b);
            }
            memory_report = Some(memory(0, &d.before, &after));
        }
        _ => {}
    }

    let integrity_ok =
        part.lost == 0 && part.duplicate == 0 && part.reordered == 0 && part.bad == 0;
    let conns_ok = match &cli.cmd {
        Cmd::Idle(_) => true, // failures are reported, not fatal: finding the limit is the point
        _ => part.conns_failed == 0 && part.conns_broken == 0,
    };
    let churn_ok = part.unclean_closes == 0 && fds_returned != Some(false);
    let deflate_mode = cli.common.deflate_mode();
    let deflate_ok = deflate_mode != crate::net::Deflate::Require || part.deflate_declined == 0;

    // ---- table ----
    println!(
        "scenario: {}   procs: {}   server pid: {}",
        cli.cmd.name(),
        cli.common.procs,
        cli.common
            .server_pid
            .map_or("- (no server CPU/RSS figures)".into(), |p| p.to_string())
    );
    if !steps.is_empty() {
        println!(
            "{:<24} {:>6} {:>11} {:>12} {:>8} {:>6} {:>12} {:>12} {:>6} {:>9} {:>9} {:>9} {:>9}",
            "step",
            "secs",
            "ops/s",
            "delivered/s",
            "srv-cpu",
            "srv%",
            "ops/srv-s",
            "deliv/srv-s",
            "gen%",
            "p50 us",
            "p99 us",
            "p999 us",
            "max us"
        );
        for s in &steps {
            let l = s.latency_us.as_ref();
            println!(
                "{:<24} {:>6.2} {:>11.0} {:>12.0} {:>8} {:>6} {:>12} {:>12} {:>6.0} {:>9} {:>9} {:>9} {:>9}",
                s.label,
                s.wall_secs,
                s.ops_per_sec,
                s.delivered_per_sec,
                fmt_opt(s.server_cpu_secs, 2),
                fmt_opt(s.server_cpu_pct, 0),
                fmt_opt(s.ops_per_server_cpu_sec, 0),
                fmt_opt(s.delivered_per_server_cpu_sec, 0),
                s.gen_cpu_pct,
                fmt_opt(l.map(|l| l.p50), 0),
                fmt_opt(l.map(|l| l.p99), 0),
                fmt_opt(l.map(|l| l.p999), 0),
                fmt_opt(l.map(|l| l.max), 0),
            );
        }
        for s in &steps {
            if let Some(k) = s.softirqd_cpu_pct {
                println!(
                    "  {}: srv-cpu includes ksoftirqd/{} at {k:.1}% of a CPU",
                    s.label,
                    d.server_cpu.unwrap_or_default()
                );
            }
        }
        let unit = if matches!(cli.cmd.name(), "fanout" | "yjs") {
            "delivery"
        } else {
            "op"
        };
        for s in &steps {
            let w = &s.wire;
            if w.in_per_op.is_some() || w.out_per_op.is_some() {
                println!(
                    "  {}: bytes on the wire per {unit}: received {}, sent {} (payload {})",
                    s.label,
                    fmt_opt(w.in_per_op, 1),
                    fmt_opt(w.out_per_op, 1),
                    fmt_opt(w.payload_per_op, 1),
                );
            }
        }
        for s in &steps {
            let k = &s.kernel;
            println!(
                "  {}: per {unit}: RES IPIs on {} {}, context switches {}, cycles {}, syscalls {}, \
                 server CPU us: user {}, kernel {}",
                s.label,
                k.res_cpu.map_or("all CPUs".into(), |c| format!("CPU{c}")),
                fmt_opt(k.res_per_op, 3),
                fmt_opt(k.ctx_switches_per_op, 3),
                fmt_opt(k.cycles_per_op, 0),
                fmt_opt(k.syscalls_per_op, 3),
                fmt_opt(k.user_us_per_op, 2),
                fmt_opt(k.kernel_us_per_op, 2),
            );
        }
    }
    println!(
        "connections: ok={} failed={} broken={} (connect phase {:.2}s)",
        part.conns_ok, part.conns_failed, part.conns_broken, part.connect_secs
    );
    if deflate_mode != crate::net::Deflate::Off {
        println!(
            "permessage-deflate: offered; accepted by {} connection(s), declined by {}{}",
            part.deflate_accepted,
            part.deflate_declined,
            if deflate_ok {
                ""
            } else {
                " (required: --deflate-optional accepts a decline)"
            }
        );
    }
    if let Some(m) = &memory_report {
        if matches!(cli.cmd, Cmd::Idle(_)) {
            if m.server_heap_bytes_per_conn.is_some() {
                println!(
                    "server heap (its /metrics): {} -> {} bytes ({} bytes/conn)",
                    fmt_opt(m.server_heap_bytes_before.map(|v| v as f64), 0),
                    fmt_opt(m.server_heap_bytes_after.map(|v| v as f64), 0),
                    fmt_opt(m.server_heap_bytes_per_conn, 0),
                );
            }
            println!(
                "server RSS: {} -> {} KiB ({} bytes/conn)\nkernel TCP buffer mem: {} -> {} pages \
                 ({} bytes/conn); kernel slab: {} -> {} KiB ({} bytes/conn, both ends)\n\
                 TCP sockets in use: {} -> {}; server fds: {} -> {}",
                fmt_opt(m.server_rss_kb_before.map(|v| v as f64), 0),
                fmt_opt(m.server_rss_kb_after.map(|v| v as f64), 0),
                fmt_opt(m.server_rss_bytes_per_conn, 0),
                fmt_opt(m.tcp_mem_pages_before.map(|v| v as f64), 0),
                fmt_opt(m.tcp_mem_pages_after.map(|v| v as f64), 0),
                fmt_opt(m.tcp_mem_bytes_per_conn, 0),
                fmt_opt(m.slab_kb_before.map(|v| v as f64), 0),
                fmt_opt(m.slab_kb_after.map(|v| v as f64), 0),
                fmt_opt(m.slab_bytes_per_conn, 0),
                fmt_opt(m.tcp_inuse_before.map(|v| v as f64), 0),
                fmt_opt(m.tcp_inuse_after.map(|v| v as f64), 0),
                fmt_opt(m.server_fds_before.map(|v| v as f64), 0),
                fmt_opt(m.server_fds_after.map(|v| v as f64), 0),
            );
        } else {
            println!(
                "churn: cycles={} unclean closes={}; server fds: {} -> {} ({}); server RSS: {} -> {} KiB",
                part.cycles,
                part.unclean_closes,
                fmt_opt(m.server_fds_before.map(|v| v as f64), 0),
                fmt_opt(m.server_fds_after.map(|v| v as f64), 0),
                match fds_returned {
                    Some(true) => "returned to baseline",
                    Some(false) => "NOT returned to baseline",
                    None => "unknown",
                },
                fmt_opt(m.server_rss_kb_before.map(|v| v as f64), 0),
                fmt_opt(m.server_rss_kb_after.map(|v| v as f64), 0),
            );
        }
    }
    let sample = if cli.common.inflate_sample > 1 {
        format!(
            "; inflate_sample: {}, {} compressed deliveries counted without inflating",
            cli.common.inflate_sample, part.uninflated
        )
    } else {
        String::new()
    };
    if integrity_ok {
        println!("integrity: OK ({} checked{sample})", part.checked);
    } else {
        println!(
            "integrity: FAILED lost={} duplicate={} reordered={} bad={} (checked {}{sample})",
            part.lost, part.duplicate, part.reordered, part.bad, part.checked
        );
    }
    for e in &part.first_errors {
        println!("  error: {e}");
    }
    for s in &steps {
        if s.gen_cpu_pct > 90.0 && s.server_cpu_pct.is_some_and(|p| p < 90.0) {
            println!(
                "warning: {}: the generator used {:.0}% CPU and the server {:.0}%: the generator \
                 may be the bottleneck",
                s.label,
                s.gen_cpu_pct,
                s.server_cpu_pct.unwrap_or(0.0)
            );
        }
    }

    let fanout = matches!(cli.cmd.name(), "fanout" | "yjs");
    let last = steps.last();
    let report = Report {
        scenario: cli.cmd.name(),
        server_cpu_pct: last.and_then(|s| s.server_cpu_pct),
        softirqd_cpu_pct: last.and_then(|s| s.softirqd_cpu_pct),
        res_per_op: last.and_then(|s| s.kernel.res_per_op),
        ctx_switches_per_op: last.and_then(|s| s.kernel.ctx_switches_per_op),
        cycles_per_op: last.and_then(|s| s.kernel.cycles_per_op),
        syscalls_per_op: last.and_then(|s| s.kernel.syscalls_per_op),
        user_us_per_op: last.and_then(|s| s.kernel.user_us_per_op),
        kernel_us_per_op: last.and_then(|s| s.kernel.kernel_us_per_op),
        per_server_cpu_sec: last.and_then(|s| {
            if fanout {
                s.delivered_per_server_cpu_sec
            } else {
                s.ops_per_server_cpu_sec
            }
        }),
        rate: last.map(|s| {
            if fanout {
                s.delivered_per_sec
            } else {
                s.ops_per_sec
            }
        }),
        unit: if fanout { "deliveries" } else { "operations" },
        wire_in_per_op: last.and_then(|s| s.wire.in_per_op),
        wire_out_per_op: last.and_then(|s| s.wire.out_per_op),
        payload_bytes_per_op: last.and_then(|s| s.wire.payload_per_op),
        deflate: Deflate {
            offered: deflate_mode != crate::net::Deflate::Off,
            accepted: part.deflate_accepted,
            declined: part.deflate_declined,
        },
        inflate_sample: cli.common.inflate_sample,
        args: cli,
        steps,
        conns_ok: part.conns_ok,
        conns_failed: part.conns_failed,
        conns_broken: part.conns_broken,
        connect_secs: part.connect_secs,
        integrity: Integrity {
            ok: integrity_ok,
            checked: part.checked,
            uninflated: part.uninflated,
            inflate_sample: cli.common.inflate_sample,
            lost: part.lost,
            duplicate: part.duplicate,
            reordered: part.reordered,
            bad: part.bad,
        },
        memory: memory_report,
        cycles: part.cycles,
        unclean_closes: part.unclean_closes,
        fds_returned,
        first_errors: &part.first_errors,
        parent_cpu_secs: self_cpu_secs() - cpu0,
        total_wall_secs: elapsed.as_secs_f64(),
    };
    if let Some(path) = &cli.common.json {
        let text = serde_json::to_string_pretty(&report).expect("serialisable");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: --json {}: {e}", path.display());
            return false;
        }
    }
    integrity_ok && conns_ok && churn_ok && deflate_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(server: f64, softirqd: Option<f64>) -> Snap {
        Snap {
            server_cpu_secs: Some(server),
            softirqd_cpu_secs: softirqd,
            ..Snap::default()
        }
    }

    #[test]
    fn the_servers_cpu_includes_its_cpus_ksoftirqd_when_known() {
        let d = diff(&snap(10.0, Some(3.0)), &snap(12.5, Some(3.5))).unwrap();
        assert!((d - 3.0).abs() < 1e-9, "{d}");
        let d = diff(&snap(10.0, None), &snap(12.5, None)).unwrap();
        assert!((d - 2.5).abs() < 1e-9, "{d}");
        assert!(diff(&Snap::default(), &snap(1.0, None)).is_none());
    }

    #[test]
    fn user_time_is_the_servers_own_and_softirqd_is_the_kernels() {
        let at = |user: f64| Snap {
            server_user_cpu_secs: Some(user),
            ..snap(10.0 + user, Some(2.0 + user))
        };
        let (a, b) = (at(1.0), at(1.5));
        assert_eq!(user_diff(&a, &b), Some(0.5));
        // 0.5 s of the server's own code, 0.5 s of its ksoftirqd: the kernel's share is the
        // rest of the total.
        assert_eq!(
            diff(&a, &b).zip(user_diff(&a, &b)).map(|(t, u)| t - u),
            Some(0.5)
        );
        assert_eq!(user_diff(&snap(1.0, None), &b), None);
    }
}
