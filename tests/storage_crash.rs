//! The storage engine under SIGKILL: a child process (this test binary re-executed with
//! `STORAGE_CRASH_CHILD=<dir>`) writes until it is killed, and every write it reported durable
//! must be there on reopen.
//!
//! Its own test binary: a forked child holds a copy of every descriptor of the parent until it
//! execs, the directory lock's `flock` included, so in `tests/storage.rs` another test's close
//! and reopen of its directory could now and then find its own lock still held (seen once in
//! about 30 runs of that suite: "core 0's log is in use by another process").

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use common::{block_on, eventually, TempDir};

use partyring::storage::{FsyncPolicy, Storage};

const CRASH_ENV: &str = "STORAGE_CRASH_CHILD";

/// The child half of `sigkill_loses_no_acknowledged_write`: a no-op unless re-executed with
/// `STORAGE_CRASH_CHILD=<dir>`. Writes from several tasks forever, printing each key after
/// its write resolved.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    block_on(async move {
        let s = Storage::open(&dir, 0, FsyncPolicy::Always).unwrap();
        s.start();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                monoio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("t{t}-{i}");
                        let value = format!("{key}:{}", "x".repeat((i % 300) as usize));
                        s.put_one("crash", "room", &key, value.into_bytes())
                            .await
                            .unwrap();
                        // Straight to fd 1, bypassing the test harness's capture.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "acked:{key}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = TempDir::new("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let reader = std::thread::spawn({
        let seen = seen.clone();
        move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                // The harness prints "test crash_child ... " before the first key, on one line.
                .filter_map(|l| Some(l.split_once("acked:")?.1.to_owned()))
                .inspect(|_| {
                    seen.fetch_add(1, Ordering::Relaxed);
                })
                .collect::<Vec<String>>()
        }
    });
    // Kill it mid-stream: once it has acknowledged enough writes that several batches are on
    // disk and its eight writers are busy (counted, not timed, so a slow start cannot make the
    // test check nothing).
    eventually("the child's first 500 acknowledged writes", || {
        seen.load(Ordering::Relaxed) >= 500
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    eprintln!("child acknowledged {} writes before SIGKILL", acked.len());

    let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
    for key in &acked {
        let value = s.get("crash", "room", key);
        let value = value.unwrap_or_else(|| panic!("acknowledged {key} is missing"));
        assert!(value.starts_with(format!("{key}:").as_bytes()), "{key}");
    }
}
