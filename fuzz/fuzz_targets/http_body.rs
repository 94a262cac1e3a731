//! `http::BodyDecoder` fed whole and in pieces.
//!
//! Input layout: byte 0 picks the decoder (bit 0: chunked or `Content-Length`) and the body cap
//! (bits 1-3); for `Content-Length`, bytes 1-2 are the length; then one byte with the number of
//! split points (0-15), that many split points (u16 each), and the rest is the body stream.
//!
//! Checks: every call consumes at most its input, and all of it unless the body is done; the
//! body never passes the cap; feeding the stream in pieces gives the same body, the same total
//! consumed and the same `done` as feeding it whole, or the same error (stopping after `done`,
//! as `http::session` does; after an error only the error is compared).
#![no_main]

use libfuzzer_sys::fuzz_target;
use partyring::http::{BodyDecoder, HttpError};

const CAPS: [usize; 8] = [0, 1, 5, 16, 100, 1000, 4096, 1 << 20];

#[derive(Debug, PartialEq)]
struct Outcome {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    err: Option<HttpError>,
}

fn run(make: &dyn Fn() -> BodyDecoder, stream: &[u8], cuts: &[usize], max: usize) -> Outcome {
    let mut dec = make();
    let mut body = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        if done || end < start {
            continue;
        }
        let piece = &stream[start..end];
        match dec.feed(piece, &mut body, max) {
            Ok(p) => {
                assert!(
                    p.consumed <= piece.len(),
                    "consumed {} of {}",
                    p.consumed,
                    piece.len()
                );
                assert!(
                    p.done || p.consumed == piece.len(),
                    "left {} bytes unconsumed without being done",
                    piece.len() - p.consumed
                );
                assert!(body.len() <= max, "body {} over cap {max}", body.len());
                consumed += p.consumed;
                done = p.done;
            }
            Err(e) => {
                assert!(
                    body.len() <= max,
                    "body {} over cap {max} (at error)",
                    body.len()
                );
                // After an error the connection answers and closes: what was decoded or
                // consumed before it depends on the split and is not compared.
                return Outcome {
                    body: Vec::new(),
                    consumed: 0,
                    done: false,
                    err: Some(e),
                };
            }
        }
        start = end;
    }
    Outcome {
        body,
        consumed,
        done,
        err: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let max = CAPS[usize::from(mode >> 1 & 7)];
    let make: Box<dyn Fn() -> BodyDecoder> = if mode & 1 == 1 {
        Box::new(BodyDecoder::chunked)
    } else {
        let Some((len, r)) = rest.split_first_chunk::<2>() else {
            return;
        };
        rest = r;
        let n = u64::from(u16::from_le_bytes(*len));
        Box::new(move || BodyDecoder::length(n))
    };
    let Some((&ncuts, mut rest)) = rest.split_first() else {
        return;
    };
    let mut cuts = Vec::new();
    for _ in 0..ncuts & 15 {
        let Some((c, r)) = rest.split_first_chunk::<2>() else {
            return;
        };
        cuts.push(usize::from(u16::from_le_bytes(*c)));
        rest = r;
    }
    let stream = rest;
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();

    let whole = run(&*make, stream, &[], max);
    let split = run(&*make, stream, &cuts, max);
    assert_eq!(whole, split, "split {cuts:?} differs from whole");
    // Byte at a time, the worst case for carried state (kept short to keep the target fast).
    if stream.len() <= 512 {
        let every: Vec<usize> = (1..stream.len()).collect();
        let bytewise = run(&*make, stream, &every, max);
        assert_eq!(whole, bytewise, "byte-at-a-time differs from whole");
    }
});
