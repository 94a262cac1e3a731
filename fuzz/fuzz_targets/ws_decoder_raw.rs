//! Raw bytes → `ws::Decoder`, whole and in pieces.
//!
//! Input layout: byte 0 picks the message size limit (bits 0-2) and whether the connection
//! negotiated permessage-deflate (bit 3: RSV1 frames are then inflated, the inflate path),
//! byte 1 the number of split points (0-15), then that many split points (u16 each); the rest
//! is the client byte stream.
//!
//! Checks: no panic; the stream decodes to the same messages and the same error whole, split at
//! the given points, and (when short) one byte at a time; see `common::ws::decode` for the rules
//! checked on every call.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/ws.rs"]
mod ws;

const MAX: [usize; 8] = [0, 1, 2, 125, 126, 1000, 65536, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [limit, ncuts, rest @ ..] = data else {
        return;
    };
    let max = MAX[usize::from(limit & 7)];
    let deflate = limit & 8 != 0;
    let mut rest = rest;
    let mut raw = Vec::new();
    for _ in 0..ncuts & 15 {
        let Some((c, r)) = rest.split_first_chunk::<2>() else {
            return;
        };
        raw.push(usize::from(u16::from_le_bytes(*c)));
        rest = r;
    }
    let stream = rest;
    let cuts = ws::cuts(raw, stream.len());

    let whole = ws::decode_with(max, deflate, stream, &[]);
    let split = ws::decode_with(max, deflate, stream, &cuts);
    assert_eq!(whole, split, "split at {cuts:?} differs from whole");
    if stream.len() <= 256 {
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(
            whole,
            ws::decode_with(max, deflate, stream, &every),
            "byte-at-a-time differs"
        );
    }
});
