//! HTTP/1.1 over real sockets: the seed room's semantics, routes, keep-alive, pipelining, body
//! framing, every limit, timeouts, HTTP/1.0, and rooms shared across cores.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn seed_room_post_then_get_exact_bytes() {
    let srv = start(2);
    let mut c = srv.connect();
    let r = c.request(post_message("/parties/main/seed", "hi").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"OK");
    assert_eq!(r.header("content-type"), Some("text/plain;charset=UTF-8"));
    // The legacy form reaches the same room.
    let r = c.request(post_message("/party/seed", "there \"quoted\"").as_bytes());
    assert_eq!(r.body, b"OK");

    c.send(get("/parties/main/seed").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"["hi","there \"quoted\""]"#);
    let date = r.header("date").expect("Date header");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");

    // Exact bytes of a whole response, Date aside.
    let mut raw = srv.connect();
    raw.send(get("/party/seed?").as_bytes());
    raw.fill();
    let text = String::from_utf8(raw.buf.clone()).unwrap();
    let (status_line, rest) = text.split_once("\r\n").unwrap();
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    let (date_line, rest) = rest.split_once("\r\n").unwrap();
    assert!(date_line.starts_with("Date: "));
    assert_eq!(
        rest,
        "Content-Type: application/json\r\nContent-Length: 25\r\n\r\n[\"hi\",\"there \\\"quoted\\\"\"]"
    );
}

#[test]
fn unknown_routes_methods_and_bad_bodies() {
    let srv = start(2);
    let mut c = srv.connect();
    let cases: &[(&str, u16, &str)] = &[
        (
            "GET /parties/nope/x HTTP/1.1\r\nHost: a\r\n\r\n",
            404,
            "Party nope not found",
        ),
        ("GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n", 404, "Not found"),
        (
            "GET /parties/main HTTP/1.1\r\nHost: a\r\n\r\n",
            404,
            "Not found",
        ),
        (
            "GET /parties/main/ HTTP/1.1\r\nHost: a\r\n\r\n",
            404,
            "Not found",
        ),
        (
            "PUT /parties/main/m1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            405,
            "Method not allowed",
        ),
        (
            "DELETE /party/m1 HTTP/1.1\r\nHost: a\r\n\r\n",
            405,
            "Method not allowed",
        ),
        (
            "POST /party/m1 HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\nnotjson",
            400,
            "",
        ),
        (
            "POST /party/m1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
            400,
            "",
        ),
        (
            "POST /party/m1 HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\n{\"message\": 42}",
            400,
            "",
        ),
    ];
    for (req, status, body) in cases {
        let r = c.request(req.as_bytes());
        assert_eq!(r.status, *status, "{req}");
        if !body.is_empty() {
            assert_eq!(r.text(), *body, "{req}");
        }
        if *status == 405 {
            assert_eq!(r.header("allow"), Some("GET, POST"));
        }
        if *status == 400 {
            assert!(r.text().starts_with("Body must be JSON"), "{}", r.text());
            assert!(!r.text().contains('\n'), "one-line reason");
        }
    }
    // A bad body stored nothing.
    assert_eq!(c.request(get("/party/m1").as_bytes()).text(), "[]");
    // HEAD: the 405's headers, no body, and the connection still works.
    c.send(b"HEAD /party/m1 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response_for(true);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-length"), Some("18"));
    assert_eq!(c.request(get("/party/m1").as_bytes()).status, 200);
    assert!(c.buf.is_empty(), "HEAD sent no body bytes");
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let srv = start(2);
    let room = room_on_core("main", 0, 2, "pipe");
    let mut c = srv.connect();
    let mut batch = String::new();
    for i in 0..5 {
        batch += &post_message(&format!("/parties/main/{room}"), &format!("m{i}"));
    }
    batch += &get(&format!("/party/{room}"));
    batch += "PUT /party/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    batch += &get(&format!("/party/{room}?"));
    c.send(batch.as_bytes());
    for _ in 0..5 {
        assert_eq!(c.response().body, b"OK");
    }
    let want = r#"["m0","m1","m2","m3","m4"]"#;
    assert_eq!(c.response().text(), want);
    assert_eq!(c.response().status, 405);
    assert_eq!(c.response().text(), want);
}

