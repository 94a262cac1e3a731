//! Unit tests of the decoder (`message.rs`), in their own file only because they outgrew it.
//! This is still `message::tests`, so it can look at the decoder's private buffers.
//!
//! Tables cover every error rule (fed whole and one byte at a time) and the accepted shapes;
//! the proptest properties check that any chunking of a stream decodes like the whole stream,
//! and that server encoding, client masking and decoding round-trip.

use super::*;
use crate::ws::frame::{encode_client_frame, encode_close, encode_frame, header_len};
use proptest::prelude::*;

const M: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const BIG: usize = 1 << 20;

/// An owned copy of a `Message`, so results can outlive the callback and be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Message<'_>> for Owned {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(s) => Owned::Text(s.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(b) => Owned::Ping(b.to_vec()),
            Message::Pong(b) => Owned::Pong(b.to_vec()),
            Message::Close { code, reason } => Owned::Close(code, reason.to_owned()),
        }
    }
}

fn text(s: &str) -> Owned {
    Owned::Text(s.to_owned())
}

/// A masked client frame with the test key.
fn cf(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(fin, op, payload, M)
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Feeds `chunks` one by one (each from a fresh copy, as a socket read would be), collecting
/// messages until the first error.
fn feed_chunks(dec: &mut Decoder, chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), WsError>) {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut buf = chunk.to_vec();
        let res = dec.feed(&mut buf, &mut |m| out.push(Owned::from(m)));
        if res.is_err() {
            return (out, res);
        }
    }
    (out, Ok(()))
}

fn decode_whole(max: usize, stream: &[u8]) -> (Vec<Owned>, Result<(), WsError>) {
    feed_chunks(&mut Decoder::new(max), &[stream])
}

fn decode_bytewise(max: usize, stream: &[u8]) -> (Vec<Owned>, Result<(), WsError>) {
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    feed_chunks(&mut Decoder::new(max), &chunks)
}

/// A frame header with arbitrary bits, for frames `encode_client_frame` would not produce.
fn raw(b0: u8, b1: u8, ext: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, b1];
    v.extend_from_slice(ext);
    v.extend_from_slice(&M);
    v
}

