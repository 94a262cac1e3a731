//! Crons over a real server: `Builder::cron` handlers and named crons (`Builder::named_cron`,
//! `--cron NAME=EXPR` on the binary) fire on core 0, once per scheduled time, and reach rooms on
//! any core. Every-second expressions, and each test waits for effects with a generous deadline
//! (never for a time window): a slow machine makes a test slower, not flaky. The scheduling
//! rules themselves (early wake-ups, missed times, a clock stepped back) are unit tests with a
//! made-up clock in `src/runtime/cron.rs`.

mod common;

use std::{
    net::SocketAddr,
    process::Command,
    sync::mpsc,
    time::{Duration, UNIX_EPOCH},
};

use common::{eventually_within, history, room_on_core, spawn_binary, Client};
use partyring::{
    party::{CronEvent, Party},
    room::FetchRequest,
    Server,
};

/// The core this thread runs (core threads are named `partyring-core-N`), if it is one.
fn core_of_this_thread() -> Option<usize> {
    std::thread::current()
        .name()?
        .strip_prefix("partyring-core-")?
        .parse()
        .ok()
}

/// How long a test waits for a cron's effect before failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `room`'s history until it has `n` entries (or fails at the deadline).
fn wait_for_history(addr: SocketAddr, room: &str, n: usize) -> Vec<String> {
    let mut h = Vec::new();
    eventually_within(&format!("{n} entries in room {room}"), DEADLINE, || {
        h = history(addr, room);
        h.len() >= n
    });
    h
}

#[test]
fn a_builder_cron_runs_on_core_0_once_per_time_and_reaches_rooms() {
    let cores = 4;
    // A room owned by another core than the cron's.
    let room = room_on_core("main", 3, cores, "cron-target");
    let (tx, rx) = mpsc::channel();
    // The posts' statuses come back here: a panic inside the cron's future would only be logged.
    let (status_tx, status_rx) = mpsc::channel();
    let target = room.clone();
    let server = Server::builder()
        .config(common::config(cores))
        .cron("* * * * * *", move |cron: CronEvent| {
            let core = core_of_this_thread();
            tx.send((core, cron.name.to_string(), cron.scheduled))
                .unwrap();
            let post = cron
                .party_room("main", &target)
                .fetch(FetchRequest::post(format!(
                    r#"{{"message":"{}"}}"#,
                    cron.scheduled_ms()
                )));
            let status_tx = status_tx.clone();
            async move {
                let _ = status_tx.send(post.await.status);
            }
        })
        .start()
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let (core, name, at) = rx.recv_timeout(DEADLINE).expect("the cron fires");
        assert_eq!(core, Some(0), "crons run on core 0");
        assert_eq!(name, "* * * * * *");
        let since = at.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(
            since.subsec_nanos(),
            0,
            "a scheduled time is a whole second"
        );
        times.push(since.as_secs());
    }
    // Once per scheduled time: with four cores, no time twice (each core firing would repeat
    // every time four times).
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // Each firing's post reached the room on core 3.
    let h = wait_for_history(server.addr, &room, 3);
    let posted: Vec<u64> = h.iter().map(|m| m.parse().unwrap()).collect();
    assert!(posted.windows(2).all(|w| w[0] < w[1]), "{posted:?}");
    assert!(posted
        .iter()
        .any(|&ms| times.iter().any(|&s| s * 1000 == ms)));
    for _ in 0..3 {
        let status = status_rx.recv_timeout(DEADLINE).expect("a post's status");
        assert_eq!(status, 200, "the cron's post to the room");
    }
    assert!(
        server.shutdown(Duration::from_secs(5)),
        "a cron does not hold up shutdown"
    );
}

/// A party that reports every `on_cron` it gets, with the core it ran on.
struct Watcher(mpsc::Sender<(Option<usize>, String)>);

impl Party for Watcher {
    fn on_cron(&self, cron: &CronEvent) {
        let _ = self.0.send((core_of_this_thread(), cron.name.to_string()));
    }
}

#[test]
fn a_named_cron_calls_every_partys_on_cron_and_main_posts_into_room_name() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = Server::builder()
        .config(common::config(2))
        .party("watcher", move || Watcher(tx.lock().unwrap().clone()))
        .named_cron("beat", "* * * * * *")
        .start()
        .unwrap();
    for _ in 0..2 {
        let (core, name) = rx.recv_timeout(DEADLINE).expect("on_cron runs");
        assert_eq!((core, name.as_str()), (Some(0), "beat"));
    }
    // The built-in `main` party wrote PartyKit's cron object into its room `beat`.
    let h = wait_for_history(server.addr, "beat", 2);
    let mut last = 0;
    for line in &h {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["cron"], "beat");
        assert_eq!(v["definition"], "* * * * * *");
        let at = v["scheduledTime"].as_u64().unwrap();
        assert!(at > last && at.is_multiple_of(1000), "{h:?}");
        last = at;
    }
    assert!(
        server.shutdown(Duration::from_secs(5)),
        "a cron does not hold up shutdown"
    );
}

#[test]
fn the_binary_takes_cron_flags_and_broadcasts_to_the_room() {
    let (_server, addr) = spawn_binary(&["--threads", "2", "--cron", "tick=* * * * * *"]);
    // A member of room `tick` gets each cron line live.
    let mut ws = Client::ws_connect(addr, "/parties/main/tick");
    let (_, op, payload) = ws.ws_frame();
    assert_eq!(op, 0x1, "text");
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["cron"], "tick");
    wait_for_history(addr, "tick", 2);

    // Several through the environment, `;`-separated.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_partyring"));
    cmd.args(["--port", "0", "--persist", "false", "--threads", "1"])
        .env("PARTYRING_CRON", "one=* * * * * *;two=*/2 * * * * *")
        .stderr(std::process::Stdio::null());
    let (_child, addr) = common::spawn_command(cmd);
    wait_for_history(addr, "one", 1);
    wait_for_history(addr, "two", 1);
}

#[test]
fn bad_crons_stop_the_start() {
    for (arg, says) in [
        ("x=not a cron", "cron expression"),
        ("x=61 * * * *", "cron expression"),
        ("no-equals-sign", "NAME=EXPR"),
        ("bad/name=* * * * *", "cron name"),
        ("=* * * * *", "cron name"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_partyring"))
            .args(["--port", "0", "--persist", "false", "--cron", arg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{arg}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let e = Server::builder()
        .config(common::config(1))
        .cron("every full moon", |_| async {})
        .start()
        .err()
        .expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let mut config = common::config(1);
    config.crons = vec!["x=1 2 3".parse().unwrap()];
    let e = Server::start(config).err().expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
