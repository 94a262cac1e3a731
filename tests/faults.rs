//! Real faults against the real binary: a full disk (a small tmpfs as `--data-dir`), `EIO` on
//! a log write and on an fsync (the writer's fault hook, `--storage-faults`), damage in the
//! middle of a log (exit 2, then `partyring repair`), an abort at every step of a compaction,
//! and SIGKILLs at arbitrary points while the log compacts every few writes.
//!
//! Each checks the exact answers (507 / 503 + `Retry-After`, close 1013), that a message whose
//! write failed is visible nowhere (not in a GET, not at a WebSocket member), that the next
//! write after the fault succeeds without a restart, and that a restart shows exactly the
//! acknowledged messages.

mod common;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use common::{history, metric, post_message, temp_dir, ChildServer, Client, HttpResponse};
use partyring::{
    storage::record::{Decoder, FILE_MAGIC},
    ws::OpCode,
};

/// Starts the binary with `args` on one core, stderr (the log) appended to `log`.
fn spawn(args: &[&str], log: &Path) -> (ChildServer, SocketAddr) {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_partyring"));
    cmd.args(["--port", "0", "--threads", "1"])
        .args(args)
        .stderr(Stdio::from(stderr));
    common::spawn_command(cmd)
}

fn stop(server: &mut ChildServer) {
    // SAFETY: plain FFI call; the pid is our own child, still running.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
    server.0.wait().unwrap();
}

fn post(c: &mut Client, room: &str, msg: &str) -> HttpResponse {
    c.request(post_message(&format!("/parties/main/{room}"), msg).as_bytes())
}

/// Text frames a member receives up to and including `marker` (a message posted last).
fn received_until(member: &mut Client, marker: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let (_, op, payload) = member.ws_frame();
        assert_eq!(op, 0x1, "only text frames expected");
        let text = String::from_utf8(payload).unwrap();
        let done = text == marker;
        got.push(text);
        if done {
            return got;
        }
    }
}

/// Asserts a storage failure answer: the exact status, `Retry-After`, a one-line body.
fn assert_refused(r: &HttpResponse, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r.header("Retry-After").is_some(), "Retry-After");
    let body = r.text();
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    assert!(body.starts_with("Not stored: "), "{body:?}");
}

