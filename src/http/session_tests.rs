//! Unit tests of the HTTP session without sockets: one table of named cases (the hostile
//! framing and limit cases of `tests/hostile.rs`, `tests/http.rs` and `tests/limits.rs`), each
//! fed to a session over a fake [`Service`], plus tests that drive time, deferred answers,
//! files, hooks, handoffs and upgrades. The socket tests stay as the end-to-end checks.
//!
//! The fake service routes `/parties/p/<room>` and `/party/<room>` to party 0, on this core
//! unless the room starts with `far` (core 1); `/parties/nope/...` is no party. Its hook
//! answers 401 for a target containing `deny`, sets `X-Set: 1` for `sethdr` and an invalid
//! header for `badhdr`. It answers `/later` with [`Answer::Later`], `/file` with a 10-byte
//! file, and everything else with 200 and `METHOD target body` (plus `X-Set` if the request
//! had it).

use std::time::{Duration, Instant};

use super::*;
use crate::config::Cors;

struct Fake {
    config: Config,
    date: DateCache,
    shutting_down: bool,
    /// Statuses passed to `refused`.
    refused: Vec<u16>,
    busy: bool,
    hooks_run: usize,
}

impl Fake {
    fn new() -> Self {
        Fake {
            config: Config {
                header_timeout: HEADER_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
                compression: true,
                ..Config::default()
            },
            date: DateCache::new(),
            shutting_down: false,
            refused: Vec::new(),
            busy: false,
            hooks_run: 0,
        }
    }
}

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

impl Service for Fake {
    fn config(&self) -> &Config {
        &self.config
    }
    fn date(&self) -> &DateCache {
        &self.date
    }
    fn shutting_down(&self) -> bool {
        self.shutting_down
    }
    fn route(&mut self, target: &str) -> Route {
        let path = target.split('?').next().unwrap_or("");
        let room = match path.split('/').collect::<Vec<_>>()[..] {
            ["", "parties", "p", room] | ["", "party", room] if !room.is_empty() => room,
            _ => return Route::Other,
        };
        let owner = room.starts_with("far").then_some(1);
        Route::Room { party: 0, owner }
    }
    fn before(&mut self, party: usize, _upgrade: bool, req: &RequestView<'_>) -> Hook {
        assert_eq!(party, 0);
        assert!(req.body.is_empty(), "a hook runs before the body");
        self.hooks_run += 1;
        if req.target.contains("deny") {
            Hook::Respond(Response::text(401, "denied"))
        } else if req.target.contains("sethdr") {
            Hook::SetHeaders(vec![("X-Set".into(), "1".into())])
        } else if req.target.contains("badhdr") {
            Hook::SetHeaders(vec![("X-Bad".into(), "a\r\nb".into())])
        } else {
            Hook::Continue
        }
    }
    fn respond(&mut self, req: &RequestView<'_>) -> Answer {
        match req.target {
            "/later" => Answer::Later,
            "/file" => Answer::File {
                head: Response::text(200, ""),
                len: 10,
            },
            _ => {
                let mut body = format!("{:?} {} ", req.method, req.target).into_bytes();
                body.extend_from_slice(req.body);
                if let Some(v) = super::super::parse::header_value(req.head, "x-set") {
                    body.extend_from_slice(format!(" x-set={v}").as_bytes());
                }
                Answer::Now(Response {
                    body,
                    ..Response::text(200, "")
                })
            }
        }
    }
    fn refused(&mut self, status: u16, reason: &str) {
        assert!(!reason.is_empty());
        self.refused.push(status);
    }
    fn busy(&mut self, busy: bool) {
        self.busy = busy;
    }
}

/// A session, its fake service, a clock, and everything the session sent.
struct Harness {
    s: Session,
    svc: Fake,
    now: Instant,
    sent: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut Fake)) -> Self {
        let mut svc = Fake::new();
        f(&mut svc);
        Harness {
            s: Session::new(Vec::new(), false),
            svc,
            now: Instant::now(),
            sent: Vec::new(),
        }
    }

    /// Feeds `bytes` as one read and advances; returns the action (after taking the output).
    fn feed(&mut self, bytes: &[u8]) -> Action {
        self.s.read_buf().extend_from_slice(bytes);
        self.advance()
    }

    fn advance(&mut self) -> Action {
        let action = self.s.advance(self.now, &mut self.svc);
        self.take();
        action
    }

    fn take(&mut self) {
        self.sent.extend_from_slice(self.s.output());
        self.s.sent();
    }

    /// The responses sent so far, parsed (and forgotten).
    fn responses(&mut self) -> Vec<Resp> {
        let out = parse_responses(&self.sent);
        self.sent.clear();
        out
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }
}

