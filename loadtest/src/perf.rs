//! `perf stat -e context-switches,cycles[,raw_syscalls:sys_enter] -p PID` over exactly the
//! measured windows. The syscall tracepoint is asked for only where tracefs shows it (a perf
//! that is given an event it cannot open counts nothing at all).
//!
//! `perf stat` needs tens of milliseconds to attach, so it is started ahead of a window with its
//! counters disabled (`-D -1`) and a control FIFO pair (`--control fifo:CTL,ACK`, perf 5.10+);
//! the window's start writes `enable` and its end `disable`, each waiting (bounded) for perf's
//! `ack`. Then perf is interrupted and prints its CSV (`-x,`) to a file, which
//! [`parse_perf_csv`] reads. Where perf is missing, refuses to attach, or the CPU exposes no
//! cycle counter (common in VMs: `<not supported>`), the figures are `None`; the context
//! switches are also read from `/proc` (`stats::proc_ctx_switches`) and never depend on perf.
//!
//! perf inherits this process's CPU pinning, so it runs on the generator's CPU.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What perf counted over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerfCounts {
    pub context_switches: Option<u64>,
    pub cycles: Option<u64>,
    /// Syscalls the server's threads entered (`raw_syscalls:sys_enter`).
    #[serde(default)]
    pub syscalls: Option<u64>,
}

/// The perf events to count: the syscall tracepoint only where tracefs has it.
fn events() -> &'static str {
    let traced = [
        "/sys/kernel/tracing/events/raw_syscalls/sys_enter",
        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    if traced {
        "context-switches,cycles,raw_syscalls:sys_enter"
    } else {
        "context-switches,cycles"
    }
}

/// One `perf stat` process attached to the server, counting only between enable and disable.
pub struct PerfStat {
    child: Child,
    dir: PathBuf,
    ctl: File,
    ack: File,
}

const ACK_WAIT: Duration = Duration::from_secs(3);

impl PerfStat {
    /// Starts perf attached to `pid` with its counters off; `None` if it cannot be started.
    pub fn spawn(pid: u32) -> Option<PerfStat> {
        let dir = std::env::temp_dir().join(format!(
            "partyring-load-perf-{}-{}",
            std::process::id(),
            crate::stats::now_ns()
        ));
        std::fs::create_dir(&dir).ok()?;
        let fifo = |name: &str| -> Option<PathBuf> {
            let p = dir.join(name);
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: `c` is a NUL-terminated path that outlives the call; mkfifo only reads it.
            let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
            (rc == 0).then_some(p)
        };
        let started = (|| {
            let (ctl_path, ack_path) = (fifo("ctl")?, fifo("ack")?);
            // Read-write opens of a FIFO do not wait for the other end (Linux), so neither side
            // can block on the other's open.
            let open = |p: &PathBuf| File::options().read(true).write(true).open(p).ok();
            let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
            let child = Command::new("perf")
                .args(["stat", "-x,", "-e", events(), "-D", "-1"])
                .arg(format!(
                    "--control=fifo:{},{}",
                    ctl_path.display(),
                    ack_path.display()
                ))
                .arg("-o")
                .arg(dir.join("out.csv"))
                .args(["-p", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            Some((child, ctl, ack))
        })();
        match started {
            Some((child, ctl, ack)) => Some(PerfStat {
                child,
                dir,
                ctl,
                ack,
            }),
            None => {
                let _ = std::fs::remove_dir_all(&dir);
                None
            }
        }
    }

    /// Sends `enable` or `disable` and waits for perf's acknowledgement; false if none came.
    fn command(&mut self, what: &str) -> bool {
        if self.ctl.write_all(format!("{what}\n").as_bytes()).is_err() {
            return false;
        }
        let deadline = Instant::now() + ACK_WAIT;
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("ack") {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.ack.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd for the duration of the call, and the count is 1.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
            if n > 0 {
                let mut buf = [0u8; 64];
                match self.ack.read(&mut buf) {
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(_) => return false,
                }
            }
        }
        true
    }

    pub fn enable(&mut self) -> bool {
        self.command("enable")
    }

    pub fn disable(&mut self) -> bool {
        self.command("disable")
    }

    /// Stops perf (SIGINT, as at a terminal) and reads what it counted.
    pub fn finish(mut self) -> PerfCounts {
        // SAFETY: kill takes no pointers; the pid is our own child, not yet reaped (we hold
        // `self.child`), so it cannot name another process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + ACK_WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::read_to_string(self.dir.join("out.csv"))
            .map(|t| parse_perf_csv(&t))
            .unwrap_or_default()
    }
}

impl Drop for PerfStat {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads `perf stat -x,` output: `value,unit,event,...` per line; `<not supported>` and
/// `<not counted>` give `None`, comments and control messages are skipped.
pub fn parse_perf_csv(text: &str) -> PerfCounts {
    let mut c = PerfCounts::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        let value = f[0].trim().parse::<u64>().ok();
        let event = f[2].trim();
        match event.split(':').next().unwrap_or("") {
            "context-switches" | "cs" => c.context_switches = value,
            "cycles" | "cpu-cycles" => c.cycles = value,
            "raw_syscalls" if event == "raw_syscalls:sys_enter" => c.syscalls = value,
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counted_and_unsupported_events() {
        let text = "# started on Tue Dec  1 22:24:56 2026\n\n\
                    98413,,context-switches,5000000,100.00,,\n\
                    <not supported>,,cycles,0,100.00,,\n\
                    701485,,raw_syscalls:sys_enter,2978081162,100.00,,\n\
                    Events enabled\nEvents disabled\n";
        assert_eq!(
            parse_perf_csv(text),
            PerfCounts {
                context_switches: Some(98413),
                cycles: None,
                syscalls: Some(701485),
            }
        );
        let text = "<not counted>,,context-switches,0,0.00,,\n1234567,,cycles:u,1,100.00,,\n";
        assert_eq!(
            parse_perf_csv(text),
            PerfCounts {
                context_switches: None,
                cycles: Some(1234567),
                syscalls: None,
            }
        );
    }
}