type ErrorCase = (&'static str, usize, Vec<u8>, Vec<Owned>, WsError, u16);

#[test]
fn error_rules_table() {
    let hello = cf(true, OpCode::Text, b"hello");
    let unmasked = encode_frame(OpCode::Text, b"hi");
    let long_ping = {
        let mut f = raw(0x89, 0x80 | 126, &[0, 126]);
        f.extend_from_slice(&[0; 126]);
        f
    };
    // (name, max size, stream, messages delivered before the error, error, close code)
    let cases: Vec<ErrorCase> = vec![
        (
            "unmasked",
            BIG,
            unmasked,
            vec![],
            WsError::UnmaskedFrame,
            1002,
        ),
        (
            "rsv1",
            BIG,
            raw(0xC1, 0x80, &[]),
            vec![],
            WsError::ReservedBitsSet,
            1002,
        ),
        (
            "rsv2",
            BIG,
            raw(0xA2, 0x80, &[]),
            vec![],
            WsError::ReservedBitsSet,
            1002,
        ),
        (
            "rsv3 ping",
            BIG,
            raw(0x99, 0x80, &[]),
            vec![],
            WsError::ReservedBitsSet,
            1002,
        ),
        (
            "opcode 3",
            BIG,
            raw(0x83, 0x80, &[]),
            vec![],
            WsError::UnknownOpcode,
            1002,
        ),
        (
            "opcode 0xB",
            BIG,
            raw(0x8B, 0x80, &[]),
            vec![],
            WsError::UnknownOpcode,
            1002,
        ),
        (
            "ping 126",
            BIG,
            long_ping,
            vec![],
            WsError::ControlFrameTooLong,
            1002,
        ),
        (
            "fragmented ping",
            BIG,
            cf(false, OpCode::Ping, b"x"),
            vec![],
            WsError::ControlFrameFragmented,
            1002,
        ),
        (
            "lone continuation",
            BIG,
            cf(true, OpCode::Continuation, b"x"),
            vec![],
            WsError::UnexpectedContinuation,
            1002,
        ),
        (
            "continuation after a complete message",
            BIG,
            cat(&[hello.clone(), cf(true, OpCode::Continuation, b"x")]),
            vec![text("hello")],
            WsError::UnexpectedContinuation,
            1002,
        ),
        (
            "new text inside a fragmented message",
            BIG,
            cat(&[
                cf(false, OpCode::Text, b"a"),
                cf(false, OpCode::Continuation, b"b"),
                cf(false, OpCode::Text, b"c"),
            ]),
            vec![],
            WsError::ExpectedContinuation,
            1002,
        ),
        (
            "new binary inside a fragmented message",
            BIG,
            cat(&[
                cf(false, OpCode::Binary, b"a"),
                cf(true, OpCode::Binary, b"c"),
            ]),
            vec![],
            WsError::ExpectedContinuation,
            1002,
        ),
        (
            "invalid utf-8",
            BIG,
            cf(true, OpCode::Text, b"ab\xFFcd"),
            vec![],
            WsError::InvalidUtf8,
            1007,
        ),
        (
            "utf-16 surrogate",
            BIG,
            cf(true, OpCode::Text, b"\xED\xA0\x80"),
            vec![],
            WsError::InvalidUtf8,
            1007,
        ),
        (
            "text ends inside a char",
            BIG,
            cat(&[
                cf(false, OpCode::Text, b"a\xE2\x82"),
                cf(true, OpCode::Continuation, b""),
            ]),
            vec![],
            WsError::InvalidUtf8,
            1007,
        ),
        (
            "valid then invalid",
            BIG,
            cat(&[hello.clone(), cf(true, OpCode::Text, b"\xC0\xAF")]),
            vec![text("hello")],
            WsError::InvalidUtf8,
            1007,
        ),
        (
            "frame over the limit",
            10,
            cf(true, OpCode::Binary, &[0; 11]),
            vec![],
            WsError::MessageTooBig,
            1009,
        ),
        (
            "fragments over the limit",
            10,
            cat(&[
                cf(false, OpCode::Text, b"123456"),
                cf(true, OpCode::Continuation, b"78901"),
            ]),
            vec![],
            WsError::MessageTooBig,
            1009,
        ),
        (
            "64-bit length with the top bit set",
            BIG,
            raw(0x82, 0x80 | 127, &[0x80, 0, 0, 0, 0, 0, 0, 1]),
            vec![],
            WsError::LengthOverflow,
            1002,
        ),
        (
            "close with 1 byte",
            BIG,
            cf(true, OpCode::Close, &[0x03]),
            vec![],
            WsError::InvalidClosePayload,
            1002,
        ),
        (
            "close 1005",
            BIG,
            cf(true, OpCode::Close, &1005u16.to_be_bytes()),
            vec![],
            WsError::InvalidCloseCode,
            1002,
        ),
        (
            "close 999",
            BIG,
            cf(true, OpCode::Close, &999u16.to_be_bytes()),
            vec![],
            WsError::InvalidCloseCode,
            1002,
        ),
        (
            "close 2999",
            BIG,
            cf(true, OpCode::Close, &2999u16.to_be_bytes()),
            vec![],
            WsError::InvalidCloseCode,
            1002,
        ),
        (
            "close reason not utf-8",
            BIG,
            cf(true, OpCode::Close, b"\x03\xE8\xCE\xBA\xE1\xBD"),
            vec![],
            WsError::InvalidCloseReason,
            1007,
        ),
    ];
    for (name, max, stream, msgs, err, code) in cases {
        assert_eq!(err.close_code(), code, "{name}");
        let want = (msgs, Err(err));
        assert_eq!(decode_whole(max, &stream), want, "{name} (whole)");
        assert_eq!(decode_bytewise(max, &stream), want, "{name} (bytewise)");
    }
}

#[test]
fn accepted_frames_table() {
    let mut close_reason = 1000u16.to_be_bytes().to_vec();
    close_reason.extend_from_slice("bye é".as_bytes());
    // (name, stream, messages)
    let cases: Vec<(&str, Vec<u8>, Vec<Owned>)> = vec![
        (
            "text",
            cf(true, OpCode::Text, b"hello"),
            vec![text("hello")],
        ),
        (
            "binary",
            cf(true, OpCode::Binary, &[0, 255]),
            vec![Owned::Binary(vec![0, 255])],
        ),
        ("empty text", cf(true, OpCode::Text, b""), vec![text("")]),
        (
            "empty binary",
            cf(true, OpCode::Binary, b""),
            vec![Owned::Binary(vec![])],
        ),
        (
            "empty ping",
            cf(true, OpCode::Ping, b""),
            vec![Owned::Ping(vec![])],
        ),
        (
            "ping",
            cf(true, OpCode::Ping, b"p"),
            vec![Owned::Ping(b"p".to_vec())],
        ),
        (
            "pong",
            cf(true, OpCode::Pong, b"q"),
            vec![Owned::Pong(b"q".to_vec())],
        ),
        (
            "ping of 125",
            cf(true, OpCode::Ping, &[7; 125]),
            vec![Owned::Ping(vec![7; 125])],
        ),
        (
            "empty close",
            cf(true, OpCode::Close, b""),
            vec![Owned::Close(None, String::new())],
        ),
        (
            "close with reason",
            cf(true, OpCode::Close, &close_reason),
            vec![Owned::Close(Some(1000), "bye é".into())],
        ),
        (
            "close 4999",
            cf(true, OpCode::Close, &4999u16.to_be_bytes()),
            vec![Owned::Close(Some(4999), String::new())],
        ),
        (
            "16-bit length",
            cf(true, OpCode::Binary, &[3; 300]),
            vec![Owned::Binary(vec![3; 300])],
        ),
        (
            "64-bit length",
            cf(true, OpCode::Binary, &[4; 70_000]),
            vec![Owned::Binary(vec![4; 70_000])],
        ),
        (
            "fragmented text with a ping in between",
            cat(&[
                cf(false, OpCode::Text, b"frag"),
                cf(true, OpCode::Ping, b"p"),
                cf(false, OpCode::Continuation, b"ment"),
                cf(true, OpCode::Pong, b""),
                cf(true, OpCode::Continuation, b"ed"),
            ]),
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::Pong(vec![]),
                text("fragmented"),
            ],
        ),
        (
            "empty fragments",
            cat(&[
                cf(false, OpCode::Text, b""),
                cf(false, OpCode::Continuation, b""),
                cf(true, OpCode::Continuation, b""),
                cf(false, OpCode::Binary, b""),
                cf(true, OpCode::Continuation, b"x"),
            ]),
            vec![text(""), Owned::Binary(b"x".to_vec())],
        ),
        (
            "euro sign split across three fragments",
            cat(&[
                cf(false, OpCode::Text, b"a\xE2"),
                cf(false, OpCode::Continuation, b"\x82"),
                cf(true, OpCode::Continuation, b"\xACb"),
            ]),
            vec![text("a€b")],
        ),
        (
            "bytes after close are ignored",
            cat(&[
                cf(true, OpCode::Close, b""),
                cf(true, OpCode::Text, b"late"),
                vec![0xFF, 0xFF],
            ]),
            vec![Owned::Close(None, String::new())],
        ),
        (
            "non-minimal 16-bit length",
            {
                let mut f = raw(0x82, 0x80 | 126, &[0, 2]);
                f.extend_from_slice(&[1 ^ M[0], 2 ^ M[1]]);
                f
            },
            vec![Owned::Binary(vec![1, 2])],
        ),
    ];
    for (name, stream, msgs) in cases {
        let want = (msgs, Ok(()));
        assert_eq!(decode_whole(BIG, &stream), want, "{name} (whole)");
        assert_eq!(decode_bytewise(BIG, &stream), want, "{name} (bytewise)");
    }
}

