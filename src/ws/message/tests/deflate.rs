//! permessage-deflate (RFC 7692) through the decoder: compressed messages whole, fragmented
//! and split, the RSV1 rules, and the size limit applied to the inflated size.

use super::*;

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
    // Without the extension RSV1 is a reserved bit (RFC 6455 §5.2).
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
