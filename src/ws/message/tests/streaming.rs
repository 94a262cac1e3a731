//! Messages that arrive in pieces: failures detected before a frame completes, the size limit
//! read from the header alone, the zero-copy path, buffer release and idle state; then the
//! properties (any chunking decodes like the whole; encode, mask, decode round-trips).

use super::*;

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
    assert!(dec.partial.is_none(), "nothing was copied into the decoder");
    assert!(dec.is_idle());
}

#[test]
fn partial_state_is_freed_between_messages() {
    let mut dec = Decoder::new(BIG);
    let small = cat(&[
        cf(false, OpCode::Text, b"ab"),
        cf(true, OpCode::Continuation, b"c"),
    ]);
    assert_eq!(
        feed_chunks(&mut dec, &[&small[..3]]),
        (vec![], Ok(()))
    );
    assert!(dec.partial.is_some(), "a split frame is held");
    assert_eq!(
        feed_chunks(&mut dec, &[&small[3..]]),
        (vec![text("abc")], Ok(()))
    );
    assert!(dec.partial.is_none(), "freed once the message is out");

    let big = cat(&[
        cf(false, OpCode::Binary, &[1; 5000]),
        cf(true, OpCode::Continuation, &[2; 5000]),
    ]);
    let (msgs, res) = feed_chunks(&mut dec, &[&big]);
    assert_eq!((msgs.len(), res), (1, Ok(())));
    assert!(dec.partial.is_none());
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