#[test]
fn invalid_utf8_fails_before_the_frame_completes() {
    let mut payload = vec![b'a'; 100];
    payload[3] = 0xFF;
    let frame = cf(true, OpCode::Text, &payload);
    let (hdr, rest) = frame.split_at(6);
    let mut dec = Decoder::new(BIG);
    let (msgs, res) = feed_chunks(&mut dec, &[hdr, &rest[..5]]);
    assert_eq!((msgs, res), (vec![], Err(WsError::InvalidUtf8)));
    // Poisoned: later input returns the same error.
    let (_, res) = feed_chunks(&mut dec, &[&rest[5..]]);
    assert_eq!(res, Err(WsError::InvalidUtf8));
}

#[test]
fn impossible_prefix_fails_before_the_char_completes() {
    // Autobahn 6.4.2: F4 90 80 80 is above U+10FFFF; F4 90 is already known bad.
    let frame = cf(true, OpCode::Text, b"\xF4\x90\x80\x80");
    let mut dec = Decoder::new(BIG);
    let (msgs, res) = feed_chunks(&mut dec, &[&frame[..7]]);
    assert_eq!((msgs, res), (vec![], Ok(())), "F4 alone is a valid prefix");
    let (_, res) = feed_chunks(&mut dec, &[&frame[7..8]]);
    assert_eq!(res, Err(WsError::InvalidUtf8));

    // The same across fragments: the second fragment's first byte decides.
    let stream = cat(&[
        cf(false, OpCode::Text, b"ok\xF4"),
        cf(false, OpCode::Continuation, b"\x90"),
    ]);
    assert_eq!(
        decode_whole(BIG, &stream),
        (vec![], Err(WsError::InvalidUtf8))
    );
}

