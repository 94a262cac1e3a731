//! Hostile input over real sockets: one table of named cases, each with the status or close code
//! it must get, run against one in-process server with short timeouts. After every case the
//! server must still serve other clients on both cores (a fresh GET and a fresh WebSocket echo),
//! so a case that kills a core, wedges a task or stops the listener fails by name.
//!
//! Plus two resource checks: `memory_stays_bounded` (the process's VmRSS across a burst of
//! half-sent heads and a room flooded towards a member that never reads) and `leak_check_fds`
//! (`/proc/self/fd` across 2,000 mixed connect/request/close cycles).
//!
//! The server runs in this process, so `/proc/self` counts its sockets and memory as well as the
//! clients'. Other test binaries (`tests/http.rs`, ...) are separate processes and do not show up
//! here, but the tests of *this* file run on parallel threads of one process: every test takes
//! [`serial`] first so that the resource tests measure only themselves.
//!
//! A failing case does not stop the table: every case runs, and the test fails at the end with
//! the list of cases that went wrong (run with `--nocapture` to see the whole table).

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use partyring::{runtime::CoreStats, ws::OpCode};

// ---- configuration ----

/// A head (or body) must arrive within this long of its first byte.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
/// A connection with nothing in progress is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a server-initiated WebSocket close waits for the peer.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest WebSocket message.
const MAX_MESSAGE: usize = 64 * 1024;
/// Outbound queue bound per WebSocket.
const MAX_OUTBOUND: usize = 256 * 1024;

fn hostile_server() -> TestServer {
    start_with(2, |c| {
        c.header_timeout = HEADER_TIMEOUT;
        c.idle_timeout = IDLE_TIMEOUT;
        c.close_timeout = CLOSE_TIMEOUT;
        c.max_message_bytes = MAX_MESSAGE;
        c.max_outbound_bytes = MAX_OUTBOUND;
    })
}

/// Every test in this file holds this while it runs (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stop(srv: TestServer) {
    let TestServer { server, .. } = srv;
    server.shutdown(Duration::from_secs(2));
}

// ---- frames ----

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PONG: u8 = 0xA;

/// A masked binary frame header announcing `len` bytes in the 64-bit form, without payload.
fn header_64(len: u64) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&MASK);
    out
}

// ---- the table ----

/// What a case observed. Cases compare it with their expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// This status with `Connection: close` and a reason, then the server closed the connection.
    Rejected(u16),
    /// This status, and the same connection then answered another request.
    Answered(u16),
    /// These statuses in order on one connection, then the server closed it.
    Pipelined(Vec<u16>),
    /// `n` responses, all with `status`, in order on one connection, which stays usable.
    Answers { n: usize, status: u16 },
    /// The server's close frame with this code (only pongs before it, if any), then TCP EOF.
    WsClosed(u16),
    /// `n` pongs in order, then an echo on the same connection.
    Pongs(usize),
    /// The member that never read was disconnected (any close frame it got was 1008) and the
    /// member that read got all `reader_got` messages, then one more.
    StuckDropped { reader_got: usize },
    /// `cycles` hostile connections came and went; the server's fds are back where they were
    /// (or, for a room, the room still works).
    Survived { cycles: usize },
    /// After the `101`, `n` messages came back exactly (echo party).
    Echoed(usize),
}

type Run = Box<dyn Fn(&Ctx, &str) -> Outcome>;

struct Case {
    name: &'static str,
    expect: Outcome,
    run: Run,
}

fn case(
    name: &'static str,
    expect: Outcome,
    run: impl Fn(&Ctx, &str) -> Outcome + 'static,
) -> Case {
    Case {
        name,
        expect,
        run: Box::new(run),
    }
}

/// The server under test and a `main` and an `echo` room on each core.
struct Ctx {
    srv: TestServer,
    main_rooms: [String; 2],
    echo_rooms: [String; 2],
}

impl Ctx {
    fn addr(&self) -> SocketAddr {
        self.srv.addr
    }
}

use Outcome::*;