/// One response the session wrote: its head as text, and its body.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
}

/// Splits the output into responses (bodies by `Content-Length`; none for 1xx, 204, 304).
fn parse_responses(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("partial response: {:?}", String::from_utf8_lossy(bytes)))
            + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).expect("an ASCII head");
        let status = head["HTTP/1.1 ".len()..][..3].parse().expect("a status");
        let mut r = Resp {
            status,
            head,
            body: Vec::new(),
        };
        let len = match r.header("content-length") {
            _ if matches!(status, 100..=199 | 204 | 304) => 0,
            Some(n) => n.parse().expect("a length"),
            None => 0,
        };
        r.body = bytes[end..end + len].to_vec();
        bytes = &bytes[end + len..];
        out.push(r);
    }
    out
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const UPGRADE: &str = "GET /parties/p/h HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

/// What a case must end with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// These statuses, the last with `Connection: close`, then linger: the session refused the
    /// last request.
    Rejected(Vec<u16>),
    /// These statuses, the last with `Connection: close`, then linger, nothing refused (an
    /// answer to a request whose body is not read).
    Lingered(Vec<u16>),
    /// These statuses, the connection still open (reading).
    Answered(Vec<u16>),
    /// These statuses, then the connection closes (the last one says so).
    Closed(Vec<u16>),
    /// These statuses, then a handoff to this core.
    HandedOff(Vec<u16>, usize),
    /// The 101, then the WebSocket.
    Upgraded,
    /// The input is incomplete: nothing sent, reading.
    Waiting,
}

use Outcome::*;