#[test]
fn multibyte_char_split_across_feeds() {
    let s = "→ ünïcödé 🎉 ok";
    let frame = cf(true, OpCode::Text, s.as_bytes());
    for cut in 0..frame.len() {
        let (a, b) = frame.split_at(cut);
        let got = feed_chunks(&mut Decoder::new(BIG), &[a, b]);
        assert_eq!(got, (vec![text(s)], Ok(())), "cut {cut}");
    }
}

#[test]
fn too_big_is_detected_from_the_header_alone() {
    let frame = cf(true, OpCode::Binary, &[0; 1001]);
    let hdr_len = header_len(1001) + 4;
    let got = feed_chunks(&mut Decoder::new(1000), &[&frame[..hdr_len]]);
    assert_eq!(got, (vec![], Err(WsError::MessageTooBig)));

    // A 2^40-byte announcement fails without any attempt to allocate it.
    let huge = raw(0x82, 0x80 | 127, &(1u64 << 40).to_be_bytes());
    assert_eq!(
        decode_whole(BIG, &huge),
        (vec![], Err(WsError::MessageTooBig))
    );

    // The limit is inclusive.
    let exact = cf(true, OpCode::Binary, &[0; 1000]);
    assert_eq!(decode_whole(1000, &exact).1, Ok(()));
}

#[test]
fn whole_frames_take_the_zero_copy_path() {
    let stream = cat(&[
        cf(true, OpCode::Text, b"one"),
        cf(true, OpCode::Ping, b"p"),
        cf(true, OpCode::Binary, &[9; 2000]),
    ]);
    let mut dec = Decoder::new(BIG);
    let (msgs, res) = feed_chunks(&mut dec, &[&stream]);
    assert_eq!(res, Ok(()));
    assert_eq!(msgs.len(), 3);
    assert_eq!(dec.msg.capacity(), 0, "nothing was copied into the decoder");
    assert_eq!(dec.ctrl.capacity(), 0);
    assert!(dec.is_idle());
}

