//! The `main` party's history on disk, with the real binary: SIGKILL in the middle of a stream
//! of POSTs loses nothing that was answered `OK`; a log cut in the middle of a record loses
//! exactly that record; a data directory written by another core count is refused; bad storage
//! flags are a one-line error with exit code 2.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
};

use common::{eventually, history, post_message, room_on_core, spawn_binary, temp_dir, Client};

#[test]
fn sigkill_mid_stream_keeps_every_message_answered_ok() {
    let dir = temp_dir("crash");
    let data = format!("--data-dir={}", dir.display());
    let (mut server, addr) = spawn_binary(&[&data, "--threads", "2", "--fsync", "always"]);
    let room = "crash";
    let stop = Arc::new(AtomicBool::new(false));
    let answered_ok = Arc::new(AtomicUsize::new(0));
    // Four writers, each with one request in flight at a time. Each records what it sent and
    // what was answered OK.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, answered_ok) = (stop.clone(), answered_ok.clone());
            thread::spawn(move || {
                let mut sent = Vec::new();
                let mut ok = Vec::new();
                let mut c = Client::connect(addr);
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let msg = format!("w{w}-{i}");
                    sent.push(msg.clone());
                    c.send(post_message(&format!("/parties/main/{room}"), &msg).as_bytes());
                    // The server dies under us at some point: then this read fails.
                    let answered =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.response()));
                    match answered {
                        Ok(r) if r.status == 200 && r.text() == "OK" => {
                            ok.push(msg);
                            answered_ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("unexpected answer {} {}", r.status, r.text()),
                        Err(_) => break,
                    }
                }
                (sent, ok)
            })
        })
        .collect();
    // Killed mid-stream, once the writers are going (counted, not timed: a slow start must not
    // leave the kill with nothing to interrupt).
    eventually("100 messages answered OK", || {
        answered_ok.load(Ordering::SeqCst) >= 100
    });
    // SIGKILL: no shutdown, no final fsync.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    let results: Vec<(Vec<String>, Vec<String>)> =
        writers.into_iter().map(|w| w.join().unwrap()).collect();
    let (_server, addr) = spawn_binary(&[&data, "--threads", "2"]);
    let got = history(addr, room);
    let got_set: HashSet<&String> = got.iter().collect();
    assert_eq!(got_set.len(), got.len(), "no message twice");
    let sent: HashSet<&String> = results.iter().flat_map(|(s, _)| s).collect();
    for (sent_by_one, ok) in &results {
        for m in ok {
            assert!(got_set.contains(m), "{m} was answered OK but is lost");
        }
        // Beyond its OKs, a writer can have at most its one in-flight message in the history.
        let extra = sent_by_one
            .iter()
            .filter(|m| got_set.contains(m) && !ok.contains(m))
            .count();
        assert!(
            extra <= 1,
            "{extra} unanswered messages of one writer survived"
        );
        // Each writer's messages keep their order.
        let order: Vec<&String> = got.iter().filter(|m| sent_by_one.contains(m)).collect();
        let expect: Vec<&String> = sent_by_one.iter().filter(|m| got_set.contains(m)).collect();
        assert_eq!(order, expect);
    }
    for m in &got {
        assert!(sent.contains(m), "{m} was never sent");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_record_is_cut_and_only_it_is_lost() {
    let dir = temp_dir("torn");
    let data = format!("--data-dir={}", dir.display());
    let room = room_on_core("main", 0, 2, "torn");
    {
        let (mut server, addr) = spawn_binary(&[&data, "--threads", "2"]);
        let mut c = Client::connect(addr);
        for i in 0..20 {
            let r = c.request(
                post_message(&format!("/parties/main/{room}"), &format!("m{i}")).as_bytes(),
            );
            assert_eq!(r.text(), "OK");
        }
        // SAFETY: plain FFI call; the pid is our own child, still running.
        unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
        server.0.wait().unwrap();
    }
    // The room is on core 0: cut its log in the middle of the last record.
    let log = dir.join("core-0.log");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (_server, addr) = spawn_binary(&[&data, "--threads", "2"]);
    let want: Vec<String> = (0..19).map(|i| format!("m{i}")).collect();
    assert_eq!(history(addr, &room), want);
    // And the log is usable again: new messages append after the cut.
    let mut c = Client::connect(addr);
    let r = c.request(post_message(&format!("/parties/main/{room}"), "after").as_bytes());
    assert_eq!(r.text(), "OK");
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_partyring"))
        .args(["--port", "0"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_storage_settings_are_refused_with_exit_code_2() {
    let dir = temp_dir("cores");
    let data = format!("--data-dir={}", dir.display());
    {
        let (mut server, _addr) = spawn_binary(&[&data, "--threads", "2"]);
        // SAFETY: plain FFI call; the pid is our own child, still running.
        unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
        server.0.wait().unwrap();
    }
    let (code, err) = run_binary(&[&data, "--threads", "1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("was written by 2 cores") && err.contains("--threads 2"),
        "{err}"
    );
    for bad in [
        &["--fsync", "sometimes"][..],
        &["--fsync", "every 0"],
        &["--persist", "maybe"],
        &["--compression", "maybe"],
        &["--cors", "example.com"],
        &["--log", "info,=[x"],
        &["--threads", "0"],
        &["--port", "70000"],
        &["--header-timeout", "-1"],
        &["--no-such-flag"],
        &["--fetch-entry", "not-an-address"],
        // Config::validate: the outbound bound below the largest message.
        &["--max-outbound", "100"],
        &["--max-message-size", "8388608"],
    ] {
        let (code, err) = run_binary(bad);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{bad:?}: one error line, got {err:?}");
        assert!(lines[0].starts_with("error: "), "{bad:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
