//! permessage-deflate micro-benches: what one broadcast's deflate and one received message's
//! inflate cost, on chat-like JSON of the sizes the issue's workload uses (200-2,000 bytes) and
//! one larger message.
//!
//! - compress: `compressed_frame` (compressor reset + raw deflate at the codec's level + the
//!   exact-size frame), which a broadcast runs once for all its compressing members.
//! - inflate: `inflate` of that frame's payload (reset + inflate into the core's buffer), which
//!   runs once per compressed message a client sends.
//!
//! Reading the numbers: at these sizes the fixed cost of resetting the compressor (clearing its
//! hash table) is a large part of `compress`; compare it with the cost of one delivery (a push
//! and a share of a `sendmsg`) times the room size to judge `--compression-threshold`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use partyring::ws::{deflate, OpCode};

/// `n` bytes of chat-like JSON: an array of message objects (cut at `n`).
fn chat_json(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < n {
        s += &format!(
            r#"{{"id":"msg-{:06}","user":"user{}","ts":{},"text":"see you at the usual place"}},"#,
            1000 + i * 37,
            i % 5,
            1_764_633_600_000 + i * 1733
        );
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_deflate");
    for n in [200usize, 1000, 2000, 16 << 10] {
        let msg = chat_json(n);
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("compress_{n}B"), |b| {
            b.iter(|| black_box(deflate::compressed_frame(OpCode::Text, black_box(&msg), 15)))
        });
        let frame = deflate::compressed_frame(OpCode::Text, &msg, 15).expect("JSON shrinks");
        let at = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let payload = frame[at..].to_vec();
        g.bench_function(format!("inflate_{n}B"), |b| {
            b.iter(|| black_box(deflate::inflate(black_box(&payload), 1 << 20, |m| m.len())))
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