#[test]
fn reassembly_buffer_is_released_when_large() {
    let mut dec = Decoder::new(BIG);
    let small = cat(&[
        cf(false, OpCode::Text, b"ab"),
        cf(true, OpCode::Continuation, b"c"),
    ]);
    assert_eq!(
        feed_chunks(&mut dec, &[&small]),
        (vec![text("abc")], Ok(()))
    );
    assert!(
        dec.msg.is_empty() && dec.msg.capacity() > 0,
        "small buffer kept"
    );

    let big = cat(&[
        cf(false, OpCode::Binary, &[1; 5000]),
        cf(true, OpCode::Continuation, &[2; 5000]),
    ]);
    let (msgs, res) = feed_chunks(&mut dec, &[&big]);
    assert_eq!((msgs.len(), res), (1, Ok(())));
    assert_eq!(dec.msg.capacity(), 0, "large buffer freed");
    assert!(dec.is_idle());
}

#[test]
fn idle_tracks_partial_state() {
    let frame = cf(true, OpCode::Text, b"hello");
    let mut dec = Decoder::new(BIG);
    assert!(dec.is_idle());
    feed_chunks(&mut dec, &[&frame[..1]]).1.unwrap();
    assert!(!dec.is_idle(), "partial header");
    feed_chunks(&mut dec, &[&frame[1..8]]).1.unwrap();
    assert!(!dec.is_idle(), "partial payload");
    feed_chunks(&mut dec, &[&frame[8..]]).1.unwrap();
    assert!(dec.is_idle());
    feed_chunks(&mut dec, &[&cf(false, OpCode::Text, b"x")])
        .1
        .unwrap();
    assert!(!dec.is_idle(), "fragmented message open");
}

// ---- properties ----

/// One message of a generated stream: its fragments, control frames to slip in after each
/// fragment but the last, and what the decoder must produce.
#[derive(Clone, Debug)]
struct Gen {
    frames: Vec<u8>,
    expect: Vec<Owned>,
}

fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..40),
        2 => prop::collection::vec(any::<u8>(), 120..300),
        1 => prop::collection::vec(any::<u8>(), 65_530..65_545),
    ]
}

fn arb_message() -> impl Strategy<Value = Gen> {
    let data = (
        any::<bool>(),
        any::<String>(),
        arb_payload(),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            4,
        ),
        any::<[u8; 4]>(),
    )
        .prop_map(|(is_text, s, bin, cuts, pings, mask)| {
            let payload = if is_text {
                s.as_bytes().to_vec()
            } else {
                bin.clone()
            };
            // Fragment at arbitrary byte positions, splitting chars on purpose.
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
            at.sort_unstable();
            at.push(payload.len());
            let mut frames = Vec::new();
            let mut expect = Vec::new();
            let mut start = 0;
            for (i, &end) in at.iter().enumerate() {
                let last = i + 1 == at.len();
                let op = match (i, is_text) {
                    (0, true) => OpCode::Text,
                    (0, false) => OpCode::Binary,
                    _ => OpCode::Continuation,
                };
                frames.extend(encode_client_frame(last, op, &payload[start..end], mask));
                start = end;
                if let (false, Some(p)) = (last, &pings[i]) {
                    frames.extend(encode_client_frame(true, OpCode::Ping, p, mask));
                    expect.push(Owned::Ping(p.clone()));
                }
            }
            expect.push(if is_text {
                Owned::Text(s)
            } else {
                Owned::Binary(bin)
            });
            Gen { frames, expect }
        });
    let control = (
        prop::sample::select(vec![OpCode::Ping, OpCode::Pong]),
        prop::collection::vec(any::<u8>(), 0..=125),
        any::<[u8; 4]>(),
    )
        .prop_map(|(op, p, mask)| Gen {
            frames: encode_client_frame(true, op, &p, mask),
            expect: vec![if op == OpCode::Ping {
                Owned::Ping(p)
            } else {
                Owned::Pong(p)
            }],
        });
    prop_oneof![4 => data, 1 => control]
}

/// Masks a server frame the way a client would: set the MASK bit, insert the key, XOR.
fn mask_like_client(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let hl = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..hl].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(&frame[hl..]);
    unmask(&mut out[start..], mask, 0);
    out
}