fn count_lines(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None`, with the reason printed as `SKIPPED: ...`, if a tmpfs cannot be mounted here (not
    /// root, or no permission to mount). With `PARTYRING_REQUIRE_TMPFS=1` (CI) that fails the
    /// test instead, so the full-disk test cannot silently stop running.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        let why = match out {
            Ok(out) if out.status.success() => return Some(Tmpfs(dir)),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        let _ = fs::remove_dir_all(&dir);
        let msg = format!(
            "SKIPPED: cannot mount a tmpfs ({why}); the full-disk test needs root (CI runs as root)"
        );
        assert!(
            std::env::var_os("PARTYRING_REQUIRE_TMPFS").is_none(),
            "PARTYRING_REQUIRE_TMPFS is set but {msg}"
        );
        eprintln!("{msg}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_answers_507_shows_nothing_and_recovers_once_space_is_freed() {
    let Some(fs_) = Tmpfs::mount("256k") else {
        return;
    };
    let data = fs_.0.join("data");
    // Ballast, deleted later to give the disk space back.
    let ballast = fs_.0.join("ballast");
    fs::write(&ballast, vec![7u8; 64 * 1024]).unwrap();
    let log = temp_dir("full-log").join("server.log");
    let data_arg = format!("--data-dir={}", data.display());
    let (mut server, addr) = spawn(&[&data_arg, "--fsync", "always"], &log);
    let room = "full";
    let mut member = Client::ws_connect(addr, &format!("/parties/main/{room}"));
    let mut sender = Client::ws_connect(addr, &format!("/parties/main/{room}"));
    let mut c = Client::connect(addr);

    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let msg = format!("{i:04}-{}", "x".repeat(4000));
        let r = post(&mut c, room, &msg);
        if r.status == 200 {
            assert_eq!(refused, 0, "an OK after a 507 with no space freed");
            acked.push(msg);
        } else {
            assert_refused(&r, 507);
            refused += 1;
            if refused == 5 {
                break;
            }
        }
    }
    assert_eq!(refused, 5, "the disk filled up ({} OKs)", acked.len());
    assert!(
        acked.len() > 10,
        "{} OKs before the disk was full",
        acked.len()
    );
    assert_eq!(
        history(addr, room),
        acked,
        "no failed message in the history"
    );

    // A WebSocket message that cannot be stored: not relayed, its sender closed with 1013.
    sender.ws_send(OpCode::Text, "ws-while-full".repeat(400).as_bytes());
    assert_eq!(sender.ws_close_code(), Some(1013));
    assert_eq!(history(addr, room), acked);
    assert!(metric(addr, "partyring_storage_failures_total") >= 6);
    assert!(metric(addr, "partyring_storage_lost_records_total") >= 6);
    assert_eq!(metric(addr, "partyring_storage_degraded"), 1);

    // Space comes back: the next write succeeds, without a restart.
    fs::remove_file(&ballast).unwrap();
    let r = post(&mut c, room, "after");
    assert_eq!((r.status, r.text()), (200, "OK".to_string()));
    acked.push("after".into());
    assert_eq!(metric(addr, "partyring_storage_degraded"), 0);
    assert_eq!(
        received_until(&mut member, "after"),
        acked,
        "the member saw exactly the stored messages"
    );
    assert_eq!(history(addr, room), acked);
    // One log line for the episode, one for its end: not one per failed request.
    assert_eq!(count_lines(&log, "storage write failed"), 1);
    assert_eq!(count_lines(&log, "storage writes succeed again"), 1);

    stop(&mut server);
    let (_server, addr) = spawn(&[&data_arg], &log);
    assert_eq!(
        history(addr, room),
        acked,
        "after a restart: exactly the OKs"
    );
}

#[test]
fn eio_on_a_write_or_an_fsync_discards_that_message_only_and_the_next_succeeds() {
    for fault in ["write-eio@3", "fsync-eio@3"] {
        let dir = temp_dir("eio");
        let log = dir.join("server.log");
        let data = format!("--data-dir={}", dir.join("data").display());
        let faults = format!("--storage-faults={fault}");
        let (mut server, addr) = spawn(&[&data, &faults], &log);
        let room = "eio";
        let mut member = Client::ws_connect(addr, &format!("/parties/main/{room}"));
        let mut c = Client::connect(addr);
        // One POST at a time: one batch, one write, one fsync each.
        for m in ["m1", "m2"] {
            assert_eq!(post(&mut c, room, m).text(), "OK", "{fault}");
        }
        assert_refused(&post(&mut c, room, "m3"), 503);
        assert_eq!(history(addr, room), ["m1", "m2"], "{fault}");
        assert_eq!(post(&mut c, room, "m4").text(), "OK", "{fault}");
        assert_eq!(
            received_until(&mut member, "m4"),
            ["m1", "m2", "m4"],
            "{fault}"
        );
        assert_eq!(history(addr, room), ["m1", "m2", "m4"], "{fault}");
        assert_eq!(metric(addr, "partyring_storage_failures_total"), 1);
        stop(&mut server);
        let (_server, addr) = spawn(&[&data], &log);
        assert_eq!(history(addr, room), ["m1", "m2", "m4"], "{fault}");
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_websocket_message_that_cannot_be_stored_closes_its_sender_with_1013() {
    let dir = temp_dir("ws1013");
    let log = dir.join("server.log");
    let data = format!("--data-dir={}", dir.join("data").display());
    let (_server, addr) = spawn(&[&data, "--storage-faults=write-eio@2"], &log);
    let room = "ws";
    let path = format!("/parties/main/{room}");
    let mut member = Client::ws_connect(addr, &path);
    let mut sender = Client::ws_connect(addr, &path);
    sender.ws_send(OpCode::Text, b"ok1");
    assert_eq!(member.ws_frame().2, b"ok1");
    sender.ws_send(OpCode::Text, b"bad");
    let (_, op, payload) = sender.ws_frame();
    assert_eq!(op, 0x8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1013);
    assert_eq!(
        std::str::from_utf8(&payload[2..]).unwrap(),
        partyring::party::main::STORAGE_FAILED_REASON
    );
    let mut c = Client::connect(addr);
    assert_eq!(post(&mut c, room, "after").text(), "OK");
    assert_eq!(
        received_until(&mut member, "after"),
        ["after"],
        "\"bad\" never reached the member"
    );
    assert_eq!(history(addr, room), ["ok1", "after"]);
    let _ = fs::remove_dir_all(&dir);
}

/// Byte offsets where each record of a log starts.
fn record_starts(log: &Path) -> Vec<usize> {
    let bytes = fs::read(log).unwrap();
    let body = &bytes[FILE_MAGIC.len()..];
    let mut d = Decoder::new(body);
    let mut starts = vec![FILE_MAGIC.len()];
    while d.next().is_some() {
        starts.push(FILE_MAGIC.len() + d.good_len());
    }
    assert_eq!(d.stop(), None);
    starts.pop();
    starts
}

#[test]
fn a_flipped_byte_mid_log_stops_the_server_with_exit_2_and_repair_cuts_it() {
    let dir = temp_dir("corrupt");
    let log = dir.join("server.log");
    let data_dir = dir.join("data");
    let data = format!("--data-dir={}", data_dir.display());
    let room = "c";
    {
        let (mut server, addr) = spawn(&[&data], &log);
        let mut c = Client::connect(addr);
        for i in 0..10 {
            assert_eq!(post(&mut c, room, &format!("m{i}")).text(), "OK");
        }
        stop(&mut server);
    }
    let file = data_dir.join("core-0.log");
    let starts = record_starts(&file);
    assert_eq!(starts.len(), 10);
    let mut bytes = fs::read(&file).unwrap();
    bytes[starts[4] + 20] ^= 0x01;
    fs::write(&file, &bytes).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_partyring"))
        .args(["--port", "0", "--threads", "1", &data])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&file.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains(&format!("byte offset {}", starts[4])),
        "names the offset: {err}"
    );
    assert_eq!(fs::read(&file).unwrap(), bytes, "the log is left as it was");

    let out = Command::new(env!("CARGO_BIN_EXE_partyring"))
        .args(["repair", &data])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!(
            "dropped 6 records ({} bytes), kept 4 records",
            bytes.len() - starts[4]
        )),
        "{said}"
    );
    let (_server, addr) = spawn(&[&data], &log);
    assert_eq!(history(addr, room), ["m0", "m1", "m2", "m3"]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_abort_at_any_step_of_compaction_loses_no_acknowledged_message() {
    for step in partyring::storage::faults::CompactStep::ALL {
        let step = step.name();
        let dir = temp_dir("compact-abort");
        let log = dir.join("server.log");
        let data = format!("--data-dir={}", dir.join("data").display());
        let faults = format!("--storage-faults=compact-abort@{step},compact-min=16384");
        let room = "compact";
        let (mut server, addr) = spawn(&[&data, &faults, "--history-limit", "4"], &log);
        let mut c = Client::connect(addr);
        let mut acked: Vec<String> = Vec::new();
        let mut in_flight = None;
        for i in 0..200 {
            let msg = format!("{i:03}-{}", "y".repeat(2000));
            c.send(post_message(&format!("/parties/main/{room}"), &msg).as_bytes());
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.response()));
            match answered {
                Ok(r) if r.status == 200 => acked.push(msg),
                Ok(r) => panic!("{step}: unexpected {} {}", r.status, r.text()),
                Err(_) => {
                    in_flight = Some(msg);
                    break;
                }
            }
        }
        let status = server.0.wait().unwrap();
        assert!(
            in_flight.is_some(),
            "{step}: the server aborted mid-compaction ({} OKs)",
            acked.len()
        );
        assert_eq!(status.code(), None, "{step}: killed by a signal");
        assert!(
            count_lines(&log, &format!("aborting at compaction step {step}")) == 1,
            "{step}"
        );
        let (_server, addr) = spawn(&[&data, "--history-limit", "4"], &log);
        let got = history(addr, room);
        let last4 = |v: &[String]| v[v.len().saturating_sub(4)..].to_vec();
        let mut with_in_flight = acked.clone();
        with_in_flight.extend(in_flight);
        assert!(
            got == last4(&acked) || got == last4(&with_in_flight),
            "{step}: the newest 4 acknowledged messages survive, got {:?}",
            got.iter().map(|m| &m[..3]).collect::<Vec<_>>()
        );
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn sigkill_at_arbitrary_points_under_frequent_compaction_loses_no_acknowledged_message() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let dir = temp_dir("kill-compact");
    let log = dir.join("server.log");
    let data = format!("--data-dir={}", dir.join("data").display());
    // Small history and compaction threshold: the log compacts every few POSTs, so the kills
    // land before, inside and after compactions.
    let args = [
        data.as_str(),
        "--history-limit",
        "4",
        "--storage-faults=compact-min=8192",
    ];
    // Per writer (each has its own room): what it sent and had acknowledged, over every round.
    let mut acked: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for (round, kill_after) in [15usize, 40, 90].into_iter().enumerate() {
        let (mut server, addr) = spawn(&args, &log);
        let oks = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let oks = oks.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut ok = Vec::new();
                    for i in 0..1000 {
                        let msg = format!("r{round}-w{w}-{i:04}-{}", "z".repeat(2000));
                        c.send(post_message(&format!("/parties/main/kill-{w}"), &msg).as_bytes());
                        let answered =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.response()));
                        match answered {
                            Ok(r) if r.status == 200 => {
                                ok.push(msg);
                                oks.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => panic!("unexpected {} {}", r.status, r.text()),
                            Err(_) => return (ok, Some(msg)),
                        }
                    }
                    (ok, None)
                })
            })
            .collect();
        // Bounded: the writers stop after 1000 POSTs each, or at the first failed one.
        while oks.load(Ordering::SeqCst) < kill_after {
            assert!(
                !writers.iter().all(|t| t.is_finished()),
                "round {round}: the writers stopped before the kill"
            );
            std::thread::yield_now();
        }
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        let mut in_flight = Vec::new();
        for (w, t) in writers.into_iter().enumerate() {
            let (ok, pending) = t.join().unwrap();
            acked[w].extend(ok);
            in_flight.push(pending);
        }
        let (mut server, addr) = spawn(&args, &log);
        for w in 0..2 {
            let got = history(addr, &format!("kill-{w}"));
            let last4 = |v: &[String]| v[v.len().saturating_sub(4)..].to_vec();
            let mut with_pending = acked[w].clone();
            with_pending.extend(in_flight[w].clone());
            let short = |v: &[String]| v.iter().map(|m| m[..12].to_string()).collect::<Vec<_>>();
            assert!(
                got == last4(&acked[w]) || got == last4(&with_pending),
                "round {round}, writer {w}: got {:?}, acknowledged ends {:?}",
                short(&got),
                short(&last4(&acked[w]))
            );
            // The in-flight message, if it survived, counts as stored from now on.
            if got.last() != acked[w].last() {
                acked[w].extend(in_flight[w].take());
            }
        }
        stop(&mut server);
    }
    assert!(
        count_lines(&log, "storage log compacted") >= 3,
        "compactions ran"
    );
    let _ = fs::remove_dir_all(&dir);
}
