//! permessage-deflate: messages compressed with a given window (or arbitrary bytes posing as a
//! compressed payload) → RSV1 client frames, fragmented at arbitrary points → `ws::Decoder`
//! with the extension on, fed whole and in pieces. The inflate path under fuzzing.
//!
//! Checks:
//! - no panic, and the same messages and error whole and split (see `common::ws::decode_with`
//!   for the rules checked on every call, among them: a message is within `max`);
//! - a valid compressed message comes out exactly as it went in when it fits `max` (and, for
//!   text, is UTF-8), and fails with 1009 (`MessageTooBig`) when its inflated size does not,
//!   however small it is on the wire; invalid UTF-8 inside fails with 1007.
#![no_main]

use arbitrary::Arbitrary;
use flate2::{Compress, Compression, FlushCompress};
use libfuzzer_sys::fuzz_target;
use partyring::ws::{encode_client_frame, message::compressed_wire_limit, OpCode, WsError};

#[path = "common/ws.rs"]
mod ws;
use ws::Owned;

const MAX: [usize; 8] = [0, 1, 2, 125, 126, 1000, 65536, 1 << 20];

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u8,
    window: u8,
    level: u8,
    text: bool,
    msg: Vec<u8>,
    /// Repeat `msg` this many times (so small inputs can inflate past the limits).
    repeat: u16,
    /// Use these bytes as the compressed payload instead of deflating `msg`.
    garbage: Option<Vec<u8>>,
    /// Fragment boundaries in the compressed payload.
    frags: Vec<u16>,
    /// Where the byte stream is cut between feeds.
    cuts: Vec<u16>,
}

/// Raw deflate with a sync flush, minus the `00 00 FF FF` tail (RFC 7692 §7.2.1).
fn deflate(data: &[u8], level: u32, bits: u8) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, bits);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let at = c.total_in() as usize;
        c.compress_vec(&data[at..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

fuzz_target!(|inp: Input| {
    let max = MAX[usize::from(inp.limit & 7)];
    let opcode = if inp.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let msg = inp.msg.repeat(usize::from(inp.repeat % 2048) + 1);
    let payload = match &inp.garbage {
        Some(g) => g.clone(),
        None => deflate(&msg, u32::from(inp.level % 10), 9 + inp.window % 7),
    };

    // RSV1 on the first frame only; the others are continuations.
    let mut bounds: Vec<usize> = inp
        .frags
        .iter()
        .map(|&f| usize::from(f) % (payload.len() + 1))
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.push(payload.len());
    let mut stream = Vec::new();
    let mut start = 0;
    for (i, &end) in bounds.iter().enumerate() {
        let last = i + 1 == bounds.len();
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        let mut f = encode_client_frame(last, op, &payload[start..end], [7, 1, 200, 3]);
        if i == 0 {
            f[0] |= 0x40;
        }
        stream.extend_from_slice(&f);
        start = end;
    }

    let cuts = ws::cuts(inp.cuts.iter().map(|&c| usize::from(c)), stream.len());
    let whole = ws::decode_with(max, true, &stream, &[]);
    let split = ws::decode_with(max, true, &stream, &cuts);
    assert_eq!(whole, split, "split at {cuts:?} differs from whole");

    if inp.garbage.is_some() {
        return;
    }
    let want = if payload.len() > compressed_wire_limit(max) || msg.len() > max {
        (vec![], Some(WsError::MessageTooBig))
    } else if inp.text {
        match String::from_utf8(msg) {
            Ok(s) => (vec![Owned::Text(s)], None),
            Err(_) => (vec![], Some(WsError::InvalidUtf8)),
        }
    } else {
        (vec![Owned::Binary(msg)], None)
    };
    assert_eq!(whole, want);
});