proptest! {
    #[test]
    fn any_split_decodes_like_whole(
        msgs in prop::collection::vec(arb_message(), 1..6),
        close in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream: Vec<u8> = msgs.iter().flat_map(|g| g.frames.clone()).collect();
        let mut expect: Vec<Owned> = msgs.iter().flat_map(|g| g.expect.clone()).collect();
        if close {
            stream.extend(cf(true, OpCode::Close, b"\x03\xE8done"));
            expect.push(Owned::Close(Some(1000), "done".into()));
        }

        let whole = decode_whole(BIG, &stream);
        prop_assert_eq!(&whole, &(expect, Ok(())));

        let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        at.sort_unstable();
        at.push(stream.len());
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for end in at {
            chunks.push(&stream[start..end]);
            start = end;
        }
        let mut dec = Decoder::new(BIG);
        let split = feed_chunks(&mut dec, &chunks);
        prop_assert_eq!(&split, &whole);
        prop_assert!(dec.is_idle());
    }

    #[test]
    fn encode_mask_decode_round_trips(
        kind in 0u8..5,
        s in any::<String>(),
        payload in arb_payload(),
        code in prop::sample::select(vec![1000u16, 1001, 1003, 1011, 1013, 3000, 4999]),
        mask in any::<[u8; 4]>(),
    ) {
        let ctl = &payload[..payload.len().min(125)];
        let (frame, expect) = match kind {
            0 => (encode_frame(OpCode::Text, s.as_bytes()), Owned::Text(s.clone())),
            1 => (encode_frame(OpCode::Binary, &payload), Owned::Binary(payload.clone())),
            2 => (encode_frame(OpCode::Ping, ctl), Owned::Ping(ctl.to_vec())),
            3 => (encode_frame(OpCode::Pong, ctl), Owned::Pong(ctl.to_vec())),
            _ => {
                let f = encode_close(code, &s);
                let reason = std::str::from_utf8(&f[4..]).unwrap().to_owned();
                prop_assert!(s.starts_with(&reason));
                (f, Owned::Close(Some(code), reason))
            }
        };
        let client = mask_like_client(&frame, mask);
        prop_assert_eq!(decode_whole(BIG, &client), (vec![expect], Ok(())));
    }
}

// ---- permessage-deflate ----

/// The payload of `text` compressed as one message (RFC 7692 §7.2.1), as a client sends it.
fn deflated(text: &[u8]) -> Vec<u8> {
    let frame = crate::ws::deflate::compressed_frame(OpCode::Text, text, 15).expect("shrinks");
    let at = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame[at..].to_vec()
}

/// A masked client frame with RSV1 set.
fn cf_rsv1(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut f = cf(fin, op, payload);
    f[0] |= 0x40;
    f
}

fn decode_deflate(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), WsError>) {
    feed_chunks(&mut Decoder::with_deflate(max, true), chunks)
}

#[test]
fn compressed_messages_whole_fragmented_and_split() {
    let msg = "hello hello hello hello hello hello hello hello, compressed ".repeat(40);
    let z = deflated(msg.as_bytes());
    assert!(z.len() < msg.len() / 4);
    let want = vec![text(&msg), text("plain after")];
    // One frame, fed whole (the fast path) and byte by byte (the slow path).
    let stream = cat(&[
        cf_rsv1(true, OpCode::Text, &z),
        cf(true, OpCode::Text, b"plain after"),
    ]);
    assert_eq!(decode_deflate(BIG, &[&stream]), (want.clone(), Ok(())));
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode_deflate(BIG, &bytes), (want.clone(), Ok(())));
    // Fragmented: RSV1 on the first frame only, a ping between the fragments.
    let (a, b) = z.split_at(z.len() / 3);
    let (b, c) = b.split_at(b.len() / 2);
    let stream = cat(&[
        cf_rsv1(false, OpCode::Text, a),
        cf(false, OpCode::Continuation, b),
        cf(true, OpCode::Ping, b"p"),
        cf(true, OpCode::Continuation, c),
        cf(true, OpCode::Text, b"plain after"),
    ]);
    let mut want_frag = vec![Owned::Ping(b"p".to_vec())];
    want_frag.extend(want.clone());
    assert_eq!(decode_deflate(BIG, &[&stream]), (want_frag.clone(), Ok(())));
    let bytes: Vec<&[u8]> = stream.chunks(7).collect();
    assert_eq!(decode_deflate(BIG, &bytes), (want_frag, Ok(())));
    // Binary, and an empty compressed message (a single 0x00 byte, §7.2.3.6).
    let stream = cat(&[
        cf_rsv1(true, OpCode::Binary, &z),
        cf_rsv1(true, OpCode::Binary, &[0x00]),
    ]);
    assert_eq!(
        decode_deflate(BIG, &[&stream]),
        (
            vec![
                Owned::Binary(msg.clone().into_bytes()),
                Owned::Binary(vec![])
            ],
            Ok(())
        )
    );
}

