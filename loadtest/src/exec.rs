//! `exec`: another program is the load (wrk, for a second HTTP driver); this process only
//! measures the server around it, exactly as for its own scenarios: the server's CPU, its
//! rescheduling interrupts and context switches, and perf's cycles over the command's lifetime.
//!
//! The command reports what it did with one stdout line:
//! `partyring-load-result {"ops": N, "secs": S, "errors": E, "latency_us": {"p50": .., "p99": ..,
//! "p999": .., "max": .., "mean": ..}}` (`loadtest/wrk/partyring.lua` prints it from wrk's `done`
//! hook); its other output goes to stderr. `ops` per `secs` is the rate; `ops` per server CPU
//! second over the window is the figure `compare` tabulates. The window is the command's whole
//! life (start-up and connects included: a few milliseconds in which the server is idle, so
//! its CPU figures are not inflated). There is no warm-up: run the command once before, as
//! `compare` does. The command inherits this process's CPU pinning (`--cpu`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::stats::{now_ns, LatencyUs, Part, StepPart};
use crate::Ctx;

/// The line prefix of a command's result.
pub const RESULT_PREFIX: &str = "partyring-load-result ";

#[derive(Args, Debug, Clone, Serialize)]
pub struct ExecArgs {
    /// Name of the measured window in the table.
    #[arg(long, default_value = "exec")]
    pub label: String,
    /// Kill the command after this many seconds (at most 660).
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// The load command and its arguments, after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

/// What the command reports.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Outcome {
    pub ops: u64,
    pub secs: f64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub latency_us: Option<LatencyUs>,
}

/// The last result line in the command's output.
pub fn parse_outcome(lines: &[String]) -> Result<Outcome, String> {
    let line = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or("the command printed no `partyring-load-result` line")?;
    serde_json::from_str(line).map_err(|e| format!("unreadable result line ({e}): {line}"))
}

fn children_cpu_secs() -> f64 {
    // SAFETY: rusage is plain data, valid when zeroed; getrusage writes only into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN is a valid `who`, and `ru` is a writable rusage for the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn run(ctx: &mut Ctx, a: &ExecArgs) -> std::io::Result<Part> {
    let mut part = Part::default();
    ctx.coord.ready();
    let cpu0 = children_cpu_secs();
    let t0 = now_ns();
    ctx.coord.start(0);
    let mut child = Command::new(&a.cmd[0])
        .args(&a.cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", a.cmd[0])))?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("  | {line}");
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout.clamp(0.0, 660.0));
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let gen_cpu = children_cpu_secs() - cpu0;
    let wall = (now_ns() - t0) as f64 / 1e9;
    ctx.coord.end(0);
    let lines = reader.join().unwrap_or_default();
    match status {
        None => {
            part.bad += 1;
            part.note(format!("the command ran longer than {} s", a.timeout));
        }
        Some(s) if !s.success() => {
            part.bad += 1;
            part.note(format!("the command exited with {s}"));
        }
        Some(_) => {}
    }
    match parse_outcome(&lines) {
        Ok(o) => {
            part.checked = o.ops;
            part.bad += o.errors;
            if o.errors > 0 {
                part.note(format!("the command counted {} errors", o.errors));
            }
            part.steps.push(StepPart {
                label: a.label.clone(),
                wall_secs: if o.secs > 0.0 { o.secs } else { wall },
                ops: o.ops,
                gen_cpu_secs: gen_cpu,
                latency_us: o.latency_us,
                ..StepPart::default()
            });
        }
        Err(e) => {
            part.bad += 1;
            part.note(e);
        }
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_result_line_counts() {
        let lines: Vec<String> = [
            "Running 2s test @ http://127.0.0.1:1/parties/main/x",
            "partyring-load-result {\"ops\": 1, \"secs\": 1.0}",
            "partyring-load-result {\"ops\": 250000, \"secs\": 2.001, \"errors\": 0, \
             \"latency_us\": {\"p50\": 180, \"p99\": 420, \"p999\": 900, \"max\": 5000, \"mean\": 190.5}}",
        ]
        .map(String::from)
        .to_vec();
        let o = parse_outcome(&lines).unwrap();
        assert_eq!((o.ops, o.secs, o.errors), (250000, 2.001, 0));
        assert_eq!(o.latency_us.unwrap().p99, 420.0);
        assert!(parse_outcome(&lines[..1]).is_err());
        let bad = vec!["partyring-load-result {\"secs\": 2}".to_string()];
        assert!(parse_outcome(&bad).unwrap_err().contains("unreadable"));
    }
}
