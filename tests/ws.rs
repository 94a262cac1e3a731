//! WebSocket over real sockets: the opening handshake and its refusals, the closing handshake,
//! every protocol error and its close code, fragmentation with interleaved control frames,
//! broadcast in rooms on both cores (including connections handed off between cores with
//! pipelined frames), duplicate `_pk`s, HTTP POST → broadcast, the outbound bound for a reader
//! that never reads, and the legacy `/party/:room` route.

mod common;

use std::{net::SocketAddr, thread, time::Instant};

use common::*;
use partyring::ws::OpCode;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

// ---- assertions ----

/// The next frame must be a complete one with `opcode` and exactly `payload`.
fn expect_frame(c: &mut Client, opcode: u8, payload: &[u8], what: &str) {
    let (fin, op, got) = c.ws_frame();
    assert!(fin, "{what}: FIN set");
    assert_eq!(op, opcode, "{what}: opcode (payload {:?})", lossy(&got));
    assert_eq!(got, payload, "{what}: payload");
}

fn expect_text(c: &mut Client, text: &str, what: &str) {
    expect_frame(c, TEXT, text.as_bytes(), what);
}

/// The next frame must be the server's Close with `code` (and a short UTF-8 reason), and then
/// the server must close the TCP connection.
fn expect_server_close(c: &mut Client, code: u16, what: &str) {
    let (fin, op, payload) = c
        .try_ws_frame()
        .unwrap_or_else(|| panic!("{what}: EOF before the server's close frame"));
    assert!(fin, "{what}: close frame has FIN");
    assert_eq!(
        op,
        CLOSE,
        "{what}: expected close {code}, got opcode {op} {:?}",
        lossy(&payload)
    );
    assert!(payload.len() >= 2, "{what}: close frame carries a code");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        code,
        "{what}: close code (reason {:?})",
        lossy(&payload[2..])
    );
    assert!(payload.len() <= 125, "{what}: control frame limit");
    assert!(
        std::str::from_utf8(&payload[2..]).is_ok(),
        "{what}: reason is UTF-8"
    );
    assert!(
        c.closed_by_server(),
        "{what}: TCP closed by the server after its close frame"
    );
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

/// A fresh echo connection works end to end (the server survived whatever came before).
fn assert_echo_works(addr: SocketAddr, what: &str) {
    let mut c = Client::ws_connect(addr, "/parties/echo/still-alive");
    c.ws_send(OpCode::Text, b"still here");
    expect_text(&mut c, "still here", what);
    c.ws_send(OpCode::Close, &close_payload(1000, b""));
    expect_frame(&mut c, CLOSE, &close_payload(1000, b""), what);
    assert!(c.closed_by_server(), "{what}: closed after the echo");
}

/// Opens an echo connection, sends `bytes` in one write, and expects close `code` and EOF.
fn expect_protocol_close(addr: SocketAddr, bytes: &[u8], code: u16, what: &str) {
    let mut c = Client::ws_connect(addr, "/parties/echo/errors");
    c.send(bytes);
    expect_server_close(&mut c, code, what);
}

/// Reads an HTTP response head as raw text (up to the blank line); leaves the rest in `buf`.
fn raw_head(c: &mut Client) -> String {
    loop {
        if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(c.buf[..i + 4].to_vec()).expect("ASCII head");
            c.buf.drain(..i + 4);
            return head;
        }
        assert!(c.fill() > 0, "EOF inside the response head");
    }
}

// ---- 1. the opening handshake ----

#[test]
fn handshake_exact_bytes_without_protocol_or_extensions() {
    // With `--compression off` an offer is declined (tests/deflate.rs has the "on" side).
    let srv = start_with(2, |c| c.compression = false);
    let mut c = srv.connect();
    c.send(
        b"GET /parties/echo/hs HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    let head = raw_head(&mut c);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head:?}"
    );
    let lines: Vec<&str> = head.trim_end_matches("\r\n").split("\r\n").collect();
    for want in [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in {head:?}");
    }
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("sec-websocket-protocol"), "{head:?}");
    assert!(!lower.contains("sec-websocket-extensions"), "{head:?}");
    assert!(c.buf.is_empty(), "nothing after the 101 head");

    // No extension was negotiated, so frames are plain; the connection works.
    c.ws_send(OpCode::Text, b"after handshake");
    expect_text(&mut c, "after handshake", "echo after handshake");
}