fn cases() -> Vec<Case> {
    let many_headers: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let chunked = "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let upgrade = "GET /parties/echo/h HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    vec![
        // -- request smuggling and framing --
        case(
            "Content-Length + Transfer-Encoding",
            Rejected(400),
            http(
                "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ),
        case(
            "Transfer-Encoding + Content-Length (other order)",
            Rejected(400),
            http(
                "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 5\r\n\r\n0\r\n\r\n",
            ),
        ),
        case(
            "two Content-Lengths, same value",
            Rejected(400),
            http(
                "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\
                 Content-Length: 2\r\n\r\n{}",
            ),
        ),
        case(
            "negative Content-Length",
            Rejected(400),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        ),
        case(
            "Content-Length overflowing u64",
            Rejected(400),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617\r\n\r\n"),
        ),
        case(
            "Content-Length in hex",
            Rejected(400),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"),
        ),
        case(
            "Content-Length over max_body_bytes, no body sent",
            Rejected(413),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"),
        ),
        case(
            "Expect: 100-continue with an oversized Content-Length (413, no 100 first)",
            Rejected(413),
            http(
                "POST /party/h HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\
                 Content-Length: 2000000\r\n\r\n",
            ),
        ),
        case(
            "Transfer-Encoding: gzip",
            Rejected(501),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ),
        case(
            "two Transfer-Encoding fields",
            Rejected(501),
            http(
                "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            Rejected(400),
            http("POST /party/h HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        case(
            "obs-fold header continuation",
            Rejected(400),
            http("GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"),
        ),
        // httparse takes a lone LF as a line end (RFC 9112 2.2 allows it): a correct answer.
        case(
            "bare LF line endings",
            Answered(200),
            http("GET /party/h HTTP/1.1\nHost: a\nX-A: b\n\n"),
        ),
        case(
            "bare CR inside the head",
            Rejected(400),
            http("GET /party/h HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
        ),
        case(
            "NUL in a header value",
            Rejected(400),
            http("GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n"),
        ),
        // obs-text (0x80-0xFF) is allowed in field values; nothing here reads X-A.
        case(
            "high-bit bytes in a header value",
            Answered(200),
            http(b"GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9 \xff\xfe\r\n\r\n".to_vec()),
        ),
        case(
            "high-bit bytes in Host and Sec-WebSocket-Key",
            Rejected(400),
            http(
                [
                    upgrade.as_bytes(),
                    b"Host: \xff\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ\xff==\r\n\r\n",
                ]
                .concat(),
            ),
        ),
        case(
            "invalid UTF-8 in the request target",
            Rejected(400),
            http(b"GET /party/h\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ),
        case(
            "valid non-ASCII UTF-8 in the request target",
            Answered(200),
            http("GET /party/caf\u{e9}-\u{1f600} HTTP/1.1\r\nHost: a\r\n\r\n"),
        ),
        case(
            "huge header (17 KiB value)",
            Rejected(431),
            http(format!(
                "GET /party/h HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "b".repeat(17 * 1024)
            )),
        ),
        case(
            "huge header that never ends",
            Rejected(431),
            http(format!(
                "GET /party/h HTTP/1.1\r\nHost: a\r\nX-Big: {}",
                "b".repeat(20 * 1024)
            )),
        ),
        case(
            "huge request line (9 KiB target)",
            Rejected(414),
            http(format!(
                "GET /party/{} HTTP/1.1\r\nHost: a\r\n\r\n",
                "a".repeat(9 * 1024)
            )),
        ),
        case(
            "huge request line that never ends",
            Rejected(414),
            http(format!("GET /party/{}", "a".repeat(12 * 1024))),
        ),
        case(
            "too many headers (101)",
            Rejected(431),
            http(format!("GET /party/h HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n")),
        ),
        case(
            "100 headers (exactly max_headers)",
            Answered(200),
            http(format!(
                "GET /party/h HTTP/1.1\r\nHost: a\r\n{}\r\n",
                (1..100).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            )),
        ),
        case(
            "head of exactly max_head_bytes",
            Answered(200),
            http(head_of(16 * 1024)),
        ),
        case(
            "head of max_head_bytes + 1",
            Rejected(431),
            http(head_of(16 * 1024 + 1)),
        ),
        case(
            "space before a header's colon",
            Rejected(400),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ),
        case(
            "absolute-form request target",
            Answered(404),
            http("GET http://a/party/h HTTP/1.1\r\nHost: a\r\n\r\n"),
        ),
        case(
            "CRLF flood before the request line (18 KiB)",
            Rejected(431),
            http(format!("{}GET /party/h HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n".repeat(9 * 1024))),
        ),
        case(
            "HTTP/1.1 without Host",
            Rejected(400),
            http("GET /party/h HTTP/1.1\r\n\r\n"),
        ),
        case(
            "garbage method bytes",
            Rejected(400),
            http(b"G\x01\x02T /party/h HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ),
        case(
            "HTTP/2 connection preface",
            Rejected(400),
            http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ),
        case(
            "Expect with an unknown expectation",
            Rejected(417),
            http("POST /party/h HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}"),
        ),
        // -- chunked bodies --
        case(
            "chunk size of 17 hex digits",
            Rejected(400),
            http(format!("{chunked}00000000000000001\r\nx\r\n0\r\n\r\n")),
        ),
        // 16 digits fit the parser's u64. The size check used to add the body so far to it:
        // with a first chunk already decoded that overflowed, and in a debug build the panic
        // took the whole core thread down (found by this table; see body.rs `SizeLf`).
        case(
            "chunk size u64::MAX after a first chunk",
            Rejected(413),
            http(format!("{chunked}1\r\na\r\nFFFFFFFFFFFFFFFF\r\n")),
        ),
        case(
            "chunk size u64::MAX as the first chunk",
            Rejected(413),
            http(format!("{chunked}FFFFFFFFFFFFFFFF\r\n")),
        ),
        case(
            "chunk size not hex",
            Rejected(400),
            http(format!("{chunked}zz\r\n")),
        ),
        case(
            "chunk extension over 1 KiB",
            Rejected(400),
            http(format!(
                "{chunked}1;ext={}\r\nx\r\n0\r\n\r\n",
                "e".repeat(1100)
            )),
        ),
        case(
            "chunk data without its CRLF",
            Rejected(400),
            http(format!("{chunked}2\r\n{{}}XX0\r\n\r\n")),
        ),
        case(
            "trailer section over 8 KiB",
            Rejected(400),
            http(format!(
                "{chunked}2\r\n{{}}\r\n0\r\nX-T: {}\r\n\r\n",
                "t".repeat(9 * 1024)
            )),
        ),
        case(
            "chunked body over max_body_bytes",
            Rejected(413),
            http(format!("{chunked}200000\r\n")),
        ),
        // -- slow clients --
        case("slowloris head, one byte every 40 ms", Rejected(408), slowloris),
        case(
            "slow body (3 of 10 bytes, then nothing)",
            Rejected(408),
            |ctx, name| {
                let started = Instant::now();
                let out = exchange(
                    ctx,
                    name,
                    b"POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{\"m",
                );
                assert!(
                    started.elapsed() >= HEADER_TIMEOUT,
                    "{name}: 408 after {:?}, before the header timeout",
                    started.elapsed()
                );
                out
            },
        ),
        // -- pipelining --
        case(
            "pipelined batch whose 3rd request is malformed",
            Pipelined(vec![200, 200, 400]),
            |ctx, name| {
                let room = &ctx.main_rooms[0];
                let batch = [
                    get(&format!("/party/{room}")),
                    get(&format!("/party/{room}")),
                    "GET /party/h HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n".into(),
                    get(&format!("/party/{room}")),
                ]
                .concat();
                pipelined(ctx, name, batch.as_bytes())
            },
        ),
        case(
            "5,000 pipelined GETs in one write",
            Answers { n: 5000, status: 200 },
            |ctx, name| {
                let req = get(&format!("/party/{}", ctx.main_rooms[1]));
                answers(ctx, name, req.repeat(5000).as_bytes(), 5000, false)
            },
        ),
        case(
            "300 pipelined GETs alternating between the cores' rooms",
            Answers { n: 300, status: 200 },
            |ctx, name| {
                let batch: String = (0..300)
                    .map(|i| get(&format!("/party/{}", ctx.main_rooms[i % 2])))
                    .collect();
                answers(ctx, name, batch.as_bytes(), 300, true)
            },
        ),
        // -- refused upgrades --
        case(
            "upgrade without Sec-WebSocket-Key",
            Rejected(400),
            http(format!("{upgrade}\r\n")),
        ),
        case(
            "upgrade with a 28-character key (20 bytes)",
            Rejected(400),
            http(format!(
                "{upgrade}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            )),
        ),
        case(
            "upgrade with a 12-character key (8 bytes)",
            Rejected(400),
            http(format!("{upgrade}Sec-WebSocket-Key: AAAAAAAAAAA=\r\n\r\n")),
        ),
        case(
            "upgrade with a Content-Length body",
            Rejected(400),
            http(format!("{upgrade}{KEY}Content-Length: 5\r\n\r\nhello")),
        ),
        case(
            "upgrade with a chunked body",
            Rejected(400),
            http(format!(
                "{upgrade}{KEY}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )),
        ),
        // -- WebSocket framing --
        case(
            "unmasked frame",
            WsClosed(1002),
            ws(raw_frame(0x81, false, b"unmasked")),
        ),
        case(
            "reserved bits RSV1|RSV2|RSV3",
            WsClosed(1002),
            ws(raw_frame(0x80 | 0x70 | TEXT, true, b"rsv")),
        ),
        case(
            "reserved opcode 0xB",
            WsClosed(1002),
            ws(raw_frame(0x8B, true, b"")),
        ),
        case(
            "64-bit length with the top bit set",
            WsClosed(1002),
            ws(header_64(1 << 63)),
        ),
        case(
            "64-bit length of 2^40 (refused before any payload)",
            WsClosed(1009),
            ws(header_64(1 << 40)),
        ),
        case(
            "ping with a 126-byte payload",
            WsClosed(1002),
            ws(raw_frame(0x89, true, &[b'p'; 126])),
        ),
        case(
            "fragmented ping (FIN clear)",
            WsClosed(1002),
            ws(raw_frame(0x09, true, b"frag")),
        ),
        case(
            "continuation frame with no message in progress",
            WsClosed(1002),
            ws(frame(true, OpCode::Continuation, b"orphan")),
        ),
        case(
            "new text frame inside a fragmented message",
            WsClosed(1002),
            ws([frame(false, OpCode::Text, b"a"), frame(true, OpCode::Text, b"b")].concat()),
        ),
        case(
            "invalid UTF-8 split across fragments (a ping between)",
            WsClosed(1007),
            ws_pong_between(
                frame(false, OpCode::Text, b"ok \xe2\x82"),
                frame(true, OpCode::Continuation, b"A"),
            ),
        ),
        case(
            "text frame ending inside a UTF-8 character (one write)",
            WsClosed(1007),
            ws(frame(true, OpCode::Text, b"abc\xe2\x82")),
        ),
        case(
            "text frame ending inside a UTF-8 character (split across writes)",
            WsClosed(1007),
            ws_writes({
                let f = frame(true, OpCode::Text, b"abcdef\xf0\x9f\x98");
                vec![f[..8].to_vec(), f[8..].to_vec()]
            }),
        ),
        case(
            "fragmented text ending inside a UTF-8 character",
            WsClosed(1007),
            ws([
                frame(false, OpCode::Text, b"abc"),
                frame(true, OpCode::Continuation, b"\xf0\x9f"),
            ]
            .concat()),
        ),
        case(
            "overlong UTF-8 encoding and a surrogate",
            WsClosed(1007),
            ws(frame(true, OpCode::Text, b"\xc0\xaf \xed\xa0\x80")),
        ),
        case(
            "close with code 1005",
            WsClosed(1002),
            ws(close_frame(1005, b"")),
        ),
        case(
            "close with code 1006",
            WsClosed(1002),
            ws(close_frame(1006, b"")),
        ),
        case(
            "close with code 999",
            WsClosed(1002),
            ws(close_frame(999, b"")),
        ),
        case(
            "close with a 1-byte payload",
            WsClosed(1002),
            ws(frame(true, OpCode::Close, &[0x03])),
        ),
        case(
            "close with an invalid UTF-8 reason",
            WsClosed(1007),
            ws(close_frame(1000, b"bye \xc3\x28")),
        ),
        case(
            "message of max_message_bytes + 1 in one frame",
            WsClosed(1009),
            ws(frame(true, OpCode::Binary, &vec![7; MAX_MESSAGE + 1])),
        ),
        case(
            "message of max_message_bytes + 1 in 65 fragments",
            WsClosed(1009),
            ws({
                let mut bytes = frame(false, OpCode::Binary, &[1; 1024]);
                for _ in 1..MAX_MESSAGE / 1024 {
                    bytes.extend(frame(false, OpCode::Continuation, &[2; 1024]));
                }
                bytes.extend(frame(true, OpCode::Continuation, &[3]));
                bytes
            }),
        ),
        case(
            "data after the client's close frame is ignored",
            WsClosed(1000),
            ws([
                close_frame(1000, b""),
                frame(true, OpCode::Text, b"too late"),
                frame(true, OpCode::Ping, b"too late"),
                raw_frame(0x81, false, b"even unmasked"),
            ]
            .concat()),
        ),
        case(
            "message of exactly max_message_bytes is echoed",
            Echoed(1),
            |ctx, name| {
                let msg: Vec<u8> = (0..MAX_MESSAGE).map(|i| (i % 251) as u8).collect();
                let mut c = Client::ws_connect(ctx.addr(), "/parties/echo/hostile");
                c.ws_send(OpCode::Binary, &msg);
                let (_, op, got) = c.ws_frame();
                assert!(op == 0x2 && got == msg, "{name}: opcode {op}, {} bytes", got.len());
                Echoed(1)
            },
        ),
        case(
            "HTTP request pipelined behind an upgrade (read as a frame: RSV set)",
            WsClosed(1002),
            |ctx, name| {
                let mut c = ctx.srv.connect();
                let mut bytes = ws_upgrade("/parties/echo/hostile").into_bytes();
                bytes.extend_from_slice(get("/party/h").as_bytes());
                c.send(&bytes);
                assert_eq!(c.response().status, 101, "{name}");
                server_close(&mut c, name, false)
            },
        ),
        case(
            "upgrade with a 6 KiB _pk of invalid percent-escapes",
            Echoed(1),
            |ctx, name| {
                let path = format!("/parties/echo/hostile?_pk={}", "%ff%C0%".repeat(900));
                let mut c = Client::ws_connect(ctx.addr(), &path);
                c.ws_send(OpCode::Text, b"odd id");
                let (_, op, got) = c.ws_frame();
                assert!(op == TEXT && got == b"odd id", "{name}: opcode {op}");
                Echoed(1)
            },
        ),
        case(
            "GET then upgrade to the other core's room, then frames, in one write",
            Echoed(6),
            pipelined_upgrade,
        ),
        case(
            "members resetting while their room broadcasts to them",
            Survived { cycles: 10 },
            resets_mid_broadcast,
        ),
        // -- floods and slow readers --
        case("10,000 pings in one write, reading", Pongs(10_000), ping_flood_reading),
        case(
            "100,000 pings in ten writes, not reading (outbound bound)",
            WsClosed(1008),
            ping_flood_not_reading,
        ),
        case(
            "member that never reads while its room broadcasts 12 MB",
            StuckDropped { reader_got: 200 },
            stuck_member,
        ),
        // -- handoff --
        case(
            "400 connections dropped mid-handoff (FIN and RST, both cores)",
            Survived { cycles: 400 },
            handoff_drops,
        ),
    ]
}

// ---- HTTP runners ----

/// Sends `req` on a fresh connection and reads the answer (see [`exchange`]).
fn http(req: impl Into<Vec<u8>>) -> impl Fn(&Ctx, &str) -> Outcome {
    let req = req.into();
    move |ctx, name| exchange(ctx, name, &req)
}

/// Sends `req` on a fresh connection and classifies the answer: `Rejected` if it says
/// `Connection: close` (and then the server must close), else `Answered` (and then the same
/// connection must answer a GET).
fn exchange(ctx: &Ctx, name: &str, req: &[u8]) -> Outcome {
    let mut c = ctx.srv.connect();
    // The server may answer and stop reading before a large request is all written.
    let _ = c.stream.write_all(req);
    let r = c.response();
    assert_ne!(
        r.status, 100,
        "{name}: 100 Continue before the final answer"
    );
    if r.header("connection") == Some("close") {
        assert!(!r.body.is_empty(), "{name}: {} without a reason", r.status);
        assert!(
            c.closed_by_server(),
            "{name}: not closed after {}",
            r.status
        );
        Rejected(r.status)
    } else {
        let again = c.request(get(&format!("/party/{}", ctx.main_rooms[0])).as_bytes());
        assert_eq!(again.status, 200, "{name}: keep-alive after {}", r.status);
        Answered(r.status)
    }
}

/// A complete GET head of exactly `len` bytes (padded with one header).
fn head_of(len: usize) -> Vec<u8> {
    let start = b"GET /party/h HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    let mut head = start.to_vec();
    head.resize(len - 4, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Sends a pipelined batch and reads responses until the server closes.
fn pipelined(ctx: &Ctx, name: &str, batch: &[u8]) -> Outcome {
    let mut c = ctx.srv.connect();
    c.send(batch);
    let mut statuses = Vec::new();
    loop {
        let r = c.response();
        statuses.push(r.status);
        if r.header("connection") == Some("close") {
            break;
        }
        assert!(statuses.len() < 10, "{name}: never closed: {statuses:?}");
    }
    assert!(
        c.closed_by_server(),
        "{name}: not closed after {statuses:?}"
    );
    assert!(c.buf.is_empty(), "{name}: bytes after the last response");
    Pipelined(statuses)
}

/// Writes `batch` (from another thread: the responses must be read meanwhile or both sides
/// block) and reads `n` responses, which must all have one status.
fn answers(ctx: &Ctx, name: &str, batch: &[u8], n: usize, count_handoffs: bool) -> Outcome {
    let handoffs = ctx.srv.handoffs_sent();
    let mut c = ctx.srv.connect();
    let mut w = c.stream.try_clone().expect("clone");
    let batch = batch.to_vec();
    let writer = thread::spawn(move || w.write_all(&batch));
    let mut status = None;
    for i in 0..n {
        let r = c.response();
        assert_eq!(
            *status.get_or_insert(r.status),
            r.status,
            "{name}: response {i}"
        );
        assert_eq!(r.header("connection"), None, "{name}: response {i}");
    }
    writer.join().expect("writer").expect("batch written");
    let again = c.request(get(&format!("/party/{}", ctx.main_rooms[0])).as_bytes());
    assert_eq!(again.status, 200, "{name}: usable after the batch");
    if count_handoffs {
        let sent = ctx.srv.handoffs_sent() - handoffs;
        assert!(
            sent + 1 >= n as u64,
            "{name}: only {sent} handoffs for {n} requests"
        );
    }
    Answers {
        n,
        status: status.unwrap_or(0),
    }
}

/// A head that never ends, trickled a byte at a time: 408 `HEADER_TIMEOUT` after the first byte
/// (trickling does not extend it), then the connection is closed. Bounded below by the header
/// timeout (timers never fire early) and above by the idle timeout, ten times longer: a timer
/// that each byte pushed back would never fire, and no other timer is due before then.
fn slowloris(ctx: &Ctx, name: &str) -> Outcome {
    let mut c = ctx.srv.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_millis(40)))
        .unwrap();
    let started = Instant::now();
    c.send(b"GET /party/h HTTP/1.1\r\nHost: a\r\nX-Slow: ");
    let mut chunk = [0u8; 4096];
    let eof_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: still open after 5 s ({} bytes read)",
            c.buf.len()
        );
        // Errors once the server has closed; the read below sees it.
        let _ = c.stream.write_all(b"z");
        match c.stream.read(&mut chunk) {
            Ok(0) => break started.elapsed(),
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break started.elapsed(),
            Err(e) => panic!("{name}: read failed: {e}"),
        }
    };
    assert!(
        eof_after >= HEADER_TIMEOUT && eof_after < IDLE_TIMEOUT,
        "{name}: closed after {eof_after:?}, header timeout {HEADER_TIMEOUT:?}"
    );
    let r = c.response();
    assert_eq!(r.header("connection"), Some("close"), "{name}");
    Rejected(r.status)
}

// ---- WebSocket runners ----

/// Sends `bytes` in one write on a fresh echo connection; expects the server's close.
fn ws(bytes: Vec<u8>) -> impl Fn(&Ctx, &str) -> Outcome {
    ws_writes(vec![bytes])
}

/// Sends each of `writes` separately; expects the server's close. Each write but the last is
/// read by the server (its byte counter in `/metrics` has grown by it) before the next is sent,
/// so they arrive in separate reads. Nothing else talks to the server while a case runs.
fn ws_writes(writes: Vec<Vec<u8>>) -> impl Fn(&Ctx, &str) -> Outcome {
    move |ctx, name| {
        let mut c = Client::ws_connect(ctx.addr(), "/parties/echo/hostile");
        for (i, w) in writes.iter().enumerate() {
            let last = i + 1 == writes.len();
            let before = (!last).then(|| received_bytes(ctx.addr()));
            // The server may fail the connection before reading everything.
            let _ = c.stream.write_all(w);
            if let Some(before) = before {
                let what = format!("{name}: the server reads write {i}");
                wait_until_read(ctx.addr(), before, w.len(), &what);
            }
        }
        server_close(&mut c, name, false)
    }
}

/// Sends `first` and a ping, requires the pong (so the server has read `first` and did not fail
/// the connection for it), then sends `second` and expects the server's close.
fn ws_pong_between(first: Vec<u8>, second: Vec<u8>) -> impl Fn(&Ctx, &str) -> Outcome {
    move |ctx, name| {
        let mut c = Client::ws_connect(ctx.addr(), "/parties/echo/hostile");
        let _ = c
            .stream
            .write_all(&[first.clone(), frame(true, OpCode::Ping, b"barrier")].concat());
        match next_frame(&mut c, name, "the pong after the first part") {
            Some((true, PONG, payload)) if payload == b"barrier" => {}
            other => panic!("{name}: wanted the pong after the first part, got {other:?}"),
        }
        let _ = c.stream.write_all(&second);
        server_close(&mut c, name, false)
    }
}

/// The next server frame, or None at EOF; a read timeout fails naming the case and `context`.
fn next_frame(c: &mut Client, name: &str, context: &str) -> Option<(bool, u8, Vec<u8>)> {
    match panic::catch_unwind(AssertUnwindSafe(|| c.try_ws_frame())) {
        Ok(frame) => frame,
        Err(p) => panic!("{name}: no frame and no EOF ({context}): {}", panic_text(p)),
    }
}

/// Reads to the server's close frame (skipping pongs if `allow_pongs`; any other frame fails),
/// checks it, and requires TCP EOF after it.
fn server_close(c: &mut Client, name: &str, allow_pongs: bool) -> Outcome {
    let mut pongs = 0;
    loop {
        let Some((fin, op, payload)) = next_frame(c, name, &format!("after {pongs} pongs")) else {
            panic!("{name}: EOF before the server's close frame ({pongs} pongs)");
        };
        match op {
            CLOSE => {
                assert!(fin, "{name}: close frame without FIN");
                assert!(
                    payload.len() >= 2,
                    "{name}: close frame without a code: {payload:?}"
                );
                assert!(
                    std::str::from_utf8(&payload[2..]).is_ok(),
                    "{name}: close reason not UTF-8"
                );
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert!(
                    c.closed_by_server(),
                    "{name}: no TCP EOF after close {code}"
                );
                return WsClosed(code);
            }
            PONG if allow_pongs => pongs += 1,
            _ => panic!(
                "{name}: frame with opcode {op} ({} bytes: {:?}) before the close",
                payload.len(),
                String::from_utf8_lossy(&payload[..payload.len().min(40)])
            ),
        }
    }
}

/// 10,000 pings (32-byte payloads: 340 KB of pongs, more than the 256 KiB outbound bound) in one
/// write while another thread reads: every pong comes back in order, nobody is closed, and the
/// connection still echoes.
fn ping_flood_reading(ctx: &Ctx, name: &str) -> Outcome {
    const N: usize = 10_000;
    let payload = |i: usize| format!("{i:032}");
    let mut c = Client::ws_connect(ctx.addr(), "/parties/echo/ping-flood");
    let flood: Vec<u8> = (0..N)
        .flat_map(|i| frame(true, OpCode::Ping, payload(i).as_bytes()))
        .collect();
    let mut w = c.stream.try_clone().expect("clone");
    let writer = thread::spawn(move || w.write_all(&flood));
    for i in 0..N {
        let (fin, op, got) = c.ws_frame();
        assert!(
            fin && op == PONG && got == payload(i).as_bytes(),
            "{name}: frame {i} is opcode {op} {:?}, want pong {i}",
            String::from_utf8_lossy(&got)
        );
    }
    writer.join().expect("writer").expect("flood written");
    c.ws_send(OpCode::Text, b"after the flood");
    let (_, op, got) = c.ws_frame();
    assert!(
        op == TEXT && got == b"after the flood",
        "{name}: echo after the flood: opcode {op}"
    );
    Pongs(N)
}

/// 100,000 pings with 125-byte payloads (12.7 MB of pongs) in ten writes from a client that
/// reads nothing until it has written them all. The kernel takes up to ~4 MB of pongs (the
/// server's send buffer grows to `tcp_wmem` max), then the outbound queue passes its 256 KiB
/// bound and the server closes with 1008 (the pongs before the close are skipped).
///
/// The client starts reading within a few hundred ms of the server's decision, inside
/// `CLOSE_TIMEOUT`: a client that never reads at all cannot be sent the close frame, and the
/// server just drops it after `CLOSE_TIMEOUT` (the stuck-member case checks that).
fn ping_flood_not_reading(ctx: &Ctx, name: &str) -> Outcome {
    let mut c = Client::ws_connect(ctx.addr(), "/parties/echo/ping-flood");
    let batch: Vec<u8> = (0..10_000)
        .flat_map(|_| frame(true, OpCode::Ping, &[b'p'; 125]))
        .collect();
    for _ in 0..10 {
        if c.stream.write_all(&batch).is_err() {
            break;
        }
    }
    server_close(&mut c, name, true)
}

/// A `main` room with a member that never reads, one that reads, and one that sends 200
/// messages of 60 KiB: the stuck member is dropped (with 1008 if it ever reads the close), the
/// reader gets every message in order, and the room still works for the others. The sender
/// stays at most 3 messages (180 KiB, under the 256 KiB outbound bound) ahead of the reader,
/// so a reader slowed down by a busy machine is never a slow reader the server must drop.
fn stuck_member(ctx: &Ctx, name: &str) -> Outcome {
    const N: usize = 200;
    let message = |i: usize| {
        let mut m = format!("{i:06}:").into_bytes();
        m.resize(60 * 1024, b'a' + (i % 26) as u8);
        m
    };
    let path = format!("/parties/main/{}", ctx.main_rooms[1]);
    let mut stuck = Client::ws_connect(ctx.addr(), &path);
    let mut reader = Client::ws_connect(ctx.addr(), &path);
    let mut sender = Client::ws_connect(ctx.addr(), &path);
    let reader_name = name.to_owned();
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let reading = thread::spawn(move || {
        for i in 0..N {
            let (fin, op, got) = reader.ws_frame();
            seen.store(i + 1, Ordering::Release);
            assert!(
                fin && op == TEXT && got == message(i),
                "{reader_name}: reader's message {i} is opcode {op} {:?}",
                String::from_utf8_lossy(&got[..got.len().min(20)])
            );
        }
        reader
    });
    for i in 0..N {
        let deadline = Instant::now() + Duration::from_secs(20);
        while received.load(Ordering::Acquire) + 3 < i
            && !reading.is_finished()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(1));
        }
        sender.ws_send(OpCode::Text, &message(i));
    }
    let mut reader = reading.join().unwrap_or_else(|p| panic::resume_unwind(p));
    // The stuck member now reads: an in-order prefix, maybe a close 1008 (if the server still
    // held the connection when it started reading), then EOF.
    let mut got = 0;
    while let Some((_, op, payload)) = stuck.try_ws_frame() {
        match op {
            TEXT => {
                assert!(payload == message(got), "{name}: stuck's message {got}");
                got += 1;
            }
            CLOSE => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert_eq!(code, 1008, "{name}: stuck member's close code");
            }
            _ => panic!("{name}: stuck member got opcode {op}"),
        }
    }
    assert!(
        got < N,
        "{name}: the stuck member got all {N}: never dropped"
    );
    sender.ws_send(OpCode::Text, b"still open");
    let (_, op, payload) = reader.ws_frame();
    assert!(
        op == TEXT && payload == b"still open",
        "{name}: room unusable after the stuck member was dropped"
    );
    StuckDropped { reader_got: N }
}

/// For each core: a GET for a room of one core, an upgrade for an echo room of the other and
/// three frames, all in one write. The GET is answered, then the connection moves (if it must)
/// with the frames and they are echoed.
fn pipelined_upgrade(ctx: &Ctx, name: &str) -> Outcome {
    let mut echoes = 0;
    for core in 0..2 {
        let mut c = ctx.srv.connect();
        let mut bytes = get(&format!("/party/{}", ctx.main_rooms[core])).into_bytes();
        bytes.extend(ws_upgrade(&format!("/parties/echo/{}", ctx.echo_rooms[1 - core])).bytes());
        for i in 0..3 {
            bytes.extend(frame(true, OpCode::Text, format!("early {i}").as_bytes()));
        }
        c.send(&bytes);
        assert_eq!(c.response().status, 200, "{name}: GET on core {core}");
        assert_eq!(
            c.response().status,
            101,
            "{name}: upgrade on core {}",
            1 - core
        );
        for i in 0..3 {
            let (_, op, got) = c.ws_frame();
            assert!(
                op == TEXT && got == format!("early {i}").as_bytes(),
                "{name}: echo {i} (core {core}): opcode {op}"
            );
            echoes += 1;
        }
    }
    Echoed(echoes)
}

/// Ten members of a `main` room that never read are reset (RST) while a sender streams 16 KiB
/// messages to them; the sender keeps going, then a new member gets the next message.
fn resets_mid_broadcast(ctx: &Ctx, name: &str) -> Outcome {
    const MEMBERS: usize = 10;
    let path = format!("/parties/main/{}", ctx.main_rooms[0]);
    let members: Vec<Client> = (0..MEMBERS)
        .map(|_| Client::ws_connect(ctx.addr(), &path))
        .collect();
    let mut sender = Client::ws_connect(ctx.addr(), &path);
    let msg = vec![b'm'; 16 * 1024];
    for _ in 0..20 {
        sender.ws_send(OpCode::Text, &msg);
    }
    for m in members {
        reset(m.stream);
    }
    for _ in 0..80 {
        sender.ws_send(OpCode::Text, &msg);
    }
    let mut fresh = Client::ws_connect(ctx.addr(), &path);
    sender.ws_send(OpCode::Text, b"after the resets");
    // It may have joined while the last of the 100 messages were still being broadcast.
    loop {
        let (_, op, got) = fresh.ws_frame();
        assert!(
            op == TEXT && (got == msg || got == b"after the resets"),
            "{name}: new member got opcode {op} ({} bytes)",
            got.len()
        );
        if got == b"after the resets" {
            break;
        }
    }
    Survived { cycles: MEMBERS }
}

// ---- handoff ----

/// Connections accepted by the server's listeners so far (handoffs not counted).
fn accepted(ctx: &Ctx) -> u64 {
    let stats = &ctx.srv.server.stats;
    stats.iter().map(|s| CoreStats::get(&s.accepted)).sum()
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

/// Waits (at most `limit`) for the fd count to fall to `target`; returns the last count.
fn settle_fds(target: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = fd_count();
        if n <= target || Instant::now() > deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Request heads (and upgrades with frames) for rooms on both cores, each dropped right after
/// it is written, half with RST: whichever core accepted them, about half must be handed to the
/// other, and some are gone before or during the move. Afterwards the server serves and every
/// socket it held is closed.
fn handoff_drops(ctx: &Ctx, name: &str) -> Outcome {
    const CYCLES: usize = 400;
    let fds = fd_count();
    let handoffs = ctx.srv.handoffs_sent();
    let accepted_before = accepted(ctx);
    for i in 0..CYCLES {
        let core = i % 2;
        let (main, echo) = (&ctx.main_rooms[core], &ctx.echo_rooms[core]);
        let bytes = match (i / 2) % 4 {
            0 => get(&format!("/party/{main}")).into_bytes(),
            1 => format!(
                "POST /party/{main} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{{\"message\""
            )
            .into_bytes(),
            2 => {
                let mut b = ws_upgrade(&format!("/parties/echo/{echo}")).into_bytes();
                b.extend(frame(true, OpCode::Text, b"in flight"));
                b.extend(frame(false, OpCode::Text, b"half a message"));
                b
            }
            _ => {
                let mut b = ws_upgrade(&format!("/parties/echo/{echo}")).into_bytes();
                b.extend(&frame(true, OpCode::Binary, &[9; 300])[..20]);
                b
            }
        };
        let mut s = TcpStream::connect(ctx.addr()).expect("connect");
        let _ = s.write_all(&bytes);
        // Every (core, kind) pair is dropped both ways.
        if (i / 8) % 2 == 0 {
            reset(s);
        } else {
            drop(s);
        }
    }
    // Wait until the server has accepted all of them (not yet accepted ones hold no fd of
    // ours), then until every socket it took is closed again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while accepted(ctx) - accepted_before < CYCLES as u64 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let after = settle_fds(fds + 4, Duration::from_secs(3));
    let sent = ctx.srv.handoffs_sent() - handoffs;
    assert!(
        after <= fds + 4,
        "{name}: {after} fds open after the loop, {fds} before ({sent} handoffs)"
    );
    // About half land on the wrong core; a reset may beat the server to the bytes.
    assert!(
        sent >= CYCLES as u64 / 8,
        "{name}: only {sent} of {CYCLES} connections were handed off"
    );
    Survived { cycles: CYCLES }
}

// ---- liveness ----

/// A fresh GET on a room of each core, and a fresh echo round trip on each core.
fn still_serves(ctx: &Ctx, name: &str) {
    for core in 0..2 {
        let r = ctx
            .srv
            .connect()
            .request(get(&format!("/party/{}", ctx.main_rooms[core])).as_bytes());
        assert_eq!(r.status, 200, "after {name}: GET on core {core}");
        let mut c = Client::ws_connect(
            ctx.addr(),
            &format!("/parties/echo/{}", ctx.echo_rooms[core]),
        );
        c.ws_send(OpCode::Text, name.as_bytes());
        let (_, op, payload) = c.ws_frame();
        assert!(
            op == TEXT && payload == name.as_bytes(),
            "after {name}: echo on core {core} answered opcode {op}"
        );
        c.send(&close_frame(1000, b""));
        let (_, op, _) = c.ws_frame();
        assert_eq!(op, CLOSE, "after {name}: close echo on core {core}");
        assert!(
            c.closed_by_server(),
            "after {name}: EOF after the close on core {core}"
        );
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

#[test]
fn hostile_input_table() {
    let _serial = serial();
    let started = Instant::now();
    let srv = hostile_server();
    let ctx = Ctx {
        main_rooms: [0, 1].map(|core| room_on_core("main", core, 2, "alive")),
        echo_rooms: [0, 1].map(|core| room_on_core("echo", core, 2, "alive")),
        srv,
    };
    still_serves(&ctx, "startup");
    let cases = cases();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for case in &cases {
        let t = Instant::now();
        let got = panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&ctx, case.name)));
        let took = t.elapsed();
        let result = match got {
            Ok(got) if got == case.expect => "ok".to_owned(),
            Ok(got) => {
                let msg = format!("got {got:?}");
                failures.push(format!("{}: expected {:?}, {msg}", case.name, case.expect));
                msg
            }
            Err(p) => {
                let msg = format!("panicked: {}", panic_text(p));
                failures.push(format!("{}: {msg}", case.name));
                msg
            }
        };
        let alive = panic::catch_unwind(AssertUnwindSafe(|| still_serves(&ctx, case.name)));
        let alive = match alive {
            Ok(()) => "serving".to_owned(),
            Err(p) => {
                let msg = panic_text(p);
                failures.push(format!("{}: server stopped serving: {msg}", case.name));
                format!("NOT SERVING: {msg}")
            }
        };
        rows.push(format!(
            "{:<72} {:<36} {:>6}ms {result} / {alive}",
            case.name,
            format!("{:?}", case.expect),
            took.as_millis()
        ));
    }
    println!("{} cases in {:?}:", cases.len(), started.elapsed());
    for row in &rows {
        println!("  {row}");
    }
    stop(ctx.srv);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

// ---- resources ----

/// Reads and discards until EOF (or reset); false if the server kept the connection open.
fn drain_to_eof(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 65536];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// 200 connections each park 16 KiB of a head that never ends (exactly `max_head_bytes`, so
/// they wait for the header timeout instead of a 431), while 50 WebSockets each send 25
/// messages of 60 KiB to one `main` room whose other member never reads (and neither do the
/// senders). Every connection must be closed, and RSS must grow by less than 64 MiB.
///
/// Why 64 MiB: what the server may hold at once is bounded by its config: 200 head buffers of
/// at most 32 KiB (16 KiB read into a doubling Vec) = 6.4 MiB; 51 outbound queues of 256 KiB =
/// 12.8 MiB; 50 reassembly buffers of < 64 KiB = 3.2 MiB; two 64 KiB read buffers. The
/// clients add 50 threads' 60 KiB messages and buffers, a few MiB. That is ~25 MiB of live data
/// plus allocator slack. An outbound queue without its bound would instead keep everything
/// broadcast to the member that never reads: 50 × 25 × 60 KiB = 73 MiB, more than the bound.
#[test]
fn memory_stays_bounded() {
    let _serial = serial();
    const HEADS: usize = 200;
    const SENDERS: usize = 50;
    const MESSAGES: usize = 25;
    const BOUND_KIB: u64 = 64 * 1024;
    let srv = start_with(2, |c| {
        c.header_timeout = Duration::from_secs(2);
        c.close_timeout = CLOSE_TIMEOUT;
        c.max_message_bytes = MAX_MESSAGE;
        c.max_outbound_bytes = MAX_OUTBOUND;
    });
    let addr = srv.addr;
    let path = format!("/parties/main/{}", room_on_core("main", 0, 2, "mem"));
    // Warm up both cores' allocators and buffers before the baseline.
    for _ in 0..4 {
        assert_eq!(srv.connect().request(get(&path).as_bytes()).status, 200);
        let mut c = Client::ws_connect(addr, "/parties/echo/mem-warmup");
        c.ws_send(OpCode::Binary, &[1; 60 * 1024]);
        assert_eq!(c.ws_frame().2.len(), 60 * 1024);
    }
    let before = rss_kib(std::process::id());
    let started = Instant::now();

    let mut head = b"GET /party/mem HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    head.resize(16 * 1024, b'p');
    let mut heads: Vec<Client> = (0..HEADS)
        .map(|_| {
            let mut c = srv.connect();
            c.send(&head);
            c
        })
        .collect();

    let mut stuck = Client::ws_connect(addr, &path);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(
                    rss_kib(std::process::id()),
                    std::sync::atomic::Ordering::Relaxed,
                );
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let path = path.clone();
            thread::spawn(move || {
                let mut c = Client::ws_connect(addr, &path);
                let msg = frame(true, OpCode::Binary, &vec![i as u8; 60 * 1024]);
                for _ in 0..MESSAGES {
                    if c.stream.write_all(&msg).is_err() {
                        break;
                    }
                }
                let _ = c.stream.write_all(&close_frame(1000, b""));
                drain_to_eof(&mut c.stream)
            })
        })
        .collect();
    for (i, s) in senders.into_iter().enumerate() {
        assert!(
            s.join().expect("sender thread"),
            "sender {i} was never closed"
        );
    }
    // The member that never read: whatever it gets, it must end (1008 if the close arrives).
    let _ = stuck.stream.write_all(&close_frame(1000, b""));
    let mut stuck_close = None;
    while let Some((_, op, payload)) = stuck.try_ws_frame() {
        if op == CLOSE {
            stuck_close = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    assert!(
        matches!(stuck_close, None | Some(1008)),
        "the stuck member was closed with {stuck_close:?}, not by the outbound bound"
    );
    for (i, c) in heads.iter_mut().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 408, "parked head {i}");
        assert!(c.closed_by_server(), "parked head {i} not closed");
    }
    drop(heads);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().expect("sampler");
    // The server has let go of every connection of the burst (the scrape holds one).
    eventually("the burst's connections closed", || {
        metric(addr, "partyring_connections_open") <= 1
    });
    let after = rss_kib(std::process::id());
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "RSS before {before} KiB, peak {peak} KiB (+{} KiB), after {after} KiB (+{} KiB), \
         burst took {:?}",
        peak.saturating_sub(before),
        after.saturating_sub(before),
        started.elapsed()
    );
    assert!(
        peak.saturating_sub(before) < BOUND_KIB,
        "RSS peaked {} KiB above the baseline",
        peak - before
    );
    assert!(
        after.saturating_sub(before) < BOUND_KIB,
        "RSS grew by {} KiB",
        after - before
    );
    assert_eq!(
        srv.connect().request(get(&path).as_bytes()).status,
        200,
        "serving after the burst"
    );
    stop(srv);
}

/// 2,000 cycles of connect, request, close, mixing: GET with `Connection: close`; keep-alive GET
/// then a client close; a WebSocket echo with a closing handshake; a WebSocket dropped without
/// one; a head for a room on either core reset right after it is sent; a malformed request
/// (400, then the server lingers until we close). After a bounded settle the process has no
/// more than a few fds above the baseline.
#[test]
fn leak_check_fds() {
    let _serial = serial();
    const CYCLES: usize = 2000;
    const SLACK: usize = 4;
    let srv = hostile_server();
    let addr = srv.addr;
    let main_rooms = [0, 1].map(|core| room_on_core("main", core, 2, "fds"));
    let echo_rooms = [0, 1].map(|core| room_on_core("echo", core, 2, "fds"));
    // Warm up, then take the baseline with nothing in flight.
    for room in &echo_rooms {
        let mut c = Client::ws_connect(addr, &format!("/parties/echo/{room}"));
        c.ws_send(OpCode::Text, b"warm");
        c.ws_frame();
    }
    let base = settle_fds(0, Duration::from_millis(500));
    let started = Instant::now();
    for i in 0..CYCLES {
        let core = (i / 6) % 2;
        let (main, echo) = (&main_rooms[core], &echo_rooms[core]);
        match i % 6 {
            0 => {
                let mut c = srv.connect();
                let r = c.request(
                    format!("GET /party/{main} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                assert_eq!(r.status, 200, "cycle {i}");
                assert!(c.closed_by_server(), "cycle {i}");
            }
            1 => {
                let mut c = srv.connect();
                assert_eq!(
                    c.request(get(&format!("/party/{main}")).as_bytes()).status,
                    200
                );
            }
            2 => {
                let mut c = Client::ws_connect(addr, &format!("/parties/echo/{echo}"));
                c.ws_send(OpCode::Text, b"cycle");
                assert_eq!(c.ws_frame().1, TEXT, "cycle {i}");
                c.send(&close_frame(1000, b""));
                assert_eq!(c.ws_frame().1, CLOSE, "cycle {i}");
                assert!(c.closed_by_server(), "cycle {i}");
            }
            3 => {
                let mut c = Client::ws_connect(addr, &format!("/parties/echo/{echo}"));
                c.ws_send(OpCode::Text, b"cycle");
                assert_eq!(c.ws_frame().1, TEXT, "cycle {i}");
            }
            4 => {
                let mut s = TcpStream::connect(addr).expect("connect");
                let _ = s.write_all(get(&format!("/party/{main}")).as_bytes());
                reset(s);
            }
            _ => {
                let mut c = srv.connect();
                let r = c.request(b"GET /party/x HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n");
                assert_eq!(r.status, 400, "cycle {i}");
            }
        }
    }
    let took = started.elapsed();
    let after = settle_fds(base + SLACK, Duration::from_secs(3));
    println!("fds: {base} before, {after} after {CYCLES} cycles in {took:?}");
    assert!(
        after <= base + SLACK,
        "{after} fds open after {CYCLES} cycles, {base} before"
    );
    assert_eq!(
        srv.connect()
            .request(get(&format!("/party/{}", main_rooms[0])).as_bytes())
            .status,
        200
    );
    stop(srv);
}