#[test]
fn compressed_rule_violations() {
    let z = deflated(&b"abcabcabcabcabcabcabcabc".repeat(10));
    let cases: &[(Vec<u8>, WsError)] = &[
        (
            cf_rsv1(true, OpCode::Ping, b""),
            WsError::CompressedControlFrame,
        ),
        (
            cf_rsv1(true, OpCode::Close, b""),
            WsError::CompressedControlFrame,
        ),
        (
            cat(&[
                cf_rsv1(false, OpCode::Text, &z),
                cf_rsv1(true, OpCode::Continuation, b""),
            ]),
            WsError::CompressedContinuation,
        ),
        (
            cat(&[
                cf(false, OpCode::Text, b"a"),
                cf_rsv1(true, OpCode::Continuation, b""),
            ]),
            WsError::CompressedContinuation,
        ),
        (
            cf_rsv1(true, OpCode::Text, &[0xFF, 0xFF]),
            WsError::BadCompressedData,
        ),
        // Valid deflate, invalid UTF-8 inside.
        (
            cf_rsv1(true, OpCode::Text, &deflated(&[0xFF; 200])),
            WsError::InvalidUtf8,
        ),
    ];
    for (stream, want) in cases {
        assert_eq!(decode_deflate(BIG, &[stream]).1, Err(*want), "{stream:x?}");
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            decode_deflate(BIG, &bytes).1,
            Err(*want),
            "bytewise {stream:x?}"
        );
    }
    // Without the extension RSV1 is a reserved bit, as before.
    let (_, res) = decode_whole(BIG, &cf_rsv1(true, OpCode::Text, &z));
    assert_eq!(res, Err(WsError::ReservedBitsSet));
}

#[test]
fn the_limit_is_on_the_inflated_size() {
    let msg = vec![b'a'; 5000];
    let z = deflated(&msg);
    assert!(z.len() < 100);
    let frame = cf_rsv1(true, OpCode::Binary, &z);
    let (got, res) = decode_deflate(5000, &[&frame]);
    assert_eq!((got.len(), res), (1, Ok(())), "exactly at the limit");
    for chunks in [frame.chunks(frame.len()), frame.chunks(3)] {
        let chunks: Vec<&[u8]> = chunks.collect();
        let (got, res) = decode_deflate(4999, &chunks);
        assert_eq!((got, res), (vec![], Err(WsError::MessageTooBig)));
    }
    // The wire limit for a compressed message allows deflate's expansion of incompressible
    // data, and no more than that.
    let mut dec = Decoder::with_deflate(1000, true);
    let over = raw(
        0xC2,
        0x80 | 126,
        &(compressed_wire_limit(1000) as u16 + 1).to_be_bytes(),
    );
    assert_eq!(
        feed_chunks(&mut dec, &[&over]).1,
        Err(WsError::MessageTooBig)
    );
    let mut dec = Decoder::with_deflate(1000, true);
    let at = raw(
        0xC2,
        0x80 | 126,
        &(compressed_wire_limit(1000) as u16).to_be_bytes(),
    );
    assert_eq!(feed_chunks(&mut dec, &[&at]).1, Ok(()));
}