#[test]
fn chunked_and_expect_continue_bodies() {
    let srv = start(2);
    let mut c = srv.connect();
    let body = r#"{"message":"chunky"}"#;
    let (a, b) = body.split_at(7);
    let req = format!(
        "POST /party/ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nTrailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    // Byte by byte: the framing must not depend on how the bytes arrive.
    for byte in req.as_bytes() {
        c.send(std::slice::from_ref(byte));
    }
    assert_eq!(c.response().body, b"OK");

    c.send(format!("POST /party/ch HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.response().body, b"OK");
    assert_eq!(
        c.request(get("/party/ch").as_bytes()).text(),
        r#"["chunky","chunky"]"#
    );
}

/// Each request must get `status` with `Connection: close`, and the connection must end.
fn assert_rejected(srv: &TestServer, req: &[u8], status: u16) {
    let mut c = srv.connect();
    c.send(req);
    let r = c.response();
    assert_eq!(
        r.status,
        status,
        "{}",
        String::from_utf8_lossy(&req[..req.len().min(80)])
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(!r.body.is_empty(), "a reason is given");
    assert!(c.closed_by_server(), "connection closed after {status}");
}

#[test]
fn limits_and_smuggling_are_refused() {
    let srv = start(2);
    let long_target = format!(
        "GET /party/{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    let big_head = format!(
        "GET /party/a HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(16 * 1024)
    );
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET /party/a HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    let big_body = format!(
        "POST /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024 + 1
    );
    let mut big_chunked =
        String::from("POST /party/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..17 {
        big_chunked += &format!("10000\r\n{}\r\n", "x".repeat(0x10000));
    }
    let cases: Vec<(String, u16)> = vec![
        (long_target, 414),
        (big_head, 431),
        (many_headers, 431),
        (big_body, 413),
        (big_chunked, 413),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(), 400),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".into(), 400),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n".into(), 400),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501),
        ("POST /party/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400),
        ("GET /party/a HTTP/1.1\r\n\r\n".into(), 400),
        ("GET /party/a HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n".into(), 400),
        ("GET /party/a HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n".into(), 400),
        ("BLAH\r\n\r\n".into(), 400),
        ("GET /party/a HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n".into(), 417),
    ];
    for (req, status) in &cases {
        assert_rejected(&srv, req.as_bytes(), *status);
    }
    // The server still serves everyone else.
    assert_eq!(
        srv.connect().request(get("/party/a").as_bytes()).status,
        200
    );
}

#[test]
fn header_timeout_and_idle_timeout() {
    let srv = start_with(2, |c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_millis(600);
    });
    // Slowloris: a head that never ends gets 408 and is closed.
    let mut slow = srv.connect();
    slow.send(b"GET /party/t HTTP/1.1\r\nHost: a\r\n");
    let r = slow.response();
    assert_eq!(r.status, 408);
    assert!(slow.closed_by_server());
    // A body that never completes, too.
    let mut slow_body = srv.connect();
    slow_body.send(b"POST /party/t HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(slow_body.response().status, 408);
    // An idle keep-alive connection is closed silently after the idle timeout.
    let mut idle = srv.connect();
    assert_eq!(idle.request(get("/party/t").as_bytes()).status, 200);
    assert!(idle.closed_by_server());
    assert!(idle.buf.is_empty());
}

/// The deadlines of a keep-alive connection's later requests (its read timer is kept and moved
/// from the second wait on, `runtime::http_conn`): each request restarts the idle timeout, a
/// head started after several requests still gets the (earlier) header deadline, and an idle
/// connection is still closed.
#[test]
fn a_keep_alive_connections_deadlines_move_with_each_request() {
    let srv = start_with(1, |c| {
        c.header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_millis(800);
    });
    // Requests 400 ms apart for 2.4 s: three idle timeouts' worth, each gap half of one.
    let mut steady = srv.connect();
    let started = Instant::now();
    for _ in 0..7 {
        assert_eq!(steady.request(get("/party/k").as_bytes()).status, 200);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(started.elapsed() > Duration::from_millis(2400));
    assert_eq!(steady.request(get("/party/k").as_bytes()).status, 200);
    // After those, a head that never ends: 408 at the header deadline, well before the idle one.
    steady.send(b"GET /party/k HTTP/1.1\r\nHost: a\r\n");
    let sent = Instant::now();
    assert_eq!(steady.response().status, 408);
    assert!(
        sent.elapsed() < Duration::from_millis(750),
        "{:?}",
        sent.elapsed()
    );
    assert!(steady.closed_by_server());
    // And a connection that goes quiet after a few requests is closed.
    let mut idle = srv.connect();
    for _ in 0..3 {
        assert_eq!(idle.request(get("/party/k").as_bytes()).status, 200);
    }
    assert!(idle.closed_by_server());
    assert!(idle.buf.is_empty());
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let srv = start(2);
    let mut c = srv.connect();
    let r = c.request(b"GET /party/old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());

    let mut c = srv.connect();
    let r = c.request(b"GET /party/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None);
    assert_eq!(c.request(b"GET /party/old HTTP/1.0\r\n\r\n").status, 200);
    assert!(c.closed_by_server());

    let mut c = srv.connect();
    let r = c.request(b"GET /party/old HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server());
}

#[test]
fn rooms_on_both_cores_share_history_across_connections() {
    let srv = start(2);
    let rooms = [
        room_on_core("main", 0, 2, "x"),
        room_on_core("main", 1, 2, "x"),
    ];
    // One connection alternating between rooms of different cores must be handed off at least
    // once, whichever core accepted it.
    let mut c = srv.connect();
    for round in 0..3 {
        for room in &rooms {
            let r = c.request(
                post_message(&format!("/parties/main/{room}"), &format!("{room}-{round}"))
                    .as_bytes(),
            );
            assert_eq!(r.body, b"OK");
        }
    }
    assert!(srv.handoffs_sent() >= 1, "no handoff happened");
    // Fresh connections (landing on either core) see the same histories.
    for _ in 0..6 {
        for room in &rooms {
            let r = srv
                .connect()
                .request(get(&format!("/party/{room}")).as_bytes());
            let want: Vec<String> = (0..3).map(|i| format!("{room}-{i}")).collect();
            assert_eq!(r.text(), serde_json::to_string(&want).unwrap());
        }
    }
}

#[test]
fn history_is_capped() {
    let srv = start_with(1, |c| c.history_limit = 3);
    let mut c = srv.connect();
    for i in 0..5 {
        c.request(post_message("/party/cap", &i.to_string()).as_bytes());
    }
    assert_eq!(
        c.request(get("/party/cap").as_bytes()).text(),
        r#"["2","3","4"]"#
    );
}
