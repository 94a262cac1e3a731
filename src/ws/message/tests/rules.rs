//! The decoder's rules as tables: every error (with its close code), every accepted frame
//! shape, and the Close payload (RFC 6455 5.5.1).

use super::*;

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
fn close_payload_table() {
    type Want = Result<(Option<u16>, &'static str), WsError>;
    let cases: &[(&[u8], Want)] = &[
        (b"", Ok((None, ""))),
        (b"\x03", Err(WsError::InvalidClosePayload)),
        (b"\x03\xe8", Ok((Some(1000), ""))),
        (b"\x0f\x9fbye", Ok((Some(3999), "bye"))),
        (b"\x03\xe8\xce\xba", Ok((Some(1000), "\u{3ba}"))),
        (b"\x03\xed", Err(WsError::InvalidCloseCode)),
        (b"\x00\x00", Err(WsError::InvalidCloseCode)),
        (b"\x03\xe8\xff", Err(WsError::InvalidCloseReason)),
        // Code checked before reason: a bad code wins.
        (b"\x03\xee\xff", Err(WsError::InvalidCloseCode)),
    ];
    for &(payload, want) in cases {
        assert_eq!(parse_close_payload(payload), want, "{payload:x?}");
    }
}
