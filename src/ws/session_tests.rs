//! Unit tests of the session (`session.rs`): scripts of events in, actions and verdicts out,
//! without sockets. Every script runs twice: its byte events whole, and one byte at a time.

use super::*;
use crate::ws::frame::{encode_client_frame, encode_frame, OpCode};

const M: [u8; 4] = [0x0f, 0xa1, 0x5c, 0x37];
/// The session's message limit in these tests.
const MAX: usize = 64;

/// One event of a script.
#[derive(Clone, Debug)]
enum Ev {
    /// Bytes read from the peer.
    Bytes(Vec<u8>),
    Eof,
    ReadErr,
    /// The application (or a full queue, or a shutdown) closes with this code.
    LocalClose(u16),
    CloseTimeout,
    Tick,
}

/// What a script produced, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Text(String),
    Binary(Vec<u8>),
    Dropped,
    Pong(Vec<u8>),
    Echo(Option<u16>),
    Fail(WsError),
    Live(Liveness),
}

/// A masked client frame.
fn cf(op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(true, op, payload, M)
}

fn text(s: &str) -> Ev {
    Ev::Bytes(cf(OpCode::Text, s.as_bytes()))
}

fn close(code: u16, reason: &str) -> Ev {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    Ev::Bytes(cf(OpCode::Close, &p))
}

fn bytes(frames: &[Vec<u8>]) -> Ev {
    Ev::Bytes(frames.concat())
}

fn t(s: &str) -> Out {
    Out::Text(s.to_owned())
}

/// Text that makes the fake application close the connection with 4000 while handling it.
const CLOSE_ME: &str = "close-me";

