//! Limits that protect the server: the per-core connection cap and the optional ping/idle
//! check for dead WebSocket peers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use partyring::ws::OpCode;

#[test]
fn connections_over_the_cap_get_503_or_close_1013() {
    let srv = start_with(1, |c| c.max_connections_per_core = 2);
    let mut a = srv.connect();
    let mut b = srv.connect();
    assert_eq!(a.request(get("/party/cap").as_bytes()).status, 200);
    assert_eq!(b.request(get("/party/cap").as_bytes()).status, 200);

    let mut over = srv.connect();
    let r = over.request(get("/party/cap").as_bytes());
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(over.closed_by_server());

    let mut ws_over = srv.connect();
    let r = ws_over.request(ws_upgrade("/parties/main/cap").as_bytes());
    assert_eq!(r.status, 101);
    assert_eq!(ws_over.ws_close_code(), Some(1013));
    assert!(ws_over.closed_by_server());

    // Capacity comes back when a connection leaves.
    drop(a);
    eventually("capacity comes back", || {
        srv.connect().request(get("/party/cap").as_bytes()).status == 200
    });
    assert_eq!(b.request(get("/party/cap").as_bytes()).status, 200);
}

// `ws_ping_interval` I (src/ws/session.rs, src/net/poller.rs): every I, each core sweeps its
// WebSockets; one it has not heard from since the sweep before is pinged, and one still silent
// at the sweep after its ping is dropped. A fresh connection may be pinged at the first sweep,
// so a silent peer is dropped between I and 2I after it connected; what holds however slow the
// machine is: a ping comes first, and the drop is at least I after the ping (timers never
// fire early), so at least I after the connection began.

#[test]
fn peers_that_answer_pings_stay() {
    // An interval well above how late a busy machine may be to answer a ping.
    let srv = start_with(1, |c| c.ws_ping_interval = Some(Duration::from_secs(1)));
    let mut live = Client::ws_connect(srv.addr, "/parties/echo/ping");
    for _ in 0..2 {
        let (_, op, payload) = live.ws_frame();
        assert_eq!(op, 0x9, "a ping after silence");
        live.ws_send(OpCode::Pong, &payload);
    }
    live.ws_send(OpCode::Text, b"still here");
    assert_eq!(live.ws_frame(), (true, 1, b"still here".to_vec()));
}

#[test]
fn silent_peers_are_pinged_then_dropped() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let srv = start_with(1, |c| c.ws_ping_interval = Some(INTERVAL));
    let started = Instant::now();
    let mut dead = Client::ws_connect(srv.addr, "/parties/echo/ping");
    let (_, op, _) = dead.ws_frame();
    assert_eq!(op, 0x9, "pinged before any close");
    assert!(
        dead.closed_by_server(),
        "a peer that never answers is dropped"
    );
    assert!(
        started.elapsed() >= INTERVAL,
        "dropped {:?} after connecting: less than one interval after its ping",
        started.elapsed()
    );
}