/// Feeds `input` in one read (or `chunk` bytes at a time) and sums up what happened.
fn run(input: &[u8], chunk: usize) -> Outcome {
    let mut h = Harness::new();
    let mut last = Action::Read;
    for piece in input.chunks(chunk.max(1)) {
        last = h.feed(piece);
        if last != Action::Read {
            break;
        }
    }
    let responses = h.responses();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    match last {
        Action::Read if statuses.is_empty() => Waiting,
        Action::Read => Answered(statuses),
        Action::Linger => {
            let r = responses.last().expect("a response before lingering");
            assert!(r.closes() && !r.body.is_empty(), "{r:?}");
            match &h.svc.refused[..] {
                [] => Lingered(statuses),
                [status] => {
                    assert_eq!(Some(status), statuses.last(), "the refusal was reported");
                    Rejected(statuses)
                }
                more => panic!("refused more than once: {more:?}"),
            }
        }
        Action::Close => {
            assert!(responses.last().is_some_and(Resp::closes), "{responses:?}");
            Closed(statuses)
        }
        Action::Handoff { owner } => HandedOff(statuses, owner),
        Action::Upgrade(_) => {
            assert_eq!(statuses, [101]);
            Upgraded
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn framing_limits_and_smuggling_table() {
    let chunked = "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let many_headers: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let head_of = |n: usize| {
        let start = "GET /party/h HTTP/1.1\r\nHost: a\r\nX-Pad: ";
        format!("{start}{}\r\n\r\n", "p".repeat(n - start.len() - 4))
    };
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        // -- request smuggling and framing --
        ("CL + TE", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), rejected(400)),
        ("TE + CL", "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".into(), rejected(400)),
        ("two Content-Lengths, same value", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}".into(), rejected(400)),
        ("negative Content-Length", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".into(), rejected(400)),
        ("Content-Length overflowing u64", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617\r\n\r\n".into(), rejected(400)),
        ("Content-Length in hex", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n".into(), rejected(400)),
        ("Content-Length over max_body_bytes, no body sent", "POST /party/h HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n".into(), rejected(413)),
        ("Expect: 100-continue with an oversized body (413, no 100 first)", "POST /party/h HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n".into(), rejected(413)),
        ("Transfer-Encoding: gzip", "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(), rejected(501)),
        ("two Transfer-Encoding fields", "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), rejected(501)),
        ("Transfer-Encoding in HTTP/1.0", "POST /party/h HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), rejected(400)),
        ("obs-fold", "GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n".into(), rejected(400)),
        ("bare LF line endings", "GET /party/h HTTP/1.1\nHost: a\nX-A: b\n\n".into(), Answered(vec![200])),
        ("bare CR inside the head", "GET /party/h HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n".into(), rejected(400)),
        ("NUL in a header value", "GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n".into(), rejected(400)),
        ("high-bit bytes in a header value", b"GET /party/h HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9 \xff\xfe\r\n\r\n".to_vec(), Answered(vec![200])),
        ("invalid UTF-8 in the request target", b"GET /party/h\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), rejected(400)),
        ("valid non-ASCII UTF-8 in the target", get("/party/caf\u{e9}-\u{1f600}").into(), Answered(vec![200])),
        ("huge header (17 KiB value)", format!("GET /party/h HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(17 * 1024)).into(), rejected(431)),
        ("huge header that never ends", format!("GET /party/h HTTP/1.1\r\nHost: a\r\nX-Big: {}", "b".repeat(20 * 1024)).into(), rejected(431)),
        ("huge request line (9 KiB target)", format!("GET /party/{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9 * 1024)).into(), rejected(414)),
        ("huge request line that never ends", format!("GET /party/{}", "a".repeat(12 * 1024)).into(), rejected(414)),
        ("too many headers (101)", format!("GET /party/h HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n").into(), rejected(431)),
        ("100 headers (exactly max_headers)", format!("GET /party/h HTTP/1.1\r\nHost: a\r\n{}\r\n", (1..100).map(|i| format!("X-{i}: v\r\n")).collect::<String>()).into(), Answered(vec![200])),
        ("head of exactly max_head_bytes", head_of(16 * 1024).into(), Answered(vec![200])),
        ("head of max_head_bytes + 1", head_of(16 * 1024 + 1).into(), rejected(431)),
        ("space before a header's colon", "POST /party/h HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".into(), rejected(400)),
        ("absolute-form target (no room)", get("http://a/party/h").into(), Answered(vec![200])),
        ("CRLF flood before the request line (18 KiB)", format!("{}{}", "\r\n".repeat(9 * 1024), get("/party/h")).into(), rejected(431)),
        ("HTTP/1.1 without Host", "GET /party/h HTTP/1.1\r\n\r\n".into(), rejected(400)),
        ("garbage method bytes", b"G\x01\x02T /party/h HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), rejected(400)),
        ("garbage judged before the head ends", b"G\x01\x02T /party/h HTTP/1.1\r\nHost: a\r\n".to_vec(), rejected(400)),
        ("HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), rejected(400)),
        ("BLAH", "BLAH\r\n\r\n".into(), rejected(400)),
        ("Expect with an unknown expectation", "POST /party/h HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}".into(), rejected(417)),
        // -- chunked bodies --
        ("chunk size of 17 hex digits", format!("{chunked}00000000000000001\r\nx\r\n0\r\n\r\n").into(), rejected(400)),
        ("chunk size u64::MAX after a first chunk", format!("{chunked}1\r\na\r\nFFFFFFFFFFFFFFFF\r\n").into(), rejected(413)),
        ("chunk size u64::MAX as the first chunk", format!("{chunked}FFFFFFFFFFFFFFFF\r\n").into(), rejected(413)),
        ("chunk size not hex", format!("{chunked}zz\r\n").into(), rejected(400)),
        ("chunk extension over 1 KiB", format!("{chunked}1;ext={}\r\nx\r\n0\r\n\r\n", "e".repeat(1100)).into(), rejected(400)),
        ("chunk data without its CRLF", format!("{chunked}2\r\n{{}}XX0\r\n\r\n").into(), rejected(400)),
        ("trailer section over 8 KiB", format!("{chunked}2\r\n{{}}\r\n0\r\nX-T: {}\r\n\r\n", "t".repeat(9 * 1024)).into(), rejected(400)),
        ("chunked body over max_body_bytes", format!("{chunked}200000\r\n").into(), rejected(413)),
        ("chunked body with extension and trailer", format!("{chunked}2;x=1\r\n{{}}\r\n0\r\nT: t\r\n\r\n").into(), Answered(vec![200])),
        ("incomplete chunked body", format!("{chunked}2\r\n{{").into(), Waiting),
        ("incomplete head", "GET /party/h HTTP/1.1\r\nHost: a\r\n".into(), Waiting),
        // -- keep-alive and close --
        ("HTTP/1.0 closes", "GET /party/old HTTP/1.0\r\n\r\n".into(), Closed(vec![200])),
        ("HTTP/1.0 keep-alive", "GET /party/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into(), Answered(vec![200])),
        ("Connection: close", "GET /party/old HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".into(), Closed(vec![200])),
        ("nothing after Connection: close is answered", [get("/party/a"), "GET /party/b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".into(), get("/party/c")].concat().into(), Closed(vec![200, 200])),
        // -- pipelining --
        ("pipelined batch whose 3rd request is malformed", [get("/party/a"), get("/party/a"), "GET /party/h HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n".into(), get("/party/a")].concat().into(), Rejected(vec![200, 200, 400])),
        ("a room on another core after a local one", [get("/party/a"), get("/party/far"), get("/party/a")].concat().into(), HandedOff(vec![200], 1)),
        // -- upgrades --
        ("upgrade", format!("{UPGRADE}{KEY}\r\n").into(), Upgraded),
        ("upgrade to a room on another core", "GET /party/far HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".into(), HandedOff(vec![], 1)),
        ("upgrade without Sec-WebSocket-Key", format!("{UPGRADE}\r\n").into(), rejected(400)),
        ("upgrade with a 20-byte key", format!("{UPGRADE}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n").into(), rejected(400)),
        ("upgrade with a Content-Length body", format!("{UPGRADE}{KEY}Content-Length: 5\r\n\r\nhello").into(), rejected(400)),
        ("upgrade with a chunked body", format!("{UPGRADE}{KEY}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into(), rejected(400)),
        ("upgrade, version 12", format!("GET /party/h HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 12\r\n{KEY}\r\n").into(), rejected(426)),
        ("upgrade as a POST", format!("POST /party/h HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{KEY}\r\n").into(), rejected(400)),
        ("upgrade without Connection: upgrade", format!("GET /party/h HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{KEY}\r\n").into(), rejected(400)),
        ("upgrade with malformed extensions", format!("{UPGRADE}{KEY}Sec-WebSocket-Extensions: permessage-deflate;;\r\n\r\n").into(), rejected(400)),
        ("high-bit bytes in Host and the key", [UPGRADE.as_bytes(), b"Host: \xff\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ\xff==\r\n\r\n"].concat(), rejected(400)),
        ("upgrade for no party: an ordinary request", "GET /parties/nope/x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".into(), Answered(vec![200])),
        // -- hooks --
        ("hook answers 401", get("/party/deny").into(), Answered(vec![401])),
        ("hook answers a request with a body: then close", "POST /party/deny HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}".into(), Lingered(vec![401])),
        ("hook sets an invalid header: 500", get("/party/badhdr").into(), Answered(vec![500])),
    ];
    let mut failed = Vec::new();
    for (name, input, want) in cases {
        // In one read, then 7 bytes and 1 byte at a time (64 for the large ones, to keep the
        // debug build quick): the framing must not depend on how the bytes arrive.
        let small = if input.len() > 4096 { 64 } else { 1 };
        for chunk in [input.len(), 7, small] {
            match std::panic::catch_unwind(|| run(&input, chunk)) {
                Ok(got) if got == want => {}
                Ok(got) => failed.push(format!("{name} (chunk {chunk}): {got:?}, want {want:?}")),
                Err(_) => failed.push(format!("{name} (chunk {chunk}): panicked")),
            }
        }
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

fn rejected(status: u16) -> Outcome {
    Rejected(vec![status])
}

#[test]
fn header_and_idle_deadlines_are_driven_by_the_clock_passed_in() {
    let t0 = Instant::now();
    // A head that never ends: 408 at header_timeout after its first byte, however much
    // more trickles in.
    let mut h = Harness::new();
    h.now = t0;
    assert_eq!(h.feed(b"GET /party/t HTTP/1.1\r\n"), Action::Read);
    assert!(h.svc.busy, "a request in progress holds a shutdown back");
    h.now = t0 + Duration::from_millis(200);
    assert_eq!(h.feed(b"Host: a\r\n"), Action::Read);
    let cfg = h.svc.config.clone();
    assert_eq!(h.s.deadline(h.now, &cfg), t0 + HEADER_TIMEOUT);
    assert_eq!(h.s.timed_out(&mut h.svc), Action::Close);
    h.take();
    let r = h.responses();
    assert_eq!((r.len(), r[0].status, r[0].closes()), (1, 408, true));
    assert_eq!(h.svc.refused, [408]);

    // A body that never completes, too.
    let mut h = Harness::new();
    h.now = t0;
    let head = "POST /party/t HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
    assert_eq!(h.feed(head.as_bytes()), Action::Read);
    assert_eq!(h.s.deadline(t0 + IDLE_TIMEOUT, &cfg), t0 + HEADER_TIMEOUT);
    h.s.timed_out(&mut h.svc);
    h.take();
    assert_eq!(h.statuses(), [408]);

    // Idle between requests: the idle timeout from now, and a silent close.
    let mut h = Harness::new();
    h.now = t0;
    assert_eq!(h.feed(get("/party/t").as_bytes()), Action::Read);
    assert!(!h.svc.busy);
    let later = t0 + Duration::from_secs(60);
    assert_eq!(h.s.deadline(later, &cfg), later + IDLE_TIMEOUT);
    assert_eq!(h.statuses(), [200]);
    assert_eq!(h.s.timed_out(&mut h.svc), Action::Close);
    h.take();
    assert!(h.sent.is_empty() && h.svc.refused.is_empty());

    // The next request's clock starts at its own first byte.
    let mut h = Harness::new();
    h.now = t0;
    h.feed(get("/party/t").as_bytes());
    h.now = later;
    h.feed(b"GET /party/t HTTP/1.1\r\n");
    assert_eq!(h.s.deadline(later, &cfg), later + HEADER_TIMEOUT);
}

#[test]
fn expect_continue_only_when_the_body_has_not_come() {
    let head =
        "POST /party/c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut h = Harness::new();
    assert_eq!(h.feed(head.as_bytes()), Action::Read);
    assert_eq!(h.statuses(), [100]);
    assert_eq!(h.feed(b"{}"), Action::Read);
    let r = h.responses();
    assert_eq!(
        (r[0].status, r[0].body.as_slice()),
        (200, &b"Post /party/c {}"[..])
    );

    let mut h = Harness::new();
    h.feed(format!("{head}{{}}").as_bytes());
    assert_eq!(
        h.statuses(),
        [200],
        "no 100 when the body came with the head"
    );
}

#[test]
fn a_pipelined_batch_is_answered_in_order_in_one_output() {
    let mut h = Harness::new();
    let mut batch = String::new();
    for i in 0..5 {
        batch += &format!("POST /party/p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nm{i}");
    }
    batch += "PUT /party/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    batch += &get("/party/p?");
    // One read, one advance: every answer is in the one output.
    h.s.read_buf().extend_from_slice(batch.as_bytes());
    assert_eq!(h.s.advance(h.now, &mut h.svc), Action::Read);
    let bodies: Vec<String> = parse_responses(h.s.output())
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let mut want: Vec<String> = (0..5).map(|i| format!("Post /party/p m{i}")).collect();
    want.push("Put /party/x abc".into());
    want.push("Get /party/p? ".into());
    assert_eq!(bodies, want);

    let mut h = Harness::new();
    let batch = get("/party/p").repeat(5000);
    assert_eq!(h.feed(batch.as_bytes()), Action::Read);
    assert_eq!(h.statuses(), vec![200; 5000]);
}

#[test]
fn deferred_answers_and_files_hold_the_requests_behind_them() {
    let mut h = Harness::new();
    let t0 = h.now;
    let batch = [
        get("/later"),
        get("/party/a"),
        get("/file"),
        get("/party/b"),
    ]
    .concat();
    assert_eq!(h.feed(batch.as_bytes()), Action::Await);
    assert_eq!(h.advance(), Action::Await, "asking again changes nothing");
    assert!(h.sent.is_empty());
    h.now = t0 + Duration::from_secs(1);
    h.s.complete(Response::text(201, "done"), &mut h.svc);
    assert_eq!(h.advance(), Action::SendFile { len: 10 });
    // The driver sends the file's bytes after the head.
    h.sent.extend_from_slice(b"0123456789");
    let r = h.responses();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [201, 200, 200]
    );
    assert_eq!(r[2].header("content-length"), Some("10"));
    h.s.file_sent();
    assert_eq!(h.advance(), Action::Read);
    assert_eq!(h.statuses(), [200]);

    // A deferred answer to a last request closes after it.
    let mut h = Harness::new();
    h.feed(b"GET /later HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    h.s.complete(Response::text(200, "x"), &mut h.svc);
    assert_eq!(h.advance(), Action::Close);
    assert!(h.responses()[0].closes());

    // HEAD of a file: the head only, no file to send.
    let mut h = Harness::new();
    assert_eq!(
        h.feed(b"HEAD /file HTTP/1.1\r\nHost: a\r\n\r\n"),
        Action::Read
    );
    assert!(String::from_utf8_lossy(&h.sent).ends_with("Content-Length: 10\r\n\r\n"));
}

#[test]
fn hooks_run_once_and_may_rewrite_the_head() {
    let mut h = Harness::new();
    h.feed(get("/party/sethdr").as_bytes());
    let r = h.responses();
    assert_eq!(r[0].body, b"Get /party/sethdr  x-set=1");
    assert_eq!(h.svc.hooks_run, 1);
    // Not for requests outside the rooms.
    h.feed(get("/elsewhere").as_bytes());
    assert_eq!(h.svc.hooks_run, 1);

    // A connection handed here with its first request hooked: that one is not hooked again,
    // the next one is.
    let mut svc = Fake::new();
    let bytes = [get("/party/deny"), get("/party/deny")]
        .concat()
        .into_bytes();
    let mut s = Session::new(bytes, true);
    assert_eq!(s.advance(Instant::now(), &mut svc), Action::Read);
    let statuses: Vec<u16> = parse_responses(s.output())
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 401]);
}

#[test]
fn handoff_carries_every_unanswered_byte() {
    let mut h = Harness::new();
    let rest = [
        get("/party/far1"),
        "POST /party/x HTTP/1.1\r\nHost: a\r\nContent-Le".into(),
    ]
    .concat();
    let batch = [get("/party/a"), rest.clone()].concat();
    assert_eq!(h.feed(batch.as_bytes()), Action::Handoff { owner: 1 });
    assert_eq!(h.statuses(), [200]);
    assert_eq!(h.s.unanswered(), rest.as_bytes());
}

#[test]
fn an_accepted_upgrade_gives_its_head_target_and_first_frames() {
    let mut h = Harness::new();
    let head = format!("{UPGRADE}{KEY}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    let frames = b"\x81\x85abcd....."; // whatever follows the head goes along
    let Action::Upgrade(u) = h.feed(&[head.as_bytes(), frames].concat()) else {
        panic!("not upgraded");
    };
    assert_eq!(u.party, 0);
    assert!(u.deflate.is_some(), "the deflate offer was accepted");
    let parts = h.s.upgrade_parts(&u);
    assert_eq!(parts.head, head.as_bytes());
    assert_eq!(parts.target, "/parties/p/h");
    assert_eq!(parts.leftover, frames);
    let text = String::from_utf8(h.sent.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Extensions: permessage-deflate"));
}

#[test]
fn shutting_down() {
    // Every answer is the last; an idle connection closes; an upgrade gets 503, not counted.
    let mut h = Harness::with(|f| f.shutting_down = true);
    assert_eq!(h.feed(get("/party/a").as_bytes()), Action::Close);
    assert!(h.responses()[0].closes());
    let mut h = Harness::with(|f| f.shutting_down = true);
    assert_eq!(h.advance(), Action::Close);
    let mut h = Harness::with(|f| f.shutting_down = true);
    assert_eq!(
        h.feed(format!("{UPGRADE}{KEY}\r\n").as_bytes()),
        Action::Linger
    );
    assert_eq!(h.statuses(), [503]);
    assert!(h.svc.refused.is_empty());
}

#[test]
fn cors_on_answers_errors_and_preflights() {
    let origins = || Cors::Origins(vec!["https://a".into()]);
    let mut h = Harness::with(|f| f.config.cors = origins());
    h.feed(b"GET /party/a HTTP/1.1\r\nHost: a\r\nOrigin: https://a\r\n\r\n");
    let r = h.responses();
    assert_eq!(
        r[0].header("access-control-allow-origin"),
        Some("https://a")
    );
    assert_eq!(r[0].header("vary"), Some("Origin"));
    // An error the session answers itself carries them too.
    let mut h = Harness::with(|f| f.config.cors = origins());
    h.feed(b"GET /party/a HTTP/1.1\r\nOrigin: https://a\r\n\r\n");
    let r = h.responses();
    assert_eq!(r[0].status, 400);
    assert_eq!(
        r[0].header("access-control-allow-origin"),
        Some("https://a")
    );
    // A preflight for a room is answered before its hook.
    let mut h = Harness::with(|f| f.config.cors = origins());
    h.feed(
        b"OPTIONS /party/deny HTTP/1.1\r\nHost: a\r\nOrigin: https://b\r\n\
          Access-Control-Request-Method: PUT\r\n\r\n",
    );
    assert_eq!(h.statuses(), [403]);
    assert_eq!(h.svc.hooks_run, 0);
}

#[test]
fn eof_closes_and_buffers_shrink_after_a_large_body() {
    let mut h = Harness::new();
    h.feed(b"GET /party/a HTTP/1.1\r\n");
    assert_eq!(h.s.eof(), Action::Close);
    assert_eq!(h.advance(), Action::Close, "a closed session stays closed");

    let mut h = Harness::new();
    let body = vec![b'x'; 512 * 1024];
    let head = format!(
        "PUT /party/a HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    h.feed(&[head.as_bytes(), &body].concat());
    assert_eq!(h.statuses(), [200]);
    assert!(h.s.read_buf().capacity() <= KEEP_BUF_CAPACITY);
    assert!(h.s.output().is_empty() && h.s.out.capacity() <= KEEP_BUF_CAPACITY);
}

/// One request of a pipelined batch, for the split test.
fn arb_request() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let body = "[a-z{}\"]{0,40}";
    prop_oneof![
        "[a-z0-9]{1,8}".prop_map(|room| get(&format!("/party/{room}"))),
        body.prop_map(|b| format!(
            "POST /party/p HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        (body, 1usize..8).prop_map(|(b, n)| {
            let chunks: String = b
                .as_bytes()
                .chunks(n)
                .map(|c| format!("{:x};e=1\r\n{}\r\n", c.len(), String::from_utf8_lossy(c)))
                .collect();
            format!("PUT /party/p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\nT: 1\r\n\r\n")
        }),
        Just("GET /elsewhere HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_owned()),
        Just("POST /party/c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}".to_owned()),
    ]
}

/// Feeds `stream` cut at `cuts`; the statuses and bodies sent, and the last action.
fn feed_split(stream: &[u8], cuts: &[usize]) -> (Vec<(u16, Vec<u8>)>, Action) {
    let mut h = Harness::new();
    let mut last = Action::Read;
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        if end < start {
            continue;
        }
        last = h.feed(&stream[start..end]);
        start = end;
        if last != Action::Read {
            break;
        }
    }
    let out = h
        .responses()
        .into_iter()
        .map(|r| (r.status, r.body))
        .collect();
    (out, last)
}

proptest::proptest! {
    #[test]
    fn any_split_answers_like_one_read(
        reqs in proptest::collection::vec(arb_request(), 1..8),
        cuts in proptest::collection::vec(0usize..2048, 0..12),
    ) {
        let stream = reqs.concat().into_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = feed_split(&stream, &[]);
        proptest::prop_assert_eq!(&whole.1, &Action::Read);
        let split = feed_split(&stream, &cuts);
        proptest::prop_assert_eq!(&split.1, &Action::Read);
        // A `100 Continue` goes out only when the head came without its body: which requests
        // get one depends on the cuts. The final answers do not.
        let finals = |r: &[(u16, Vec<u8>)]| r.iter().filter(|(s, _)| *s != 100).cloned().collect::<Vec<_>>();
        proptest::prop_assert_eq!(finals(&whole.0).len(), reqs.len());
        proptest::prop_assert_eq!(finals(&split.0), finals(&whole.0));
    }
}
