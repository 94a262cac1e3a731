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
    // The fixed part of every compress: the reset (zlib-rs clears its 64 Ki-entry hash head, 128
    // KiB) and an empty sync flush. The result is `None` (nothing to shrink); the work is done.
    g.bench_function("compress_fixed_cost_0B", |b| {
        b.iter(|| black_box(deflate::compressed_frame(OpCode::Text, black_box(b""), 15)))
    });
    for n in [200usize, 512, 1000, 2000, 4096, 16 << 10] {
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

/// The same reset + compress through flate2 directly at zlib levels 1 (the codec's) and 6
/// (zlib's default), for the bytes-against-CPU choice of `LEVEL` in `ws/deflate/codec.rs`.
fn levels(c: &mut Criterion) {
    use flate2::{Compress, Compression, FlushCompress};
    let mut g = c.benchmark_group("ws_deflate_level");
    for level in [1u32, 6] {
        for n in [512usize, 2000] {
            let msg = chat_json(n);
            let mut comp = Compress::new_with_window_bits(Compression::new(level), false, 15);
            let mut out = Vec::with_capacity(2 * n + 64);
            comp.compress_vec(&msg, &mut out, FlushCompress::Sync)
                .expect("deflate");
            eprintln!(
                "ws_deflate_level: level {level}, {n} B -> {} B",
                out.len() - 4
            );
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_function(format!("level{level}_{n}B"), |b| {
                b.iter(|| {
                    comp.reset();
                    out.clear();
                    comp.compress_vec(black_box(&msg), &mut out, FlushCompress::Sync)
                        .expect("deflate");
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec, levels);
criterion_main!(benches);