/// Plays `script` on a fresh session, standing in for the driver: an outbound side that closes
/// as the real one does (our close, an echo, a failure, the application's close).
fn play(script: &[Ev], bytewise: bool) -> (Vec<Out>, Step, Leave) {
    let mut s = Session::new(Decoder::new(MAX));
    let mut out = Vec::new();
    let mut closed: Option<Option<u16>> = None;
    let mut step = s.step();
    for ev in script {
        step = match ev {
            Ev::Bytes(b) => {
                let chunks: Vec<Vec<u8>> = if bytewise && !b.is_empty() {
                    b.iter().map(|&x| vec![x]).collect()
                } else {
                    vec![b.clone()]
                };
                for mut chunk in chunks {
                    step = s.feed(&mut chunk, |a| {
                        let (o, close) = match a {
                            Action::Deliver(Message::Text(x)) => {
                                (t(x), (x == CLOSE_ME).then_some(Some(4000)))
                            }
                            Action::Deliver(Message::Binary(x)) => (Out::Binary(x.to_vec()), None),
                            Action::Deliver(m) => panic!("delivered a control frame: {m:?}"),
                            Action::Dropped => (Out::Dropped, None),
                            Action::Pong(p) => (Out::Pong(p.to_vec()), None),
                            Action::EchoClose(c) => (Out::Echo(c), Some(None)),
                            Action::Fail(e) => (Out::Fail(e), Some(Some(e.close_code()))),
                        };
                        out.push(o);
                        if closed.is_none() {
                            closed = close;
                        }
                        match closed {
                            None => Outbound::Open,
                            Some(c) => Outbound::Closed(c),
                        }
                    });
                }
                step
            }
            Ev::Eof => s.on_eof(),
            Ev::ReadErr => s.on_read_error(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
            Ev::LocalClose(code) => {
                closed.get_or_insert(Some(*code));
                s.on_local_close(Some(*code))
            }
            Ev::CloseTimeout => s.on_close_timeout(),
            Ev::Tick => {
                out.push(Out::Live(s.tick()));
                s.step()
            }
        };
        assert_eq!(step, s.step(), "an event's step is the session's step");
    }
    (out, step, s.leave())
}

struct Case {
    name: &'static str,
    script: Vec<Ev>,
    out: Vec<Out>,
    step: Step,
    /// The leave: code, reason, error text.
    leave: (u16, &'static str, Option<&'static str>),
}

fn cases() -> Vec<Case> {
    use Liveness::*;
    use Step::*;
    let e = |e: WsError| Some(Box::leak(e.to_string().into_boxed_str()) as &str);
    vec![
        Case {
            name: "text and binary are delivered",
            script: vec![text("hi"), Ev::Bytes(cf(OpCode::Binary, &[0, 255]))],
            out: vec![t("hi"), Out::Binary(vec![0, 255])],
            step: Read,
            leave: (1006, "", None),
        },
        Case {
            name: "a fragmented text split around a ping is delivered once, the ping answered",
            script: vec![bytes(&[
                encode_client_frame(false, OpCode::Text, b"hel", M),
                cf(OpCode::Ping, b"p"),
                encode_client_frame(true, OpCode::Continuation, b"lo", M),
            ])],
            out: vec![Out::Pong(b"p".to_vec()), t("hello")],
            step: Read,
            leave: (1006, "", None),
        },
        Case {
            name: "pings are answered with their payload, pongs need no answer",
            script: vec![
                Ev::Bytes(cf(OpCode::Ping, b"abc")),
                Ev::Bytes(cf(OpCode::Pong, b"x")),
            ],
            out: vec![Out::Pong(b"abc".to_vec())],
            step: Read,
            leave: (1006, "", None),
        },
        Case {
            name: "the peer closes: its code is echoed and it leaves with code and reason",
            script: vec![close(1000, "bye")],
            out: vec![Out::Echo(Some(1000))],
            step: Flush,
            leave: (1000, "bye", None),
        },
        Case {
            name: "an application code is echoed as is",
            script: vec![close(4001, "")],
            out: vec![Out::Echo(Some(4001))],
            step: Flush,
            leave: (4001, "", None),
        },
        Case {
            name: "an empty close gets an empty echo and means 1005",
            script: vec![Ev::Bytes(cf(OpCode::Close, b""))],
            out: vec![Out::Echo(None)],
            step: Flush,
            leave: (1005, "", None),
        },
        Case {
            name: "data after the peer's close is ignored, in the same read or later",
            script: vec![
                bytes(&[cf(OpCode::Close, b""), cf(OpCode::Text, b"late")]),
                text("later"),
            ],
            out: vec![Out::Echo(None)],
            step: Flush,
            leave: (1005, "", None),
        },
        Case {
            name: "a one-byte close payload fails with 1002",
            script: vec![Ev::Bytes(cf(OpCode::Close, &[3]))],
            out: vec![Out::Fail(WsError::InvalidClosePayload)],
            step: FlushAndLinger,
            leave: (1002, "", e(WsError::InvalidClosePayload)),
        },
        Case {
            name: "a close code not allowed on the wire fails with 1002",
            script: vec![close(1005, "")],
            out: vec![Out::Fail(WsError::InvalidCloseCode)],
            step: FlushAndLinger,
            leave: (1002, "", e(WsError::InvalidCloseCode)),
        },
        Case {
            name: "a close reason that is not UTF-8 fails with 1007",
            script: vec![Ev::Bytes(cf(OpCode::Close, &[3, 232, 0xff]))],
            out: vec![Out::Fail(WsError::InvalidCloseReason)],
            step: FlushAndLinger,
            leave: (1007, "", e(WsError::InvalidCloseReason)),
        },
        Case {
            name: "an unmasked frame fails with 1002, after the messages before it",
            script: vec![bytes(&[
                cf(OpCode::Text, b"ok"),
                encode_frame(OpCode::Text, b"no"),
            ])],
            out: vec![t("ok"), Out::Fail(WsError::UnmaskedFrame)],
            step: FlushAndLinger,
            leave: (1002, "", e(WsError::UnmaskedFrame)),
        },
        Case {
            name: "invalid UTF-8 fails with 1007",
            script: vec![Ev::Bytes(cf(OpCode::Text, &[b'a', 0xc3, 0x28]))],
            out: vec![Out::Fail(WsError::InvalidUtf8)],
            step: FlushAndLinger,
            leave: (1007, "", e(WsError::InvalidUtf8)),
        },
        Case {
            name: "a message over the limit fails with 1009",
            script: vec![Ev::Bytes(cf(OpCode::Binary, &[7; MAX + 1]))],
            out: vec![Out::Fail(WsError::MessageTooBig)],
            step: FlushAndLinger,
            leave: (1009, "", e(WsError::MessageTooBig)),
        },
        Case {
            name: "nothing is decoded after a failure",
            script: vec![Ev::Bytes(cf(OpCode::Continuation, b"x")), text("after")],
            out: vec![Out::Fail(WsError::UnexpectedContinuation)],
            step: FlushAndLinger,
            leave: (1002, "", e(WsError::UnexpectedContinuation)),
        },
        Case {
            name: "we close: data is dropped, pings unanswered, the peer's close ends it unechoed",
            script: vec![
                Ev::LocalClose(4000),
                text("dropped"),
                Ev::Bytes(cf(OpCode::Ping, b"")),
                close(1000, "ok"),
            ],
            out: vec![Out::Dropped],
            step: Flush,
            leave: (1000, "ok", None),
        },
        Case {
            name: "we close and the peer never answers: the close timeout ends it with our code",
            script: vec![Ev::LocalClose(4000), Ev::Tick, Ev::CloseTimeout],
            out: vec![Out::Live(Alive)],
            step: Leave,
            leave: (4000, "", None),
        },
        Case {
            name: "we close and the peer hangs up: our code",
            script: vec![Ev::LocalClose(1001), Ev::Eof],
            out: vec![],
            step: Leave,
            leave: (1001, "", None),
        },
        Case {
            name: "a close timeout while open changes nothing",
            script: vec![Ev::CloseTimeout, text("a")],
            out: vec![t("a")],
            step: Read,
            leave: (1006, "", None),
        },
        Case {
            name:
                "the application closes while handling a message: the rest of the read is dropped",
            script: vec![bytes(&[
                cf(OpCode::Text, CLOSE_ME.as_bytes()),
                cf(OpCode::Text, b"after"),
                cf(OpCode::Ping, b"p"),
            ])],
            out: vec![t(CLOSE_ME), Out::Dropped],
            step: AwaitClose,
            leave: (4000, "", None),
        },
        Case {
            name: "a protocol error after our close fails without a second close frame",
            script: vec![
                Ev::LocalClose(1000),
                Ev::Bytes(encode_frame(OpCode::Text, b"x")),
            ],
            out: vec![],
            step: FlushAndLinger,
            leave: (1000, "", e(WsError::UnmaskedFrame)),
        },
        Case {
            name: "EOF after a failure: the protocol error is still reported",
            script: vec![Ev::Bytes(cf(OpCode::Close, &[3])), Ev::Eof],
            out: vec![Out::Fail(WsError::InvalidClosePayload)],
            step: Leave,
            leave: (1002, "", e(WsError::InvalidClosePayload)),
        },
        Case {
            name: "EOF after the peer's close: its code and reason",
            script: vec![close(4002, "gone"), Ev::Eof],
            out: vec![Out::Echo(Some(4002))],
            step: Leave,
            leave: (4002, "gone", None),
        },
        Case {
            name: "EOF while open: abnormal closure",
            script: vec![text("a"), Ev::Eof],
            out: vec![t("a")],
            step: Leave,
            leave: (1006, "", None),
        },
        Case {
            name: "a read error: abnormal closure, reported",
            script: vec![Ev::ReadErr],
            out: vec![],
            step: Leave,
            leave: (1006, "", Some("read failed: reset")),
        },
        Case {
            name: "silent: pinged at the first tick, dead at the second",
            script: vec![Ev::Tick, Ev::Tick],
            out: vec![Out::Live(Ping), Out::Live(Dead)],
            step: Leave,
            leave: (1006, "", None),
        },
        Case {
            name: "heard: alive; a pong after a ping keeps it alive; silence again kills it",
            script: vec![
                text("a"),
                Ev::Tick,
                Ev::Tick,
                Ev::Bytes(cf(OpCode::Pong, b"")),
                Ev::Tick,
                Ev::Tick,
                Ev::Tick,
            ],
            out: vec![
                t("a"),
                Out::Live(Alive),
                Out::Live(Ping),
                Out::Live(Alive),
                Out::Live(Ping),
                Out::Live(Dead),
            ],
            step: Leave,
            leave: (1006, "", None),
        },
        Case {
            name: "part of a frame counts as heard",
            script: vec![Ev::Tick, Ev::Bytes(vec![0x81]), Ev::Tick, Ev::Tick],
            out: vec![Out::Live(Ping), Out::Live(Alive), Out::Live(Ping)],
            step: Read,
            leave: (1006, "", None),
        },
        Case {
            name: "an empty read is not heard",
            script: vec![Ev::Tick, Ev::Bytes(vec![]), Ev::Tick],
            out: vec![Out::Live(Ping), Out::Live(Dead)],
            step: Leave,
            leave: (1006, "", None),
        },
        Case {
            name: "a dead peer's later bytes change nothing",
            script: vec![Ev::Tick, Ev::Tick, text("late")],
            out: vec![Out::Live(Ping), Out::Live(Dead)],
            step: Leave,
            leave: (1006, "", None),
        },
    ]
}

#[test]
fn session_table() {
    for case in cases() {
        for bytewise in [false, true] {
            let (out, step, leave) = play(&case.script, bytewise);
            let name = format!("{} (bytewise: {bytewise})", case.name);
            assert_eq!(out, case.out, "{name}");
            assert_eq!(step, case.step, "{name}");
            let error = leave.error.as_ref().map(ToString::to_string);
            assert_eq!(
                (leave.code, leave.reason.as_str(), error.as_deref()),
                case.leave,
                "{name}"
            );
        }
    }
}

#[test]
fn only_the_first_local_close_code_counts() {
    let mut s = Session::new(Decoder::new(MAX));
    assert_eq!(s.on_local_close(Some(4001)), Step::AwaitClose);
    assert_eq!(s.on_local_close(Some(1001)), Step::AwaitClose);
    assert!(!s.is_open());
    assert_eq!(s.leave().code, 4001);
}

#[test]
fn a_queue_shut_without_a_close_frame_leaves_abnormally() {
    let mut s = Session::new(Decoder::new(MAX));
    assert_eq!(s.on_local_close(None), Step::AwaitClose);
    assert_eq!(s.on_eof(), Step::Leave);
    assert_eq!(s.leave().code, 1006);
}
