//! Structured frames → `ws::encode_client_frame` → `ws::Decoder`, fed whole and in pieces.
//!
//! The input is a list of operations, each adding masked client frames to one stream: a raw
//! frame (any fin, opcode, payload, mask; valid or not), a whole text or binary message cut
//! into fragments at arbitrary byte positions (text cut inside UTF-8 sequences too) with pings
//! and pongs between the fragments, a ping or pong, or a close with any code.
//!
//! Checks:
//! - the stream decodes, whole and at the given split points, to exactly what an independent
//!   model of RFC 6455 (fragmentation, control frame rules, size limit, fail-fast UTF-8, Close
//!   payload) says: the same messages and the same error;
//! - when every operation produced valid frames (and each message fits the limit), the decoded
//!   messages are exactly the messages that went in, up to and including the first Close.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use partyring::ws::{encode_client_frame, OpCode, WsError};

#[path = "common/ws.rs"]
mod ws;
use ws::Owned;

const MAX: [usize; 8] = [0, 1, 7, 125, 126, 1000, 65536, 1 << 20];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op4 {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl From<Op4> for OpCode {
    fn from(o: Op4) -> OpCode {
        match o {
            Op4::Continuation => OpCode::Continuation,
            Op4::Text => OpCode::Text,
            Op4::Binary => OpCode::Binary,
            Op4::Close => OpCode::Close,
            Op4::Ping => OpCode::Ping,
            Op4::Pong => OpCode::Pong,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Body {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Ctl {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// One frame, valid or not. `grow` > 200 pads the payload past 125 bytes (16-bit length),
    /// > 250 past 65535 (64-bit length).
    Frame {
        fin: bool,
        opcode: Op4,
        payload: Vec<u8>,
        mask: [u8; 4],
        grow: u8,
    },
    /// A valid message in fragments cut at `cuts`, `between[i]` sent after fragment `i`.
    Message {
        body: Body,
        cuts: Vec<u16>,
        between: Vec<Ctl>,
        mask: [u8; 4],
    },
    Control(Ctl, [u8; 4]),
    Close {
        code: Option<u16>,
        reason: String,
        mask: [u8; 4],
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    max: u8,
    ops: Vec<Op>,
    cuts: Vec<u16>,
}

/// A frame as it went on the wire.
struct Frame {
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

fn ctl_frame(c: &Ctl) -> (OpCode, Vec<u8>, Owned) {
    let (op, mut p) = match c {
        Ctl::Ping(p) => (OpCode::Ping, p.clone()),
        Ctl::Pong(p) => (OpCode::Pong, p.clone()),
    };
    p.truncate(125);
    let owned = if op == OpCode::Ping {
        Owned::Ping(p.clone())
    } else {
        Owned::Pong(p.clone())
    };
    (op, p, owned)
}

fn valid_close_code(code: u16) -> bool {
    // RFC 6455 7.4 plus the IANA-registered 1012-1014, and 3000-4999.
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

/// What RFC 6455 (as partyring implements it) says the frames decode to.
fn model(max: usize, frames: &[Frame]) -> (Vec<Owned>, Option<WsError>) {
    let mut out = Vec::new();
    // The data message in progress: its kind and the bytes so far.
    let mut open: Option<(OpCode, Vec<u8>)> = None;
    for f in frames {
        let control = matches!(f.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        // Header rules, in wire order.
        if control && !f.fin {
            return (out, Some(WsError::ControlFrameFragmented));
        }
        if control && f.payload.len() > 125 {
            return (out, Some(WsError::ControlFrameTooLong));
        }
        if control {
            let p = f.payload.clone();
            match f.opcode {
                OpCode::Ping => out.push(Owned::Ping(p)),
                OpCode::Pong => out.push(Owned::Pong(p)),
                _ => {
                    let msg = match &p[..] {
                        [] => Owned::Close(None, String::new()),
                        [_] => return (out, Some(WsError::InvalidClosePayload)),
                        [hi, lo, reason @ ..] => {
                            let code = u16::from_be_bytes([*hi, *lo]);
                            if !valid_close_code(code) {
                                return (out, Some(WsError::InvalidCloseCode));
                            }
                            match std::str::from_utf8(reason) {
                                Ok(r) => Owned::Close(Some(code), r.to_owned()),
                                Err(_) => return (out, Some(WsError::InvalidCloseReason)),
                            }
                        }
                    };
                    out.push(msg);
                    // Nothing after a Close is decoded.
                    return (out, None);
                }
            }
            continue;
        }
        // Fragmentation rules, then the size limit, from the header alone.
        let (kind, mut acc) = match (f.opcode, open.take()) {
            (OpCode::Continuation, None) => return (out, Some(WsError::UnexpectedContinuation)),
            (OpCode::Continuation, Some(o)) => o,
            (_, Some(_)) => return (out, Some(WsError::ExpectedContinuation)),
            (op, None) => (op, Vec::new()),
        };
        if acc.len() + f.payload.len() > max {
            return (out, Some(WsError::MessageTooBig));
        }
        acc.extend_from_slice(&f.payload);
        if kind == OpCode::Text {
            // Fail fast: a byte that can start no valid continuation is an error at once.
            if let Err(e) = std::str::from_utf8(&acc) {
                if e.error_len().is_some() || f.fin {
                    return (out, Some(WsError::InvalidUtf8));
                }
            }
        }
        if !f.fin {
            open = Some((kind, acc));
            continue;
        }
        out.push(if kind == OpCode::Text {
            Owned::Text(String::from_utf8(acc).expect("checked above"))
        } else {
            Owned::Binary(acc)
        });
    }
    (out, None)
}

fuzz_target!(|input: Input| {
    let max = MAX[usize::from(input.max & 7)];
    let mut stream = Vec::new();
    let mut frames = Vec::new();
    // What went in, when every op made valid frames: the messages a receiver must see.
    let mut intended = Vec::new();
    let mut all_valid = true;
    let mut closed = false;
    let mut push = |stream: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: Vec<u8>, mask| {
        stream.extend_from_slice(&encode_client_frame(fin, opcode, &payload, mask));
        frames.push(Frame {
            fin,
            opcode,
            payload,
        });
    };
    for op in &input.ops {
        match op {
            Op::Frame {
                fin,
                opcode,
                payload,
                mask,
                grow,
            } => {
                let mut p = payload.clone();
                if *grow > 250 {
                    p.resize(65536 + p.len(), 0x5a);
                } else if *grow > 200 {
                    p.resize(126 + p.len(), 0xa5);
                }
                all_valid = false;
                push(&mut stream, *fin, (*opcode).into(), p, *mask);
            }
            Op::Message {
                body,
                cuts,
                between,
                mask,
            } => {
                let (first, bytes, owned) = match body {
                    Body::Text(s) => (OpCode::Text, s.as_bytes().to_vec(), Owned::Text(s.clone())),
                    Body::Binary(b) => (OpCode::Binary, b.clone(), Owned::Binary(b.clone())),
                };
                all_valid &= bytes.len() <= max;
                let mut cuts = ws::cuts(cuts.iter().map(|&c| usize::from(c)), bytes.len());
                cuts.truncate(16);
                cuts.push(bytes.len());
                let mut start = 0;
                let mut ctl = between.iter();
                for (i, &end) in cuts.iter().enumerate() {
                    let last = i + 1 == cuts.len();
                    let op = if i == 0 { first } else { OpCode::Continuation };
                    let m = mask.map(|b| b ^ i as u8);
                    push(&mut stream, last, op, bytes[start..end].to_vec(), m);
                    start = end;
                    if !last {
                        if let Some(c) = ctl.next() {
                            let (op, p, o) = ctl_frame(c);
                            push(&mut stream, true, op, p, m);
                            if !closed {
                                intended.push(o);
                            }
                        }
                    }
                }
                if !closed {
                    intended.push(owned);
                }
            }
            Op::Control(c, mask) => {
                let (op, p, o) = ctl_frame(c);
                push(&mut stream, true, op, p, *mask);
                if !closed {
                    intended.push(o);
                }
            }
            Op::Close { code, reason, mask } => {
                let mut payload = Vec::new();
                let mut reason = reason.as_str();
                let msg = match code {
                    None => Owned::Close(None, String::new()),
                    Some(code) => {
                        all_valid &= valid_close_code(*code);
                        let mut end = reason.len().min(123);
                        while !reason.is_char_boundary(end) {
                            end -= 1;
                        }
                        reason = &reason[..end];
                        payload.extend_from_slice(&code.to_be_bytes());
                        payload.extend_from_slice(reason.as_bytes());
                        Owned::Close(Some(*code), reason.to_owned())
                    }
                };
                push(&mut stream, true, OpCode::Close, payload, *mask);
                if !closed {
                    intended.push(msg);
                }
                closed = true;
            }
        }
        if stream.len() > 1 << 20 {
            break;
        }
    }

    let want = model(max, &frames);
    if all_valid {
        assert_eq!(
            want,
            (intended.clone(), None),
            "model disagrees with the valid input"
        );
    }
    let whole = ws::decode(max, &stream, &[]);
    assert_eq!(whole, want, "whole stream");
    let cuts = ws::cuts(input.cuts.iter().map(|&c| usize::from(c)), stream.len());
    let split = ws::decode(max, &stream, &cuts);
    assert_eq!(split, want, "split at {cuts:?}");
});