// ---- 2. refused upgrades ----

fn upgrade_with(method: &str, path: &str, headers: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n")
}

#[test]
fn bad_upgrades_are_refused() {
    let srv = start(2);
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const V13: &str = "Sec-WebSocket-Version: 13\r\n";
    const UPG: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    // (request, status, body) — the errors close the connection.
    let cases: Vec<(String, u16, &str)> = vec![
        (
            upgrade_with(
                "GET",
                "/parties/echo/u",
                &format!("{UPG}{KEY}Sec-WebSocket-Version: 12\r\n"),
            ),
            426,
            "Unsupported WebSocket version: use 13",
        ),
        (
            upgrade_with("GET", "/parties/echo/u", &format!("{UPG}{V13}")),
            400,
            "Missing or invalid Sec-WebSocket-Key",
        ),
        (
            // 24 characters of base64, but 17 bytes.
            upgrade_with(
                "GET",
                "/parties/echo/u",
                &format!("{UPG}{V13}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n"),
            ),
            400,
            "Missing or invalid Sec-WebSocket-Key",
        ),
        (
            upgrade_with(
                "GET",
                "/parties/echo/u",
                &format!("{UPG}{V13}Sec-WebSocket-Key: not base64 at all!!!!!!!\r\n"),
            ),
            400,
            "Missing or invalid Sec-WebSocket-Key",
        ),
        (
            upgrade_with(
                "POST",
                "/parties/echo/u",
                &format!("{UPG}{KEY}{V13}Content-Length: 0\r\n"),
            ),
            400,
            "WebSocket upgrade must be a GET",
        ),
        (
            upgrade_with(
                "GET",
                "/parties/main/u",
                &format!("Upgrade: websocket\r\n{KEY}{V13}"),
            ),
            400,
            "WebSocket upgrade without Connection: upgrade",
        ),
        (
            upgrade_with(
                "GET",
                "/parties/echo/u",
                &format!("{UPG}{KEY}{V13}Content-Length: 5\r\n"),
            ) + "hello",
            400,
            "WebSocket upgrade with a body",
        ),
    ];
    for (req, status, body) in &cases {
        let mut c = srv.connect();
        let r = c.request(req.as_bytes());
        assert_eq!(r.status, *status, "{req}");
        assert_eq!(r.text(), *body, "{req}");
        assert_eq!(r.header("connection"), Some("close"), "{req}");
        if *status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
        assert!(r.header("sec-websocket-accept").is_none(), "{req}");
        assert!(c.closed_by_server(), "closed after {status}: {req}");
    }

    // Upgrades to something that is not a room of a known party: plain 404s.
    let mut c = srv.connect();
    let r = c.request(ws_upgrade("/parties/nope/room").as_bytes());
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Party nope not found");
    let r = srv.connect().request(ws_upgrade("/not/a/room").as_bytes());
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Not found");
    let r = srv
        .connect()
        .request(ws_upgrade("/parties/main/").as_bytes());
    assert_eq!(r.status, 404);

    // Token lists and case are accepted as browsers send them (Firefox: "keep-alive, Upgrade"),
    // and the key may carry optional whitespace.
    let mut c = srv.connect();
    let r = c.request(
        upgrade_with(
            "GET",
            "/parties/echo/u",
            "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
             sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\nsec-websocket-version: 13\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    c.ws_send(OpCode::Text, b"firefox style");
    expect_text(&mut c, "firefox style", "upgrade with token lists");

    assert_echo_works(srv.addr, "after refused upgrades");
}

// ---- 3. the closing handshake ----

#[test]
fn client_close_codes_are_echoed_then_tcp_closed() {
    let srv = start(2);
    for code in [1000u16, 1001, 1003, 1011, 1014, 3000, 4001, 4999] {
        let mut c = Client::ws_connect(srv.addr, "/parties/echo/close");
        c.ws_send(OpCode::Close, &close_payload(code, b"bye \xce\xba"));
        // The echo carries the same code (no reason).
        expect_frame(&mut c, CLOSE, &code.to_be_bytes(), &format!("echo {code}"));
        assert!(c.closed_by_server(), "TCP closed after echoing {code}");
    }
    // An empty close is answered with an empty close.
    let mut c = Client::ws_connect(srv.addr, "/parties/main/close");
    c.ws_send(OpCode::Close, b"");
    expect_frame(&mut c, CLOSE, b"", "empty close echo");
    assert!(c.closed_by_server(), "TCP closed after the empty echo");

    // Data after the client's close is ignored: only the echo comes back.
    let mut c = Client::ws_connect(srv.addr, "/parties/echo/close");
    let mut bytes = frame(true, OpCode::Close, &close_payload(1000, b""));
    bytes.extend(frame(true, OpCode::Text, b"too late"));
    c.send(&bytes);
    expect_frame(&mut c, CLOSE, &1000u16.to_be_bytes(), "close then text");
    assert!(c.closed_by_server());
}

#[test]
fn invalid_close_frames_fail_the_connection() {
    let srv = start(2);
    for code in [1005u16, 1006, 1015, 999, 0, 1004, 1016, 2999, 5000, 65535] {
        let bytes = frame(true, OpCode::Close, &close_payload(code, b""));
        expect_protocol_close(srv.addr, &bytes, 1002, &format!("close code {code}"));
    }
    let bytes = frame(
        true,
        OpCode::Close,
        &close_payload(1000, b"bad \xff reason"),
    );
    expect_protocol_close(srv.addr, &bytes, 1007, "close reason not UTF-8");
    let bytes = frame(true, OpCode::Close, &[0x03]);
    expect_protocol_close(srv.addr, &bytes, 1002, "1-byte close payload");
    assert_echo_works(srv.addr, "after invalid closes");
}

// ---- 4. protocol errors ----

#[test]
fn protocol_errors_close_with_their_code() {
    let srv = start(2);
    let mut top_bit_len = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit_len.extend_from_slice(&MASK);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (raw_frame(0x81, false, b"unmasked"), 1002, "unmasked frame"),
        (raw_frame(0x80 | 0x40 | TEXT, true, b"rsv1"), 1002, "RSV1"),
        (raw_frame(0x80 | 0x20 | TEXT, true, b"rsv2"), 1002, "RSV2"),
        (raw_frame(0x80 | 0x10 | TEXT, true, b"rsv3"), 1002, "RSV3"),
        (raw_frame(0x80 | 0x3, true, b"op3"), 1002, "opcode 0x3"),
        (raw_frame(0x80 | 0xB, true, b"opB"), 1002, "opcode 0xB"),
        (
            raw_frame(0x80 | PING, true, &[b'p'; 126]),
            1002,
            "ping with 126 bytes",
        ),
        (raw_frame(PING, true, b"frag"), 1002, "fragmented ping"),
        (
            frame(true, OpCode::Continuation, b"orphan"),
            1002,
            "continuation without a start",
        ),
        (
            [
                frame(false, OpCode::Text, b"start"),
                frame(true, OpCode::Text, b"again"),
            ]
            .concat(),
            1002,
            "text frame inside a fragmented message",
        ),
        (
            [
                frame(false, OpCode::Binary, b"start"),
                frame(true, OpCode::Binary, b"again"),
            ]
            .concat(),
            1002,
            "binary frame inside a fragmented message",
        ),
        (top_bit_len, 1002, "64-bit length with the top bit set"),
        (
            frame(true, OpCode::Text, b"ok \xff not"),
            1007,
            "invalid UTF-8 text",
        ),
        (
            // 0xCE is a valid start of a 2-byte sequence; 'A' cannot continue it.
            [
                frame(false, OpCode::Text, b"abc\xce"),
                frame(true, OpCode::Continuation, b"A"),
            ]
            .concat(),
            1007,
            "invalid UTF-8 across fragments",
        ),
        (
            // A message that ends inside a multi-byte sequence.
            [
                frame(false, OpCode::Text, b"abc"),
                frame(true, OpCode::Continuation, b"\xe2\x82"),
            ]
            .concat(),
            1007,
            "text ending mid-sequence",
        ),
    ];
    for (bytes, code, what) in &cases {
        expect_protocol_close(srv.addr, bytes, *code, what);
    }
    // The same errors arriving one frame per write, after a valid message.
    let mut c = Client::ws_connect(srv.addr, "/parties/echo/errors");
    c.ws_send(OpCode::Text, b"fine");
    expect_text(&mut c, "fine", "valid message first");
    c.send(&frame(false, OpCode::Text, b"abc\xce"));
    c.send(&frame(true, OpCode::Continuation, b"A"));
    expect_server_close(&mut c, 1007, "invalid UTF-8 across two writes");

    assert_echo_works(srv.addr, "after protocol errors");
}

#[test]
fn message_size_limit_is_exact() {
    let srv = start_with(2, |c| c.max_message_bytes = 1000);
    let mut c = Client::ws_connect(srv.addr, "/parties/echo/limit");
    let at_limit = vec![b'x'; 1000];
    c.ws_send(OpCode::Text, &at_limit);
    expect_frame(&mut c, TEXT, &at_limit, "exactly the limit (text)");
    let bin: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    c.ws_send(OpCode::Binary, &bin);
    expect_frame(&mut c, BINARY, &bin, "exactly the limit (binary)");
    // Fragmented, the limit applies to the sum.
    c.send(&frame(false, OpCode::Text, &at_limit[..500]));
    c.send(&frame(true, OpCode::Continuation, &at_limit[500..]));
    expect_frame(&mut c, TEXT, &at_limit, "exactly the limit in 2 fragments");

    expect_protocol_close(
        srv.addr,
        &frame(true, OpCode::Text, &[b'y'; 1001]),
        1009,
        "1001-byte text",
    );
    expect_protocol_close(
        srv.addr,
        &frame(true, OpCode::Binary, &[7; 1001]),
        1009,
        "1001-byte binary",
    );
    expect_protocol_close(
        srv.addr,
        &[
            frame(false, OpCode::Text, &[b'a'; 600]),
            frame(true, OpCode::Continuation, &[b'b'; 401]),
        ]
        .concat(),
        1009,
        "1001 bytes in 2 fragments",
    );
    assert_echo_works(srv.addr, "after oversize messages");
}

// ---- 5. fragmentation and control frames ----

/// Sends a 3-fragment message of `kind` with a ping between the fragments, either in one write or
/// one frame per write, and expects the pong, then the reassembled echo.
fn fragmented_with_ping(c: &mut Client, kind: OpCode, parts: [&[u8]; 3], one_write: bool) {
    let frames = [
        frame(false, kind, parts[0]),
        frame(true, OpCode::Ping, b"mid-ping"),
        frame(false, OpCode::Continuation, parts[1]),
        frame(true, OpCode::Continuation, parts[2]),
    ];
    if one_write {
        c.send(&frames.concat());
    } else {
        for f in &frames {
            c.send(f);
        }
    }
    let what = format!("{kind:?}, one write: {one_write}");
    expect_frame(c, PONG, b"mid-ping", &format!("pong first ({what})"));
    expect_frame(c, kind as u8, &parts.concat(), &format!("echo ({what})"));
}

#[test]
fn fragments_with_interleaved_ping_are_reassembled() {
    let srv = start(2);
    let mut c = Client::ws_connect(srv.addr, "/parties/echo/frag");
    for one_write in [true, false] {
        fragmented_with_ping(
            &mut c,
            OpCode::Text,
            [b"Hello, ", "w\u{f6}r".as_bytes(), b"ld \xe2\x9c\x93"],
            one_write,
        );
        // A multi-byte character split across fragments is fine.
        fragmented_with_ping(&mut c, OpCode::Text, [b"\xe2", b"\x9c", b"\x93"], one_write);
        fragmented_with_ping(
            &mut c,
            OpCode::Binary,
            [&[0, 1, 2, 0xff], &[0x80; 200], &[0xfe, 0, 0]],
            one_write,
        );
    }
    // Empty fragments are allowed.
    c.send(
        &[
            frame(false, OpCode::Text, b""),
            frame(false, OpCode::Continuation, b"x"),
            frame(true, OpCode::Continuation, b""),
        ]
        .concat(),
    );
    expect_text(&mut c, "x", "empty fragments");
}

#[test]
fn ping_pong_and_unsolicited_pong() {
    let srv = start(2);
    let mut c = Client::ws_connect(srv.addr, "/parties/echo/ping");
    c.ws_send(OpCode::Ping, b"hello ping");
    expect_frame(&mut c, PONG, b"hello ping", "pong");
    c.ws_send(OpCode::Ping, b"");
    expect_frame(&mut c, PONG, b"", "empty pong");
    let max = [0x5a; 125];
    c.ws_send(OpCode::Ping, &max);
    expect_frame(&mut c, PONG, &max, "125-byte pong");
    // An unsolicited pong is not answered: the next frame is the text echo.
    c.ws_send(OpCode::Pong, b"heartbeat");
    c.ws_send(OpCode::Text, b"after pong");
    expect_text(&mut c, "after pong", "nothing answers a pong");

    // In a main room too (no echo there: a ping is answered even with nobody else around).
    let mut m = Client::ws_connect(srv.addr, "/parties/main/ping");
    m.ws_send(OpCode::Pong, b"x");
    m.ws_send(OpCode::Ping, b"main");
    expect_frame(&mut m, PONG, b"main", "pong in a main room");
}

// ---- 6. broadcast in rooms on both cores ----

#[test]
fn broadcast_reaches_everyone_but_the_sender_on_both_cores() {
    let srv = start(2);
    for core in 0..2 {
        let room = room_on_core("main", core, 2, "bcast");
        let path = format!("/parties/main/{room}");
        let mut a = Client::ws_connect(srv.addr, &path);
        let mut b = Client::ws_connect(srv.addr, &path);
        let mut c = Client::ws_connect(srv.addr, &path);
        let w = |s: &str| format!("core {core}: {s}");

        a.ws_send(OpCode::Text, b"from A");
        expect_text(&mut b, "from A", &w("B gets A's text"));
        expect_text(&mut c, "from A", &w("C gets A's text"));
        b.ws_send(OpCode::Text, b"from B");
        // A's next frame is B's text: A did not get its own message back.
        expect_text(&mut a, "from B", &w("A gets B's text (not its own)"));
        expect_text(&mut c, "from B", &w("C gets B's text"));

        let bin: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
        b.ws_send(OpCode::Binary, &bin);
        expect_frame(&mut a, BINARY, &bin, &w("A gets B's binary"));
        expect_frame(&mut c, BINARY, &bin, &w("C gets B's binary"));
        c.ws_send(OpCode::Text, b"from C");
        // B's next frame is C's text: B got neither its text nor its binary back.
        expect_text(&mut b, "from C", &w("B gets C's text (not its own)"));
        expect_text(&mut a, "from C", &w("A gets C's text"));
        // Exactly once: A's and C's next frames are B's next message.
        b.ws_send(OpCode::Text, b"last");
        expect_text(&mut a, "last", &w("A: no duplicates"));
        expect_text(&mut c, "last", &w("C: no duplicates"));

        // Text was stored, binary was not.
        let r = srv.connect().request(get(&path).as_bytes());
        assert_eq!(
            r.text(),
            r#"["from A","from B","from C","last"]"#,
            "core {core}"
        );
    }
}

/// A keep-alive connection that served requests on both cores (so it waited for its next
/// request on each, and moved between them) upgrades on its last core or after one more move,
/// and works as a WebSocket.
#[test]
fn keep_alive_connection_upgrades_after_requests_on_both_cores() {
    let srv = start(2);
    let rooms: Vec<String> = (0..2)
        .map(|core| room_on_core("main", core, 2, "ka-up"))
        .collect();
    for last in 0..2 {
        let mut c = srv.connect();
        let handoffs = srv.handoffs_sent();
        for room in rooms.iter().chain(rooms.iter()) {
            // Sent only once the previous answer is read: the server waits for each request.
            let r = c.request(get(&format!("/parties/main/{room}")).as_bytes());
            assert_eq!(r.status, 200);
        }
        // Rooms on core 0, 1, 0, 1: each request after the first moved the connection (the
        // sending core counts a handoff just after passing it on, so maybe after the answer).
        eventually(
            &format!("core {last}: three moves for four requests"),
            || srv.handoffs_sent() - handoffs >= 3,
        );
        // The last GET was on core 1: upgrade there (last = 1) or after a move to core 0.
        let path = format!("/parties/main/{}", rooms[last]);
        let r = c.request(ws_upgrade(&path).as_bytes());
        assert_eq!(r.status, 101, "core {last}: {}", r.text());
        let mut peer = Client::ws_connect(srv.addr, &path);
        peer.ws_send(OpCode::Text, b"to the upgraded one");
        expect_text(
            &mut c,
            "to the upgraded one",
            &format!("core {last}: peer -> upgraded"),
        );
        c.ws_send(OpCode::Text, b"back");
        expect_text(&mut peer, "back", &format!("core {last}: upgraded -> peer"));
        let r = srv
            .connect()
            .request(post_message(&path, "posted").as_bytes());
        assert_eq!(r.status, 200);
        expect_text(&mut c, "posted", &format!("core {last}: POST reaches it"));
    }
}

// ---- 7. frames pipelined behind the handshake ----

#[test]
fn frames_pipelined_with_the_upgrade_survive_the_handoff() {
    let srv = start(2);
    for core in 0..2 {
        let room = room_on_core("echo", core, 2, "pipe");
        let (mut handed_off, mut direct) = (0, 0);
        // The kernel picks the accepting core; try until both paths were taken.
        for attempt in 0..40 {
            let before = srv.handoffs_sent();
            let mut c = srv.connect();
            let mut bytes =
                ws_upgrade(&format!("/parties/echo/{room}?_pk=p{attempt}")).into_bytes();
            for i in 0..3 {
                bytes.extend(frame(true, OpCode::Text, format!("early {i}").as_bytes()));
            }
            c.send(&bytes);
            let r = c.response();
            assert_eq!(r.status, 101, "core {core} attempt {attempt}");
            for i in 0..3 {
                expect_text(
                    &mut c,
                    &format!("early {i}"),
                    &format!("core {core} attempt {attempt}: echo {i}"),
                );
            }
            if srv.handoffs_sent() > before {
                handed_off += 1;
            } else {
                direct += 1;
            }
            if handed_off > 0 && direct > 0 {
                break;
            }
        }
        assert!(
            handed_off > 0 && direct > 0,
            "core {core}: handed off {handed_off}, direct {direct}"
        );
    }
}

// ---- 8. duplicate _pk ----

#[test]
fn duplicate_pk_connections_are_independent() {
    let srv = start(2);
    let room = room_on_core("main", 1, 2, "dup");
    let path = format!("/parties/main/{room}");
    let dup = format!("{path}?_pk=dup");
    let mut old = Client::ws_connect(srv.addr, &dup);
    let mut new = Client::ws_connect(srv.addr, &dup);
    let mut sender = Client::ws_connect(srv.addr, &path);

    sender.ws_send(OpCode::Text, b"one");
    expect_text(&mut old, "one", "older duplicate");
    expect_text(&mut new, "one", "newer duplicate");
    // Sender exclusion is per connection, not per id: one duplicate reaches the other.
    old.ws_send(OpCode::Text, b"from old");
    expect_text(&mut new, "from old", "newer gets older's message");
    expect_text(&mut sender, "from old", "sender gets older's message");

    old.ws_send(OpCode::Close, &close_payload(1000, b""));
    expect_frame(
        &mut old,
        CLOSE,
        &1000u16.to_be_bytes(),
        "older's close echo",
    );
    assert!(old.closed_by_server());

    sender.ws_send(OpCode::Text, b"two");
    expect_text(&mut new, "two", "newer still receives after older closed");
    new.ws_send(OpCode::Text, b"from new");
    expect_text(&mut sender, "from new", "newer still sends");
}

// ---- 9. HTTP POST → broadcast ----

#[test]
fn post_broadcasts_to_websockets_and_get_shows_history() {
    let srv = start(2);
    let room = room_on_core("main", 0, 2, "post");
    let path = format!("/parties/main/{room}");
    let mut w1 = Client::ws_connect(srv.addr, &path);
    let mut w2 = Client::ws_connect(srv.addr, &path);
    w1.ws_send(OpCode::Text, b"ws one");
    expect_text(&mut w2, "ws one", "w2 gets w1");
    w2.ws_send(OpCode::Text, b"ws two");
    expect_text(&mut w1, "ws two", "w1 gets w2");

    let mut http = srv.connect();
    let r = http.request(post_message(&path, "from http").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"OK");
    expect_text(&mut w1, "from http", "w1 gets the POST");
    expect_text(&mut w2, "from http", "w2 gets the POST");

    let r = http.request(get(&path).as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"["ws one","ws two","from http"]"#);
    // Through the legacy route too.
    let r = http.request(get(&format!("/party/{room}")).as_bytes());
    assert_eq!(r.text(), r#"["ws one","ws two","from http"]"#);
}

// ---- 10. a reader that never reads ----

const SLOW_MESSAGES: usize = 2000;
const SLOW_MESSAGE_BYTES: usize = 4096;

/// Message `i` of the slow-reader test: its index, then a filler that depends on it.
fn numbered(i: usize) -> Vec<u8> {
    let mut m = format!("{i:06}:").into_bytes();
    m.resize(SLOW_MESSAGE_BYTES, b'a' + (i % 26) as u8);
    m
}

/// A client that never read: what it gets is an in-order prefix of the messages, then close
/// 1008, then EOF (bounded: `try_ws_frame` panics after 5 s without a byte).
fn assert_stuck_client_closed_with_1008(stuck: &mut Client) {
    let mut texts = 0;
    let mut close = None;
    while let Some((fin, op, payload)) = stuck.try_ws_frame() {
        assert!(fin);
        assert!(close.is_none(), "nothing after the close frame");
        match op {
            TEXT => {
                assert!(payload == numbered(texts), "stuck: message {texts}");
                texts += 1;
            }
            CLOSE => close = Some(u16::from_be_bytes([payload[0], payload[1]])),
            _ => panic!("stuck: unexpected opcode {op}"),
        }
    }
    assert_eq!(
        close,
        Some(1008),
        "stuck client closed with 1008 after {texts} messages"
    );
    assert!(
        texts < SLOW_MESSAGES,
        "the stuck client did not get everything"
    );
}

#[test]
fn a_reader_that_never_reads_is_closed_and_others_get_everything() {
    let started = Instant::now();
    let srv = start_with(2, |c| {
        c.max_outbound_bytes = 64 * 1024;
        c.max_message_bytes = 16 * 1024;
    });
    let room = room_on_core("main", 0, 2, "slow");
    let path = format!("/parties/main/{room}");
    let mut stuck = Client::ws_connect(srv.addr, &path);
    let mut reader = Client::ws_connect(srv.addr, &path);
    let mut sender = Client::ws_connect(srv.addr, &path);

    let reading = thread::spawn(move || {
        for i in 0..SLOW_MESSAGES {
            let (fin, op, payload) = reader.ws_frame();
            assert!(
                op == TEXT && fin,
                "normal reader: message {i} is opcode {op} {:?}",
                lossy(&payload)
            );
            assert!(
                payload == numbered(i),
                "normal reader: message {i} out of order: {:?}",
                lossy(&payload)
            );
        }
        reader
    });
    for i in 0..SLOW_MESSAGES {
        sender.ws_send(OpCode::Text, &numbered(i));
    }
    let mut reader = match reading.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    assert_stuck_client_closed_with_1008(&mut stuck);

    // The others are unaffected: the room still works for them.
    sender.ws_send(OpCode::Text, b"still open");
    expect_text(&mut reader, "still open", "reader after the stuck one left");
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

/// The same bound with the sender paced (each batch of 8 messages is read by the normal reader
/// before the next is sent): the never-reading client is closed with 1008, the reader gets all.
#[test]
fn paced_sender_stuck_reader_is_closed_with_1008() {
    let started = Instant::now();
    let srv = start_with(2, |c| {
        c.max_outbound_bytes = 64 * 1024;
        c.max_message_bytes = 16 * 1024;
    });
    let room = room_on_core("main", 1, 2, "paced");
    let path = format!("/parties/main/{room}");
    let mut stuck = Client::ws_connect(srv.addr, &path);
    let mut reader = Client::ws_connect(srv.addr, &path);
    let mut sender = Client::ws_connect(srv.addr, &path);
    for batch in (0..SLOW_MESSAGES).collect::<Vec<_>>().chunks(8) {
        let bytes: Vec<u8> = batch
            .iter()
            .flat_map(|&i| frame(true, OpCode::Text, &numbered(i)))
            .collect();
        sender.send(&bytes);
        for &i in batch {
            let (fin, op, payload) = reader.ws_frame();
            assert!(
                fin && op == TEXT,
                "reader: message {i} is opcode {op} {:?}",
                lossy(&payload)
            );
            assert!(
                payload == numbered(i),
                "reader: message {i}: {:?}",
                lossy(&payload)
            );
        }
    }
    assert_stuck_client_closed_with_1008(&mut stuck);
    sender.ws_send(OpCode::Text, b"still open");
    expect_text(&mut reader, "still open", "reader after the stuck one left");
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

/// One sender writes 512 KiB of 4 KiB messages in one go while the only other member reads.
/// Nobody is slow, so nobody may be closed. The bound (64 KiB) is smaller than what the server
/// reads from the sender in one pass (up to 4 x 64 KiB), so a server that only counted queued
/// bytes before offering them to the socket would close this reader every time (it did). The
/// reader's receive buffer is made large, so that the kernel can hold the whole burst even if
/// the reading thread is not scheduled during it: the test does not depend on timing.
#[test]
fn a_burst_from_one_sender_does_not_close_a_fast_reader() {
    let srv = start_with(2, |c| {
        c.max_outbound_bytes = 64 * 1024;
        c.max_message_bytes = 16 * 1024;
    });
    let room = room_on_core("main", 0, 2, "burst");
    let path = format!("/parties/main/{room}");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8 << 20).unwrap();
    sock.connect(&srv.addr.into()).unwrap();
    let mut reader = Client {
        stream: std::net::TcpStream::from(sock),
        buf: Vec::new(),
    };
    reader.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let r = reader.request(ws_upgrade(&path).as_bytes());
    assert_eq!(r.status, 101);
    let mut sender = Client::ws_connect(srv.addr, &path);
    const N: usize = 128;
    let reading = thread::spawn(move || {
        for i in 0..N {
            let (fin, op, payload) = reader.ws_frame();
            assert!(
                fin && op == TEXT,
                "fast reader: message {i} is opcode {op} {:?}",
                lossy(&payload)
            );
            assert!(
                payload == numbered(i),
                "fast reader: message {i}: {:?}",
                lossy(&payload)
            );
        }
    });
    let burst: Vec<u8> = (0..N)
        .flat_map(|i| frame(true, OpCode::Text, &numbered(i)))
        .collect();
    sender.send(&burst);
    if let Err(panic) = reading.join() {
        std::panic::resume_unwind(panic);
    }
}

// ---- 11. the legacy route ----

#[test]
fn legacy_party_route_shares_the_main_room() {
    let srv = start(2);
    for core in 0..2 {
        let room = room_on_core("main", core, 2, "legacy");
        let mut legacy = Client::ws_connect(srv.addr, &format!("/party/{room}"));
        let mut modern = Client::ws_connect(srv.addr, &format!("/parties/main/{room}?_pk=m"));
        legacy.ws_send(OpCode::Text, b"from legacy");
        expect_text(
            &mut modern,
            "from legacy",
            &format!("core {core}: legacy → modern"),
        );
        modern.ws_send(OpCode::Binary, b"\x00from modern");
        expect_frame(
            &mut legacy,
            BINARY,
            b"\x00from modern",
            &format!("core {core}: modern → legacy"),
        );
        legacy.ws_send(OpCode::Close, &close_payload(4000, b""));
        expect_frame(&mut legacy, CLOSE, &4000u16.to_be_bytes(), "legacy close");
        assert!(legacy.closed_by_server());
    }
}
